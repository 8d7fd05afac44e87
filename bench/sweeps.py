"""A whole sweep as a benchmark runs it: as ``sweeplab sweep`` would, in a store of its own."""

from __future__ import annotations

import tempfile
import time

from sweeplab.config import compose, to_container
from sweeplab.sweep.results import SweepSummary


def run_sweep_timed(overrides: list[str], store: str | None = None) -> tuple[SweepSummary, float]:
    """A whole sweep, as `sweeplab sweep` runs it (Ray start-up and the summary included), in a
    store of its own: a temporary one, or the folder ``store``."""
    from sweeplab import sweep

    with tempfile.TemporaryDirectory() as tmp:
        where = store or tmp
        overrides = [
            *overrides,
            f"tracking.uri=sqlite:///{where}/bench.db",
            f"tracking.artifact_root={where}/art",
            f"tune.storage_path={where}/sweeps",
        ]
        cfg = to_container(compose(overrides))
        t0 = time.perf_counter()
        outcome = sweep.start(cfg, overrides)
        return outcome.summary, time.perf_counter() - t0
