"""The read model (sweeplab.tracking.reader): the same typed records from every backend, on real
stores: MLflow's tables through SQLAlchemy (PostgreSQL and SQLite), a real tracking server
through the REST API, and MlflowClient. Expected values are what this test wrote."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from servers import free_port

from sweeplab.tracking.read_client import ClientReader
from sweeplab.tracking.read_rest import RestReader
from sweeplab.tracking.read_sql import SqlReader
from sweeplab.tracking.reader import SWEEP_TAGS, child_runs, open_reader
from sweeplab.tracking.uri import StoreError

pytestmark = pytest.mark.service
STAMP = 1_796_000_000_000  # when each point was logged (ms): step s at STAMP + s


def write_sweep(client: MlflowClient) -> dict:
    """A sweep as sweeplab lays one out: a parent tagged as a sweep, two trials, a registered model;
    beside it a deleted sweep and a plain run that no reader may return as a sweep."""
    exp = client.create_experiment("reads")
    parent = client.create_run(exp, run_name="s1", tags={**SWEEP_TAGS, "sweeplab.sweep": "s1"}).info.run_id
    client.log_param(parent, "tune.metric", "val/acc")
    client.log_metric(parent, "best/val/acc", 0.75)
    client.log_metric(parent, "trials/nan_probe", math.nan)
    kids = []
    for i, curve in enumerate(([0.5, 0.7, 0.75], [0.4, 0.3])):
        kid = client.create_run(exp, run_name=f"trial-{i}", tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_param(kid, "sampled.optimizer.lr", "0.001" if i == 0 else "1e-2")
        client.log_batch(
            kid, metrics=[Metric("val/acc", v, STAMP + step, step) for step, v in enumerate(curve, 1)]
        )
        client.set_terminated(kid)
        kids.append(kid)
    gone = client.create_run(exp, run_name="gone", tags={**SWEEP_TAGS, "sweeplab.sweep": "gone"}).info.run_id
    client.delete_run(gone)
    client.create_run(exp, run_name="plain")
    client.create_registered_model("reads-model")
    version = client.create_model_version("reads-model", f"runs:/{parent}/model", run_id=parent).version
    client.set_registered_model_alias("reads-model", "best", version)
    return {"parent": parent, "kids": kids, "version": str(version)}


def check(reader, wrote: dict) -> None:
    [sweep] = reader.runs_tagged(SWEEP_TAGS)
    assert (sweep.run_id, sweep.name, sweep.experiment) == (wrote["parent"], "s1", "reads")
    assert sweep.params == {"tune.metric": "val/acc"} and sweep.metrics["best/val/acc"] == 0.75
    assert math.isnan(sweep.metrics["trials/nan_probe"])
    assert sweep.tags["sweeplab.sweep"] == "s1" and sweep.status == "RUNNING" and sweep.start_ms > 0
    assert [r.run_id for r in reader.runs_tagged(SWEEP_TAGS, "reads")] == [sweep.run_id]
    with pytest.raises(ValueError, match="no experiment 'nope'"):
        reader.runs_tagged(SWEEP_TAGS, "nope")
    kids = reader.children(sweep)
    assert [k.run_id for k in kids] == wrote["kids"] and [k.status for k in kids] == ["FINISHED"] * 2
    assert [k.sampled for k in kids] == [{"optimizer.lr": 0.001}, {"optimizer.lr": 0.01}]
    assert kids[0].metrics == {"val/acc": 0.75} and kids[0].parent_id == sweep.run_id
    assert (
        reader.run(wrote["kids"][0]) == kids[0] and reader.run(sweep.run_id).tags == sweep.tags
    )  # (NaN metric)
    assert reader.run("0" * 32) is None
    runs, points = child_runs(reader, sweep.run_id)  # what a sweep's summary and a resume read
    assert runs == kids and points[wrote["kids"][1]]["val/acc"][-1].value == 0.3
    histories = reader.histories(wrote["kids"], ["val/acc"])
    assert {
        run: {k: [(p.step, p.value) for p in points] for k, points in h.items()}
        for run, h in histories.items()
    } == {
        wrote["kids"][0]: {"val/acc": [(1, 0.5), (2, 0.7), (3, 0.75)]},
        wrote["kids"][1]: {"val/acc": [(1, 0.4), (2, 0.3)]},
    }
    assert all(p.timestamp_ms == STAMP + p.step for h in histories.values() for p in h["val/acc"])
    assert reader.histories(wrote["kids"]) == histories  # every key: the same, it is the only one
    [version] = reader.model_versions(sweep.run_id)
    assert (version.name, version.version, version.aliases) == ("reads-model", wrote["version"], ("best",))
    assert reader.model_versions(wrote["kids"][0]) == []
    assert "viewStateShareKey=sweep-s1" in reader.link(sweep)


def test_every_backend_reads_the_same_records_from_postgresql_and_its_server(tracking_server, fresh_database):
    wrote = write_sweep(MlflowClient(tracking_server.url))
    readers = [
        SqlReader({"uri": fresh_database}),
        RestReader({"uri": tracking_server.url}),
        ClientReader({"uri": tracking_server.url}),
    ]
    for reader in readers:
        check(reader, wrote)
    assert isinstance(open_reader({"uri": fresh_database}), SqlReader)
    assert isinstance(open_reader({"uri": tracking_server.url}), RestReader)


def test_sqlite_is_read_from_its_tables(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    wrote = write_sweep(MlflowClient(uri))
    check(open_reader({"uri": uri}), wrote)
    check(ClientReader({"uri": uri}), wrote)


def test_an_empty_database_reads_as_no_sweeps_and_stays_empty(tmp_path):
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    assert SqlReader({"uri": f"sqlite:///{db}"}).runs_tagged(SWEEP_TAGS) == []
    with sqlite3.connect(db) as conn:  # a reader created nothing: no MLflow tables appeared
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_store_out_of_reach_is_one_line(fresh_database):
    port = free_port()
    with pytest.raises(StoreError, match=f"cannot reach the tracking server at http://127.0.0.1:{port}"):
        RestReader({"uri": f"http://127.0.0.1:{port}"}).runs_tagged(SWEEP_TAGS)
    wrong = fresh_database.rsplit("/", 1)[0] + "/no_such_database_sweeplab"
    with pytest.raises(StoreError, match="cannot read the tracking store .*no_such_database_sweeplab"):
        SqlReader({"uri": wrong}).runs_tagged(SWEEP_TAGS)


def test_reading_sweeps_imports_neither_mlflow_nor_torch_nor_ray(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_sweep(MlflowClient(uri))
    probe = (
        "import sys\n"
        "from sweeplab.cli import main\n"
        f"assert main(['sweeps', 'list', 'tracking.uri={uri}']) == 0\n"
        f"assert main(['sweeps', 'show', 's1', '--format', 'json', 'tracking.uri={uri}']) == 0\n"
        "print(sorted(m for m in ('mlflow', 'torch', 'ray') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
