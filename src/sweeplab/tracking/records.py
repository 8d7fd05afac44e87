"""What the tracking store holds, read back as typed records: the read model of runs.

Every reader of the store (``sweeplab sweeps``, a sweep's summary, the benchmarks) gets these,
whatever backend read them (:mod:`sweeplab.tracking.reader`), instead of picking MLflow's own
``Run`` objects apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sweeplab.metrics import EPOCH, is_epoch_metric
from sweeplab.tracking.tags import PARENT_RUN_ID_TAG

PARENT_TAG = PARENT_RUN_ID_TAG  # MLflow's own: a child run names its parent


class Point(NamedTuple):
    """One logged value of a metric: its step (a trial's epoch), value and when it was logged."""

    step: int
    value: float
    timestamp_ms: int


Points = list[Point]  # one metric's history, in step order (then logging order)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    name: str
    experiment_id: str
    experiment: str  # the experiment's name
    status: str  # MLflow's: RUNNING, FINISHED, FAILED, KILLED, SCHEDULED
    start_ms: int
    end_ms: int | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # each metric's latest value
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def parent_id(self) -> str | None:
        return self.tags.get(PARENT_TAG)

    @property
    def sampled(self) -> dict[str, Any]:
        return sampled_values(self.params)


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    aliases: tuple[str, ...]


def sampled_values(params: Mapping[str, str]) -> dict[str, Any]:
    """A trial's sampled hyperparameters (params ``sampled.<key>``), numbers as numbers."""
    out: dict[str, Any] = {}
    for key, text in params.items():
        if key.startswith("sampled."):
            try:
                value: Any = float(text)
                value = int(value) if value.is_integer() and "." not in text and "e" not in text else value
            except ValueError:
                value = text
            out[key.removeprefix("sampled.")] = value
    return out


def epoch_rows(metrics: Mapping[str, Points]) -> list[dict[str, float]]:
    """A run's epochs as rows: one per step from 1 on, each epoch metric's value there and
    ``epoch``; where a step was logged twice (a replayed epoch) the later value stands."""
    by_step: dict[int, dict[str, float]] = {}
    for key, points in metrics.items():
        if is_epoch_metric(key):
            for point in points:
                if point.step > 0:
                    by_step.setdefault(point.step, {EPOCH: point.step})[key] = point.value
    return [by_step[step] for step in sorted(by_step)]
