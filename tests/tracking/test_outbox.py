"""The outbox against a real MLflow SQLite store: order, durability across a killed process,
idempotent redelivery, a refused write kept aside, and an unreachable store riding it out."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3

import pytest
from mlflow.tracking import MlflowClient

from sweeplab.tracking import delivery
from sweeplab.tracking.delivery import Delivery
from sweeplab.tracking.outbox import Outbox
from sweeplab.tracking.store import Tracker


def no_fetch(uri, name, dest):  # these tests log no checkpoints
    raise AssertionError("no checkpoint expected")


@pytest.fixture
def store(workdir):
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    return uri, Tracker({"uri": uri}), MlflowClient(uri)


def steps(client, run_id, key):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_records_arrive_in_order_with_their_timestamps(store, workdir):
    uri, tracker, client = store
    box = Outbox(workdir / "outbox.db", Delivery(tracker, no_fetch)).start()
    box.write([delivery.create_run("trial/a", "exp", "trial-000", {"sampled.lr": 0.1}, {"k": "v"})])
    made = []
    for epoch in range(1, 6):
        record = delivery.log("trial/a", {"val/loss": 1.0 / epoch}, step=epoch)
        made.append(record.payload["metrics"][0][2])
        box.write([record], state={"trial/a": {"last": epoch}})
    box.write([delivery.end("trial/a", "completed", "ran all 5 epochs")])
    assert box.drain(30)
    run_id = box.run_id("trial/a")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["sweeplab.status"] == "completed"
    history = client.get_metric_history(run_id, "val/loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5]
    assert sorted(m.timestamp for m in history) == made  # the time of the epoch, not of delivery
    assert run.data.params["sampled.lr"] == "0.1"
    assert box.state("trial/") == {"trial/a": {"last": 5}}
    assert box.pending() == 0


def _produce_and_die(path: str, uri: str) -> None:
    """A driver that journals five epochs and is killed before anything is delivered."""
    box = Outbox(path, Delivery(Tracker({"uri": uri}), no_fetch))  # never started: nothing delivered
    box.write([delivery.create_run("trial/b", "exp", "trial-001", {}, {})])
    for epoch in range(1, 6):
        box.write([delivery.log("trial/b", {"val/acc": epoch / 10}, step=epoch)], state={"b": epoch})
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_producer_loses_nothing_and_a_new_one_delivers_it(store, workdir):
    uri, tracker, client = store
    path = str(workdir / "outbox.db")
    proc = multiprocessing.get_context("spawn").Process(target=_produce_and_die, args=(path, uri))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL
    box = Outbox(path, Delivery(tracker, no_fetch))
    assert box.pending() == 6 and box.state("b") == {"b": 5}
    assert box.start().drain(30)
    assert steps(client, box.run_id("trial/b"), "val/acc") == [1, 2, 3, 4, 5]


def test_redelivery_after_a_lost_answer_duplicates_nothing(store, workdir):
    """The store took the records but the flusher never heard back: it delivers them again."""
    uri, tracker, client = store
    records = [
        delivery.create_run("trial/c", "exp", "trial-002", {"sampled.units": 64}, {}),
        *[delivery.log("trial/c", {"val/loss": 0.5, "val/acc": 0.8}, step=e) for e in (1, 2, 3)],
    ]
    first = Outbox(workdir / "first.db", Delivery(tracker, no_fetch)).start()
    first.write(records)
    assert first.drain(30)
    again = Outbox(workdir / "again.db", Delivery(tracker, no_fetch)).start()  # the same records, twice
    again.write(records)
    assert again.drain(30)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert len(runs) == 1  # found by its run key, not created again
    assert again.run_id("trial/c") == first.run_id("trial/c")
    assert steps(client, runs[0].info.run_id, "val/loss") == [1, 2, 3]
    assert steps(client, runs[0].info.run_id, "val/acc") == [1, 2, 3]


def test_a_refused_write_is_kept_aside_and_the_rest_goes_on(store, workdir):
    uri, tracker, client = store
    box = Outbox(workdir / "outbox.db", Delivery(tracker, no_fetch)).start()
    box.write([delivery.create_run("trial/d", "exp", "trial-003", {"optimizer.lr": 0.1}, {})])
    box.write([delivery.log("trial/d", params={"optimizer.lr": 0.2})])  # MLflow params are immutable
    box.write([delivery.log("trial/d", {"val/loss": 0.3}, step=1)])
    assert box.drain(30)
    rejected = box.rejected()
    assert [(r.kind, r.payload["params"]) for r, _ in rejected] == [("log", {"optimizer.lr": 0.2})]
    assert "optimizer.lr" in rejected[0][1]
    assert box.rejection and "refused" in box.rejection
    assert steps(client, box.run_id("trial/d"), "val/loss") == [1]


def test_records_wait_while_the_store_is_away(workdir):
    """Nothing listens at the store's address: records stay journaled, the outbox says why, and
    a drain gives up at its deadline without losing them."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tracker = Tracker.__new__(Tracker)  # a store that was reachable when the sweep started
    from mlflow.tracking import MlflowClient as Client

    tracker.cfg, tracker.uri = {}, f"http://127.0.0.1:{port}"
    tracker._client = Client(tracker.uri)
    box = Outbox(workdir / "outbox.db", Delivery(tracker, no_fetch), max_wait_s=0.2).start()
    box.write([delivery.create_run("trial/e", "exp", "trial-004", {}, {})])
    assert not box.drain(3)
    assert box.pending() == 1 and box.last_error
    rows = sqlite3.connect(workdir / "outbox.db").execute("SELECT kind FROM records").fetchall()
    assert rows == [("create_run",)]
