"""What each outbox record does in the MLflow store, and the functions that make the records.

Every delivery is idempotent, because a record may be delivered twice (the store took
it, the answer was lost, the flusher tries again): a run is created once (it carries its
key as the tag ``sweeplab.run_key`` and is looked up before creating), metric points keep
the timestamp they were made with (MLflow stores an identical point once), params are
logged with the same value, tags and artifacts are overwritten with the same content.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sweeplab import checkpoints
from sweeplab.tracking.outbox import Outbox, Record
from sweeplab.tracking.store import Tracker, sqlite_path
from sweeplab.tracking.tags import RUN_KEY_TAG

REQUESTS_IN_FLIGHT = 4


def _now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------------ records
def create_run(
    key: str,
    experiment: str,
    name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
    parent: str | None = None,
) -> Record:
    """A run (``parent``: the key of its parent run)."""
    payload = {"experiment": experiment, "name": name, "params": dict(params), "tags": dict(tags)}
    return Record("create_run", key, {**payload, "parent": parent, "start_time": _now_ms()})


def log(
    key: str,
    metrics: Mapping[str, float] | None = None,
    step: int = 0,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Record:
    points = [(k, float(v), _now_ms(), int(step)) for k, v in (metrics or {}).items()]
    return Record("log", key, {"metrics": points, "params": dict(params or {}), "tags": dict(tags or {})})


def text(key: str, content: str, file_name: str) -> Record:
    return Record("text", key, {"text": content, "file_name": file_name})


def learning_curve(
    key: str, history: Sequence[Mapping[str, float]], title: str, best_epoch: int | None
) -> Record:
    return Record("learning_curve", key, {"history": list(history), "title": title, "best_epoch": best_epoch})


def best_checkpoint(key: str, uri: str, epoch_metrics: Mapping[str, float]) -> Record:
    """The trial checkpoint at ``uri`` (a folder holding ``state.pt``, local or in an object
    store) becomes the run's ``checkpoints/best.pt``."""
    return Record("best_checkpoint", key, {"uri": uri, "metrics": dict(epoch_metrics)})


def prune_checkpoints(key: str, trial_dir: str, keep: list[str]) -> Record:
    """A finished trial's checkpoints but ``keep`` (its best and its last) are deleted, after the
    records before it (its best.pt among them) are delivered."""
    return Record("prune_checkpoints", key, {"trial_dir": trial_dir, "keep": keep})


def end(key: str, status: str, reason: str) -> Record:
    return Record("end", key, {"status": str(status), "reason": reason, "end_time": _now_ms()})


def reopen(key: str) -> Record:
    return Record("reopen", key, {})


# ------------------------------------------------------------------ delivery
class Delivery:
    """Carries out records against one store. ``fetch`` copies a checkpoint folder's file from
    wherever the sweep keeps its storage to a local path."""

    def __init__(
        self,
        tracker: Tracker,
        fetch: Callable[[str, str, Path], Path],
        prune: Callable[[str, list[str]], None] | None = None,
    ):
        self.tracker = tracker
        self.fetch = fetch
        self.prune = prune
        # A server takes several runs' writes at once; a SQLite file takes one writer at a time.
        self._pool = ThreadPoolExecutor(1 if sqlite_path(tracker.uri) else REQUESTS_IN_FLIGHT)

    def __call__(self, outbox: Outbox, group: Sequence[Record]) -> None:
        first = group[0]
        if first.kind == "create_run":
            self._create(outbox, first)
            return
        if first.kind == "log":  # one request per run, in the order they were made; runs side by side
            runs = _by_run(group)
            list(self._pool.map(lambda run: self._log(outbox, run, runs[run]), runs))
            return
        run_id = self._run_id(outbox, first.run)
        t = self.tracker
        if first.kind == "text":
            t.log_text(run_id, first.payload["text"], first.payload["file_name"])
        elif first.kind == "learning_curve":
            p = first.payload
            t.log_learning_curve(run_id, p["history"], p["title"], p["best_epoch"])
        elif first.kind == "best_checkpoint":
            with tempfile.TemporaryDirectory() as tmp:
                state = checkpoints.load(self.fetch(first.payload["uri"], checkpoints.STATE_FILE, Path(tmp)))
            t.log_checkpoint(run_id, checkpoints.best_from_state(state, first.payload["metrics"]))
        elif first.kind == "end":
            p = first.payload
            t.end_run(run_id, p["status"], p["reason"], end_time=p["end_time"])
        elif first.kind == "reopen":
            t.reopen(run_id)
        elif first.kind == "prune_checkpoints":
            if self.prune is not None:
                self.prune(first.payload["trial_dir"], first.payload["keep"])
        else:
            raise ValueError(f"unknown outbox record kind {first.kind!r}")

    def _log(self, outbox: Outbox, run: str, records: Sequence[Record]) -> None:
        self.tracker.log_batch(
            self._run_id(outbox, run),
            [tuple(m) for r in records for m in r.payload["metrics"]],
            params={k: v for r in records for k, v in r.payload["params"].items()},
            tags={k: v for r in records for k, v in r.payload["tags"].items()},
        )

    @staticmethod
    def _run_id(outbox: Outbox, key: str) -> str:
        run_id = outbox.run_id(key)
        if run_id is None:
            raise RuntimeError(f"outbox record for run '{key}' before the run was created")
        return run_id

    def _create(self, outbox: Outbox, record: Record) -> None:
        if outbox.run_id(record.run) is not None:
            return
        p = record.payload
        # Created before, but the answer (or the process) was lost: adopt that run.
        run_id = self.tracker.find_run(p["experiment"], RUN_KEY_TAG, record.run)
        if run_id is not None:
            self.tracker.log_params(run_id, p["params"])  # the first attempt may have died before them
        else:
            parent = outbox.run_id(p["parent"]) if p["parent"] else None
            run_id = self.tracker.start_run(
                p["experiment"],
                p["name"],
                p["params"],
                tags={**p["tags"], RUN_KEY_TAG: record.run},
                parent_run_id=parent,
                start_time=p["start_time"],
            )
        outbox.bind(record.run, run_id)


def _by_run(group: Sequence[Record]) -> dict[str, list[Record]]:
    runs: dict[str, list[Record]] = {}
    for record in group:
        runs.setdefault(record.run, []).append(record)
    return runs
