"""The read model through ``MlflowClient``: for stores the faster readers do not speak (a file
store, Databricks, a database whose tables a newer MLflow changed). Same records, MLflow's pace."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sweeplab.tracking.reader import SearchReader
from sweeplab.tracking.records import ModelVersion, Point, Points, RunRecord


class ClientReader(SearchReader):
    def __init__(self, tracking_cfg: Mapping[str, Any]):
        super().__init__(tracking_cfg)
        from sweeplab.tracking.store import open_client

        self.client = open_client(self.uri)
        self._names: dict[str, str] = {}

    def _record(self, run) -> RunRecord:
        exp = run.info.experiment_id
        if exp not in self._names:
            self._names[exp] = self.client.get_experiment(exp).name
        return RunRecord(
            run_id=run.info.run_id,
            name=run.info.run_name or "",
            experiment_id=exp,
            experiment=self._names[exp],
            status=run.info.status,
            start_ms=run.info.start_time or 0,
            end_ms=run.info.end_time,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
        )

    def _search(self, experiment_ids: list[str], query: str, order: str) -> list[RunRecord]:
        runs, token = [], None
        while experiment_ids:
            page = self.client.search_runs(
                experiment_ids, filter_string=query, order_by=[order], max_results=5000, page_token=token
            )
            runs += page
            if not (token := page.token):
                break
        return [self._record(r) for r in runs]

    def _experiment_ids(self, experiment: str | None) -> list[str]:
        if experiment is not None:
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None or exp.lifecycle_stage != "active":
                raise self.unknown_experiment(experiment)
            return [exp.experiment_id]
        ids, token = [], None
        while True:
            page = self.client.search_experiments(max_results=1000, page_token=token)
            ids += [e.experiment_id for e in page]
            if not (token := page.token):
                return ids

    def run(self, run_id: str) -> RunRecord | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._record(self.client.get_run(run_id))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def histories(
        self, run_ids: Iterable[str], keys: Iterable[str] | None = None
    ) -> dict[str, dict[str, Points]]:
        out: dict[str, dict[str, Points]] = {}
        for run_id in run_ids:
            wanted = list(self.client.get_run(run_id).data.metrics) if keys is None else keys
            out[run_id] = {}
            for key in wanted:
                if points := self.client.get_metric_history(run_id, key):
                    out[run_id][key] = sorted(Point(m.step, m.value, m.timestamp) for m in points)
        return out

    def model_versions(self, run_id: str) -> list[ModelVersion]:
        found = self.client.search_model_versions(f"run_id = '{run_id}'")
        versions = [self.client.get_model_version(v.name, v.version) for v in found]  # search omits aliases
        return sorted(
            (ModelVersion(v.name, str(v.version), tuple(v.aliases)) for v in versions),
            key=lambda m: (m.name, int(m.version)),
        )
