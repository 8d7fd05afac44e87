"""``make bench``: sweeplab's costs measured side by side (``python -m sweeplab.bench``)."""

# What a trial reports per epoch, for the benchmarks that time tracking alone.
EPOCH_METRICS = {
    "train/loss": 0.5,
    "train/acc": 0.8,
    "val/loss": 0.4,
    "val/acc": 0.85,
    "lr": 1e-3,
    "epoch_time_s": 1.0,
}
