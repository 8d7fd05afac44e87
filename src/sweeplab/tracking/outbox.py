"""The durable outbox: a sweep's MLflow writes, journaled on disk and delivered in the background.

The sweep driver never waits for the tracking store. Each write is appended to a SQLite
journal beside the sweep state, in one transaction together with whatever state its
producer keeps (so "epoch 7 of trial 3 is logged" and the record of epoch 7 are durable
together, or not at all). A flusher thread delivers records in order, merging
consecutive writes to one run into one request and retrying transient failures with
backoff (tenacity). A record leaves the journal only once the store has it; a write the
store refuses is kept aside (table ``rejected``) with the store's reason, and the driver
stops the sweep. Records keep the timestamps they were made with, so a record delivered
twice (the store took it, the answer was lost) is one point in the store.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, wait_exponential

from sweeplab.errors import one_line
from sweeplab.tracking.store import is_transient

FILE = "outbox.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, run TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, run TEXT NOT NULL, payload TEXT NOT NULL,
    error TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, run_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
GROUP_LIMIT = 500  # records merged into one delivery at most


@dataclass(frozen=True)
class Record:
    """One write: its kind (see :mod:`sweeplab.tracking.delivery`), the run it addresses by key
    (the run's id is known only once the flusher has created it), and its payload."""

    kind: str
    run: str
    payload: dict[str, Any]
    seq: int = 0


Deliver = Callable[["Outbox", Sequence[Record]], None]


class Outbox:
    def __init__(self, path: str | Path, deliver: Deliver, max_wait_s: float = 15.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.deliver = deliver
        self.max_wait_s = max_wait_s
        self._db = self._connect()
        self._db.executescript(SCHEMA)
        self._pending = self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None  # while the store cannot be reached
        self.failing_since: float | None = None
        self.rejection: str | None = None  # the first write the store refused, this session

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process; one fsync per checkpoint
        return db

    # ------------------------------------------------------------ producer side
    def write(self, records: Iterable[Record] = (), state: Mapping[str, Any] | None = None) -> None:
        """Append records and save the producer's state, atomically."""
        records = list(records)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO records (kind, run, payload) VALUES (?, ?, ?)",
                    [(r.kind, r.run, json.dumps(r.payload)) for r in records],
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in (state or {}).items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending += len(records)
        if records:
            self._wake.set()

    def state(self, prefix: str = "") -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM state WHERE key >= ? AND key < ?", (prefix, prefix + "\uffff")
            ).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def pending(self) -> int:
        return self._pending

    def rejected(self) -> list[tuple[Record, str]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, kind, run, payload, error FROM rejected").fetchall()
        return [(Record(kind, run, json.loads(p), seq), error) for seq, kind, run, p, error in rows]

    # ------------------------------------------------------------ run keys
    def run_id(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT run_id FROM runs WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def bind(self, key: str, run_id: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO runs (key, run_id) VALUES (?, ?)", (key, run_id))

    # ------------------------------------------------------------ flusher
    def start(self) -> Outbox:
        if self._thread is None:
            self._thread = threading.Thread(target=self._flush, name="sweeplab-outbox", daemon=True)
            self._thread.start()
        return self

    def drain(self, timeout: float) -> bool:
        """Wait until every record is delivered (True) or ``timeout`` passes (False); then stop."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._abandon.set()  # stop retrying: what is left stays journaled for later
                self._thread.join(30)
            self._thread = None
        return self._pending == 0

    def close(self) -> None:
        self.drain(0)
        self._db.close()

    def snapshot(self, dest: str | Path) -> Path:
        """A consistent copy of the journal (to keep beside remote sweep state)."""
        tmp = Path(f"{dest}.tmp")
        with self._lock, sqlite3.connect(tmp) as copy:
            self._db.backup(copy)
        copy.close()
        shutil.move(tmp, dest)
        return Path(dest)

    def _flush(self) -> None:
        while not self._abandon.is_set():
            group = self._next_group()
            if not group:
                if self._closing.is_set():
                    return
                self._wake.wait(0.25)
                self._wake.clear()
                continue
            error = self._deliver(group)
            if error is None:
                self._ack(group)
            elif is_transient(error):
                return  # abandoned while the store is away: the records stay journaled
            elif len(group) == 1:
                self._reject(group, error)
            else:  # one write of a merged request was refused: find it, deliver the others
                for record in group:
                    error = self._deliver([record])
                    if error is not None and is_transient(error):
                        return
                    self._ack([record]) if error is None else self._reject([record], error)

    def _deliver(self, group: Sequence[Record]) -> Exception | None:
        """Deliver, retrying while the store is away; the error that ended it, if any."""
        try:
            for attempt in Retrying(
                retry=retry_if_exception(is_transient),
                wait=wait_exponential(multiplier=0.5, max=self.max_wait_s),
                stop=lambda _: self._abandon.is_set(),
                sleep=self._abandon.wait,  # a drain that gives up need not sit out a backoff
                before_sleep=self._note_failure,
                reraise=True,
            ):
                with attempt:
                    self.deliver(self, group)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none kills the flusher
            return exc
        return None

    def _next_group(self) -> list[Record]:
        """The oldest record, with the records after it that can share its delivery: metric,
        param and tag writes (``log``) to runs that exist. Writes to one run stay in order;
        writes to different runs commute."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, run, payload FROM records ORDER BY seq LIMIT ?", (GROUP_LIMIT,)
            ).fetchall()
            bound = {k for (k,) in self._db.execute("SELECT key FROM runs")}
        group: list[Record] = []
        for seq, kind, run, payload in rows:
            record = Record(kind, run, json.loads(payload), seq)
            if group and not (record.kind == group[0].kind == "log" and record.run in bound):
                break
            group.append(record)
            if record.kind != "log":
                break
        return group

    def _ack(self, group: Sequence[Record]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM records WHERE seq = ?", [(r.seq,) for r in group])
            self._pending -= len(group)
        self.last_error = self.failing_since = None

    def _reject(self, group: Sequence[Record], exc: BaseException) -> None:
        error = one_line(exc, limit=1000, with_type=True)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR REPLACE INTO rejected (seq, kind, run, payload, error) VALUES (?, ?, ?, ?, ?)",
                [(r.seq, r.kind, r.run, json.dumps(r.payload), error) for r in group],
            )
            self._db.executemany("DELETE FROM records WHERE seq = ?", [(r.seq,) for r in group])
            self._db.execute("COMMIT")
            self._pending -= len(group)
        self.rejection = self.rejection or f"the tracking store refused a '{group[0].kind}' write: {error}"

    def _note_failure(self, retry_state) -> None:
        exc = retry_state.outcome.exception()
        self.last_error = one_line(exc, limit=200)
        self.failing_since = self.failing_since or time.time()
