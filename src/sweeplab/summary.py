"""A Keras-style model summary (layer, output shape, param #, totals), by torchinfo."""

from __future__ import annotations

import torch
from torch import nn
from torchinfo import summary


def model_summary(model: nn.Module, input_shape: tuple[int, ...], kind: str) -> str:
    """The summary table as text. ``kind`` is the DataBundle's: token models take int64 ids."""
    dtype = torch.long if kind == "tokens" else torch.float32
    # torchinfo moves the model to the device it is given and leaves it there: give it the model's
    # own, so a model the Trainer already put on a GPU is not moved to the CPU under its feet.
    device = next(model.parameters(), torch.empty(0)).device
    stats = summary(
        model,
        input_size=(1, *input_shape),
        dtypes=[dtype],
        col_names=("output_size", "num_params"),
        row_settings=("var_names",),
        depth=4,
        device=device,
        verbose=0,
    )
    return str(stats)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
