"""``make bench``: sweeplab's costs measured side by side (``python -m bench``).

The benchmarks live in the repository, not in the installed package: they time sweeplab from a
checkout, keep their scratch files in its ``.bench/`` and save results in its
``benchmarks/results/``. Run them from the repository root (``make bench`` does).
"""

from pathlib import Path

from sweeplab.metrics import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS

# The repository this package sits in (bench/ is at its top level).
ROOT = Path(__file__).resolve().parent.parent

# What a trial reports per epoch, for the benchmarks that time tracking alone.
EPOCH_METRICS = {
    TRAIN_LOSS: 0.5,
    TRAIN_ACC: 0.8,
    VAL_LOSS: 0.4,
    VAL_ACC: 0.85,
    "lr": 1e-3,
    "epoch_time_s": 1.0,
}
