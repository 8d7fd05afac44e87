"""The Ray Tune trainable: one trial is one training run. The only user of Tune's reporting API.

A trial composes its config from the sweep's base overrides plus its sampled values
(validated by the same schema as ``sweeplab train``), trains with the plain
:class:`~sweeplab.training.Trainer`, and reports once per epoch with a checkpoint
holding everything needed to continue (a retried trial resumes from it, and PBT
copies it between trials). It writes nothing to MLflow: the driver does.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from sweeplab.config import compose, to_container
from sweeplab.data import DataBundle, load_data
from sweeplab.space import to_override
from sweeplab.training import Trainer

STATE_FILE = "state.pt"
FINAL = "final"  # marks the one result a trial sends after its last epoch
# Each worker process keeps the data sets it has loaded: with reused actors, a
# data set is read once per worker, not once per trial.
_DATA_CACHE: dict[str, DataBundle] = {}


def trial_overrides(base_overrides: Sequence[str], sampled: Mapping[str, Any]) -> list[str]:
    """Base overrides, then the sampled values with group choices first (as the space sorted them)."""
    groups = [k for k in sampled if "." not in k]
    keys = groups + [k for k in sampled if "." in k]
    return [*base_overrides, *(to_override(k, sampled[k]) for k in keys)]


def trial_config(base_overrides: Sequence[str], sampled: Mapping[str, Any]) -> dict[str, Any]:
    return to_container(compose(trial_overrides(base_overrides, sampled)))


def cached_data(data_cfg: Mapping[str, Any]) -> DataBundle:
    key = json.dumps(data_cfg, sort_keys=True)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one data set per worker at a time: memory stays bounded
        _DATA_CACHE[key] = load_data(data_cfg)
    return _DATA_CACHE[key]


def cpu_share() -> int:
    """The CPUs Ray assigned to this trial (Ray sets OMP_NUM_THREADS=1 for workers otherwise)."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, math.floor(cpus))


def load_state(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as path:
        return torch.load(Path(path) / STATE_FILE, weights_only=False)


def run_trial(
    sampled: dict[str, Any],
    base_overrides: Sequence[str] = (),
    metric: str = "val/loss",
    mode: str = "min",
    fail_once_at_epoch: int = 0,
    drill_dir: str | None = None,
) -> None:
    """Train one configuration; report each epoch with a checkpoint, then one final result."""
    cfg = trial_config(base_overrides, sampled)
    torch.set_num_threads(cfg["trainer"]["num_threads"] or cpu_share())
    trainer = Trainer(cfg, cached_data(cfg["data"]))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after a failure, a resumed sweep, or a PBT exploit
        state = load_state(checkpoint)
        trainer.restore(state)
        if state.get("config", {}).get("optimizer") != cfg["optimizer"]:
            for group in trainer.optimizer.param_groups:  # PBT perturbed the learning rate
                group["lr"] = cfg["optimizer"]["lr"]

    # The first result of this process carries the resolved config, so the driver records it
    # without composing it again.
    extra = {"node_id": ray.get_runtime_context().get_node_id(), "config_json": json.dumps(cfg)}

    def report_epoch(metrics: dict[str, float]) -> None:
        _maybe_fail(fail_once_at_epoch, int(metrics["epoch"]), drill_dir)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({**trainer.checkpoint(), "config": cfg}, Path(tmp) / STATE_FILE)
            tune.report({**metrics, **extra}, checkpoint=tune.Checkpoint.from_directory(tmp))
        extra.clear()

    result = trainer.fit(report_epoch, evaluate_test=False)
    # The final result carries the trial's own verdict and its best value of the sweep's metric,
    # so searchers (Optuna) learn from the best epoch, and a diverged trial counts as the worst.
    best = result.best
    worst = math.inf if mode == "min" else -math.inf
    final = {k: v for k, v in best.items() if k.startswith(("val/", "train/"))}
    final.update(
        {
            FINAL: 1,
            "trial_status": result.status,
            "trial_reason": result.reason,
            "epoch": result.history[-1]["epoch"] if result.history else 0,
            "best_epoch": result.best_epoch or 0,
            metric: best.get(metric, worst) if result.status != "diverged" else worst,
            **extra,  # still unsent when the trial diverged before its first epoch ended
        }
    )
    tune.report(final)


def _maybe_fail(at_epoch: int, epoch: int, drill_dir: str | None) -> None:
    """Failure drill (``tune.fail_once_at_epoch``): each trial raises once, at one epoch.

    The marker lives in the sweep's directory, so the retry of the same trial sees it
    and carries on.
    """
    if not at_epoch or epoch != at_epoch or drill_dir is None:
        return
    marker = Path(drill_dir) / "drills" / f"{tune.get_context().get_trial_id()}.failed"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise RuntimeError(f"injected failure at epoch {epoch}")
