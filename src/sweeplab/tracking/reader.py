"""Reading the tracking store back, fast: the read model's one entry point.

``open_reader`` picks how: a database store (SQLite, PostgreSQL, MySQL) is read with SQLAlchemy
from MLflow's tables (:mod:`~sweeplab.tracking.read_sql`), a tracking server through MLflow's REST
API (:mod:`~sweeplab.tracking.read_rest`), anything else with ``MlflowClient``
(:mod:`~sweeplab.tracking.read_client`). The first two never import MLflow, whose import alone
takes 1.5-2 s on two cores: `sweeplab sweeps list` answers in well under a second with them.
Only reads go this way; every write goes through :class:`~sweeplab.tracking.store.Tracker`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from sweeplab.metrics import is_epoch_metric
from sweeplab.redact import scrub
from sweeplab.tracking import views
from sweeplab.tracking.records import PARENT_TAG, ModelVersion, Points, RunRecord
from sweeplab.tracking.tags import KIND_TAG, SWEEP_KIND
from sweeplab.tracking.uri import StoreError, is_database, is_server, resolve_uri, ui_base

T = TypeVar("T")

SWEEP_TAGS = {KIND_TAG: SWEEP_KIND}  # a sweep's parent run


class Reader(ABC):
    def __init__(self, tracking_cfg: Mapping[str, Any]):
        self.cfg = dict(tracking_cfg)
        self.uri = resolve_uri(tracking_cfg.get("uri"))
        self.shown = scrub(self.uri)

    @abstractmethod
    def runs_tagged(self, tags: Mapping[str, str], experiment: str | None = None) -> list[RunRecord]:
        """Active runs of active experiments (or of ``experiment``) carrying every tag, newest first;
        ValueError when ``experiment`` is no active experiment."""

    @abstractmethod
    def run(self, run_id: str) -> RunRecord | None:
        """The run ``run_id``, None where the store has no such run."""

    @abstractmethod
    def children(self, parent: RunRecord) -> list[RunRecord]:
        """The active runs whose parent is ``parent``."""

    @abstractmethod
    def histories(
        self, run_ids: Iterable[str], keys: Iterable[str] | None = None
    ) -> dict[str, dict[str, Points]]:
        """run id -> metric key -> every :class:`Point` in step order; ``keys`` None: every metric."""

    @abstractmethod
    def model_versions(self, run_id: str) -> list[ModelVersion]:
        """The registered model versions made from a run, with the aliases they hold now."""

    def link(self, run: RunRecord) -> str:
        """Where the MLflow UI shows the run (a sweep's parent: the sweep's saved view)."""
        return views.link(ui_base(self.cfg), run.experiment_id, run.run_id, run.tags)

    def unknown_experiment(self, experiment: str) -> ValueError:
        return ValueError(f"no experiment '{experiment}' in the tracking store {self.shown}")


class SearchReader(Reader):
    """A backend that searches runs with MLflow's filter language (its REST API, its client)."""

    @abstractmethod
    def _experiment_ids(self, experiment: str | None) -> list[str]:
        """Active experiments' ids (only ``experiment``'s, if given; ValueError if it is none)."""

    @abstractmethod
    def _search(self, experiment_ids: list[str], query: str, order: str) -> list[RunRecord]: ...

    def runs_tagged(self, tags: Mapping[str, str], experiment: str | None = None) -> list[RunRecord]:
        # a quote cannot be written in a filter: such a tag is matched below only
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items() if "'" not in v)
        found = self._search(self._experiment_ids(experiment), query, "attributes.start_time DESC")
        return [r for r in found if all(r.tags.get(k) == v for k, v in tags.items())]

    def children(self, parent: RunRecord) -> list[RunRecord]:
        query = f"tags.`{PARENT_TAG}` = '{parent.run_id}'"
        return self._search([parent.experiment_id], query, "attributes.start_time ASC")


def open_reader(tracking_cfg: Mapping[str, Any]) -> Reader:
    uri = resolve_uri(tracking_cfg.get("uri"))
    if is_database(uri):
        from sweeplab.tracking.read_sql import SqlReader

        return SqlReader(tracking_cfg)
    if is_server(uri):
        from sweeplab.tracking.read_rest import RestReader

        return RestReader(tracking_cfg)
    from sweeplab.tracking.read_client import ClientReader

    return ClientReader(tracking_cfg)


def patiently(read: Callable[[], T], seconds: float = 60.0) -> T:
    """A read by a long-running process (a sweep's end, a resume) that rides out a short outage
    of the store; a command a user typed reads once and says at once what is wrong."""
    from sweeplab.tracking.retry import for_seconds  # tenacity: loaded by the driver only

    return for_seconds(read, seconds, lambda exc: isinstance(exc, StoreError))


def child_runs(reader: Reader, parent_run_id: str) -> tuple[list[RunRecord], dict[str, dict[str, Points]]]:
    """A sweep's child runs and their epoch metrics' points, read patiently: the summary and a
    resume's adoption of runs read them in the driver, which rides out a short outage."""

    def read() -> tuple[list[RunRecord], dict[str, dict[str, Points]]]:
        parent = reader.run(parent_run_id)
        if parent is None:
            raise RuntimeError(f"the sweep's parent run {parent_run_id} is not in the store {reader.shown}")
        runs = reader.children(parent)
        keys = sorted({key for run in runs for key in run.metrics if is_epoch_metric(key)})
        return runs, reader.histories([run.run_id for run in runs], keys)

    return patiently(read)
