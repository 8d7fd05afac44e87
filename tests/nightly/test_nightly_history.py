"""The history store on SQLite and on a real PostgreSQL (a fresh database per test, dropped after)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from sweeplab.nightly.history import (
    VERSION_TABLE,
    Base,
    HistoryStore,
    HistoryStoreError,
    Result,
    Row,
    display_url,
)

# fresh_database comes from tests/servers.py (needs $SWEEPLAB_TEST_POSTGRES_URL; fails in CI without it)

NIGHT = date(2026, 3, 14)
T0 = datetime(2026, 3, 14, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service)])
def store(request, tmp_path) -> HistoryStore:
    url = (
        f"sqlite:///{tmp_path / 'nightly.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("fresh_database")
    )
    s = HistoryStore(url)
    s.upgrade()
    yield s
    s.engine.dispose()


def row(
    entry="mlp", seed=0, metric="test/acc", value=0.9, status="completed", night=NIGHT, run_id="r1"
) -> Row:
    return Row(night, entry, seed, metric, value, status, "", 1.5, 1, None, "abc123", "host-a", run_id)


def test_migrations_create_exactly_the_models_schema(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {
        "nightly_claims",
        "nightly_results",
        "nightly_verdicts",
        "nightly_accepts",
        VERSION_TABLE,
    } <= tables
    assert "alembic_version" not in tables  # MLflow's own version table can live in the same database
    with store.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), Base.metadata
        )
    assert diff == []  # the Alembic revision and the SQLAlchemy models agree
    store.upgrade()  # a second upgrade is a no-op


def test_one_row_per_key_and_a_rerun_keeps_the_first_value(store):
    store.record("smoke", [row(seed=0, value=0.90), row(seed=1, value=0.92)])
    store.record("smoke", [row(seed=0, value=0.90)])  # the same night recorded again
    rows = store.rows("smoke")
    assert [(r.seed, r.value, r.attempts) for r in rows] == [(0, 0.90, 1), (1, 0.92, 1)]

    store.record("smoke", [row(seed=0, value=0.95, run_id="r2")], rerun=True)
    again = {r.seed: r for r in store.rows("smoke")}
    assert (again[0].value, again[0].first_value, again[0].attempts, again[0].mlflow_run_id) == (
        0.95,
        0.90,
        2,
        "r2",
    )
    assert store.series("smoke", "mlp", "test/acc")[0].values == (0.95, 0.92)
    assert store.done_seeds("smoke", NIGHT, "mlp") == {0, 1}


def test_failed_and_skipped_runs_are_not_done_and_not_judged(store):
    store.record(
        "smoke", [row(seed=0, value=None, status="failed"), row(seed=1, value=None, status="skipped")]
    )
    assert store.done_seeds("smoke", NIGHT, "mlp") == set()
    assert store.series("smoke", "mlp", "test/acc") == []
    store.record("smoke", [row(seed=0, value=0.91)])  # the failed seed succeeds on a rerun of the night
    assert store.done_seeds("smoke", NIGHT, "mlp") == {0}
    with store.session() as s:
        assert s.scalars(select(Result).where(Result.seed == 0)).one().status == "completed"


def test_claim_is_exclusive_until_finished_then_a_rerun_may_claim(store):
    first = store.claim("smoke", NIGHT, "host-a:1", 900, T0)
    second = store.claim("smoke", NIGHT, "host-b:2", 900, T0 + timedelta(seconds=5))
    assert first.acquired and not second.acquired and second.owner == "host-a:1"
    assert store.claim("other", NIGHT, "host-b:2", 900, T0).acquired  # another suite, its own claim
    store.release("smoke", NIGHT, "host-a:1", "finished")
    assert store.claim_of("smoke", NIGHT).status == "finished"
    again = store.claim("smoke", NIGHT, "host-b:2", 900, T0 + timedelta(hours=1))
    assert again.acquired and again.taken_over_from is None


def test_a_claim_whose_runner_died_is_taken_over(store):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    from sweeplab.nightly.history import machine

    owner = f"{machine()}:{int(dead.stdout)}"  # a process on this host that has exited
    assert store.claim("smoke", NIGHT, owner, 900, T0).acquired
    taken = store.claim("smoke", NIGHT, f"{machine()}:{os.getpid()}", 900, T0 + timedelta(seconds=10))
    assert taken.acquired and taken.taken_over_from == owner
    # on another host only the heartbeat tells: fresh is kept, silent for longer than the timeout is taken
    assert store.claim("far", NIGHT, "elsewhere:1", 900, T0).acquired
    assert not store.claim("far", NIGHT, "here:2", 900, T0 + timedelta(seconds=899)).acquired
    assert store.claim("far", NIGHT, "here:2", 900, T0 + timedelta(seconds=901)).acquired


@pytest.mark.service
def test_racing_claims_on_postgresql_exactly_one_wins(fresh_database):
    """Eight runners insert the (suite, night) claim at the same instant: the unique constraint decides."""
    stores = [HistoryStore(fresh_database) for _ in range(8)]
    stores[0].upgrade()
    barrier = threading.Barrier(len(stores))
    results: list = [None] * len(stores)

    def race(i: int) -> None:
        barrier.wait()
        results[i] = stores[i].claim("nightly", NIGHT, f"host:{1000 + i}", 900, T0)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.acquired]
    assert len(winners) == 1
    assert {r.owner for r in results if not r.acquired} == {winners[0].owner}
    for s in stores:
        s.engine.dispose()


def test_accepts_and_verdicts_round_trip(store):
    assert store.accept("smoke", "mlp", "test/acc", NIGHT, "new optimizer", "ana")
    assert not store.accept("smoke", "mlp", "test/acc", NIGHT, "twice", "ana")  # already recorded
    assert store.accepted("smoke") == {("mlp", "test/acc"): [NIGHT]}
    store.save_verdicts("smoke", NIGHT, [("mlp", "test/acc", "regressed", {"began": NIGHT, "reason": "r"})])
    store.save_verdicts("smoke", NIGHT, [("mlp", "test/acc", "ok", {"reason": "rerun did not confirm"})])
    (v,) = store.verdicts("smoke", NIGHT)
    assert (v["verdict"], v["reason"]) == ("ok", "rerun did not confirm")


def test_a_bad_url_is_one_clear_line_without_the_password(tmp_path):
    with pytest.raises(HistoryStoreError) as err:
        HistoryStore("postgresql://ana:s3cret@127.0.0.1:1/nowhere").upgrade()  # nothing listens on port 1
    text = str(err.value)
    assert "s3cret" not in text and "127.0.0.1:1/nowhere" in text and "\n" not in text
    assert display_url("postgresql://ana:s3cret@db:5432/x") == "postgresql://ana:***@db:5432/x"
    with pytest.raises(HistoryStoreError, match="history_url"):
        HistoryStore("nosuchdb://x")


@pytest.mark.service
def test_service_mode_creates_its_database_on_first_use(admin_url, unique_dbname):
    from servers import database_exists, with_database

    store = HistoryStore(with_database(admin_url, unique_dbname))
    store.upgrade()
    assert database_exists(admin_url, unique_dbname)
    assert "nightly_results" in inspect(store.engine).get_table_names()
    store.engine.dispose()
