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
    """The data set of the resolved ``data`` config: its ``_target_`` built (sweeplab.build)."""
    from sweeplab.build import build_data

    return build_data(cfg)
