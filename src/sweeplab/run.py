"""One tracked training run: data -> Trainer -> MLflow run (what ``sweeplab train`` does)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeplab.data import DataBundle, load_data
from sweeplab.errors import one_line
from sweeplab.metrics import best_key
from sweeplab.models import deployable
from sweeplab.plots import learning_curves
from sweeplab.status import TrialStatus
from sweeplab.summary import model_summary
from sweeplab.tracking import StoreError, Tracker, is_transient
from sweeplab.tracking.store import retrying
from sweeplab.tracking.tags import DATA_FINGERPRINT_TAG
from sweeplab.training import FitResult, Trainer


@dataclass
class RunOutcome:
    result: FitResult
    run_id: str | None
    trainer: Trainer
    summary: str


def log_run_artifacts(
    tracker: Tracker,
    run_id: str,
    cfg: Mapping[str, Any],
    trainer: Trainer,
    result: FitResult,
    summary: str,
    title: str,
) -> None:
    """What a finished run leaves in MLflow besides metrics: config, summary, curves, checkpoint, model."""
    tracker.log_config(run_id, cfg)
    tracker.log_text(run_id, summary, "model_summary.txt")
    final = dict(result.test)
    if result.best_epoch is not None:
        final["best_epoch"] = result.best_epoch
        final.update({best_key(k): v for k, v in result.best.items() if k.startswith("val/")})
    if final:
        tracker.log_metrics(run_id, final, step=result.best_epoch or 0)
    if result.history:
        with tempfile.TemporaryDirectory() as tmp:
            png = learning_curves(result.history, Path(tmp) / "learning_curve.png", title, result.best_epoch)
            tracker.log_file(run_id, png, "plots")
    if trainer.best_state is not None:
        tracker.log_checkpoint(
            run_id,
            {
                "model_state": trainer.best_state,
                "config": dict(cfg),
                "epoch": result.best_epoch,
                "metrics": result.best,
            },
        )
        if cfg["tracking"]["log_model"]:
            model = deployable(trainer.model, trainer.data)
            tracker.log_model(run_id, model, trainer.data.inputs("val", 8), step=result.best_epoch or 0)


def train_and_track(
    cfg: Mapping[str, Any],
    data: DataBundle | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Train one model from a resolved config; record it as one MLflow run when tracking is enabled.

    A failure or Ctrl-C mid-run still closes the run (FAILED / KILLED) with the epochs
    already logged, then re-raises.
    """
    data = data or load_data(cfg["data"])
    trainer = Trainer(cfg, data)
    summary = model_summary(trainer.model, data.input_shape, data.kind)
    tcfg = cfg["tracking"]
    if not tcfg["enabled"]:
        return RunOutcome(trainer.fit(on_epoch), None, trainer, summary)

    tracker = Tracker(tcfg)
    run_name = tcfg["run_name"] or f"{cfg['model']['name']}-{cfg['optimizer']['name']}-{cfg['data']['name']}"
    # tags: e.g. a nightly run's night and entry
    run_tags = {DATA_FINGERPRINT_TAG: data.fingerprint, **(tags or {})}
    run_id = tracker.start_run(tcfg["experiment"], run_name, cfg, tags=run_tags)

    def log_epoch(metrics: dict[str, float]) -> None:
        # a short outage (or a SQLite file another process is writing) is ridden out
        retrying(lambda: tracker.log_metrics(run_id, metrics, step=int(metrics["epoch"])))
        if on_epoch is not None:
            on_epoch(metrics)

    try:
        result = trainer.fit(log_epoch)
        log_run_artifacts(tracker, run_id, cfg, trainer, result, summary, run_name)
    except KeyboardInterrupt:
        _close(tracker, run_id, TrialStatus.interrupted, "interrupted by the user (Ctrl-C)")
        raise
    except BaseException as exc:
        _close(tracker, run_id, TrialStatus.failed, f"{type(exc).__name__}: {exc}")
        if is_transient(exc):
            raise StoreError(
                f"the tracking store became unreachable during the run ({one_line(exc, limit=200)}); "
                f"run {run_id} keeps the epochs logged before"
            ) from None
        raise
    retrying(lambda: tracker.end_run(run_id, result.status, result.reason))
    return RunOutcome(result, run_id, trainer, summary)


def _close(tracker: Tracker, run_id: str, status: TrialStatus, reason: str) -> None:
    """Close the run if the store lets us; the error that brought us here is the one to report."""
    with contextlib.suppress(Exception):
        retrying(lambda: tracker.end_run(run_id, status, reason), seconds=10)
