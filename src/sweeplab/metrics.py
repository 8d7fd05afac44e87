"""Metric keys: one spelling everywhere (code, MLflow, terminal, reports).

Per-epoch metrics are logged with ``step`` = epoch; a run's summary metrics with the
best epoch (train) or step 0 (a sweep's parent).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sweeplab.objective import Mode, Objective

TRAIN, VAL, TEST = "train/", "val/", "test/"  # a split's keys begin with its prefix
TRAIN_LOSS, TRAIN_ACC, TRAIN_PENALTY = "train/loss", "train/acc", "train/penalty"
VAL_LOSS, VAL_ACC = "val/loss", "val/acc"
TEST_LOSS, TEST_ACC = "test/loss", "test/acc"
LR, EPOCH_TIME, EPOCH = "lr", "epoch_time_s", "epoch"
HP = "hp/"  # hp/<key>: the value of a hyperparameter PBT perturbs, per epoch (what the epoch trained with)
# A sweep's parent run: best/<key> at the chosen trial's best epoch; robust/<key>/<mean|std> over the
# re-evaluation winner's fresh seeds, and the test accuracy of the best single run (the stage's rival)
BEST, ROBUST = "best/", "robust/"
ROBUST_SINGLE_WINNER_TEST_ACC = f"{ROBUST}single_winner_{TEST_ACC}"


def best_key(key: str) -> str:
    return f"{BEST}{key}"


def robust_key(key: str, stat: str) -> str:
    """``stat``: ``mean`` or ``std``."""
    return f"{ROBUST}{key}/{stat}"


def hp_metric(key: str) -> str:
    return f"{HP}{key}"


def is_epoch_metric(key: str) -> bool:
    """A value a training run reports once per epoch (what a learning curve is made of)."""
    return key.startswith((TRAIN, VAL, HP)) or key in (LR, EPOCH_TIME)


def epoch_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The per-epoch metrics of a result that carries other things too (a Tune result)."""
    return {k: float(v) for k, v in result.items() if is_epoch_metric(k)}


def best_epoch(
    history: Sequence[Mapping[str, float]], metric: str, mode: str | Mode
) -> Mapping[str, float] | None:
    """The epoch with the best finite value of ``metric``; on a tie the later epoch (as Tune keeps
    the later of two equally scored checkpoints): the first of equals, looking from the last back."""
    finite = [h for h in history if h.get(metric) is not None and math.isfinite(h[metric])]
    return Objective(metric, mode).best(reversed(finite), key=lambda h: h[metric])


def quality_key(keys: Iterable[str], split: str = "val") -> str:
    """The figure a curve or a summary shows beside the loss: accuracy for a classifier, else the
    first other metric of the split (``val/mae`` for regression, a user's metric)."""
    keys = list(keys)
    if f"{split}/acc" in keys:
        return f"{split}/acc"
    others = [k for k in keys if k.startswith(f"{split}/") and k != f"{split}/loss"]
    return f"{split}/mae" if f"{split}/mae" in others else (others[0] if others else f"{split}/loss")


def worst(mode: str | Mode) -> float:
    """The value of "no value" (:attr:`Objective.worst`): +inf when lower is better."""
    return Objective("", mode).worst


def overfitting(history: Sequence[Mapping[str, float]], smoothing: int = 3) -> dict[str, float]:
    """The course's diagnosis: where (smoothed) validation loss bottomed out, and the final gap."""
    losses = [h[VAL_LOSS] for h in history]
    smoothed = [
        sum(losses[max(0, i - smoothing + 1) : i + 1]) / len(losses[max(0, i - smoothing + 1) : i + 1])
        for i in range(len(losses))
    ]
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    last = history[-1]
    out = {
        "overfit/best_epoch": float(history[best][EPOCH]),
        "overfit/epochs_past_best": float(last[EPOCH] - history[best][EPOCH]),
        "overfit/gap_loss": last[VAL_LOSS] - last[TRAIN_LOSS],
    }
    if TRAIN_ACC in last and VAL_ACC in last:  # a classifier's; a regression has its loss gap only
        out["overfit/gap_acc"] = last[TRAIN_ACC] - last[VAL_ACC]
    return out
