"""The benchmark against the peers: its figures, the task and data it hands them, its CPU meter.

The benchmark itself (an hour of the machine) is not run here, nor are the peer programs (their
environment is installed by the benchmark, not by the test suite); these test the parts that
turn what the tools did into the figures, on files and stores the tests write.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import require_in_ci

from bench.peers import race as peers
from bench.peers.race import PeerBenchError, Record, figures, medians, read_log, time_to


def write_log(path, entries) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def epoch(t, trial, ep, acc, loss=0.5):
    return {"t": t, "event": "epoch", "trial": trial, "epoch": ep, "val_acc": acc, "val_loss": loss}


# ------------------------------------------------------------------ figures
def test_log_becomes_figures(tmp_path):
    log = tmp_path / "tool.jsonl"
    # two workers append as they go: the file is not in time order
    write_log(
        log,
        [
            epoch(12.0, "0", 1, 0.80),
            epoch(15.0, "1", 1, 0.86),
            epoch(14.0, "0", 2, 0.885),
            epoch(30.0, "1", 2, 0.893),
            epoch(25.0, "0", 3, 0.88),
            epoch(41.0, "2", 1, 0.901),
            {"t": 50.0, "event": "final", "trial": "2", "test_acc": 0.897, "test_loss": 0.3},
        ],
    )
    records, final = read_log(log)
    assert [r.t for r in records] == sorted(r.t for r in records)
    assert final["test_acc"] == 0.897
    f = figures(records, thresholds=(0.89, 0.90, 0.95))
    assert f["trial_epochs"] == 6
    assert f["trials"] == 3
    assert f["best_val_acc"] == 0.901
    assert f["first_epoch_s"] == 12.0
    # 0.89 is first reached by the 5th trial-epoch in time order (t=30), not the 4th line of the file
    assert f["reach"]["0.89"] == {"t": 30.0, "trial_epochs": 5}
    assert f["reach"]["0.90"] == {"t": 41.0, "trial_epochs": 6}
    assert f["reach"]["0.95"] is None
    assert time_to(list(reversed(records)), 0.89) == {"t": 30.0, "trial_epochs": 5}  # any order in


def test_best_so_far_never_decreases():
    records = [Record(1.0, "a", 1, 0.7), Record(2.0, "b", 1, 0.6), Record(3.0, "a", 2, 0.8)]
    assert peers.best_so_far(records) == [(1.0, 0.7), (2.0, 0.7), (3.0, 0.8)]


def test_empty_log_has_no_figures(tmp_path):
    log = tmp_path / "crashed.jsonl"
    log.write_text("")
    records, final = read_log(log)
    f = figures(records)
    assert (f["trial_epochs"], f["best_val_acc"], final) == (0, None, None)
    assert time_to(records, 0.5) is None


def run(tool, seed, wall, test, reach89, reach90):
    return {
        "tool": tool,
        "seed": seed,
        "wall_s": wall,
        "cpu_s": 2 * wall,
        "trial_epochs": 100 + seed,
        "best_val_acc": 0.9,
        "test_acc": test,
        "first_epoch_s": 10.0,
        "reach": {"0.89": reach89, "0.90": reach90},
    }


def test_medians_over_seeds():
    runs = [
        run("x", 0, 100.0, 0.89, {"t": 50.0, "trial_epochs": 40}, {"t": 90.0, "trial_epochs": 80}),
        run("x", 1, 300.0, 0.90, {"t": 70.0, "trial_epochs": 60}, None),
        run("x", 2, 200.0, None, {"t": 60.0, "trial_epochs": 50}, {"t": 80.0, "trial_epochs": 70}),
    ]
    m = medians(runs)
    assert m["wall_s"] == 200.0
    assert m["test_acc"] == pytest.approx(0.895)  # a run that chose no model does not count as 0
    assert m["reach"]["0.89"] == {"t": 60.0, "trial_epochs": 50}
    # two of three reached 0.90: the median is the later of them, the miss counting as never
    assert m["reach"]["0.90"] == {"t": 90.0, "trial_epochs": 80}


def test_median_of_a_threshold_most_seeds_missed_is_never():
    runs = [
        run("x", 0, 100.0, 0.89, None, None),
        run("x", 1, 100.0, 0.89, {"t": 70.0, "trial_epochs": 60}, None),
    ]
    m = medians(runs)
    assert m["reach"]["0.89"] is None
    assert m["reach"]["0.90"] is None


def results_of(runs):
    tools = dict.fromkeys(r["tool"] for r in runs)
    runs = [{"error": None, **r} for r in runs]
    return {
        "seeds": sorted({r["seed"] for r in runs}),
        "runs": runs,
        "medians": {t: medians([r for r in runs if r["tool"] == t]) for t in tools},
    }


def reach(t):
    return {"t": t, "trial_epochs": int(t)}


def test_the_goal_is_met_only_when_sweeplab_is_as_fast_as_accurate_and_first_to_090():
    ours = [run("sweeplab", s, 300.0, 0.903, reach(50.0), reach(150.0 + s)) for s in range(3)]
    optuna = [run("optuna", s, 450.0, 0.901, reach(80.0), None if s else reach(200.0)) for s in range(3)]
    verdict = peers.goal(results_of([*ours, *optuna]))
    assert [ok for _, ok in verdict] == [True, True, True]
    assert verdict[2][0].endswith(": 151 s vs never")  # Optuna's median never reached 0.90

    # a peer whose chosen model is more accurate
    better = [{**r, "test_acc": 0.905} for r in optuna]
    assert [ok for _, ok in peers.goal(results_of([*ours, *better]))] == [True, False, True]
    # a peer that reaches 0.90 first on most seeds
    quicker = [{**r, "reach": {"0.89": reach(80.0), "0.90": reach(100.0)}} for r in optuna]
    assert [ok for _, ok in peers.goal(results_of([*ours, *quicker]))] == [True, True, False]
    # sweeplab taking longer than a peer
    slow = [{**r, "wall_s": 500.0} for r in ours]
    assert [ok for _, ok in peers.goal(results_of([*slow, *optuna]))] == [False, True, True]
    # a peer that crashed at once on every seed sets no wall time to beat
    crashed = [{**run("kerastuner", s, 20.0, None, None, None), "error": "exited with 1"} for s in range(3)]
    assert [ok for _, ok in peers.goal(results_of([*ours, *optuna, *crashed]))] == [True, True, True]
    # sweeplab never reaching 0.90 on most seeds is not sooner than a peer that never does either
    never = [{**r, "reach": {"0.89": reach(50.0), "0.90": None if r["seed"] else reach(10.0)}} for r in ours]
    assert peers.goal(results_of([*never, *optuna]))[2][1] is False


def test_a_failed_sweeplab_run_fails_the_goal_however_good_the_others():
    ours = [run("sweeplab", s, 300.0, 0.95, reach(50.0), reach(100.0)) for s in range(3)]
    ours[1] = {**ours[1], "error": "the sweep exited 1", "test_acc": None}
    optuna = [run("optuna", s, 450.0, 0.85, None, None) for s in range(3)]
    verdict = peers.goal(results_of([*ours, *optuna]))
    assert [ok for _, ok in verdict][:2] == [False, False]


def test_an_earlier_runs_results_are_reported_again(tmp_path, capsys):
    ours = [run("sweeplab", s, 300.0, 0.903, reach(50.0), reach(150.0)) for s in range(2)]
    optuna = [run("optuna", s, 450.0, 0.901, reach(80.0), None) for s in range(2)]
    results = {
        **results_of([*ours, *optuna]),
        "machine": "test machine", "budget_s": 450, "max_trials": 64, "max_epochs": 20,
        "thresholds": [0.89, 0.90], "run_dir": str(tmp_path),
    }  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert peers.main(["--report", str(tmp_path / "results.json")]) == 0
    out = capsys.readouterr().out
    assert "0.9030" in out and "goal (medians over 2 seeds): met" in out
    assert peers.main(["--report", str(tmp_path / "missing.json")]) == 1
    assert "cannot read" in capsys.readouterr().out


# -------------------------------------------------------- sweeplab's epochs
def test_sweeplab_epochs_come_from_mlflow_timestamps(tmp_path):
    from sweeplab.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker({"uri": uri, "artifact_root": str(tmp_path / "artifacts")})
    t0 = time.time()
    tags = {"sweeplab.sweep": "s1", "sweeplab.kind": "sweep"}
    parent = tracker.start_run(peers.EXPERIMENT, "s1", {}, tags=tags)
    other = tracker.start_run(peers.EXPERIMENT, "s2", {}, tags={**tags, "sweeplab.sweep": "s2"})
    for trial, accs in (("t1", [0.80, 0.88]), ("t2", [0.91])):
        child = tracker.start_run(
            peers.EXPERIMENT, trial, {}, tags={"sweeplab.trial_id": trial}, parent_run_id=parent
        )
        for step, acc in enumerate(accs, start=1):
            tracker.log_metrics(child, {"val/acc": acc, "val/loss": 1 - acc}, step=step)
        tracker.log_metrics(child, {"overfit/best_epoch": 1.0}, step=len(accs))
    stray = tracker.start_run(peers.EXPERIMENT, "x", {}, tags={"sweeplab.trial_id": "x"}, parent_run_id=other)
    tracker.log_metrics(stray, {"val/acc": 0.99, "val/loss": 0.01}, step=1)
    tracker.log_metrics(parent, {"test/acc": 0.905}, step=0)
    tracker.set_tags(parent, {"best.trial_id": "t2"})
    t1 = time.time()

    records, final = peers.sweeplab_records(uri, peers.EXPERIMENT, "s1", t0)
    assert sorted((r.trial, r.epoch, r.val_acc) for r in records) == [
        ("t1", 1, 0.80),
        ("t1", 2, 0.88),
        ("t2", 1, 0.91),
    ]
    assert all(0 <= r.t <= t1 - t0 + 0.01 for r in records)  # seconds since the command's start
    assert [r.t for r in records] == sorted(r.t for r in records)
    assert records[0].val_loss == pytest.approx(0.2)
    assert (final["test_acc"], final["trial"]) == (0.905, "t2")


# --------------------------------------------------------------- the task
def test_task_is_sweeplabs_space_with_options_resolved():
    task, data_cfg = peers.peer_task(60.0, None, None)
    assert data_cfg["name"] == "fashion_mnist"
    assert set(task["space"]) == set(peers.PEER_KEYS.values())
    assert [128] in task["space"]["hidden"]["args"]
    # a group option arrives as its settings: 'momentum' is SGD with Nesterov momentum
    momentum = task["groups"]["optimizer"]["momentum"]
    assert (momentum["name"], momentum["momentum"], momentum["nesterov"]) == ("sgd", 0.9, True)
    assert task["groups"]["regularizer"]["l2"]["l2"] > 0
    assert (task["epochs"], task["max_trials"]) == (20, 64)  # the sweep's own caps
    small, _ = peers.peer_task(60.0, 4, 3)
    assert (small["epochs"], small["max_trials"]) == (3, 4)


def test_a_space_key_the_peers_cannot_build_is_refused():
    with pytest.raises(PeerBenchError, match="model.init"):
        peers.peer_task(60.0, None, None, ['+search.space.model.init="choice[glorot_uniform,torch_default]"'])


def load_peer_module(name: str):
    spec = importlib.util.spec_from_file_location(f"peer_{name}", peers.PEERS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # reads the real Fashion-MNIST twice and writes 55 MB
def test_the_peers_read_exactly_sweeplabs_split(tmp_path):
    from sweeplab.config import compose, to_container
    from sweeplab.data import load_data

    data_cfg = to_container(compose([f"experiment={peers.EXPERIMENT}"]))["data"]
    path, fingerprint = peers.export_split(data_cfg, tmp_path / "split.npz")
    theirs = load_peer_module("task").load_split(path)
    ours = load_data(data_cfg)
    assert fingerprint == ours.fingerprint
    for split, n in (("train", 55000), ("val", 5000), ("test", 10000)):
        x = getattr(ours, f"x_{split}")
        assert theirs[f"x_{split}"].shape == (n, 784)
        assert np.array_equal(theirs[f"x_{split}"], x.reshape(n, -1).numpy())  # bit for bit
        assert np.array_equal(theirs[f"y_{split}"], getattr(ours, f"y_{split}").numpy())
    stamp = path.stat().st_mtime_ns
    peers.export_split(data_cfg, path)  # same fingerprint: reused, not rewritten
    assert path.stat().st_mtime_ns == stamp


def test_peer_task_refuses_keys_it_does_not_build(tmp_path):
    task_module = load_peer_module("task")
    (tmp_path / "task.json").write_text(json.dumps({"space": {"lr": {}, "momentum_decay": {}}}))
    with pytest.raises(task_module.TaskError, match="momentum_decay"):
        task_module.load_task(tmp_path / "task.json")


# ------------------------------------------------------------------ meter
BUSY = "import time\nwhile time.process_time() < 0.6:\n    pass\n"


def meter(tmp_path, script: str) -> dict:
    out = tmp_path / "usage.json"
    command = [sys.executable, str(peers.PEERS_DIR / "meter.py"), "--out", str(out), "--"]
    code = subprocess.run([*command, sys.executable, "-c", script], timeout=60).returncode
    usage = json.loads(out.read_text())
    assert code == usage["returncode"] == 0
    return usage


def test_meter_counts_cpu_of_processes_nobody_reaps(tmp_path):
    """As Ray's raylet does, the parent ignores SIGCHLD: its child's 0.6 s never reach it by rusage."""
    parent = (
        "import signal, subprocess, sys\n"
        "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
        f"subprocess.Popen([sys.executable, '-c', {BUSY!r}]).wait()\n"
    )
    usage = meter(tmp_path, parent)
    if not usage["cpu_exact"]:
        require_in_ci("no cgroup could be made here: the meter can only give a lower bound")
    assert usage["cpu_s"] >= 0.6
    assert usage["reaped_cpu_s"] < 0.6  # what rusage alone would have said


def test_meter_counts_and_ends_orphaned_descendants(tmp_path):
    """The command exits at once; its child, orphaned, burns 0.6 s of CPU: counted, and waited for."""
    usage = meter(tmp_path, f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {BUSY!r}])")
    assert usage["subreaper"] is True
    assert usage["orphans_reaped"] >= 1
    assert usage["cpu_s"] >= 0.6
    assert math.isfinite(usage["wall_s"])


def test_a_lever_under_test_is_the_last_word_of_sweeplabs_command(tmp_path):
    from bench.peers.race import sweeplab_command
    from sweeplab.config import compose

    lever = ["tune=optuna", "tune.mode=max"]
    task = {"budget_s": 60, "max_trials": 4, "epochs": 3, "sweeplab_overrides": lever}
    command = sweeplab_command(0, "lever", task, tmp_path)
    assert command[-2:] == lever
    cfg = compose(command[2:])  # what the sweep composes: the lever wins over the experiment's defaults
    assert cfg.tune.search_alg.name == "optuna" and cfg.trainer.epochs == 3
