"""Sweeps on a real two-host Ray cluster (tests/hosts.py: two network namespaces, each host with
a disk of its own): trials on both hosts, storage every node shares (a folder mounted into both,
an S3 server on the test network), node-local storage refused, and a worker host that dies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hosts import FAST_NODE_DEATH, PYTHON, TestNetwork, require_hosts
from mlflow.tracking import MlflowClient
from test_sweep_failures import wait_for

from sweeplab.cli import exits

pytestmark = pytest.mark.slow

SWEEP = [
    "data=digits",
    "search=lr_batch",
    "tune=fifo",
    "tune.num_samples=2",
    "tune.max_concurrent_trials=2",
    "trainer.early_stopping.enabled=false",
    "tracking.experiment=cluster",
]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    require_hosts()
    with TestNetwork(log_dir=tmp_path_factory.mktemp("host-logs")) as network:
        yield network


@pytest.fixture(scope="module")
def s3(net):
    server = net.start_s3()
    for host in net.hosts:  # each machine's own key, as an admin sets it up
        server.write_credentials(host)
    return server


@pytest.fixture(scope="module")
def cluster(net, s3):
    return net.start_ray(env=s3.endpoint_env | FAST_NODE_DEATH)


def sweep(net, cluster, s3, *args: str, name: str, storage: str):
    """`sweeplab sweep` on the head host, its object-store key in the standard variables."""
    store = f"sqlite:///{net.head.private}/mlflow.db"
    return net.head.popen(
        [PYTHON, "-m", "sweeplab.cli", "sweep", *SWEEP, *args, "cluster=existing",
         f"cluster.address={cluster.address}", f"tune.storage_path={storage}", f"tune.name={name}",
         f"tracking.uri={store}"],
        env=cluster.env | s3.env,
        name=name,
    )  # fmt: skip


def children(net, name: str) -> list:
    client = MlflowClient(f"sqlite:///{net.head.private}/mlflow.db")
    exp = client.get_experiment_by_name("cluster")
    parents = client.search_runs([exp.experiment_id], filter_string=f"tags.`sweeplab.sweep` = '{name}'")
    parent = next(r for r in parents if "mlflow.parentRunId" not in r.data.tags)
    return client, parent, [r for r in parents if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def steps(client, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "val/loss"))


def test_trials_run_on_both_hosts_with_a_shared_folder(net, cluster, s3):
    proc = sweep(net, cluster, s3, "trainer.epochs=3", name="shared", storage=str(net.shared / "sweeps"))
    assert proc.wait(400) == 0, proc.output()
    client, parent, kids = children(net, "shared")
    assert len(kids) == 2 and parent.info.status == "FINISHED"
    assert {k.data.tags["sweeplab.node_ip"] for k in kids} == {net.head.address, net.worker.address}
    for kid in kids:
        assert steps(client, kid.info.run_id) == [1, 2, 3]
        assert "checkpoints/best.pt" in {
            a.path for a in client.list_artifacts(kid.info.run_id, "checkpoints")
        }


def test_storage_only_the_head_sees_is_refused_before_anything_is_created(net, cluster, s3):
    proc = sweep(net, cluster, s3, "trainer.epochs=2", name="local", storage=str(net.head.private / "sweeps"))
    assert proc.wait(300) == 2
    lines = [line for line in proc.output().splitlines() if line.strip()]
    assert "is not shared" in lines[-1] and net.worker.address in lines[-1] and "s3://" in lines[-1]
    assert "Traceback" not in proc.output()
    with sqlite3.connect(net.head.private / "mlflow.db") as conn:  # no run of this sweep
        assert conn.execute("SELECT COUNT(*) FROM runs WHERE name = 'local'").fetchone() == (0,)
    assert not (net.head.private / "sweeps" / "local").exists()


def test_a_node_without_the_object_stores_key_is_refused_before_anything_is_created(net, cluster, s3):
    key = net.worker.home / ".aws" / "credentials"
    key.rename(key.with_suffix(".away"))
    try:
        proc = sweep(net, cluster, s3, "trainer.epochs=2", name="nokey", storage=s3.uri("sweeps"))
        assert proc.wait(300) == 2
    finally:
        key.with_suffix(".away").rename(key)
    last = [line for line in proc.output().splitlines() if line.strip()][-1]
    assert "cannot use tune.storage_path=s3://" in last and net.worker.address in last
    assert net.head.address not in last.split("cannot use")[0]  # the head has its key
    with sqlite3.connect(net.head.private / "mlflow.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs WHERE name = 'nokey'").fetchone() == (0,)


def journaled_epochs(net, name: str, node_ip: str) -> int:
    """Epochs logged so far by the trial running on ``node_ip`` (read from the store)."""
    try:
        client, _, kids = children(net, name)
    except (StopIteration, AttributeError):
        return 0
    on_node = [k for k in kids if k.data.tags.get("sweeplab.node_ip") == node_ip]
    return max((len(steps(client, k.info.run_id)) for k in on_node), default=0)


# Enough epochs that the worker's trial is still training when its host dies: the store the test
# polls lags the trial by a few epochs, and with 12 the trial was seen to end (or take its last
# checkpoint) before the kill landed, in 3 of 4 runs.
DIES_EPOCHS = 40


def test_a_dead_worker_hosts_trial_continues_on_the_head_from_the_object_store(net, cluster, s3):
    proc = sweep(
        net, cluster, s3, f"trainer.epochs={DIES_EPOCHS}", "trainer.batch_size=16", "tune.max_failures=2",
        "tune.checkpoint_every=2",  # checkpoints on the object store by the time the host dies
        name="dies", storage=s3.uri("sweeps"),
    )  # fmt: skip
    assert wait_for(lambda: journaled_epochs(net, "dies", net.worker.address) >= 3, 300), proc.output()
    cluster.kill_worker()
    try:
        assert proc.wait(600) == 0, proc.output()
    finally:
        cluster.start_worker()  # the module's later tests get their cluster back
    assert "(raylet)" not in proc.output() and "Traceback" not in proc.output()  # Ray: to driver.log
    client, parent, kids = children(net, "dies")
    assert len(kids) == 2 and parent.info.status == "FINISHED"  # one child run per trial
    for kid in kids:
        assert steps(client, kid.info.run_id) == list(range(1, DIES_EPOCHS + 1))  # every epoch once
    moved = [k for k in kids if k.data.tags.get("sweeplab.retries") == "1"]
    assert len(moved) == 1
    tags = moved[0].data.tags
    assert int(tags["sweeplab.continued_at_epoch"]) > 1  # from its checkpoint, not from scratch
    assert tags["sweeplab.node_ips"] == f"{net.worker.address},{net.head.address}"  # moved hosts
    # the object-store key reached no log and no file of either host
    secret = s3.secret_key.encode()
    leaked = [
        p
        for p in Path(net.base).rglob("*")
        if p.is_file() and not p.is_symlink() and secret in p.read_bytes()
    ]
    assert sorted(leaked) == sorted(host.home / ".aws" / "credentials" for host in net.hosts)


# ------------------------------------------------------------------ a user's project on the cluster
# Its folder is on the head's private disk: the worker host cannot read it, so a trial there
# imports the user's model and composes its conf/ only from what Ray's runtime_env carried over.

TINYNET = """
import math
import os

from torch import nn
{guard}


class Net(nn.Module):
    def __init__(self, input_shape, num_outputs, width: int = 16):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(), nn.Linear(width, num_outputs)
        )

    def forward(self, x):
        return self.layers(x)
"""
# tinynet/model.py that imports only where a file exists (the head's private disk)
GUARD = """
if not os.path.exists({marker!r}):
    raise ImportError("tinynet needs only-on-head")
"""


def write_project(top: Path, marker: str | None = None) -> Path:
    """A project of its own: ``tinynet/model.py`` (with ``marker``: it imports only where that
    file exists) and ``conf/model/tinynet.yaml`` naming it."""
    (top / "tinynet").mkdir(parents=True)
    (top / "tinynet" / "__init__.py").write_text("")
    guard = GUARD.format(marker=marker) if marker else ""
    (top / "tinynet" / "model.py").write_text(TINYNET.format(guard=guard))
    (top / "conf" / "model").mkdir(parents=True)
    (top / "conf" / "model" / "tinynet.yaml").write_text("_target_: tinynet.model.Net\nwidth: 16\n")
    return top


def project_sweep(net, cluster, s3, proj: Path, *args: str, name: str):
    """`sweeplab sweep` run from the project's folder on the head, its conf/ found as ./conf."""
    store = f"sqlite:///{net.head.private}/mlflow.db"
    return net.head.popen(
        [PYTHON, "-m", "sweeplab.cli", "sweep", *SWEEP, "model=tinynet", *args, "cluster=existing",
         f"cluster.address={cluster.address}", f"tune.storage_path={net.shared / 'sweeps'}",
         f"tune.name={name}", f"tracking.uri={store}"],
        env=cluster.env | s3.env,
        cwd=proj,
        name=name,
    )  # fmt: skip


def test_a_projects_own_model_trains_on_both_hosts(net, cluster, s3):
    from sweeplab.project import files_hash

    proj = write_project(net.head.private / "proj")
    net.head.run(["test", "-f", str(proj / "tinynet" / "model.py")])
    assert net.worker.run(["test", "-e", str(proj)], check=False).returncode != 0  # not on its disk
    proc = project_sweep(net, cluster, s3, proj, "trainer.epochs=2", name="project")
    assert proc.wait(400) == 0, proc.output()
    client, parent, kids = children(net, "project")
    assert len(kids) == 2 and parent.info.status == "FINISHED"
    assert {k.data.tags["sweeplab.node_ip"] for k in kids} == {net.head.address, net.worker.address}
    for kid in kids:
        assert kid.info.status == "FINISHED"
        assert steps(client, kid.info.run_id) == [1, 2]
        assert kid.data.params["model.target"] == "tinynet.model:Net"
        assert kid.data.tags["sweeplab.project.hash"] == files_hash(proj)  # not a git repository
        assert kid.data.tags["sweeplab.project.root"] == str(proj)
        assert "sweeplab.project.commit" not in kid.data.tags


def test_a_module_that_does_not_import_on_a_worker_ends_the_sweep_once(net, cluster, s3):
    import re
    from collections import Counter

    marker = net.head.private / "only-on-head"
    marker.write_text("")
    proj = write_project(net.head.private / "proj-fatal", marker=str(marker))
    assert net.worker.run(["test", "-e", str(marker)], check=False).returncode != 0
    proc = project_sweep(
        net, cluster, s3, proj, "tune.num_samples=4", "tune.max_failures=2",
        "trainer.epochs=100",  # no trial on the head finishes before the worker's fails
        name="fatal",
    )  # fmt: skip
    assert proc.wait(400) == exits.RUNTIME, proc.output()
    output = proc.output()
    lines = [line for line in output.splitlines() if line.strip()]
    last = lines[-1]
    stopped = "error: sweep fatal stopped: model._target_=tinynet.model.Net: cannot import tinynet"
    assert last.startswith(stopped)
    assert last.endswith("ImportError: tinynet needs only-on-head")
    assert str(net.worker.ray_temp_dir) in last  # looked for in the worker's copy of the project
    assert [line for line in lines if "stopped:" in line] == [last], output  # the sweep ends once
    failed = Counter(m[1] for line in lines if (m := re.match(r"trial\s+(\d+) failed", line)))
    assert failed and set(failed.values()) == {1}, output  # each trial's end said once
    assert "Traceback" not in output
    client, parent, kids = children(net, "fatal")
    tags = [k.data.tags for k in kids]
    assert parent.info.status == "FAILED"
    assert [k.info.run_name for k in kids if k.info.status == "RUNNING"] == [], tags
    assert all(t.get("sweeplab.status") != "running" for t in tags), tags
    # the worker's trial failed in its setup and was not retried; the sweep did not go on to its other samples
    on_worker = [k for k in kids if k.data.tags.get("sweeplab.node_ip") == net.worker.address]
    assert on_worker and all(k.data.tags["sweeplab.status"] == "failed" for k in on_worker), tags
    assert all(steps(client, k.info.run_id) == [] for k in on_worker)
    assert all(t.get("sweeplab.retries", "0") == "0" for t in tags), tags
    assert len(kids) < 4, tags
