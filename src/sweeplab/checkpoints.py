"""Checkpoint formats: the one place they are written and read.

- ``state.pt``: a trial's resumable training state (``Trainer.checkpoint()`` + the resolved
  config) and its best epoch so far by the sweep's metric (``sweep_best``: the epoch, its
  value, and its weights unless they are this checkpoint's own), one per Tune checkpoint.
  A retried or resumed trial continues from it; PBT copies it between trials; the best
  weights of a trial's last checkpoint become its ``best.pt``.
- ``best.pt``: a model's chosen weights with the config that builds it, the epoch and its
  metrics; logged to MLflow as ``checkpoints/best.pt`` of a run.

Both load onto the CPU unless told otherwise, so a checkpoint written on a GPU machine
opens anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
BEST_FILE = "best.pt"
SWEEP_BEST = "sweep_best"


def save(obj: Mapping[str, Any], path: str | Path) -> Path:
    torch.save(dict(obj), path)
    return Path(path)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=False)


def with_sweep_best(best: Mapping[str, Any], epoch: int) -> dict[str, Any]:
    """A trial's best epoch so far (``epoch``, ``value``, ``model``) as its checkpoint at ``epoch``
    holds it: the weights are stored only when they are not the checkpoint's own."""
    if not best:
        return {SWEEP_BEST: None}
    weights = None if best["epoch"] == epoch else best["model"]
    return {SWEEP_BEST: {"epoch": best["epoch"], "value": best["value"], "model": weights}}


def sweep_best(state: Mapping[str, Any]) -> dict[str, Any]:
    """The best epoch a trial's checkpoint holds, with its weights; {} when it holds none."""
    best = state.get(SWEEP_BEST)
    if not best:
        return {}
    return {**best, "model": best["model"] if best["model"] is not None else state["model"]}


def best_from_state(state: Mapping[str, Any], epoch_metrics: Mapping[str, float]) -> dict[str, Any]:
    """The best weights a trial's checkpoint holds, as the ``best.pt`` of its run."""
    return {
        "model_state": sweep_best(state).get("model", state["model"]),
        "config": state["config"],
        "epoch": int(epoch_metrics["epoch"]),
        "metrics": dict(epoch_metrics),
    }
