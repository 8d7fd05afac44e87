"""Everything MLflow: the only module that imports it.

All writes go through :class:`Tracker`, which addresses runs by id with an
``MlflowClient`` instead of MLflow's process-global "active run": a sweep driver
writes many runs (one per trial) from one process, and a single ``train`` is the
same code with one run.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import sweeplab
from sweeplab.config import flatten

# No usage telemetry leaves a user's machine unless they ask for it.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # sweeplab prints its own progress

# MLflow and Alembic narrate every store migration at INFO; sweeplab prints its own progress.
for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# We log models as pickles on purpose (see Tracker.log_model); MLflow warns about that on every save.
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)

MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
MLFLOW_STATUS = {
    "completed": "FINISHED",
    "early_stopped": "FINISHED",
    "diverged": "FAILED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}


def resolve_uri(uri: str | None) -> str:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite file ``./mlflow.db``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    return uri


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/", "postgresql", "mysql"))


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


class Tracker:
    """Writes runs, metrics and artifacts to one MLflow tracking store."""

    def __init__(self, tracking_cfg: Mapping[str, Any]):
        self.cfg = tracking_cfg
        self.uri = resolve_uri(tracking_cfg.get("uri"))
        mlflow.set_tracking_uri(self.uri)  # mlflow.pytorch.log_model reads the global URI
        self.client = MlflowClient(self.uri)

    # -- experiments and runs
    def experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if is_local(self.uri):  # a server decides (and proxies) artifact storage itself
            location = (Path(self.cfg.get("artifact_root", "mlartifacts")).resolve() / name).as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def start_run(
        self,
        experiment: str,
        run_name: str | None,
        config: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        all_tags = {"sweeplab.version": sweeplab.__version__}
        if commit := git_commit():
            all_tags["mlflow.source.git.commit"] = commit
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        all_tags.update(tags or {})
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        self.log_params(run_id, config)
        return run_id

    def log_params(self, run_id: str, config: Mapping[str, Any]) -> None:
        params = [Param(k, _param_value(v)) for k, v in flatten(dict(config)).items()]
        for i in range(0, len(params), 100):  # MLflow's per-request limit
            self.client.log_batch(run_id, params=params[i : i + 100])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """One epoch's metrics in one request, ``step`` = epoch."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch"]
        self.client.log_batch(run_id, metrics=batch)

    def end_run(self, run_id: str, status: str, reason: str = "") -> None:
        """Close a run with sweeplab's status (completed, early_stopped, diverged, failed, interrupted)."""
        self.set_tags(run_id, {"sweeplab.status": status, "sweeplab.status_reason": reason[:5000]})
        self.client.set_terminated(run_id, status=MLFLOW_STATUS.get(status, "FAILED"))

    # -- artifacts
    def log_file(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, file_name: str) -> None:
        self.client.log_text(run_id, text, file_name)

    def log_config(self, run_id: str, config: Mapping[str, Any], file_name: str = "config.yaml") -> None:
        self.log_text(run_id, yaml.safe_dump(dict(config), sort_keys=False), file_name)

    def log_checkpoint(self, run_id: str, checkpoint: Mapping[str, Any], file_name: str = "best.pt") -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / file_name
            torch.save(dict(checkpoint), path)
            self.log_file(run_id, path, "checkpoints")

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
        ``step`` (the best epoch). ``code_paths`` carries sweeplab's own modules along,
        so the logged model loads wherever torch is installed.
        """
        run = self.client.get_run(run_id)
        logged = self.client.create_logged_model(
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
            code_paths=[str(Path(sweeplab.__file__).parent)],
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
        run_id = self.start_run(
            experiment,
            name,
            {k: v for k, v in cfg.items() if k != "search"},
            tags={
                "sweeplab.sweep": name,
                "sweeplab.sweep_path": sweep_path,
                "sweeplab.kind": "sweep",
                "sweeplab.status": "running",
            },
        )
        self.log_params(
            run_id,
            {"search.name": cfg["search"]["name"], "search.space": {p.key: p.describe() for p in params}},
        )
        self.set_tags(run_id, {f"env.{k}": v for k, v in environment.items()})
        self.log_config(run_id, cfg)
        self.log_text(
            run_id,
            yaml.safe_dump({p.key: p.describe() for p in params}, sort_keys=False),
            "search_space.yaml",
        )
        self.log_text(run_id, yaml.safe_dump(dict(environment), sort_keys=False), "environment.yaml")
        return run_id

    def child_runs(self, parent_run_id: str) -> list:
        run = self.client.get_run(parent_run_id)
        return self.client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
            max_results=10000,
        )

    def history(self, run_id: str) -> list[dict[str, float]]:
        """A run's per-epoch metrics back as one dict per epoch (step)."""
        by_step: dict[int, dict[str, float]] = {}
        run = self.client.get_run(run_id)
        for key in run.data.metrics:
            for m in self.client.get_metric_history(run_id, key):
                if m.step > 0 and (key.startswith(("train/", "val/")) or key in ("lr", "epoch_time_s")):
                    by_step.setdefault(m.step, {"epoch": m.step})[key] = m.value
        return [by_step[s] for s in sorted(by_step)]

    def reopen(self, run_id: str) -> None:
        """A retried trial or a resumed sweep writes into its existing run again."""
        if self.client.get_run(run_id).info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")

    def finish_trial(
        self,
        run_id: str,
        title: str,
        history: Sequence[Mapping[str, float]],
        status: str,
        reason: str,
        best_checkpoint: Mapping[str, Any] | None,
        smoothing: int = 3,
    ) -> None:
        """Close a trial's child run: diagnosis metrics, learning curve, best checkpoint, status."""
        from sweeplab.plots import learning_curves

        if history:
            diag = overfitting(history, smoothing)
            self.log_metrics(run_id, diag, step=int(history[-1]["epoch"]))
            with tempfile.TemporaryDirectory() as tmp:
                png = learning_curves(
                    history, Path(tmp) / "learning_curve.png", title, int(diag["overfit/best_epoch"])
                )
                self.log_file(run_id, png, "plots")
        if best_checkpoint is not None:
            self.log_checkpoint(run_id, best_checkpoint)
        self.end_run(run_id, status, reason)

    def mark_interrupted(self, run_id: str, sweep_name: str) -> None:
        self.end_run(
            run_id, "interrupted", f"interrupted; continue with `sweeplab sweep resume {sweep_name}`"
        )

    def sweep_path_of(self, parent_run_id: str) -> str | None:
        try:
            return self.client.get_run(parent_run_id).data.tags.get("sweeplab.sweep_path")
        except mlflow.exceptions.MlflowException:
            return None

    def register_best(
        self, model_name: str, run_id: str, model_id: str, metric: str, mode: str, value: float
    ) -> tuple[str, bool]:
        """Register a new version; move the alias ``best`` to it only if it beats the current holder.

        Returns (version, alias moved). Versions carry the metric they were chosen by as tags.
        """
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(model_name)
        except MlflowException:
            self.client.create_registered_model(model_name, description="best model of each sweep (sweeplab)")
        version = self.client.create_model_version(
            model_name,
            f"models:/{model_id}",
            run_id=run_id,
            tags={"sweeplab.metric": metric, "sweeplab.metric_value": value},
            model_id=model_id,
        ).version
        try:
            current = self.client.get_model_version_by_alias(model_name, "best")
            held = float(current.tags.get("sweeplab.metric_value", "nan"))
            better = current.tags.get("sweeplab.metric") != metric or (
                value < held if mode == "min" else value > held
            )
        except MlflowException:  # no version holds the alias yet
            better = True
        if better:
            self.client.set_registered_model_alias(model_name, "best", version)
        return str(version), better

    # -- reading back
    def run_url(self, run_id: str, base: str | None = None) -> str:
        run = self.client.get_run(run_id)
        base = base or (
            self.uri if self.uri.startswith("http") else f"http://127.0.0.1:{self.cfg.get('ui_port', 5000)}"
        )
        return f"{base.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


def sampled_values(run) -> dict[str, Any]:
    """A trial run's sampled hyperparameters (params ``sampled.<key>``), numbers as numbers."""
    out: dict[str, Any] = {}
    for key, text in run.data.params.items():
        if key.startswith("sampled."):
            try:
                value: Any = float(text)
                value = int(value) if value.is_integer() and "." not in text and "e" not in text else value
            except ValueError:
                value = text
            out[key.removeprefix("sampled.")] = value
    return out


def overfitting(history: Sequence[Mapping[str, float]], smoothing: int = 3) -> dict[str, float]:
    """The course's diagnosis: where (smoothed) validation loss bottomed out, and the final gap."""
    losses = [h["val/loss"] for h in history]
    smoothed = [
        sum(losses[max(0, i - smoothing + 1) : i + 1]) / len(losses[max(0, i - smoothing + 1) : i + 1])
        for i in range(len(losses))
    ]
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    last = history[-1]
    return {
        "overfit/best_epoch": float(history[best]["epoch"]),
        "overfit/epochs_past_best": float(last["epoch"] - history[best]["epoch"]),
        "overfit/gap_acc": last["train/acc"] - last["val/acc"],
        "overfit/gap_loss": last["val/loss"] - last["train/loss"],
    }


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LEN else text[: MAX_PARAM_LEN - 3] + "..."


def load_logged_model(model_uri: str) -> torch.nn.Module:
    return mlflow.pytorch.load_model(model_uri)


def ui_command(tracking_cfg: Mapping[str, Any], port: int | None = None) -> tuple[list[str], str]:
    """The ``mlflow ui`` command line for the configured store, bound to loopback, and its URL."""
    uri = resolve_uri(tracking_cfg.get("uri"))
    port = port or int(tracking_cfg.get("ui_port", 5000))
    if uri.startswith("http"):
        return [], uri
    cmd = ["mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    return cmd, f"http://127.0.0.1:{port}"
