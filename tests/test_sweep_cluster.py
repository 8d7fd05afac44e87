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


def test_a_dead_worker_hosts_trial_continues_on_the_head_from_the_object_store(net, cluster, s3):
    proc = sweep(
        net, cluster, s3, "trainer.epochs=12", "trainer.batch_size=16", "tune.max_failures=2",
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
        assert steps(client, kid.info.run_id) == list(range(1, 13))  # every epoch once
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
