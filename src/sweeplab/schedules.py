"""Learning-rate schedules that torch has no class for in the shape a config wants.

``conf/lr_schedule/*.yaml`` names torch's schedulers directly where their arguments fit
(``StepLR``, ``ExponentialLR``, ``ReduceLROnPlateau``); these two need sweeplab's help: a
constant rate is no schedule at all, and cosine decay runs over the trainer's epochs.
"""

from __future__ import annotations

import torch


def constant(optimizer: torch.optim.Optimizer) -> None:
    """The rate the optimizer was given, every epoch."""
    return None


def cosine(optimizer: torch.optim.Optimizer, epochs: int, min_lr: float = 0.0):
    """Cosine decay from the optimizer's rate to ``min_lr``, reached at ``trainer.epochs``."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=min_lr)
