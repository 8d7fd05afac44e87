"""The course's networks: nn.Module classes that ``conf/model/*.yaml`` name with ``_target_``.

They are built as a user's own model is (:func:`sweeplab.build.build_model`): the config's keys as
arguments, plus what the data tells (``input_shape``, ``num_outputs``, ``kind``...) and the
regularizer's ``dropout`` and ``batch_norm``. Models output logits. A two-class problem gets a
single output unit (the course's sigmoid + binary cross-entropy); more classes one unit per class
(softmax + cross-entropy). The activation on the output lives in the loss for numerical stability,
and in :class:`WithProbabilities` for the logged, deployable model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}


def output_units(num_classes: int, num_outputs: int | None = None) -> int:
    """One unit per class, one sigmoid unit for two; ``num_outputs`` (the data's) when given."""
    if num_outputs is not None:
        return num_outputs
    return 1 if num_classes == 2 else num_classes


def refuse_tokens(model: str, kind: str) -> None:
    if kind == "tokens":
        raise ValueError(
            f"model={model} cannot read token ids; use model=embedding_bag or data.vectorize=multi_hot"
        )


def initialize(model: nn.Module, init: str) -> None:
    """``glorot_uniform`` (Keras's default: the course's networks) or ``torch_default``."""
    if init == "glorot_uniform":
        glorot_init(model)
    elif init != "torch_default":
        raise ValueError(f"model.init={init!r} is not one of: glorot_uniform, torch_default")


def dense_block(n_in: int, n_out: int, activation: str, dropout: float, batch_norm: bool) -> list[nn.Module]:
    """Dense -> (BatchNorm) -> activation -> (Dropout): one hidden layer."""
    layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(n_out))
    layers.append(ACTIVATIONS[activation]())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


class MLP(nn.Sequential):
    """Flatten, then dense layers of the given widths, then the output layer."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int = 0,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        init: str = "torch_default",
        kind: str = "vector",
        num_outputs: int | None = None,
    ):
        refuse_tokens("mlp", kind)
        n_in = 1
        for d in input_shape:
            n_in *= d
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += dense_block(n_in, width, activation, dropout, batch_norm)
            n_in = width
        layers.append(nn.Linear(n_in, output_units(num_classes, num_outputs)))
        super().__init__(*layers)
        initialize(self, init)


class CNN(nn.Module):
    """A small conv net: [Conv -> (BatchNorm) -> activation -> MaxPool] blocks, then a dense head.

    Images ``(channels, height, width)`` get 2-D convolutions. Signals get 1-D ones:
    ``(length,)`` (an npz's ``(N, 40)`` array of 40-sample sequences is one channel) or
    ``(channels, length)``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int = 0,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        init: str = "torch_default",
        kind: str = "image",
        num_outputs: int | None = None,
    ):
        super().__init__()
        refuse_tokens("cnn", kind)
        shape = tuple(input_shape)
        self.one_channel = len(shape) == 1  # (N, length) batches get their channel in forward
        if self.one_channel:
            shape = (1, *shape)
        if len(shape) not in (2, 3):
            raise ValueError(
                "model=cnn needs images (channels, height, width) or signals (length) / (channels, length); "
                f"this data set gives {tuple(input_shape)} — use model=mlp"
            )
        conv, norm, pool = (
            (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
            if len(shape) == 2
            else (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
        )
        c_in, *size = shape
        blocks: list[nn.Module] = []
        for c_out in channels:
            blocks.append(conv(c_in, c_out, kernel_size, padding="same"))  # "same": even kernels too
            if batch_norm:
                blocks.append(norm(c_out))
            blocks.append(ACTIVATIONS[activation]())
            if min(size) >= 2:  # tiny inputs (8x8 digits) run out of room to pool
                blocks.append(pool(2))
                size = [s // 2 for s in size]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = MLP(
            (c_in, *size), num_classes, hidden, activation, dropout, batch_norm, num_outputs=num_outputs
        )
        initialize(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.one_channel:
            x = x.unsqueeze(1)
        return self.head(self.features(x))


class EmbeddingBagClassifier(nn.Module):
    """Average of token embeddings (padding id 0 ignored), then an optional dense head.

    With hashed character n-gram ids in the input this is fastText's classifier: a
    word never seen in training still gets a vector from its n-grams.
    """

    def __init__(
        self,
        num_embeddings: int,
        num_classes: int = 0,
        embedding_dim: int = 64,
        hidden: Sequence[int] = (),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        pretrained: torch.Tensor | str | None = None,
        freeze_pretrained: bool = False,
        init: str = "torch_default",
        kind: str = "tokens",
        num_outputs: int | None = None,
        vocab: Sequence[str] | None = None,
    ):
        super().__init__()
        if kind != "tokens":
            raise ValueError(
                f"model=embedding_bag needs token ids but data={kind}; set data.vectorize=sequence"
            )
        if isinstance(pretrained, str):  # a GloVe / word2vec text file: rows for the data's vocabulary
            pretrained, _ = load_word_vectors(pretrained, vocab or [], embedding_dim)
        self.embedding = nn.EmbeddingBag(num_embeddings, embedding_dim, mode="mean", padding_idx=0)
        if pretrained is not None:
            with torch.no_grad():
                self.embedding.weight[: len(pretrained)] = pretrained
            self.embedding.weight.requires_grad_(not freeze_pretrained)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = MLP(
            (embedding_dim,), num_classes, hidden, activation, dropout, batch_norm, num_outputs=num_outputs
        )
        initialize(self, init)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embedding(tokens)))


def deployable(model: nn.Module, data: Any) -> nn.Module:
    """What a run logs and registers: class probabilities for a classifier, the outputs themselves
    for a regression model."""
    return WithProbabilities(model, data.num_classes) if data.task == "classification" else model


class WithProbabilities(nn.Module):
    """The deployable form of a trained classifier: outputs class probabilities, not logits."""

    def __init__(self, model: nn.Module, num_classes: int):
        super().__init__()
        self.model = model
        self.binary = num_classes == 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if self.binary:  # P(negative), P(positive): the same columns as the multi-class case
            p = torch.sigmoid(logits)
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(logits, dim=1)


def glorot_init(model: nn.Module) -> None:
    """Keras's defaults: Glorot-uniform weights, zero biases (the course's networks)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def load_word_vectors(path: str | Path, vocab: Sequence[str], dim: int) -> tuple[torch.Tensor, int]:
    """Rows for ``vocab`` from a GloVe or word2vec *text* file; returns (matrix, words found).

    Words missing from the file keep a small random vector; index 0 (padding) is zero.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"model.pretrained={path} does not exist; give the path of a GloVe/word2vec .txt"
        )
    index = {w: i for i, w in enumerate(vocab)}
    matrix = torch.randn(len(vocab), dim) * 0.1
    matrix[0] = 0
    found = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh):
            parts = line.rstrip().split(" ")
            if lineno == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header: "<count> <dim>"
            i = index.get(parts[0])
            if i is None or i == 0:
                continue
            if len(parts) - 1 != dim:
                raise ValueError(
                    f"{path} has {len(parts) - 1}-dimensional vectors but model.embedding_dim={dim}; "
                    f"set model.embedding_dim={len(parts) - 1}"
                )
            matrix[i] = torch.tensor([float(v) for v in parts[1:]])
            found += 1
    return matrix, found
