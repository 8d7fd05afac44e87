"""Data sources: each module turns one kind of source into in-memory tensors.

Every loader returns a :class:`DataBundle`: train / validation / test tensors plus
the metadata a model needs to size itself (input shape, number of classes,
vocabulary). The validation split is held out from the training files with a
fixed seed; the test set is only touched for the final evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweeplab.data.bundle import DataBundle, DataError, split_train_val

__all__ = ["DataBundle", "DataError", "load_data", "split_train_val"]


def load_data(cfg: Mapping[str, Any]) -> DataBundle:
    """Load the data set named by ``cfg["name"]`` (the resolved ``data`` config group)."""
    name = cfg["name"]
    if name == "fashion_mnist":
        from sweeplab.data.fashion_mnist import load
    elif name == "imdb":
        from sweeplab.data.imdb import load
    elif name == "digits":
        from sweeplab.data.digits import load
    elif name == "npz":
        from sweeplab.data.npz import load
    else:  # the config schema rejects unknown names first; this guards direct callers
        raise DataError(f"unknown data set {name!r}; choose one of: digits, fashion_mnist, imdb, npz")
    return load(cfg)
