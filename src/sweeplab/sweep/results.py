"""A sweep's verdict as typed, frozen values, and the choosing as pure functions.

:class:`TrialSummary` is one trial as the summary sees it (its kept best epoch, its value);
:class:`SweepSummary` is the whole verdict (counts, compute accounting, the best trial, its test
figures, the re-evaluation's robust winner, or why there is no model). The functions here rank,
pick, account and explain from plain data: no store, Ray or torch. :mod:`sweeplab.sweep.summary`
reads the trials, calls them, and does the side effects (test set, plots, tags, registry);
:mod:`sweeplab.sweep.browse` builds the same :class:`SweepSummary` back from the store.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeplab.metrics import (
    EPOCH,
    EPOCH_TIME,
    ROBUST,
    ROBUST_SINGLE_WINNER_TEST_ACC,
    TEST_ACC,
    VAL_ACC,
    robust_key,
)
from sweeplab.metrics import best_epoch as best_epoch_of
from sweeplab.objective import Mode, Objective
from sweeplab.stage import Stage
from sweeplab.status import TrialStatus
from sweeplab.tracking.records import Points, RunRecord, epoch_rows
from sweeplab.tracking.tags import (
    BEST_EPOCH_TAG,
    EPOCHS_TRAINED_TAG,
    REEVALUATES_TAG,
    STAGE_TAG,
    STATUS_REASON_TAG,
    STATUS_TAG,
    TRAIN_SECONDS_TAG,
    TRIAL_ID_TAG,
)

DIAGNOSIS_KEYS = ("overfit/best_epoch", "overfit/gap_acc", "overfit/gap_loss")


@dataclass(frozen=True)
class TrialSummary:
    """One trial: how it ended, what it sampled, its kept best epoch and that epoch's value of the
    sweep's metric (``best``; the objective's worst when it has none)."""

    name: str
    run_id: str
    trial_id: str | None
    status: TrialStatus | str
    sampled: dict[str, Any]
    best: float
    best_epoch: Mapping[str, float] | None = None
    epochs: int = 0  # epochs logged
    history: tuple[Mapping[str, float], ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        return self.tags.get(STAGE_TAG, Stage.search)

    @property
    def reevaluates(self) -> str | None:
        return self.tags.get(REEVALUATES_TAG)


@dataclass(frozen=True)
class Compute:
    """What the trials trained (replays after a restore included) against the budget of every
    trial running every epoch, and how busy the slots were."""

    epochs_run: int
    epochs_budget: int
    saved_fraction: float
    trial_seconds: float
    wall_seconds: float
    efficiency: float
    slots: int = 1


@dataclass(frozen=True)
class RobustRow:
    """A re-evaluated configuration: ``figures`` maps the sweep's metric, val/acc and test/acc to
    (mean, std) over its repeats."""

    of: str
    sampled: dict[str, Any]
    runs: int
    figures: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class RobustSelection:
    """The re-evaluation stage's result: rows best mean first; the winner is ``rows[0].of``.
    ``metrics`` are the ``robust/*`` figures logged on the parent; ``representative`` the winner's
    best repeat, whose weights are tested and registered (None when read back from the store)."""

    rows: tuple[RobustRow, ...]
    winner: str
    differs: bool
    single_winner: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    representative: TrialSummary | None = None


@dataclass(frozen=True)
class Registration:
    name: str
    version: str | int
    alias_moved: bool


@dataclass(frozen=True)
class SweepSummary:
    """The sweep's verdict. ``best`` is None when no trial kept weights (``no_model`` says why)."""

    name: str
    parent_run_id: str
    objective: Objective
    trials: tuple[TrialSummary, ...]
    counts: dict[str, int]
    compute: Compute
    diagnosis: dict[str, dict[str, float]] = field(default_factory=dict)
    best: TrialSummary | None = None
    best_epoch: Mapping[str, float] | None = None
    best_config: dict[str, Any] | None = None  # the values the best weights were trained with last
    test: dict[str, float] = field(default_factory=dict)
    robust: RobustSelection | None = None
    registration: Registration | None = None
    no_model: str | None = None

    @property
    def metric(self) -> str:
        return self.objective.metric

    @property
    def mode(self) -> Mode:
        return self.objective.mode


# ------------------------------------------------------------------ one trial
def kept_best(history, tags: Mapping[str, str], metric: str, mode: str | Mode) -> Mapping[str, float] | None:
    """The trial's best epoch as the sweep chooses it: the one whose weights its run keeps
    (``BEST_EPOCH_TAG``; a trial stopped by the time budget between checkpoints did not keep its
    best logged epoch's), else the best logged epoch."""
    kept = tags.get(BEST_EPOCH_TAG)
    entry = next((h for h in history if kept is not None and int(h[EPOCH]) == int(kept)), None)
    if entry is not None and math.isfinite(entry.get(metric, math.nan)):
        return entry
    return best_epoch_of(history, metric, mode)


def status_of(tag: str | None, unclosed: TrialStatus | str = TrialStatus.failed) -> TrialStatus | str:
    """The trial's status tag; ``unclosed`` for a run sweeplab did not close (at a sweep's end, a
    failure; to a reader while the sweep runs, not known yet)."""
    try:
        return TrialStatus(tag)
    except ValueError:
        return unclosed


def trial_of(
    run: RunRecord,
    points: Mapping[str, Points],
    objective: Objective,
    unclosed: TrialStatus | str = TrialStatus.failed,
) -> TrialSummary:
    """A trial from the read model: its child run's record and its metrics' points."""
    return trial_summary(
        name=run.name,
        run_id=run.run_id,
        tags=run.tags,
        sampled=run.sampled,
        history=epoch_rows(points),
        metrics=run.metrics,
        objective=objective,
        unclosed=unclosed,
    )


def trial_summary(
    *,
    name: str,
    run_id: str,
    tags: Mapping[str, str],
    sampled: Mapping[str, Any],
    history: Sequence[Mapping[str, float]],
    metrics: Mapping[str, float],
    objective: Objective,
    unclosed: TrialStatus | str = TrialStatus.failed,
) -> TrialSummary:
    """A trial from its run's record: its kept best epoch and that epoch's value."""
    best = kept_best(history, tags, objective.metric, objective.mode)
    return TrialSummary(
        name=name,
        run_id=run_id,
        trial_id=tags.get(TRIAL_ID_TAG),
        status=status_of(tags.get(STATUS_TAG), unclosed),
        sampled=dict(sampled),
        best=best[objective.metric] if best is not None else objective.worst,
        best_epoch=best,
        epochs=len(history),
        history=tuple(history),
        metrics=dict(metrics),
        tags=dict(tags),
    )


# ------------------------------------------------------------------ the sweep
def counts(trials: Iterable[TrialSummary]) -> dict[str, int]:
    return dict(Counter(t.status for t in trials))


def compute(
    trials: Sequence[TrialSummary], max_epochs: int, max_concurrent: int | None, wall_seconds: float
) -> Compute:
    """Compute accounting: trial-epochs run (``EPOCHS_TRAINED_TAG``, else the epochs logged) of the
    budget, training seconds (``TRAIN_SECONDS_TAG``, else the epochs' times) per wall second and slot."""
    epochs_run = sum(int(float(t.tags.get(EPOCHS_TRAINED_TAG, len(t.history)))) for t in trials)
    budget = len(trials) * max_epochs
    trial_seconds = sum(
        float(t.tags.get(TRAIN_SECONDS_TAG, sum(h.get(EPOCH_TIME, 0.0) for h in t.history))) for t in trials
    )
    slots = min(max_concurrent or len(trials), max(1, len(trials)))
    return Compute(
        epochs_run=epochs_run,
        epochs_budget=budget,
        saved_fraction=1 - epochs_run / budget if budget else 0.0,
        trial_seconds=trial_seconds,
        wall_seconds=wall_seconds,
        efficiency=trial_seconds / (wall_seconds * slots) if wall_seconds else 0.0,
        slots=slots,
    )


def diagnosis(trials: Iterable[TrialSummary]) -> dict[str, dict[str, float]]:
    """The overfitting figures each trial logged, by trial name."""
    return {t.name: {k: t.metrics[k] for k in DIAGNOSIS_KEYS if k in t.metrics} for t in trials}


def ranked(trials: Iterable[TrialSummary], objective: Objective) -> list[TrialSummary]:
    """The search stage's trials that logged epochs and ended rankably, best kept epoch first."""
    searched = (t for t in trials if t.stage == Stage.search)
    return objective.ranked(
        (t for t in searched if t.history and TrialStatus(t.status).rankable), key=lambda t: t.best
    )


def choose_best(ranked_trials: Iterable[TrialSummary], has_weights: Callable[[TrialSummary], bool]):
    """The best trial whose run kept weights: one stopped by the time budget before its first
    checkpoint, or diverged before a finite one, has none to evaluate or register. ``has_weights``
    is asked in rank order, and no further than the first that has."""
    return next((t for t in ranked_trials if has_weights(t)), None)


def no_model_reason(
    trials: Sequence[TrialSummary], ranked_trials: Sequence[TrialSummary], metric: str, budget_s: float | None
) -> str:
    """Why a sweep has no model to test or register, and what to change, in one line."""
    if not trials:  # the budget counts from the command's start: its start-up may use it all
        return (
            f"no trial started within the time budget (tune.time_budget_s={budget_s}, "
            "counted from the sweep command's start); raise it"
        )
    how = ", ".join(f"{n} {s}" for s, n in Counter(t.status for t in (ranked_trials or trials)).items())
    if (
        ranked_trials
    ):  # stopped by the time budget before its first checkpoint, or diverged before a finite one
        return (
            f"no trial kept weights to test or register ({how}): none reached a checkpoint with a finite "
            f"{metric}; raise tune.time_budget_s or lower tune.checkpoint_every (a budget stopped them), "
            "or lower optimizer.lr (they diverged)"
        )
    fixes = []
    if any(t.status is TrialStatus.stopped_by_budget for t in trials):
        fixes.append("raise tune.time_budget_s (the budget stopped them before their first epoch)")
    if failed := next((t for t in trials if t.status is TrialStatus.failed), None):
        why = failed.tags.get(STATUS_REASON_TAG) or "see its run"
        fixes.append(f"fix what failed them ({failed.name}: {why})")
    if any(t.status is TrialStatus.diverged for t in trials):
        fixes.append("lower optimizer.lr (they diverged in their first epoch)")
    if any(t.status is TrialStatus.interrupted for t in trials):
        fixes.append("`sweeplab sweep resume` runs the interrupted ones again")
    fixes = fixes or ["see the trials' runs"]
    return f"no trial reported an epoch with a finite {metric} ({how}): " + "; ".join(fixes)


# ------------------------------------------------------------------ robust selection
def repeats(trials: Iterable[TrialSummary]) -> list[TrialSummary]:
    """The re-evaluation stage's runs: top configurations again with fresh seeds."""
    return [t for t in trials if t.stage == Stage.reevaluate]


def counted_repeats(
    repeat_runs: Sequence[TrialSummary], has_weights: Callable[[TrialSummary], bool]
) -> dict[str, list[TrialSummary]]:
    """Per re-evaluated configuration (trial id, in the order met), the repeats that count: with a
    finite best and weights to test (one the time budget stopped before its first checkpoint, or
    one that diverged at once, has neither). Configurations with none are left out."""
    out: dict[str, list[TrialSummary]] = {}
    for of in dict.fromkeys(t.tags[REEVALUATES_TAG] for t in repeat_runs):
        runs = [
            t
            for t in repeat_runs
            if t.tags[REEVALUATES_TAG] == of and math.isfinite(t.best) and has_weights(t)
        ]
        if runs:
            out[of] = runs
    return out


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN, NaN when none)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    std = (sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) ** 0.5 if len(finite) > 1 else 0.0
    return mean, std


def robust_selection(
    groups: Mapping[str, Sequence[TrialSummary]],
    test_acc: Mapping[str, float],
    single: TrialSummary,
    objective: Objective,
) -> RobustSelection | None:
    """Robust selection: the best mean over fresh seeds wins, not the luckiest run. ``groups`` are
    :func:`counted_repeats`; ``test_acc`` is test/acc by run id, for every counted repeat and the
    best single run ``single``. None when no repeat counts: the best single run stands."""
    metric = objective.metric
    rows = []
    for of, runs in groups.items():
        epochs = [t.best_epoch or {} for t in runs]
        figures = {
            metric: mean_std([t.best for t in runs]),
            VAL_ACC: mean_std([e.get(VAL_ACC, math.nan) for e in epochs]),
            TEST_ACC: mean_std([test_acc.get(t.run_id, math.nan) for t in runs]),
        }
        sampled = {k: v for k, v in runs[0].sampled.items() if k != "seed"}
        rows.append((RobustRow(of, sampled, len(runs), figures), objective.best(runs, key=lambda t: t.best)))
    if not rows:
        return None
    rows = objective.ranked(rows, key=lambda r: r[0].figures[metric][0])
    winner, representative = rows[0]
    f = winner.figures
    metrics = {
        robust_key(metric, "mean"): f[metric][0],
        robust_key(metric, "std"): f[metric][1],
        robust_key(VAL_ACC, "mean"): f[VAL_ACC][0],
        robust_key(VAL_ACC, "std"): f[VAL_ACC][1],
        robust_key(TEST_ACC, "mean"): f[TEST_ACC][0],
        robust_key(TEST_ACC, "std"): f[TEST_ACC][1],
        f"{ROBUST}differs": float(winner.of != single.trial_id),
        # without the stage
        ROBUST_SINGLE_WINNER_TEST_ACC: test_acc.get(single.run_id, math.nan),
    }
    return RobustSelection(
        rows=tuple(r for r, _ in rows),
        winner=winner.of,
        differs=winner.of != single.trial_id,
        single_winner=single.trial_id,
        metrics=metrics,
        representative=representative,
    )
