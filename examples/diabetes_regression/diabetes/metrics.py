"""A metric of one's own: conf/metrics/r2.yaml names it, and it is logged as val/r2 every epoch."""

from __future__ import annotations

import torch


def r2(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The coefficient of determination: 1 is perfect, 0 is no better than predicting the mean.

    sweeplab calls it with the model's outputs and the targets of the whole validation split,
    both (N, 1) here.
    """
    residual = torch.sum((targets - outputs) ** 2)
    total = torch.sum((targets - targets.mean(dim=0)) ** 2)
    return float(1 - residual / total) if total > 0 else float("nan")
