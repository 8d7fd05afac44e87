"""An MLP regressor: the hidden widths are a list, so a search space can vary depth and width."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn


class Regressor(nn.Sequential):
    """[Linear(w) -> ReLU -> Dropout] for w in ``hidden`` -> Linear(num_outputs).

    ``num_outputs`` is the number of regression targets (1 here), from the data; ``dropout`` is
    the regularizer's (``regularizer=dropout``), 0 otherwise.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.0,
    ):
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        # No activation on the output: a regression value may be any real number.
        layers.append(nn.Linear(width, num_outputs))
        super().__init__(*layers)
