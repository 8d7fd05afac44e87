"""Sweeps: a search space becomes a Ray Tune Tuner; the driver records every trial in MLflow.

- :mod:`~sweeplab.sweep.driver`: start, resume and sync a sweep, and every way one ends;
- :mod:`~sweeplab.sweep.tuner`: the Tuner from a space and tune settings (schedulers, searchers);
- :mod:`~sweeplab.sweep.cluster`: Ray start-up and the checks that refuse an impossible sweep;
- :mod:`~sweeplab.sweep.storage`: local, shared or object-store storage of a sweep's state;
- :mod:`~sweeplab.sweep.state`: ``sweeplab.json`` and finding a sweep again;
- :mod:`~sweeplab.sweep.recorder`: the Tune callback that feeds the outbox;
- :mod:`~sweeplab.sweep.summary` and :mod:`~sweeplab.sweep.view`: the verdict and the terminal;
- :mod:`~sweeplab.sweep.browse`, :mod:`~sweeplab.sweep.prune`: ``sweeplab sweeps ...``, from the store.

The driver's names load on first use: importing Ray takes seconds, and commands that only
read sweeps (``sweeplab sweeps list``) never need it.
"""

import importlib

from sweeplab.sweep import cluster  # noqa: F401  (sets Ray's environment before anything imports Ray)

_FROM_DRIVER = ("SweepError", "SweepFinished", "SweepInterrupted", "SweepOutcome", "resume", "start", "sync")
_FROM_STATE = ("SweepState", "find_sweep")  # the state reads storage through pyarrow: loaded when used


def __getattr__(name: str):
    if name in _FROM_DRIVER:
        return getattr(importlib.import_module("sweeplab.sweep.driver"), name)
    if name in _FROM_STATE:
        return getattr(importlib.import_module("sweeplab.sweep.state"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
