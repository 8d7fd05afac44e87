"""``make bench``: sweeplab's costs measured side by side (``python -m sweeplab.bench``)."""

from sweeplab.metrics import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS

# What a trial reports per epoch, for the benchmarks that time tracking alone.
EPOCH_METRICS = {
    TRAIN_LOSS: 0.5,
    TRAIN_ACC: 0.8,
    VAL_LOSS: 0.4,
    VAL_ACC: 0.85,
    "lr": 1e-3,
    "epoch_time_s": 1.0,
}
