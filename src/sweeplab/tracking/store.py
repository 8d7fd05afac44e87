"""The MLflow tracking store: opening it (one line within seconds when it cannot be used) and
writing runs by id.

All writes go through :class:`Tracker`, which addresses runs by id with an
``MlflowClient`` instead of MLflow's process-global "active run": a sweep driver
writes many runs (one per trial) from one process, and a single ``train`` is the
same code with one run. Every text written passes :mod:`sweeplab.redact`.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
import requests
import torch
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import sweeplab
from sweeplab import checkpoints, project
from sweeplab.config import flatten
from sweeplab.metrics import EPOCH, VAL_LOSS
from sweeplab.objective import Mode, Objective
from sweeplab.redact import scrub, scrub_config
from sweeplab.status import TrialStatus
from sweeplab.tracking import registry, retry, views
from sweeplab.tracking.tags import (
    GIT_COMMIT_TAG,
    KIND_TAG,
    PARENT_RUN_ID_TAG,
    STATUS_REASON_TAG,
    STATUS_TAG,
    SWEEP_KIND,
    SWEEP_PATH_TAG,
    SWEEP_TAG,
    VERSION_TAG,
)
from sweeplab.tracking.uri import (  # noqa: F401  (resolve_uri and the rest are used from here too)
    CONNECT_TIMEOUT_S,
    StoreError,
    is_local,
    reason,
    resolve_uri,
    sqlite_path,
    store_host,
    ui_base,
    ui_command,
)

# MLflow and Alembic narrate every store migration at INFO; sweeplab prints its own progress.
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# We log models as pickles on purpose (see Tracker.log_model); MLflow warns about that on every save.
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)

MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
MAX_TAG_LEN = 5000
BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's per-request limits
T = TypeVar("T")


_TRANSIENT_CODES = {
    "TEMPORARILY_UNAVAILABLE",
    "REQUEST_LIMIT_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED",
    "INTERNAL_ERROR",  # what MLflow's REST client raises when the server cannot be reached
    "IO_ERROR",
}


def is_transient(exc: BaseException) -> bool:
    """A failure that may pass if the same write is tried again: the store unreachable,
    overloaded or locked. A write the store rejects (bad value, no permission) is not."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        if status in (401, 403):
            return False
        return exc.error_code in _TRANSIENT_CODES or status == 429 or status >= 500
    return False


def retrying(call: Callable[[], T], seconds: float = 60.0) -> T:
    """A synchronous write that rides out a short outage or a locked SQLite file."""
    return retry.for_seconds(call, seconds, is_transient)


# ------------------------------------------------------------------ opening the store
def check_store(uri: str) -> None:
    """Fail within seconds, with one line, when the store cannot be reached or used."""
    shown = scrub(uri)
    if uri.startswith(("http://", "https://")):
        try:
            response = requests.get(f"{uri.rstrip('/')}/health", timeout=CONNECT_TIMEOUT_S)
        except requests.RequestException as exc:
            raise StoreError(
                f"cannot reach the tracking server at {shown} ({reason(exc)}); start it "
                "(services/tracking-server.sh, `sweeplab services up tracking`) or fix tracking.uri"
            ) from None
        if response.status_code != 200:
            raise StoreError(f"the tracking server at {shown} is not healthy (HTTP {response.status_code})")
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except MlflowException as exc:
            if exc.get_http_status_code() in (401, 403):
                raise StoreError(
                    f"the tracking server at {shown} refused sweeplab's credentials "
                    f"(HTTP {exc.get_http_status_code()}); set MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD for a user allowed to write"
                ) from None
            raise StoreError(f"the tracking server at {shown} failed: {reason(exc)}") from None
    elif (path := sqlite_path(uri)) is not None:
        folder = path.parent
        if not folder.is_dir():
            raise StoreError(f"tracking store {shown}: the folder {folder} does not exist; create it first")
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise StoreError(f"tracking store {shown}: {path} is not writable; choose another tracking.uri")
    elif "://" in uri and not uri.startswith("file:"):  # a database behind SQLAlchemy
        import sqlalchemy

        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if uri.startswith(("postgres", "mysql")) else {}
        try:
            engine = sqlalchemy.create_engine(uri, connect_args=connect_args, poolclass=sqlalchemy.NullPool)
            with engine.connect():
                pass
        except ModuleNotFoundError as exc:
            raise StoreError(f"tracking store {shown} needs the Python package '{exc.name}'") from None
        except Exception as exc:  # noqa: BLE001 - any driver's error becomes one line
            raise StoreError(f"cannot open the tracking store {shown}: {reason(exc)}") from None


_opened: set[str] = set()


def open_client(uri: str) -> MlflowClient:
    """A client on a checked store. A fresh SQLite file is created under a file lock: two
    first commands at once would otherwise race in MLflow's schema migration."""
    if uri in _opened:
        return MlflowClient(uri)
    check_store(uri)  # before the client: MLflow would create a missing SQLite folder itself
    path = sqlite_path(uri)
    with open(path, "a") if path else open(os.devnull) as fh:
        if path:
            fcntl.flock(fh, fcntl.LOCK_EX)  # flock does not touch SQLite's own (fcntl) locks
        try:  # the client's first use of a store creates or migrates its tables
            client = retrying(lambda: MlflowClient(uri))
            retrying(lambda: client.search_experiments(max_results=1))
            retrying(lambda: client.search_registered_models(max_results=1))
        except MlflowException as exc:
            raise StoreError(f"cannot use the tracking store {scrub(uri)}: {reason(exc)}") from None
    _opened.add(uri)
    return client


@functools.lru_cache(maxsize=8)
def git_commit(cwd: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(sweeplab.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def project_tags() -> dict[str, str]:
    """``sweeplab.project.*``: the user's project a run's code came from (its commit or files' hash)."""
    return {f"sweeplab.{k}": v for k, v in project.identity().items()}


def with_targets(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config's params plus ``<group>.target: module:name`` for each option built from a target."""
    from sweeplab.build import describe_targets

    if not isinstance(config.get("model"), Mapping):  # not a training config (e.g. a nightly suite's)
        return dict(config)
    return {**config, **describe_targets(config)}


# ------------------------------------------------------------------ writing
class Tracker:
    """Writes runs, metrics and artifacts to one MLflow tracking store."""

    def __init__(self, tracking_cfg: Mapping[str, Any]):
        self.cfg = tracking_cfg
        self.uri = resolve_uri(tracking_cfg.get("uri"))
        self._client = open_client(self.uri)
        mlflow.set_tracking_uri(self.uri)  # mlflow.pytorch.log_model reads the global URI

    # -- experiments and runs
    def experiment_id(self, name: str) -> str:
        exp = self._client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if is_local(self.uri):  # a server decides (and proxies) artifact storage itself
            root = Path(self.cfg.get("artifact_root") or "mlartifacts")
            if not root.is_absolute():  # beside the store it belongs to, not the current folder
                path = sqlite_path(self.uri)
                root = (path.parent if path else Path.cwd()) / root
            location = (root.resolve() / name).as_uri()
        try:
            return self._client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:  # created meanwhile by another process
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self._client.get_experiment_by_name(name).experiment_id

    def start_run(
        self,
        experiment: str,
        run_name: str | None,
        config: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
    ) -> str:
        all_tags: dict[str, Any] = {VERSION_TAG: sweeplab.__version__}
        if commit := git_commit():
            all_tags[GIT_COMMIT_TAG] = commit
        if parent_run_id:
            all_tags[PARENT_RUN_ID_TAG] = parent_run_id
        all_tags.update(project_tags())
        all_tags.update(tags or {})
        run = self._client.create_run(
            self.experiment_id(experiment),
            start_time=start_time,
            run_name=run_name,
            tags={k: _tag_value(v) for k, v in all_tags.items()},  # a server accepts strings only
        )
        self.log_params(run.info.run_id, with_targets(config))
        return run.info.run_id

    def find_run(self, experiment: str, tag: str, value: str) -> str | None:
        """The run carrying ``tag=value`` (how an outbox record finds the run it already created)."""
        exp = self._client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        runs = self._client.search_runs([exp.experiment_id], filter_string=f"tags.`{tag}` = '{value}'")
        return runs[0].info.run_id if runs else None

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[tuple[str, float, int, int]] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Metrics as (key, value, timestamp ms, step), params and tags, in MLflow-sized requests.

        A metric point keeps the timestamp it was made with: sent twice, it is one point."""
        entities = {
            "metrics": [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in metrics],
            "params": [
                Param(k, _param_value(v)) for k, v in flatten(scrub_config(dict(params or {}))).items()
            ],
            "tags": [RunTag(k, _tag_value(v)) for k, v in (tags or {}).items()],
        }
        for kind, items in entities.items():
            size = BATCH_LIMITS[kind]
            for i in range(0, len(items), size):
                self._client.log_batch(run_id, **{kind: items[i : i + size]})

    def log_params(self, run_id: str, config: Mapping[str, Any]) -> None:
        self.log_batch(run_id, params=config)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_batch(run_id, tags=tags)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """One epoch's metrics in one request, ``step`` = epoch."""
        now = int(time.time() * 1000)
        self.log_batch(run_id, [(k, v, now, step) for k, v in metrics.items() if k != EPOCH])

    def end_run(self, run_id: str, status: str, reason: str = "", end_time: int | None = None) -> None:
        """Close a run with sweeplab's status; MLflow gets its coarser FINISHED / FAILED / KILLED."""
        status = TrialStatus(status)
        self.set_tags(run_id, {STATUS_TAG: status.value, STATUS_REASON_TAG: reason})
        self._client.set_terminated(run_id, status=status.mlflow_status, end_time=end_time)

    def reopen(self, run_id: str) -> None:
        """A retried trial or a resumed sweep writes into its existing run again."""
        if self._client.get_run(run_id).info.status != "RUNNING":
            self._client.update_run(run_id, status="RUNNING")

    # -- artifacts
    def log_file(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, file_name: str) -> None:
        self._client.log_text(run_id, scrub(text), file_name)

    def log_config(self, run_id: str, config: Mapping[str, Any], file_name: str = "config.yaml") -> None:
        self.log_text(run_id, yaml.safe_dump(scrub_config(dict(config)), sort_keys=False), file_name)

    def log_checkpoint(
        self, run_id: str, checkpoint: Mapping[str, Any], file_name: str = checkpoints.BEST_FILE
    ) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = {**checkpoint, "config": scrub_config(dict(checkpoint.get("config") or {}))}
            self.log_file(run_id, checkpoints.save(ckpt, Path(tmp) / file_name), "checkpoints")

    def log_learning_curve(
        self, run_id: str, history: Sequence[Mapping[str, float]], title: str, best_epoch: int | None
    ) -> None:
        from sweeplab.plots import learning_curves

        with tempfile.TemporaryDirectory() as tmp:
            png = learning_curves(history, Path(tmp) / "learning_curve.png", title, best_epoch)
            self.log_file(run_id, png, "plots")

    def log_model(
        self,
        run_id: str,
        model: torch.nn.Module,
        example: torch.Tensor,
        step: int = 0,
        registered_name: str | None = None,
    ):
        """Log the model with ``mlflow.pytorch`` and a signature inferred from an example batch.

        The LoggedModel is created in the run's own experiment (MLflow would otherwise
        file it under the process's active experiment) and takes the run's metrics at
        ``step`` (the best epoch). ``code_paths`` carries sweeplab's own modules along, and
        the project's modules the model's classes come from, so the logged model loads wherever
        torch is installed.
        """
        run = self._client.get_run(run_id)
        logged = self._client.create_logged_model(
            run.info.experiment_id, name="model", source_run_id=run_id, params=dict(run.data.params)
        )
        model = model.cpu().eval()
        with torch.no_grad():
            output = model(example.cpu())
        signature = infer_signature(example.cpu().numpy(), output.numpy())
        torch_version = torch.__version__.split("+")[0]
        return mlflow.pytorch.log_model(
            model,
            name="model",
            signature=signature,
            # the user's own model code too: the model loads where neither project is installed
            code_paths=[
                str(Path(sweeplab.__file__).parent),
                *project.code_paths(type(m).__module__ for m in model.modules()),
            ],
            pip_requirements=[f"torch=={torch_version}", f"numpy=={np.__version__}", "cloudpickle"],
            registered_model_name=registered_name,
            serialization_format="pickle",  # the nn.Module itself, any batch size (pt2 fixes traced shapes)
            run_id=run_id,
            model_id=logged.model_id,
            step=step,
        )

    # -- sweeps: a parent run with one child run per trial
    def start_sweep_run(
        self,
        experiment: str,
        name: str,
        cfg: Mapping[str, Any],
        params: Sequence[Any],
        sweep_path: str,
        environment: Mapping[str, str],
    ) -> str:
        """The parent run: base config, search space, tune settings, environment."""
        space = {p.key: p.describe() for p in params}
        run_id = self.start_run(
            experiment,
            name,
            {k: v for k, v in cfg.items() if k != "search"},
            tags={
                SWEEP_TAG: name,
                SWEEP_PATH_TAG: sweep_path,
                KIND_TAG: SWEEP_KIND,
                STATUS_TAG: TrialStatus.running.value,
                **{f"env.{k}": v for k, v in environment.items()},
            },
        )
        self.log_params(run_id, {"search.name": cfg["search"]["name"], "search.space": space})
        metric = cfg["tune"]["metric"]
        key, view = views.sweep_view(
            name,
            metric,
            cfg["tune"]["mode"],
            [p.key for p in params],
            metric if metric.startswith("val/") else VAL_LOSS,
        )
        self._client.set_experiment_tag(self.experiment_id(experiment), key, view)
        self.log_config(run_id, cfg)
        self.log_text(run_id, yaml.safe_dump(space, sort_keys=False), "search_space.yaml")
        self.log_text(run_id, yaml.safe_dump(dict(environment), sort_keys=False), "environment.yaml")
        return run_id

    def mark_interrupted(self, run_id: str, sweep_name: str) -> None:
        self.end_run(
            run_id, "interrupted", f"interrupted; continue with `sweeplab sweep resume {sweep_name}`"
        )

    def sweep_path_of(self, parent_run_id: str) -> str | None:
        try:
            return self._client.get_run(parent_run_id).data.tags.get(SWEEP_PATH_TAG)
        except MlflowException:
            return None

    def register_best(
        self,
        model_name: str,
        run_id: str,
        model_id: str,
        metric: str,
        mode: str | Mode,
        value: float,
        data_fingerprint: str,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[str, bool]:
        """A new registered version, the alias ``best`` moved to it if it wins
        (:func:`sweeplab.tracking.registry.register_best`). Returns (version, alias moved)."""
        return registry.register_best(
            self._client, model_name, run_id, model_id, Objective(metric, mode), value, data_fingerprint, tags
        )

    # -- reading back
    def download_file(self, run_id: str, path: str, dest: str | Path) -> str:
        """One artifact of a run into the folder ``dest``; its local path."""
        return self._client.download_artifacts(run_id, path, str(dest))

    def has_artifact(self, run_id: str, path: str) -> bool:
        """Whether the run logged the artifact ``path`` (``folder/name``)."""
        folder, _, name = path.rpartition("/")
        return any(a.path.endswith(name) for a in self._client.list_artifacts(run_id, folder or None))

    def run_url(self, run_id: str, base: str | None = None) -> str:
        """Where the MLflow UI shows a run: a sweep's parent opens the sweep's saved view (its trials,
        in the Model training view), any other run its own page."""
        run = self._client.get_run(run_id)
        base = scrub(base) if base else ui_base(self.cfg)
        return views.link(base, run.info.experiment_id, run_id, run.data.tags)


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LEN else text[: MAX_PARAM_LEN - 3] + "..."


def _tag_value(value: Any) -> str:
    return scrub(str(value))[:MAX_TAG_LEN]


def load_logged_model(model_uri: str) -> torch.nn.Module:
    return mlflow.pytorch.load_model(model_uri)
