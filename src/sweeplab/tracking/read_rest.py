"""The read model from a tracking server: MLflow's REST API (2.0) with requests, MLflow not imported.

The same endpoints MLflow's own client calls; credentials and TLS settings come from the
environment variables MLflow's client reads (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``,
``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from sweeplab.tracking.reader import SearchReader
from sweeplab.tracking.records import ModelVersion, Point, Points, RunRecord
from sweeplab.tracking.uri import CONNECT_TIMEOUT_S, StoreError, reason

API = "/api/2.0/mlflow"
PAGE = 1000
READ_TIMEOUT_S = 30


class RestReader(SearchReader):
    def __init__(self, tracking_cfg: Mapping[str, Any]):
        super().__init__(tracking_cfg)
        self.http = requests.Session()
        env = os.environ
        if env.get("MLFLOW_TRACKING_TOKEN"):
            self.http.headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        elif env.get("MLFLOW_TRACKING_USERNAME"):
            self.http.auth = (env["MLFLOW_TRACKING_USERNAME"], env.get("MLFLOW_TRACKING_PASSWORD", ""))
        if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            self.http.verify = False
        elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            self.http.verify = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        self._experiments: dict[str, str] | None = None

    def _call(self, method: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.uri.rstrip('/')}{API}/{endpoint}"
        try:
            answer = self.http.request(method, url, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), **kwargs)
        except requests.RequestException as exc:
            raise StoreError(
                f"cannot reach the tracking server at {self.shown} ({reason(exc)}); start it "
                "(`sweeplab services up tracking`) or fix tracking.uri"
            ) from None
        if answer.status_code in (401, 403):
            raise StoreError(
                f"the tracking server at {self.shown} refused the request (HTTP {answer.status_code}); set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD for a user allowed to read"
            )
        if answer.status_code == 404 and endpoint in ("experiments/get-by-name", "runs/get"):
            return {}
        if not answer.ok:
            raise StoreError(
                f"the tracking server at {self.shown} answered HTTP {answer.status_code} to {endpoint}: "
                f"{reason(Exception(answer.text or answer.reason))}"
            )
        return answer.json()

    def _paged(self, endpoint: str, body: dict[str, Any], field: str) -> list[dict[str, Any]]:
        items, token = [], None
        while True:
            page = self._call("POST", endpoint, json={**body, **({"page_token": token} if token else {})})
            items += page.get(field, [])
            if not (token := page.get("next_page_token")):
                return items

    def _experiment_names(self) -> dict[str, str]:
        if self._experiments is None:
            found = self._paged(
                "experiments/search", {"max_results": PAGE, "view_type": "ACTIVE_ONLY"}, "experiments"
            )
            self._experiments = {e["experiment_id"]: e["name"] for e in found}
        return self._experiments

    def _record(self, run: dict[str, Any]) -> RunRecord:
        info, data = run["info"], run.get("data", {})
        return RunRecord(
            run_id=info["run_id"],
            name=info.get("run_name", ""),
            experiment_id=info["experiment_id"],
            experiment=self._experiment_names().get(info["experiment_id"], ""),
            status=info.get("status", ""),
            start_ms=int(info.get("start_time", 0)),
            end_ms=int(info["end_time"]) if info.get("end_time") else None,
            params={p["key"]: p.get("value", "") for p in data.get("params", [])},
            metrics={m["key"]: float(m["value"]) for m in data.get("metrics", [])},  # "NaN" reads as nan
            tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
        )

    def _search(self, experiment_ids: list[str], query: str, order: str) -> list[RunRecord]:
        if not experiment_ids:
            return []
        body = {
            "experiment_ids": experiment_ids,
            "filter": query,
            "run_view_type": "ACTIVE_ONLY",
            "max_results": PAGE,
            "order_by": [order],
        }
        return [self._record(r) for r in self._paged("runs/search", body, "runs")]

    def _experiment_ids(self, experiment: str | None) -> list[str]:
        ids = [i for i, n in self._experiment_names().items() if experiment is None or n == experiment]
        if experiment is not None and not ids:
            raise self.unknown_experiment(experiment)
        return ids

    # -- the read model
    def run(self, run_id: str) -> RunRecord | None:
        found = self._call("GET", "runs/get", params={"run_id": run_id}).get("run")
        return self._record(found) if found else None

    def histories(
        self, run_ids: Iterable[str], keys: Iterable[str] | None = None
    ) -> dict[str, dict[str, Points]]:
        out: dict[str, dict[str, Points]] = {}
        for run_id in run_ids:
            wanted = keys
            if wanted is None:
                run = self._call("GET", "runs/get", params={"run_id": run_id})["run"]
                wanted = [m["key"] for m in run.get("data", {}).get("metrics", [])]
            out[run_id] = {}
            for key in wanted:
                points = self._call(
                    "GET",
                    "metrics/get-history",
                    params={"run_id": run_id, "metric_key": key, "max_results": 25000},
                ).get("metrics", [])
                if points:
                    out[run_id][key] = sorted(
                        Point(int(m.get("step", 0)), float(m["value"]), int(m.get("timestamp", 0)))
                        for m in points
                    )
        return out

    def model_versions(self, run_id: str) -> list[ModelVersion]:
        found = self._call("GET", "model-versions/search", params={"filter": f"run_id = '{run_id}'"})
        out = []
        for v in found.get("model_versions", []):
            model = self._call("GET", "registered-models/get", params={"name": v["name"]})["registered_model"]
            aliases = tuple(
                a["alias"] for a in model.get("aliases", []) if str(a["version"]) == str(v["version"])
            )
            out.append(ModelVersion(v["name"], str(v["version"]), aliases))
        return sorted(out, key=lambda m: (m.name, int(m.version)))
