"""The in-memory form every data source is turned into."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch.utils.data import Dataset

CLASSIFICATION, REGRESSION = "classification", "regression"
TASKS = (CLASSIFICATION, REGRESSION)


class DataError(ValueError):
    """A data set is missing, corrupt or mis-configured; the message says how to fix it (the input
    is wrong: ``sweeplab`` exits 2, as for a bad config)."""


@dataclass
class DataBundle:
    """Train / validation / test tensors and what a model needs to know about them.

    ``kind`` tells models how to read ``x``: ``"image"`` (N, C, H, W) float,
    ``"vector"`` (N, D) float (multi-hot, TF-IDF, any flat features) or
    ``"tokens"`` (N, L) int64 ids with 0 as padding.

    Data that does not fit in memory is *streamed*: each ``x_<split>`` is a map-style
    ``torch.utils.data.Dataset`` of ``(x, y)`` samples (reading files from a folder every node
    mounts, or an object store) and ``y_<split>`` is None; training reads it in batches through a
    ``DataLoader``, and each trial opens it itself (the driver never holds it).
    """

    x_train: Any  # a tensor, or a Dataset of (x, y) samples
    y_train: torch.Tensor | None
    x_val: Any
    y_val: torch.Tensor | None
    x_test: Any
    y_test: torch.Tensor | None
    num_classes: int
    kind: str
    class_names: list[str]
    fingerprint: str
    vocab: list[str] | None = None  # index i -> word, for token ids (0 = padding, 1 = out-of-vocabulary)
    num_embeddings: int | None = None  # size of the id space for "tokens" (vocab + hashed n-gram buckets)
    extra: dict = field(default_factory=dict)
    task: str = CLASSIFICATION  # or REGRESSION: y is float (N, outputs), num_classes 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"task={self.task!r} is not one of: {', '.join(TASKS)}")
        check_trainable(self)

    @classmethod
    def of(
        cls,
        train: tuple[Any, Any],
        val: tuple[Any, Any],
        test: tuple[Any, Any],
        *,
        task: str | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        kind: str | None = None,
        vocab: list[str] | None = None,
        num_embeddings: int | None = None,
        name: str = "data",
    ) -> DataBundle:
        """A bundle from ``(x, y)`` pairs of numpy arrays or tensors: what a data target of one's own
        returns. Integer labels are classification (``num_classes`` from them unless given), float
        targets regression; ``kind`` is ``tokens`` for integer ``x``, ``image`` for (N, C, H, W),
        else ``vector``. The fingerprint is a hash of the arrays."""
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (
            (torch.as_tensor(x), torch.as_tensor(y)) for x, y in (train, val, test)
        )
        if task is None:
            task = REGRESSION if y_tr.is_floating_point() else CLASSIFICATION
        if task == REGRESSION:
            y_tr, y_va, y_te = (y.float().reshape(len(y), -1) for y in (y_tr, y_va, y_te))
            num_classes = 0
        else:
            y_tr, y_va, y_te = (y.long() for y in (y_tr, y_va, y_te))
            if num_classes is None:
                num_classes = int(max(int(y.max()) for y in (y_tr, y_va, y_te) if len(y))) + 1
        if kind is None:
            kind = "tokens" if not x_tr.is_floating_point() else "image" if x_tr.ndim == 4 else "vector"
        if x_tr.is_floating_point():
            x_tr, x_va, x_te = (x.float() for x in (x_tr, x_va, x_te))
        tensors = (x_tr, y_tr, x_va, y_va, x_te, y_te)
        return cls(
            *tensors,
            num_classes=num_classes,
            kind=kind,
            class_names=class_names or [str(i) for i in range(num_classes)],
            fingerprint=fingerprint(*(t.contiguous().numpy().tobytes() for t in tensors)),
            vocab=vocab,
            num_embeddings=num_embeddings,
            extra={"name": name},
            task=task,
        )

    @classmethod
    def streamed(
        cls,
        train: Dataset,
        val: Dataset,
        test: Dataset,
        *,
        task: str = CLASSIFICATION,
        num_classes: int = 0,
        class_names: list[str] | None = None,
        kind: str | None = None,
        fingerprint: str | None = None,
        name: str = "data",
    ) -> DataBundle:
        """A bundle over three map-style Datasets of ``(x, y)`` samples, read batch by batch while
        training: for data that does not fit in memory. Classes cannot be counted without reading
        every sample, so a classifier's ``num_classes`` is given. The fingerprint is the given one
        (e.g. a hash of the files' listing), else the splits' sizes and first samples."""
        if task == CLASSIFICATION and num_classes < 2:
            raise DataError(f"{name}: a streamed classification data set needs num_classes (at least 2)")
        first = torch.as_tensor(train[0][0])
        if kind is None:
            kind = "tokens" if not first.is_floating_point() else "image" if first.ndim == 3 else "vector"
        if fingerprint is None:
            samples = [torch.as_tensor(d[0][0]).numpy().tobytes() for d in (train, val, test)]
            fingerprint = _fingerprint(
                type(train).__qualname__, *(str(len(d)) for d in (train, val, test)), *samples
            )
        return cls(
            train, None, val, None, test, None,
            num_classes=num_classes if task == CLASSIFICATION else 0,
            kind=kind,
            class_names=class_names or [str(i) for i in range(num_classes)],
            fingerprint=fingerprint,
            extra={"name": name},
            task=task,
        )  # fmt: skip

    @property
    def is_streamed(self) -> bool:
        return not isinstance(self.x_train, torch.Tensor)

    def inputs(self, split: str, n: int) -> torch.Tensor:
        """The first ``n`` inputs of a split as one batch (a model's check, a logged model's example)."""
        x = getattr(self, f"x_{split}")
        if not self.is_streamed:
            return x[:n]
        return torch.stack([torch.as_tensor(x[i][0]) for i in range(min(n, len(x)))])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs("train", 1).shape[1:])

    @property
    def num_outputs(self) -> int:
        """Output units a model needs: one per class (one sigmoid unit for two), one per target."""
        if self.task == REGRESSION:
            if self.is_streamed:
                return torch.as_tensor(self.x_train[0][1]).numel()
            return int(self.y_train.shape[1]) if self.y_train.ndim == 2 else 1
        return 1 if self.num_classes == 2 else self.num_classes

    def metadata(self) -> dict[str, Any]:
        """What a model's target may ask for by name (sweeplab.build.MODEL_INPUTS)."""
        return {
            "input_shape": self.input_shape,
            "num_outputs": self.num_outputs,
            "num_classes": self.num_classes,
            "kind": self.kind,
            "task": self.task,
            "vocab": self.vocab,
            "num_embeddings": self.num_embeddings,
        }

    def describe(self) -> str:
        target = (
            f"{self.num_outputs} regression target(s)"
            if self.task == REGRESSION
            else f"{self.num_classes} classes"
        )
        return (
            f"{len(self.x_train)} train / {len(self.x_val)} val / {len(self.x_test)} test, "
            f"input {self.input_shape} ({self.kind}), {target}"
        )


TENSORS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def to_arrays(b: DataBundle) -> dict[str, Any]:
    """The bundle with numpy arrays for tensors: Ray's object store hands numpy arrays to every
    process on a node without copying them (torch tensors it would copy into each)."""
    values = {f.name: getattr(b, f.name) for f in fields(b)}
    return {k: v.numpy() if k in TENSORS else v for k, v in values.items()}


def from_arrays(arrays: dict[str, Any]) -> DataBundle:
    """A bundle over :func:`to_arrays`' arrays, sharing their memory (read-only in the object
    store: training only reads its data)."""
    with warnings.catch_warnings():  # torch warns that the arrays are not writable; nothing writes them
        warnings.simplefilter("ignore", UserWarning)
        tensors = {k: torch.from_numpy(arrays[k]) for k in TENSORS}
    return DataBundle(**{**arrays, **tensors})


# Unused output units a label set may leave before it is taken for a mistake (1,000,000 among 3 classes).
MAX_UNUSED_CLASS_SHARE = 0.5


def check_trainable(b: DataBundle) -> None:
    """Refuse data no classifier can learn from, with one line naming the problem.

    Every loader builds a :class:`DataBundle`, so every source gets these checks: a split
    with no samples, NaN or infinite features, a training split of a single class, labels
    outside ``0..num_classes-1``, and labels so sparse that most of the output units would
    stand for classes without a single sample (the sign of ids used as labels).
    """
    where = b.extra.get("path") or b.extra.get("dir") or b.extra.get("name") or "data"
    for split in ("train", "val", "test"):
        if len(getattr(b, f"x_{split}")) == 0:
            raise DataError(f"{where}: the {split} split has no samples")
        if b.is_streamed:  # read batch by batch: its first sample stands for it here
            check_finite(b.inputs(split, 1), f"{where}: x_{split}[0]")
            continue
        check_finite(getattr(b, f"x_{split}"), f"{where}: x_{split}")
        if len(getattr(b, f"y_{split}")) != len(getattr(b, f"x_{split}")):
            raise DataError(
                f"{where}: the {split} split has {len(getattr(b, f'x_{split}'))} inputs but "
                f"{len(getattr(b, f'y_{split}'))} targets"
            )
        if b.task == REGRESSION:
            check_finite(getattr(b, f"y_{split}"), f"{where}: y_{split}")
    if b.task == CLASSIFICATION and not b.is_streamed:
        check_labels(where, b.num_classes, b.y_train, b.y_val, b.y_test)


def check_labels(where: str, num_classes: int, y_train: torch.Tensor, *others: torch.Tensor) -> None:
    """Labels a ``num_classes``-way classifier can learn; loaders call it before sizing anything by them."""
    low, high = (int(v) for v in torch.aminmax(y_train))
    if low == high:
        raise DataError(
            f"{where}: every training label is {low}: a classifier needs samples of at least two classes"
        )
    labels = torch.cat([y_train, *others])
    low, high = (int(v) for v in torch.aminmax(labels))
    if low < 0 or high >= num_classes:
        raise DataError(f"{where}: labels run from {low} to {high}, outside 0..{num_classes - 1}")
    if num_classes > 2 * len(labels):  # more classes than could have samples: no bincount of that size
        distinct = len(torch.unique(labels))
    else:
        distinct = int(torch.count_nonzero(torch.bincount(labels, minlength=num_classes)))
    if distinct < (1 - MAX_UNUSED_CLASS_SHARE) * num_classes:
        raise DataError(
            f"{where}: labels are class indices 0..K-1, but {distinct} distinct labels reach {high}, "
            f"which would build a {num_classes}-class model with {num_classes - distinct} classes "
            "that have no sample; number the classes 0..K-1 (numpy.unique(y, return_inverse=True))"
        )


def check_finite(x: torch.Tensor, what: str) -> None:
    """NaN or infinite features make every loss NaN: name them instead of blaming the learning rate."""
    if not x.is_floating_point() or bool(torch.isfinite(x.sum())):  # the sum: 20x faster than a mask
        return
    finite = torch.isfinite(x)
    if bool(finite.all()):  # the sum overflowed, every value is finite
        return
    bad = ~finite.reshape(len(x), -1).all(dim=1)
    n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
    raise DataError(
        f"{what} has {n_nan} NaN and {n_inf} infinite values in {int(bad.sum())} samples "
        f"(the first is sample {int(bad.nonzero()[0])}); drop or impute them before training"
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
    if n == 0:
        raise DataError("the data set has no samples to split")
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


_fingerprint = fingerprint  # for DataBundle.streamed, whose argument of that name shadows it


def scale_splits(
    mode: str, x_train: torch.Tensor, x_val: torch.Tensor, x_test: torch.Tensor, unit_max: float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply ``data.scale`` in place to float tensors, with statistics from the training split only.

    ``"unit"`` divides by ``unit_max`` (the format's maximum, e.g. 255), or when that
    is unknown by the training maximum if it exceeds 1. Without a format maximum it is
    for non-negative data (pixels, counts) only: data with negative values, such as data
    already standardized, is refused rather than silently divided by its maximum.
    ``"standardize"`` subtracts
    the mean and divides by the std per entry of dim 1 (per channel for images, per
    feature for vectors); constant entries are only centred. In place because a
    fresh 200 MB result costs more in page faults than the arithmetic itself.
    """
    splits = (x_train, x_val, x_test)
    if mode == "none":
        return splits
    if mode == "unit":
        if unit_max is None:
            low = float(x_train.min()) if len(x_train) else 0.0
            if low < 0:
                raise DataError(
                    f"data.scale=unit divides by the training maximum, for non-negative data such as pixels "
                    f"or counts, but x_train has negative values (minimum {low:.4g}), e.g. it is already "
                    "standardized: set data.scale=none to keep it as it is, or data.scale=standardize"
                )
            unit_max = max(float(x_train.max()), 1.0) if len(x_train) else 1.0
        return tuple(x.div_(unit_max) for x in splits)
    if mode == "standardize":
        dims = [d for d in range(x_train.ndim) if d != 1]
        mean = x_train.mean(dim=dims, keepdim=True)
        std = x_train.std(dim=dims, keepdim=True)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return tuple(x.sub_(mean).div_(std) for x in splits)
    raise DataError(f"data.scale={mode!r} is not one of: none, unit, standardize")
