"""End to end: the `sweeplab` command on real data with a real MLflow SQLite store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from servers import listening_addresses

import sweeplab
from sweeplab.build import build_model
from sweeplab.cli import main
from sweeplab.models import WithProbabilities
from sweeplab.run import train_and_track

SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]


@pytest.fixture
def store(workdir):
    """The embedded store lives in the working directory: ./mlflow.db and ./mlartifacts."""
    return workdir


def only_run(store: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def git_head() -> str | None:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=Path(sweeplab.__file__).parent, capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else None


def test_train_command_writes_a_complete_run(store):
    # A name longer than a terminal line: printed to a pipe, nothing may be cut to fit 80 columns.
    experiment = "e2e-" + "x" * 90
    head_before = git_head()
    out = subprocess.run(
        [*SWEEPLAB, "train", "data=digits", "trainer.epochs=2", f"tracking.experiment={experiment}"],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )
    assert out.returncode == 0, out.stderr
    assert "epoch   1/2" in out.stdout and "epoch   2/2" in out.stdout
    assert "test/acc" in out.stdout and "sweeplab ui" in out.stdout
    assert f"in experiment '{experiment}'" in out.stdout and f"sqlite:///{store / 'mlflow.db'}" in out.stdout

    client, run = only_run(store, experiment)
    assert run.info.status == "FINISHED" and run.data.tags["sweeplab.status"] == "completed"
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_time_s"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2], key
    assert "test/acc" in run.data.metrics and "test/loss" in run.data.metrics
    params = run.data.params
    assert params["model.hidden"] == "[128]" and params["data.name"] == "digits"
    assert params["optimizer.name"] == "rmsprop" and params["trainer.epochs"] == "2"
    tags = run.data.tags
    assert tags["sweeplab.version"] and tags["data.fingerprint"]
    # The commit of the code that ran (not of the working directory); none outside a git checkout.
    heads = {head_before, git_head()} - {None}  # others may commit to this checkout meanwhile
    if heads:
        assert tags["mlflow.source.git.commit"] in heads
    else:
        assert "mlflow.source.git.commit" not in tags
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model_summary.txt", "plots", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/learning_curve.png"]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/best.pt"]
    png = Path(client.download_artifacts(run.info.run_id, "plots/learning_curve.png", str(store)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    summary = Path(client.download_artifacts(run.info.run_id, "model_summary.txt", str(store))).read_text()
    assert "Total params: 9,610" in summary  # 64 -> 128 -> 10


def test_logged_model_loads_and_predicts_like_the_trained_one(store, make_cfg):
    cfg = make_cfg("data=digits", "trainer.epochs=2", "regularizer=dropout", "regularizer.dropout=0.3")
    outcome = train_and_track(cfg)
    client = MlflowClient(mlflow.get_tracking_uri())
    run = client.get_run(outcome.run_id)
    model_id = run.outputs.model_outputs[0].model_id
    loaded = mlflow.pytorch.load_model(f"models:/{model_id}")
    x = outcome.trainer.data.x_test.cpu()
    expected = WithProbabilities(outcome.trainer.model, 10).eval()(x)
    got = loaded(x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(len(x)), atol=1e-5)
    # the pyfunc flavour with its signature serves the same predictions
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_id}")
    assert pyfunc.metadata.signature is not None
    assert torch.allclose(torch.as_tensor(pyfunc.predict(x.numpy())), expected, atol=1e-6)
    # the checkpoint holds the best weights and the config to rebuild the model
    path = client.download_artifacts(outcome.run_id, "checkpoints/best.pt", str(store))
    ckpt = torch.load(path, weights_only=False)
    rebuilt = build_model(ckpt["config"]["model"], ckpt["config"]["regularizer"], outcome.trainer.data)
    rebuilt.load_state_dict(ckpt["model_state"])
    assert torch.allclose(WithProbabilities(rebuilt, 10).eval()(x), expected, atol=1e-6)
    assert ckpt["epoch"] == outcome.result.best_epoch


def test_failure_mid_run_keeps_what_was_logged(store, make_cfg):
    cfg = make_cfg("data=digits", "trainer.epochs=5", "tracking.experiment=crash")

    def crash(metrics):
        if metrics["epoch"] == 2:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        train_and_track(cfg, on_epoch=crash)
    client, run = only_run(store, "crash")
    assert run.info.status == "FAILED"
    assert (
        run.data.tags["sweeplab.status"] == "failed"
        and "disk full" in run.data.tags["sweeplab.status_reason"]
    )
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [1, 2]


def test_diverged_run_is_recorded_as_diverged(store):
    code = main(
        [
            "train",
            "data=digits",
            "optimizer=sgd",
            "optimizer.lr=1e8",
            "trainer.epochs=3",
            "tracking.experiment=div",
        ]
    )
    assert code == 1
    _, run = only_run(store, "div")
    assert run.data.tags["sweeplab.status"] == "diverged" and run.info.status == "FAILED"
    assert (
        "nan" in run.data.tags["sweeplab.status_reason"] or "inf" in run.data.tags["sweeplab.status_reason"]
    )


def test_tracking_uri_override_and_env(store, monkeypatch):
    other = store / "elsewhere.db"
    assert (
        main(
            [
                "train",
                "data=digits",
                "trainer.epochs=1",
                f"tracking.uri=sqlite:///{other}",
                "tracking.log_model=false",
            ]
        )
        == 0
    )
    assert other.exists() and not (store / "mlflow.db").exists()
    env_db = store / "env.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{env_db}")
    assert main(["train", "data=digits", "trainer.epochs=1", "tracking.log_model=false"]) == 0
    assert env_db.exists()


def test_bad_input_is_one_clear_line(store, capsys):
    assert main(["train", "model.hiden=[64]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "model.hiden" in err and "hidden" in err
    assert not (store / "mlflow.db").exists()  # nothing was started
    assert main(["train", "data=npz"]) == 2
    assert "data.path" in capsys.readouterr().err
    # A hint in brackets is printed as it is, not taken for Rich markup.
    assert main(["train", "data=imdb", "data.vectorize=sequence", "data.char_ngrams=[1,2,3]"]) == 2
    assert "should be [min, max] n-gram lengths: [3, 5]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "data=digits", "trainer.epochs=-3"],
        ["train", "data=digits", "trainer.batch_size=0"],
        ["sweep", "data=digits", "tune=asha", "trainer.epochs=0"],
        ["sweep", "data=digits", "tune.num_samples=0"],
    ],
)
def test_settings_that_cannot_work_create_nothing(store, capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and argv[-1].split("=")[0] in err
    assert sorted(p.name for p in store.iterdir()) == []  # no store, no sweep folder, no run


def test_cfg_help_and_summary(store, capsys):
    assert main(["train", "--cfg", "experiment=course_fashion_mnist", "optimizer.lr=0.01"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["hidden"] == [128] and printed["optimizer"]["lr"] == 0.01
    assert {"data", "trainer", "tracking"} <= printed.keys() and not {
        "search",
        "tune",
        "cluster",
    } & printed.keys()
    assert main(["train", "--cfg", "all", "tune.num_samples=3"]) == 0
    everything = yaml.safe_load(capsys.readouterr().out)
    assert everything["tune"]["num_samples"] == 3 and {"search", "cluster", "model"} <= everything.keys()
    with pytest.raises(SystemExit):
        main(["--help"])
    helptext = capsys.readouterr().out
    assert "sweeplab sweep [" in helptext and "sweeplab sweep resume" in helptext
    assert "``" not in helptext  # the module docstring's RST markup is not printed
    for group in (
        "data",
        "model",
        "optimizer",
        "regularizer",
        "lr_schedule",
        "trainer",
        "tracking",
        "experiment",
    ):
        assert f"  {group} " in helptext
    assert "course_fashion_mnist" in helptext and "reduce_on_plateau" in helptext
    assert main(["summary", "data=digits", "model.hidden=[32]"]) == 0
    assert "Total params: 2,410" in capsys.readouterr().out  # 64*32+32 + 32*10+10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ui_processes(port: int) -> list[int]:
    """Every process of the MLflow UI on this port (the server and its workers)."""
    servers = [p for p in group_pids_named("mlflow") if f"--port {port}" in cmdline(p)]
    return servers + [c for s in servers for c in descendants(s)]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_ui_serves_the_store_on_loopback_and_dies_with_the_command(store, make_cfg, tmp_path, how):
    outcome = train_and_track(make_cfg("data=digits", "trainer.epochs=1", "tracking.log_model=false"))
    port = free_port()
    out = tmp_path / "ui.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen([*SWEEPLAB, "ui", "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        body = poll(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/get?run_id={outcome.run_id}", proc)
        assert outcome.run_id in body and "val/acc" in body
        servers = ui_processes(port)
        assert servers
        groups = set()
        for pid in servers:  # a short-lived child of the server may be gone by now
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        sockets = {a for group in groups for a in listening_addresses(group)}
        assert sockets == {("127.0.0.1", port)}  # what the kernel says it listens on, nothing wider
        assert str(store) not in " ".join(cmdline(p) for p in servers)  # the store is not on argv
    finally:
        proc.send_signal(how)
        proc.wait(timeout=60)
    gone = wait_until(lambda: not ui_processes(port), 60)
    assert gone, f"still running after {how.name}: {ui_processes(port)}"
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def group_pids_named(word: str) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and word in cmdline(int(p.name))]


def descendants(pid: int) -> list[int]:
    from sweeplab.sweep.reaper import descendants as tree

    return tree(pid)


def wait_until(condition, timeout_s: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def poll(url: str, proc: subprocess.Popen, attempts: int = 300) -> str:
    """Wait for a server to answer (bounded: the server is starting, not being timed)."""
    import time

    for _ in range(attempts):
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")
