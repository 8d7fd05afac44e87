"""The data factory: conf/data/mydata.yaml names ``load`` and passes its keys as arguments.

It uses scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), so the project runs
offline. Replace the loading lines with your own data; keep the split, scaling and return.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sweeplab.data import DataBundle


def load(val_fraction: float = 0.2, seed: int = 0) -> DataBundle:
    x, y = load_digits(return_X_y=True)  # x: (1797, 64) pixel values 0..16, y: labels 0..9
    # A fixed test split first (seeded: every trial of a sweep must see the same split, or their
    # scores would not compare), then validation out of the rest; stratified keeps class balance.
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction, random_state=seed, stratify=y_rest
    )
    # Statistics from the training split only, so validation and test say nothing to the model.
    scaler = StandardScaler().fit(x_train)
    x_train, x_val, x_test = (scaler.transform(a).astype(np.float32) for a in (x_train, x_val, x_test))
    # Integer labels make it classification (float targets would make it regression).
    return DataBundle.of(
        train=(x_train, y_train.astype(np.int64)),
        val=(x_val, y_val.astype(np.int64)),
        test=(x_test, y_test.astype(np.int64)),
        class_names=[str(d) for d in range(10)],
        name="mydata",
    )
