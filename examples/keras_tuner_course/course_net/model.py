"""The network of the course's ``build_model(hp)``, without the ``hp``: what Keras Tuner samples
(``units``) is an ordinary argument, and conf/search/keras_tuner_space.yaml says its range.

    keras.Sequential([Flatten(), Dense(units, activation="relu"), Dense(10, activation="softmax")])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn


class CourseNet(nn.Sequential):
    def __init__(self, input_shape: Sequence[int], num_outputs: int, units: int = 32):
        # input_shape (1, 28, 28) and num_outputs 10 come from the data: Keras needs the 10 spelled
        # out; here the same class fits any image or vector data set.
        super().__init__(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), units),
            nn.ReLU(),
            # Logits: the softmax is inside the cross-entropy loss (Keras's "softmax" +
            # "sparse_categorical_crossentropy" in one, numerically stabler step).
            nn.Linear(units, num_outputs),
        )
        # Keras initializes Dense kernels with Glorot-uniform and biases with zeros; do the same so
        # the runs compare with the course's.
        for layer in self:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
