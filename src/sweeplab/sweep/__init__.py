"""Sweeps: a search space becomes a Ray Tune Tuner; the driver records it in MLflow."""

from sweeplab.sweep.driver import (  # noqa: F401
    SweepInterrupted,
    SweepOutcome,
    SweepState,
    find_sweep,
    resume,
    start,
)
