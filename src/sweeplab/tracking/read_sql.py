"""The read model from a database store: MLflow's tables read with SQLAlchemy, MLflow not imported.

MLflow keeps runs, params, tags, metrics and model versions in tables whose columns have not
changed in years (``runs``, ``params``, ``tags``, ``latest_metrics``, ``metrics``,
``model_versions``, ``registered_model_aliases``). Reading them directly is what makes
`sweeplab sweeps` answer in a fraction of a second; if a future MLflow changes them, the reader
says so and falls back to ``MlflowClient`` (slower, same records).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import NullPool, bindparam, create_engine, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from sweeplab.tracking.reader import Reader
from sweeplab.tracking.records import PARENT_TAG, ModelVersion, Point, Points, RunRecord
from sweeplab.tracking.uri import CONNECT_TIMEOUT_S, StoreError, reason

CHUNK = 500  # ids per IN (...): under every database's limit on bound parameters
DELETED_VERSION = "Deleted_Internal"  # MLflow's stage for a deleted model version


class SchemaChanged(Exception):
    """MLflow's tables are not as this reader knows them."""


class SqlReader(Reader):
    def __init__(self, tracking_cfg: Mapping[str, Any]):
        super().__init__(tracking_cfg)
        args = {"connect_timeout": CONNECT_TIMEOUT_S} if self.uri.startswith(("postgres", "mysql")) else {}
        try:
            self.engine = create_engine(self.uri, connect_args=args, poolclass=NullPool)
        except ModuleNotFoundError as exc:
            raise StoreError(f"tracking store {self.shown} needs the Python package '{exc.name}'") from None
        self._fallback: Reader | None = None

    # -- the queries
    def _rows(self, sql: str, **params: Any) -> list[Any]:
        statement = text(sql)
        for name, value in params.items():
            if isinstance(value, (list, tuple)):
                statement = statement.bindparams(bindparam(name, expanding=True))
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(statement, params))
        except (OperationalError, ProgrammingError) as exc:
            if _is_schema_error(exc):
                raise SchemaChanged(str(exc)) from None
            raise StoreError(f"cannot read the tracking store {self.shown}: {reason(exc)}") from None
        except DBAPIError as exc:
            raise StoreError(f"cannot read the tracking store {self.shown}: {reason(exc)}") from None

    def _client(self) -> Reader:
        if self._fallback is None:
            from sweeplab.tracking.read_client import ClientReader

            self._fallback = ClientReader(self.cfg)
        return self._fallback

    def _records(self, ids: list[str]) -> dict[str, RunRecord]:
        """Whole records of the runs ``ids``: four queries per chunk of ids, whatever their number."""
        out: dict[str, RunRecord] = {}
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            params: dict[str, dict[str, str]] = defaultdict(dict)
            tags: dict[str, dict[str, str]] = defaultdict(dict)
            metrics: dict[str, dict[str, float]] = defaultdict(dict)
            for run, key, value in self._rows(
                "SELECT run_uuid, key, value FROM params WHERE run_uuid IN :ids", ids=chunk
            ):
                params[run][key] = value
            for run, key, value in self._rows(
                "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN :ids", ids=chunk
            ):
                tags[run][key] = value
            for run, key, value, is_nan in self._rows(
                "SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN :ids", ids=chunk
            ):
                metrics[run][key] = math.nan if is_nan else float(value)
            for row in self._rows(
                "SELECT r.run_uuid, r.name, r.experiment_id, e.name, r.status, r.start_time, r.end_time "
                "FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
                "WHERE r.run_uuid IN :ids",
                ids=chunk,
            ):
                run_id = row[0]
                out[run_id] = RunRecord(
                    run_id=run_id,
                    name=row[1] or "",
                    experiment_id=str(row[2]),
                    experiment=row[3],
                    status=row[4] or "",
                    start_ms=int(row[5] or 0),
                    end_ms=None if row[6] is None else int(row[6]),
                    params=params[run_id],
                    metrics=metrics[run_id],
                    tags=tags[run_id],
                )
        return out

    def _ordered(self, ids: list[str]) -> list[RunRecord]:
        records = self._records(ids)
        return [records[i] for i in ids if i in records]

    # -- the read model
    def runs_tagged(self, tags: Mapping[str, str], experiment: str | None = None) -> list[RunRecord]:
        try:
            if experiment is not None and not self._rows(
                "SELECT 1 FROM experiments WHERE name = :name AND lifecycle_stage = 'active'", name=experiment
            ):
                raise self.unknown_experiment(experiment)
            joins = " ".join(
                f"JOIN tags t{i} ON t{i}.run_uuid = r.run_uuid AND t{i}.key = :k{i} AND t{i}.value = :v{i}"
                for i in range(len(tags))
            )
            binds = {f"k{i}": k for i, k in enumerate(tags)} | {
                f"v{i}": v for i, v in enumerate(tags.values())
            }
            where = " AND e.name = :experiment" if experiment is not None else ""
            ids = [
                row[0]
                for row in self._rows(
                    f"SELECT r.run_uuid FROM runs r {joins} "
                    "JOIN experiments e ON e.experiment_id = r.experiment_id "
                    f"WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'{where} "
                    "ORDER BY r.start_time DESC, r.run_uuid",
                    **binds,
                    **({"experiment": experiment} if experiment is not None else {}),
                )
            ]
            return self._ordered(ids)
        except SchemaChanged:
            if not inspect(self.engine).has_table("runs"):  # an empty store: nothing recorded, nothing made
                return []
            return self._client().runs_tagged(tags, experiment)

    def run(self, run_id: str) -> RunRecord | None:
        try:
            return self._records([run_id]).get(run_id)
        except SchemaChanged:
            return self._client().run(run_id)

    def children(self, parent: RunRecord) -> list[RunRecord]:
        try:
            ids = [
                row[0]
                for row in self._rows(
                    "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                    "WHERE t.key = :key AND t.value = :parent AND r.lifecycle_stage = 'active' "
                    "ORDER BY r.start_time, r.run_uuid",
                    key=PARENT_TAG,
                    parent=parent.run_id,
                )
            ]
            return self._ordered(ids)
        except SchemaChanged:
            return self._client().children(parent)

    def histories(
        self, run_ids: Iterable[str], keys: Iterable[str] | None = None
    ) -> dict[str, dict[str, Points]]:
        ids, wanted = list(run_ids), None if keys is None else list(keys)
        out: dict[str, dict[str, Points]] = {i: {} for i in ids}
        try:
            for i in range(0, len(ids), CHUNK):
                sql = (
                    "SELECT run_uuid, key, step, value, is_nan, timestamp FROM metrics WHERE run_uuid IN :ids"
                )
                binds: dict[str, Any] = {"ids": ids[i : i + CHUNK]}
                if wanted is not None:
                    sql += " AND key IN :keys"
                    binds["keys"] = wanted
                for run, key, step, value, is_nan, stamp in self._rows(
                    sql + " ORDER BY step, timestamp", **binds
                ):
                    point = Point(int(step), math.nan if is_nan else float(value), int(stamp or 0))
                    out[run].setdefault(key, []).append(point)
        except SchemaChanged:
            return self._client().histories(ids, wanted)
        return out

    def model_versions(self, run_id: str) -> list[ModelVersion]:
        try:
            versions = self._rows(
                "SELECT name, version FROM model_versions WHERE run_id = :run AND current_stage != :deleted "
                "ORDER BY name, version",
                run=run_id,
                deleted=DELETED_VERSION,
            )
            aliases: dict[tuple[str, int], list[str]] = defaultdict(list)
            for name, alias, version in self._rows(
                "SELECT name, alias, version FROM registered_model_aliases WHERE name IN :names "
                "ORDER BY alias",
                names=sorted({name for name, _ in versions}) or [""],
            ):
                aliases[(name, int(version))].append(alias)
        except SchemaChanged:
            return self._client().model_versions(run_id)
        return [ModelVersion(name, str(v), tuple(aliases[(name, int(v))])) for name, v in versions]


def _is_schema_error(exc: DBAPIError) -> bool:
    """A missing table or column (MLflow changed its schema), not a database out of reach."""
    return bool(MISSING.search(str(exc.orig)))


# SQLite's, PostgreSQL's and MySQL's words for a table or column that is not there
MISSING = re.compile(
    r"no such (table|column)|(relation|column) \S+ does not exist|unknown column|doesn't exist", re.I
)
