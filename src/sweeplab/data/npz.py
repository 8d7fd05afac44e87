"""Bring your own arrays: an ``.npz`` file with ``x_train``, ``y_train`` and optionally
``x_test``, ``y_test`` (held out from the training arrays when absent) and ``class_names``.

``x`` of shape (N, D) is a feature vector or a one-channel signal of D samples (``model=mlp``
reads it as features, ``model=cnn`` as a signal), (N, H, W) a one-channel image and
(N, C, H, W) an image; ``y`` holds integer class labels 0..K-1.

``data.scale``: ``unit`` (the default) divides every split by the training maximum when it
exceeds 1 — for non-negative data such as pixels or counts; data with negative values is
refused with a hint instead of being silently rescaled. ``standardize`` centres and scales
each feature (each channel of an image) with training statistics; ``none`` keeps the values.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from sweeplab.data.bundle import (
    DataBundle,
    DataError,
    check_finite,
    check_labels,
    fingerprint,
    scale_splits,
    split_train_val,
)
from sweeplab.data.download import sha256_of


def load(
    *,
    path: str | None = None,
    root: str | None = None,
    val_size: float = 0.1,
    test_size: float = 0.2,
    split_seed: int = 0,
    scale: str = "unit",
) -> DataBundle:
    cfg = {
        "path": path,
        "val_size": val_size,
        "test_size": test_size,
        "split_seed": split_seed,
        "scale": scale,
    }
    if cfg["path"] is None:
        raise DataError(
            "data.name=npz needs a file: set data.path=/path/to/file.npz holding the arrays "
            "x_train, y_train (and optionally x_test, y_test, class_names)"
        )
    path = Path(cfg["path"]).expanduser()
    arrays = _read(path)
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DataError(f"{path} has no array {key!r} (it has: {', '.join(sorted(arrays)) or 'none'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, lack = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{path} has {have!r} but no {lack!r}; store both or neither")

    x_train, y_train = _pair(arrays, "train", path)
    if "x_test" in arrays:
        x_test, y_test = _pair(arrays, "test", path)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{path}: x_test samples have shape {tuple(x_test.shape[1:])}, "
                f"x_train samples {tuple(x_train.shape[1:])}"
            )
    else:
        x_train, y_train, x_test, y_test = split_train_val(
            x_train, y_train, cfg["test_size"], cfg["split_seed"], option="data.test_size"
        )
    x_train, y_train, x_val, y_val = split_train_val(x_train, y_train, cfg["val_size"], cfg["split_seed"])
    x_train, x_val, x_test = scale_splits(cfg["scale"], x_train, x_val, x_test)

    class_names = [str(c) for c in arrays["class_names"].ravel()] if "class_names" in arrays else []
    max_label = max(int(y.max()) for y in (y_train, y_val, y_test) if len(y))
    if class_names and len(class_names) <= max_label:
        raise DataError(f"{path}: class_names has {len(class_names)} entries but labels go up to {max_label}")
    num_classes = max(max_label + 1, len(class_names))
    check_labels(str(path), num_classes, y_train, y_val, y_test)  # before naming a million classes
    return DataBundle(
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        num_classes=num_classes,
        kind="vector" if x_train.ndim == 2 else "image",
        class_names=class_names or [str(i) for i in range(num_classes)],
        fingerprint=fingerprint(
            "npz",
            sha256_of(path),
            f"val_size={cfg['val_size']}",
            f"test_size={cfg['test_size']}",
            f"split_seed={cfg['split_seed']}",
            f"scale={cfg['scale']}",
        ),
        extra={"path": str(path)},
    )


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{path} holds a single array; save x_train, y_train, ... with numpy.savez")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except FileNotFoundError:
        raise DataError(f"data.path={path} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile) as err:  # ValueError: pickled objects, not an .npz
        raise DataError(f"{path} is not a readable .npz file: {err}") from None


def _pair(arrays: dict[str, np.ndarray], split: str, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim not in (2, 3, 4) or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(
            f"{path}: x_{split} is {x.dtype} of shape {x.shape}; expected numbers shaped "
            "(N, features), (N, H, W) or (N, C, H, W)"
        )
    if len(x) == 0:
        raise DataError(f"{path}: x_{split} has no samples (shape {x.shape})")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"{path}: y_{split} has shape {y.shape} but x_{split} has {len(x)} samples; "
            "expected one label per sample"
        )
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DataError(
            f"{path}: y_{split} must hold integer class labels >= 0, "
            f"found {y.dtype} values from {y.min()} to {y.max()}"
        )
    x = torch.from_numpy(x.astype(np.float32))  # astype copies, so scaling in place is safe
    check_finite(x, f"{path}: x_{split}")  # before scaling spreads one NaN over every value
    return (x.unsqueeze(1) if x.ndim == 3 else x), torch.from_numpy(y.astype(np.int64))
