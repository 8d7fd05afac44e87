"""scikit-learn's 8x8 handwritten digits: ships with scikit-learn, so it always works offline."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from sklearn.datasets import load_digits

from sweeplab.data.bundle import DataBundle, fingerprint, scale_splits, split_train_val

TEST_FRACTION = 0.2


def load(
    *, root: str | None = None, val_size: float = 0.2, split_seed: int = 0, scale: str = "unit"
) -> DataBundle:
    """Digits as (N, 1, 8, 8) float32 images with pixel values 0..16.

    There is no official test set, so a seeded 20 % test split is held out first
    (seed ``split_seed``), then the validation split from the rest.
    """
    cfg = {"val_size": val_size, "split_seed": split_seed, "scale": scale}
    digits = load_digits()
    images, labels = digits.images.astype(np.float32), digits.target.astype(np.int64)
    x, y = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)
    x_rest, y_rest, x_test, y_test = split_train_val(x, y, TEST_FRACTION, cfg["split_seed"])
    x_train, y_train, x_val, y_val = split_train_val(x_rest, y_rest, cfg["val_size"], cfg["split_seed"])
    x_train, x_val, x_test = scale_splits(cfg["scale"], x_train, x_val, x_test, unit_max=16.0)
    content = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    return DataBundle(
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        num_classes=10,
        kind="image",
        class_names=[str(i) for i in range(10)],
        fingerprint=fingerprint(
            "digits",
            content,
            f"val_size={cfg['val_size']}",
            f"split_seed={cfg['split_seed']}",
            f"scale={cfg['scale']}",
        ),
    )
