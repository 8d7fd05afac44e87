"""442 patients, 10 measurements each, and a number that says how far their diabetes progressed
a year later. Bundled with scikit-learn, so the example runs offline."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

from sweeplab.data import DataBundle


def load(val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0) -> DataBundle:
    # scaled=False: the raw measurements, scaled below with the training split's statistics only
    # (scikit-learn's pre-scaled copy used all 442 rows, test rows included).
    x, y = load_diabetes(return_X_y=True, scaled=False)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction, random_state=seed
    )
    x_mean, x_std = x_train.mean(axis=0), x_train.std(axis=0)
    # The target, 25..346, centred and scaled to unit variance: one learning-rate range then suits
    # it, and val/mse reads as the share of the variance left unexplained (about 1 - R^2).
    y_mean, y_std = y_train.mean(), y_train.std()

    def split(xs, ys):
        # float targets make it regression: MSE loss, val/mse and val/mae reported
        return ((xs - x_mean) / x_std).astype(np.float32), ((ys - y_mean) / y_std).astype(np.float32)

    return DataBundle.of(
        train=split(x_train, y_train),
        val=split(x_val, y_val),
        test=split(x_test, y_test),
        name="diabetes",
    )
