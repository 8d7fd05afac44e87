"""The in-memory form every data source is turned into."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


class DataError(RuntimeError):
    """A data set is missing, corrupt or mis-configured; the message says how to fix it."""


@dataclass
class DataBundle:
    """Train / validation / test tensors and what a model needs to know about them.

    ``kind`` tells models how to read ``x``: ``"image"`` (N, C, H, W) float,
    ``"vector"`` (N, D) float (multi-hot, TF-IDF, any flat features) or
    ``"tokens"`` (N, L) int64 ids with 0 as padding.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    kind: str
    class_names: list[str]
    fingerprint: str
    vocab: list[str] | None = None  # index i -> word, for token ids (0 = padding, 1 = out-of-vocabulary)
    num_embeddings: int | None = None  # size of the id space for "tokens" (vocab + hashed n-gram buckets)
    extra: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        return (
            f"{len(self.x_train)} train / {len(self.x_val)} val / {len(self.x_test)} test, "
            f"input {self.input_shape} ({self.kind}), {self.num_classes} classes"
        )


def split_train_val(
    x: torch.Tensor, y: torch.Tensor, val_size: float | int, seed: int, *, option: str = "data.val_size"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hold out a fixed, seeded validation split from the training data.

    ``val_size`` is a fraction in (0, 1) or a number of samples. Loaders that also
    carve a test set out of the training data reuse this with ``option`` naming
    their setting (e.g. ``"data.test_size"``) so the error points at it.
    """
    n = len(x)
    n_val = int(round(val_size * n)) if 0 < val_size < 1 else int(val_size)
    if not 0 < n_val < n:
        raise DataError(
            f"{option}={val_size} leaves {n - n_val} training and {n_val} validation samples "
            f"out of {n}; use a fraction in (0, 1) or a count between 1 and {n - 1}"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def fingerprint(*parts: bytes | str) -> str:
    """A short content hash identifying the exact data a run saw."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def scale_splits(
    mode: str, x_train: torch.Tensor, x_val: torch.Tensor, x_test: torch.Tensor, unit_max: float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply ``data.scale`` in place to float tensors, with statistics from the training split only.

    ``"unit"`` divides by ``unit_max`` (the format's maximum, e.g. 255), or when that
    is unknown by the training maximum if it exceeds 1. ``"standardize"`` subtracts
    the mean and divides by the std per entry of dim 1 (per channel for images, per
    feature for vectors); constant entries are only centred. In place because a
    fresh 200 MB result costs more in page faults than the arithmetic itself.
    """
    splits = (x_train, x_val, x_test)
    if mode == "none":
        return splits
    if mode == "unit":
        if unit_max is None:
            unit_max = max(float(x_train.max()), 1.0) if len(x_train) else 1.0
        return tuple(x.div_(unit_max) for x in splits)
    if mode == "standardize":
        dims = [d for d in range(x_train.ndim) if d != 1]
        mean = x_train.mean(dim=dims, keepdim=True)
        std = x_train.std(dim=dims, keepdim=True)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return tuple(x.sub_(mean).div_(std) for x in splits)
    raise DataError(f"data.scale={mode!r} is not one of: none, unit, standardize")
