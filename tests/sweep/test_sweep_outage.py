"""A real `mlflow server` on PostgreSQL goes away mid-sweep: training goes on, and every record
arrives once the server is back — each epoch once, as many as the trials trained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from servers import TRACKING_SCRIPT, free_port, script_env, stop_group, wait_for_health
from test_sweep_failures import journaled, wait_for

import sweeplab.tracking.store  # noqa: F401 - sets MLflow's client retries, for this test and the sweeps

pytest_plugins = ["servers"]  # fixtures: fresh_database

SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]
# Digits with small batches: each trial trains for a while, so the outage falls mid-sweep.
SWEEP = [
    "sweep",
    "data=digits",
    "search=lr_batch",
    "tune=fifo",
    "tune.num_samples=4",
    "trainer.epochs=25",
    "trainer.batch_size=16",
    "trainer.early_stopping.enabled=false",
    "tune.max_concurrent_trials=2",
    "tracking.experiment=outage",
    "tune.name=outage",
]
# How long MLflow's own client keeps at one write before it gives up, as sweeplab sets it up
# (tracking/store.py turns its retries off: by default they last about four minutes, stalling
# the sweep) with a shorter timeout for the long outage's sweep, so it need not train as long to
# outlast it. The outbox's retries have no such limit; the long outage outlasts MLflow's.
SHORT_TIMEOUT = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
MLFLOW_GIVES_UP_S = float(SHORT_TIMEOUT["MLFLOW_HTTP_REQUEST_TIMEOUT"]) * (
    1 + int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
)


class Server:
    """services/tracking-server.sh on a fixed port, stopped and started again like a real outage."""

    def __init__(self, database: str, workdir: Path):
        self.port, self.workdir = free_port(), workdir
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = script_env(
            SWEEPLAB_DB_URL=database,
            SWEEPLAB_PORT=str(self.port),
            SWEEPLAB_ARTIFACTS=str(workdir / "artifacts"),
            SWEEPLAB_WORKERS="1",
            SWEEPLAB_STATE_DIR=str(workdir / "state"),
        )
        self.proc = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.workdir / f"tracking-{self.starts}.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(TRACKING_SCRIPT)],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_health(self.url, self.proc, log)

    def stop(self, abruptly: bool = False) -> None:
        stop_group(self.proc, grace_s=0 if abruptly else 20)


@pytest.fixture
def server(fresh_database, tmp_path):
    srv = Server(fresh_database, tmp_path)
    srv.start()
    yield srv
    srv.stop()


def trained_epochs(sweep_dir: Path) -> dict[str, list[int]]:
    """Each trial's epochs as Tune's own result records saw them (its result.json lines)."""
    out = {}
    for trial_dir in sweep_dir.glob("trial_*"):
        lines = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line]
        out[trial_dir.name.removeprefix("trial_")] = sorted(r["epoch"] for r in lines if not r.get("final"))
    return out


LONG_EPOCHS = 150  # 15-40 s of training on 2 cores, nearly all of it with the store away


def check_every_epoch_once(url: str, sweep_dir: Path, epochs_each: int = 25) -> None:
    client = MlflowClient(url)
    runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
    kids = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    trained = trained_epochs(sweep_dir)
    assert len(runs) == 5 and len(kids) == 4 and len(trained) == 4
    for kid in kids:
        epochs = trained[kid.data.tags["sweeplab.trial_id"]]
        assert epochs == list(range(1, epochs_each + 1))
        for key in ("val/loss", "train/acc"):
            assert sorted(m.step for m in client.get_metric_history(kid.info.run_id, key)) == epochs
        assert kid.info.status == "FINISHED" and "checkpoints" in {
            a.path for a in client.list_artifacts(kid.info.run_id)
        }
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials/total"] == 4


def outputs(workdir: Path) -> str:
    """The sweep's output and the end of the restarted server's log, for a failure's message."""
    log = sorted(workdir.glob("tracking-*.log"))[-1].read_text()[-3000:]
    return f"{(workdir / 'sweep.out').read_text()}\n--- tracking server (last start):\n{log}"


def epochs_journaled(workdir: Path) -> int:
    return sum(t["last_logged"] for t in journaled(workdir / "sweeps" / "outage"))


@pytest.mark.service
@pytest.mark.slow
def test_server_down_for_half_a_minute_mid_sweep_loses_and_duplicates_nothing(server, tmp_path):
    with open(tmp_path / "sweep.out", "w") as log:
        sweep = subprocess.Popen(
            [*SWEEPLAB, *SWEEP, f"tracking.uri={server.url}"],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    assert wait_for(lambda: epochs_journaled(tmp_path) >= 2, 300), (tmp_path / "sweep.out").read_text()
    down_since, down_at = time.monotonic(), epochs_journaled(tmp_path)
    server.stop(abruptly=True)  # the server dies
    assert wait_for(lambda: epochs_journaled(tmp_path) >= down_at + 10, 120)  # training goes on
    time.sleep(max(0.0, 30 - (time.monotonic() - down_since)))  # the outage lasts at least 30 s
    server.start()
    assert sweep.wait(600) == 0, outputs(tmp_path)
    check_every_epoch_once(server.url, tmp_path / "sweeps" / "outage")


@pytest.mark.service
@pytest.mark.slow
def test_server_still_down_at_the_end_then_sync_delivers_everything(server, tmp_path):
    with open(tmp_path / "sweep.out", "w") as log:
        sweep = subprocess.Popen(
            [*SWEEPLAB, *SWEEP, f"tracking.uri={server.url}", f"trainer.epochs={LONG_EPOCHS}"],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SHORT_TIMEOUT, "SWEEPLAB_DRAIN_S": "5"},
        )
    assert wait_for(lambda: epochs_journaled(tmp_path) >= 2, 300), (tmp_path / "sweep.out").read_text()
    server.stop(abruptly=True)
    stopped = time.monotonic()
    assert sweep.wait(600) != 0
    out = (tmp_path / "sweep.out").read_text()
    last = [line for line in out.splitlines() if line.strip()][-1]
    assert "records are waiting" in last and "sweeplab sweep sync outage" in last, out
    assert "(last error: " in last, out  # why the store could not be reached, as it answered last
    # the sweep trained on with the store away for longer than MLflow's client would have kept at a write
    assert time.monotonic() - stopped > MLFLOW_GIVES_UP_S, out
    server.start()
    synced = subprocess.run(
        [*SWEEPLAB, "sweep", "sync", "outage"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    check_every_epoch_once(server.url, tmp_path / "sweeps" / "outage", LONG_EPOCHS)
