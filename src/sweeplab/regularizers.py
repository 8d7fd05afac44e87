"""Weight penalties added to the training loss.

As Keras's ``kernel_regularizer``: only weight matrices and conv kernels are
penalised — not biases, not batch-norm scales, not embeddings (a penalty on
every embedding row would punish rare words for being rare).
"""

from __future__ import annotations

import torch
from torch import nn


def penalized_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


class WeightPenalty:
    """``l1 * sum(|w|) + l2 * sum(w**2)`` over the model's weights (Keras's l1_l2)."""

    def __init__(self, model: nn.Module, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = float(l1), float(l2)
        self.weights = penalized_weights(model) if (self.l1 or self.l2) else []

    def __bool__(self) -> bool:
        return bool(self.weights)

    def __call__(self) -> torch.Tensor:
        total = torch.zeros(())
        for w in self.weights:
            if self.l1:
                total = total + self.l1 * w.abs().sum()
            if self.l2:
                total = total + self.l2 * w.pow(2).sum()
        return total
