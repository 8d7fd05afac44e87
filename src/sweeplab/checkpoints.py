"""Checkpoint formats: the one place they are written and read.

- ``state.pt``: a trial's resumable training state (``Trainer.checkpoint()`` + the resolved
  config), one per Tune checkpoint. A retried or resumed trial continues from it; PBT
  copies it between trials; the best one of a trial becomes its ``best.pt``.
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


def save(obj: Mapping[str, Any], path: str | Path) -> Path:
    torch.save(dict(obj), path)
    return Path(path)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=False)


def best_from_state(state: Mapping[str, Any], epoch_metrics: Mapping[str, float]) -> dict[str, Any]:
    """A trial's checkpoint of its best epoch, as the ``best.pt`` of its run."""
    return {
        "model_state": state["model"],
        "config": state["config"],
        "epoch": int(epoch_metrics["epoch"]),
        "metrics": dict(epoch_metrics),
    }
