"""Failure paths of sweeps and runs, through the `sweeplab` command: one line, nothing lost,
nothing left RUNNING, nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from sweeplab.cli import exits
from sweeplab.sweep import recorder as rec_module
from sweeplab.sweep.recorder import PARENT, Session, SweepRecorder
from sweeplab.sweep.state import SweepState
from sweeplab.tracking.delivery import Delivery
from sweeplab.tracking.outbox import Outbox
from sweeplab.tracking.store import Tracker

SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]
TINY = ["data=digits", "search=lr_batch", "tune=fifo", "trainer.epochs=2", "tune.num_samples=2"]


def sweeplab(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None):
    return subprocess.run(
        [*SWEEPLAB, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def one_line(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    return lines[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runs_in(db: Path) -> list:
    if not db.exists():
        return []
    client = MlflowClient(f"sqlite:///{db}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.parametrize("command", [["train", "data=digits", "trainer.epochs=1"], ["sweep", *TINY]])
def test_an_unreachable_server_is_one_line_within_seconds(workdir, command):
    # MLflow's own client would retry for about four minutes; the bound catches that regression
    out = sweeplab(*command, f"tracking.uri=http://127.0.0.1:{free_port()}", cwd=workdir, timeout=90)
    assert out.returncode == exits.RUNTIME
    line = one_line(out)
    assert "cannot reach the tracking server" in line and "connection refused" in line
    assert not (workdir / "sweeps").exists()


def test_a_wrong_database_and_an_unwritable_path_are_one_line(workdir):
    url = os.environ.get("SWEEPLAB_TEST_POSTGRES_URL")
    if url:
        wrong = url.rsplit("/", 1)[0] + "/no_such_database_sweeplab"
        out = sweeplab("train", "data=digits", f"tracking.uri={wrong}", cwd=workdir, timeout=90)
        assert out.returncode == exits.RUNTIME and "no_such_database_sweeplab" in one_line(out)
    out = sweeplab("train", "data=digits", f"tracking.uri=sqlite:///{workdir}/missing/x.db", cwd=workdir)
    assert out.returncode == exits.RUNTIME and "does not exist" in one_line(out)


def test_a_sweep_the_cluster_cannot_run_is_refused_before_any_run(workdir):
    out = sweeplab("sweep", *TINY, "cluster.num_cpus=1", "tune.cpus_per_trial=2", cwd=workdir)
    assert out.returncode == exits.USAGE
    assert "tune.cpus_per_trial=2" in one_line(out)
    assert runs_in(workdir / "mlflow.db") == [] and not (workdir / "sweeps" / "x").exists()


def test_a_cluster_that_is_not_there_is_one_line(workdir):
    out = sweeplab(
        "sweep",
        *TINY,
        "cluster=existing",
        f"cluster.address=127.0.0.1:{free_port()}",
        cwd=workdir,
        timeout=180,
    )
    assert out.returncode == exits.RUNTIME
    assert "cannot start the Ray cluster at 127.0.0.1" in one_line(out)
    assert runs_in(workdir / "mlflow.db") == []


def test_a_sweep_and_a_train_share_a_fresh_sqlite_store(workdir):
    """Both first commands on a new store migrate its schema; neither loses its runs."""
    procs = [
        subprocess.Popen(
            [*SWEEPLAB, *cmd], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for cmd in (
            ["sweep", *TINY, "tracking.experiment=s", "tune.name=shared"],
            ["train", "data=digits", "trainer.epochs=2", "tracking.experiment=t"],
            ["train", "data=digits", "trainer.epochs=2", "tracking.experiment=t"],
        )
    ]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(outputs)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    sweep_runs = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    train_runs = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert len(sweep_runs) == 3 and len(train_runs) == 2
    assert {r.info.status for r in sweep_runs + train_runs} == {"FINISHED"}


def test_a_trial_that_fails_before_it_starts_is_a_failed_child_run(workdir):
    """Tune reports a trial whose actor never started (on_trial_recover, then on_trial_error)
    before any on_trial_start: the recorder still gives it its run, closed as failed."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    tracker = Tracker({"uri": uri})
    parent = tracker.start_run("exp", "sweep", {})
    state = SweepState(
        "s",
        str(workdir),
        parent,
        "exp",
        [],
        {"uri": uri},
        {"metric": "val/loss", "mode": "min", "scheduler": "fifo"},
        3,
    )
    outbox = Outbox(workdir / "outbox.db", Delivery(tracker, lambda *a: None)).start()
    outbox.bind(PARENT, parent)
    rec_module.SESSIONS["s"] = Session(state, outbox)
    recorder = SweepRecorder("s")
    recorder.setup()
    from ray.tune.experiment import Trial  # after sweeplab has set Ray's environment (RAY_AUTH_MODE ...)

    trial = Trial("__no_such_trainable", config={"optimizer.lr": 0.1}, trial_id="abc_00003", stub=True)
    recorder.on_trial_recover(0, [trial], trial)
    recorder.on_trial_error(0, [trial], trial)
    assert outbox.drain(30)
    client = MlflowClient(uri)
    kids = client.search_runs(["1"], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert len(kids) == 1
    kid = kids[0]
    assert kid.info.status == "FAILED" and kid.data.tags["sweeplab.status"] == "failed"
    assert kid.data.tags["sweeplab.retries"] == "1" and kid.data.params["sampled.optimizer.lr"] == "0.1"
    assert kid.info.run_name == "trial-003"


def wait_for(condition, timeout_s: float) -> bool:
    """Poll a condition until it holds or the deadline passes (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def journaled(sweep_dir: Path) -> list[dict]:
    """The recorder's state of each trial, as the sweep's outbox journal holds it."""
    import json
    import sqlite3

    if not (sweep_dir / "outbox.db").exists():
        return []
    with sqlite3.connect(sweep_dir / "outbox.db", timeout=10) as db:
        try:
            rows = db.execute("SELECT value FROM state WHERE key LIKE 'trial/%'").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
    return [json.loads(v) for (v,) in rows]


def ray_processes_of(pgid: int) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:80])
            except (OSError, ProcessLookupError):
                continue
    return found


@pytest.mark.slow
def test_sigkilled_driver_leaves_nothing_running_and_resumes_exactly(workdir):
    args = [
        "sweep",
        "data=digits",
        "search=optimizers",
        "tune=fifo",
        "tune.num_samples=4",
        "trainer.epochs=6",
        "trainer.early_stopping.enabled=false",
        "tune.checkpoint_every=2",  # a checkpoint by the time of the kill
        "tune.max_concurrent_trials=2",
        "tune.name=killed",
        "tracking.experiment=killed",
    ]
    with open(workdir / "driver.out", "w") as log:
        proc = subprocess.Popen(
            [*SWEEPLAB, *args], stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    # kill the driver while a trial is mid-way (three epochs journaled: its epoch-2 checkpoint is
    # Tune's by then; not finished)
    assert wait_for(
        lambda: any(
            t["status"] == "running" and t["last_logged"] >= 3
            for t in journaled(workdir / "sweeps" / "killed")
        ),
        300,
    ), (workdir / "driver.out").read_text()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    wait_for(lambda: not ray_processes_of(proc.pid), 60)  # they die with the driver or its watcher
    assert ray_processes_of(proc.pid) == [], (workdir / "driver.out").read_text()
    # The kill landed while Tune was copying its state to storage (CI once caught it there):
    # the file is left empty, as pyarrow's copy leaves it between opening and writing.
    (state_file,) = (workdir / "sweeps" / "killed").glob("experiment_state-*.json")
    state_file.write_bytes(b"")

    out = sweeplab("sweep", "resume", "killed", cwd=workdir, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    kids = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(kids) == 4  # the same parent; no child twice
    assert len({k.data.tags["sweeplab.trial_id"] for k in kids}) == 4
    for kid in kids:
        history = client.get_metric_history(kid.info.run_id, "val/loss")
        assert sorted(m.step for m in history) == list(range(1, 7))  # every epoch once
        assert kid.info.status == "FINISHED"
    continued = [
        int(k.data.tags["sweeplab.continued_at_epoch"])
        for k in kids
        if "sweeplab.continued_at_epoch" in k.data.tags
    ]
    # each from its last checkpoint (epochs 2, 4, 6): the trial killed after epoch 3 from epoch 2's,
    # one that had not reached epoch 2 from scratch
    assert continued and max(continued) > 1 and all(epoch % 2 == 1 for epoch in continued), continued
    assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["trials/total"] == 4


# Slow-learning trials of many epochs: their val/loss still falls when the time budget stops
# them, so the best epoch they logged is about their last, which wrote a checkpoint only if the
# budget struck right after one (one time in 30 with tune.checkpoint_every=30; over 100 epochs
# run in what the command's start-up, about 15 s on 2 cores, leaves of the budget).
OUT_OF_TIME = [
    "data=digits",
    "search=none",
    '+search.space.optimizer.lr="grid[0.002, 0.003]"',
    "optimizer=sgd",
    "tune=fifo",
    "trainer.epochs=5000",
    "trainer.early_stopping.enabled=false",
]


def test_a_sweep_out_of_time_ends_with_its_summary_and_the_best_weights_it_kept(workdir):
    """The time budget stops the trials still running: stopped_by_budget (FINISHED), not interrupted.
    A trial stopped between two checkpoints kept the best weights of its last checkpoint: the sweep
    chooses, reports and tests that epoch, not a later one whose weights nobody has."""
    out = sweeplab(
        "sweep", *OUT_OF_TIME, "tune.checkpoint_every=30", "tune.time_budget_s=35",
        "tracking.experiment=budget", cwd=workdir,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("budget").experiment_id])
    kids = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {k.data.tags["sweeplab.status"] for k in kids} == {"stopped_by_budget"}
    assert {k.info.status for k in kids} == {"FINISHED"}
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED" and "test/acc" in parent.data.metrics
    best_run = parent.data.tags["best.run_id"]
    with tempfile.TemporaryDirectory() as tmp:
        kept = torch.load(client.download_artifacts(best_run, "checkpoints/best.pt", tmp), weights_only=False)
    losses = {m.step: m.value for m in client.get_metric_history(best_run, "val/loss")}
    assert parent.data.metrics["best/epoch"] == kept["epoch"]
    assert parent.data.metrics["best/val/loss"] == pytest.approx(losses[kept["epoch"]])
    assert client.get_run(best_run).data.tags["sweeplab.best_epoch"] == str(kept["epoch"])


def test_a_sweep_out_of_time_before_any_checkpoint_says_it_has_no_model(workdir):
    """No trial reached a checkpoint: no model to test or register. One line says why and what to
    change, the sweep exits 1, its parent run FAILED, every trial's epochs kept."""
    out = sweeplab(
        "sweep", *OUT_OF_TIME, "tune.checkpoint_every=100000", "tune.time_budget_s=45",
        "tracking.experiment=budget", cwd=workdir,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "no trial kept weights" in out.stdout and "tune.checkpoint_every" in out.stdout
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("budget").experiment_id])
    kids = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert len(kids) == 2 and {k.info.status for k in kids} == {"FINISHED"}
    assert all(len(client.get_metric_history(k.info.run_id, "val/loss")) > 1 for k in kids)
    assert parent.info.status == "FAILED" and "test/acc" not in parent.data.metrics


def test_the_time_budget_counts_from_the_sweeps_start(workdir):
    """The budget bounds the command's wall time, start-up included: one its start-up used up runs
    no trial, says so in one line, and ends the sweep FAILED."""
    from sweeplab import sweep
    from sweeplab.config import compose, to_container

    overrides = [*OUT_OF_TIME, "tune.time_budget_s=60", "tracking.experiment=budget"]
    outcome = sweep.start(to_container(compose(overrides)), overrides, started=time.time() - 60)
    assert "tune.time_budget_s=60" in outcome.summary.no_model and outcome.summary.best is None
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    (parent,) = client.search_runs([client.get_experiment_by_name("budget").experiment_id])
    assert parent.info.run_id == outcome.state.parent_run_id and parent.info.status == "FAILED"


def test_a_sweep_whose_trials_all_ended_before_an_epoch_says_why_it_has_no_model(workdir):
    """Every trial failed or ran out of time before its first epoch: the summary's one line names
    how they ended, the first failure's error and what to change; the parent ends FAILED."""
    from sweeplab.config import compose, to_container
    from sweeplab.sweep.summary import summarize

    cfg = to_container(compose(["data=digits", "search=lr_batch", "tune.time_budget_s=30"]))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    tracker = Tracker({"uri": uri})
    parent = tracker.start_run("exp", "sweep", {})
    endings = [("failed", "RuntimeError: CUDA out of memory"), ("stopped_by_budget", "out of time")]
    for i, (status, reason) in enumerate(endings):
        kid = tracker.start_run("exp", f"trial-{i:03d}", {}, parent_run_id=parent)
        tracker.end_run(kid, status, reason)
    state = SweepState("s", str(workdir), parent, "exp", [], {"uri": uri}, cfg["tune"], 2)
    no_model = summarize(cfg, state, tracker, wall_seconds=1.0).no_model
    assert "1 failed" in no_model and "1 stopped_by_budget" in no_model
    assert "trial-000: RuntimeError: CUDA out of memory" in no_model
    assert "tune.time_budget_s" in no_model
    assert MlflowClient(uri).get_run(parent).info.status == "FAILED"


# Ray's core worker held in the moment between its shutdown and its removal, while the main
# thread collects garbage as any allocation may make it do: before the fix, the collection freed
# an ObjectRef (as Tune's trainables hold them, in reference cycles), Ray's C++ side found its
# worker shut down and ended the process with exit 1 (CI: a sweep died before its summary).
COLLECT_WHILE_RAY_STOPS = """
import gc, sys, threading
from pathlib import Path
import ray, ray._private.worker as ray_worker
from sweeplab.sweep import cluster

cluster.start_ray({"address": None, "num_cpus": 1}, Path(sys.argv[1])).wait()
holder = type("Trainable", (), {})()
holder.cycle, holder.ref = holder, ray.put(b"x" * 1000)
del holder
real, in_window, collected = ray_worker.global_worker.core_worker, threading.Event(), threading.Event()

class Stopping:
    def __getattr__(self, name):
        return getattr(real, name)

    def shutdown_driver(self):
        real.shutdown_driver()
        in_window.set()
        collected.wait(60)

ray_worker.global_worker.core_worker = Stopping()
stopping = cluster.shutdown_soon()
assert in_window.wait(60)
gc.collect()
collected.set()
stopping.join()
print("survived", gc.isenabled())
"""


def test_garbage_collected_while_ray_stops_does_not_end_the_driver(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", COLLECT_WHILE_RAY_STOPS, str(tmp_path / "driver.log")],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.split() == ["survived", "True"], out.stdout + out.stderr


def test_a_sweep_whose_trials_cannot_train_is_refused_with_trains_own_line(workdir):
    """Token-id models on images: every trial would fail and be retried; refused up front instead."""
    out = sweeplab("sweep", *TINY, "model=embedding_bag", cwd=workdir)
    train = sweeplab("train", "data=digits", "model=embedding_bag", cwd=workdir)
    assert out.returncode == exits.USAGE and train.returncode == exits.USAGE
    assert one_line(out) == one_line(train)  # the same line `sweeplab train` prints
    assert runs_in(workdir / "mlflow.db") == []
