"""What a run or a sweep is judged by: a metric and which way is better. The one home of every
min/max decision (the best epoch, a ranking of trials, the registry's alias, early stopping).

The tie rule, the same everywhere: **a tie is not better -- what was there first stays.** The
held best keeps its place against an equal newcomer, the earlier of two equal items ranks first
(a stable sort), the alias ``best`` stays with its holder. :meth:`Objective.better` is strict;
:meth:`Objective.best` and :meth:`Objective.ranked` keep the first of equals.

A caller that wants the later of equals says so where it asks: a trial's best epoch is the later
one, as Tune keeps the later of two equally scored checkpoints
(:func:`sweeplab.metrics.best_epoch` looks from the last epoch back;
:meth:`Objective.at_least_as_good` takes a newcomer that ties).

A value that is not a number (``None``, NaN) is no value: never better, never as good, and last in a
ranking. :attr:`Objective.worst` is the value of "no value yet" that every number beats
(+inf when lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


class Mode(str, Enum):
    """Which way is better (``tune.mode``); the values are the config's spelling."""

    min = "min"
    max = "max"

    @property
    def higher_is_better(self) -> bool:
        return self is Mode.max


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


@dataclass(frozen=True)
class Objective:
    """A metric and a mode. ``mode`` may be given as text (``"min"``): it is stored as a :class:`Mode`."""

    metric: str
    mode: Mode

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))

    @classmethod
    def of(cls, tune_cfg: Mapping[str, Any]) -> Objective:
        """A sweep's objective: ``tune.metric`` and ``tune.mode``."""
        return cls(tune_cfg["metric"], tune_cfg["mode"])

    @property
    def higher_is_better(self) -> bool:
        return self.mode.higher_is_better

    @property
    def worst(self) -> float:
        """The value of "no value": what a trial without one reports, and what any number beats."""
        return -math.inf if self.higher_is_better else math.inf

    def better(self, a: float | None, b: float | None) -> bool:
        """``a`` is strictly better than ``b`` (a tie is not; nothing is better than no value, nor
        is no value better than anything)."""
        if _missing(a) or _missing(b):
            return False
        return a > b if self.higher_is_better else a < b

    def at_least_as_good(self, a: float | None, b: float | None) -> bool:
        """``a`` is better than ``b`` or equal to it: what takes the held place when the later of
        equals should win (a trial's best epoch)."""
        return not (_missing(a) or _missing(b)) and (a == b or self.better(a, b))

    def is_improvement(self, new: float, old: float, min_delta: float = 0.0) -> bool:
        """``new`` beats ``old`` by more than ``min_delta`` (early stopping's patience)."""
        return self.better(new, old + min_delta if self.higher_is_better else old - min_delta)

    def best(
        self, items: Iterable[T], key: Callable[[T], float | None] | None = None, default: Any = None
    ) -> T | Any:
        """The best item (by ``key``, else the item itself), the first of equals; ``default`` when no
        item has a value."""
        held, held_value = default, None
        for item in items:
            value = key(item) if key is not None else item
            if _missing(value):
                continue
            if held_value is None or self.better(value, held_value):
                held, held_value = item, value
        return held

    def sort_key(self, value: float | None) -> tuple[int, float]:
        """Sorts best first, values that are not numbers last."""
        if _missing(value):
            return (1, 0.0)
        return (0, -value if self.higher_is_better else value)

    def ranked(self, items: Iterable[T], key: Callable[[T], float | None] | None = None) -> list[T]:
        """``items`` best first (by ``key``, else the items themselves); equals keep their order,
        those without a value come last."""
        return sorted(items, key=lambda item: self.sort_key(key(item) if key is not None else item))

    def __str__(self) -> str:
        return f"{self.metric} ({self.mode.value})"
