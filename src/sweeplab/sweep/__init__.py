"""Sweeps: a search space becomes a Ray Tune Tuner; the driver records every trial in MLflow.

- :mod:`~sweeplab.sweep.driver`: start, resume and sync a sweep, and every way one ends;
- :mod:`~sweeplab.sweep.tuner`: the Tuner from a space and tune settings (schedulers, searchers);
- :mod:`~sweeplab.sweep.cluster`: Ray start-up and the checks that refuse an impossible sweep;
- :mod:`~sweeplab.sweep.storage`: local, shared or object-store storage of a sweep's state;
- :mod:`~sweeplab.sweep.state`: ``sweeplab.json`` and finding a sweep again;
- :mod:`~sweeplab.sweep.recorder`: the Tune callback that feeds the outbox;
- :mod:`~sweeplab.sweep.summary` and :mod:`~sweeplab.sweep.view`: the verdict and the terminal.
"""

from sweeplab.sweep.driver import (  # noqa: F401
    SweepError,
    SweepFinished,
    SweepInterrupted,
    SweepOutcome,
    resume,
    start,
    sync,
)
from sweeplab.sweep.state import SweepState, find_sweep  # noqa: F401
