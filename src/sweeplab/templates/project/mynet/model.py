"""The network. sweeplab calls it with the keys of conf/model/mynet.yaml plus, by name, what it
asks for that the data and the other options know (input_shape, num_outputs, dropout...)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn


class MyNet(nn.Module):
    """Flatten -> ``layers`` x [Linear(units) -> ReLU -> Dropout] -> Linear(num_outputs).

    ``input_shape`` and ``num_outputs`` come from the data, so the same code fits any data set;
    ``units`` and ``layers`` come from the config, so a search space can vary them; ``dropout``
    comes from the chosen regularizer (``regularizer=dropout``), 0 by default.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        units: int = 64,
        layers: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        width = math.prod(input_shape)  # one sample's size: (64,) for flat features, (1, 8, 8) for images
        blocks: list[nn.Module] = [nn.Flatten()]
        for _ in range(layers):
            blocks += [nn.Linear(width, units), nn.ReLU()]
            if dropout > 0:
                blocks.append(nn.Dropout(dropout))
            width = units
        # Logits, no softmax: sweeplab's loss applies it (more stable), and so does the logged model.
        blocks.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*blocks)

    def forward(self, x):
        return self.net(x)
