"""Regression detection over a metric's nights: change points, then a verdict on the latest night.

Two questions, two tools:

* *When did the level change?* E-divisive means (Matteson & James 2014) splits the series of
  nightly means where the energy distance between the two sides is largest; a split is kept
  when a Student's t-test between the two sides has p <= ``p_max`` (0.001). This is the
  algorithm of Apache Otava / Hunter (Fleming et al. 2023): windows of ``window`` nights find
  *weak* change points at a relaxed threshold (10 x ``p_max``), then a merge step drops the
  weakest one at a time (largest p, else the smallest change that does not matter) and
  re-tests its neighbours, until every change point left is significant and matters.
* *Is tonight worse?* The latest level (the nights since the last change point, or tonight
  alone) is compared with the last stable segment before it by a Welch t-test over the
  individual seed values, plus the metric's smallest change that matters. Where a change
  point marks the start of that level, the test confirms it at ``welch_p_change`` (0.05);
  with no change point it must stand alone at ``welch_p`` (0.01).

Nothing here touches the store or the clock: values in, a :class:`Judgement` out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import numpy as np
from scipy import stats

from sweeplab.objective import Mode, Objective


class Verdict(StrEnum):
    """What the latest night of a watched metric is judged to be: the one home of the verdicts.

    The values are stored (``nightly_verdicts.verdict``, the saved judgement's JSON), name MLflow
    metrics (``verdicts/<verdict>``), CSS classes of the report and ``$SWEEPLAB_NIGHTLY_STATUS``:
    they never change.
    """

    ok = "ok"
    improved = "improved"
    regressed = "regressed"
    insufficient_history = "insufficient_history"  # too few stable nights to judge against


@dataclass(frozen=True)
class Watch:
    """A watched metric: which way is better (its :attr:`objective`) and the smallest change that matters."""

    metric: str
    higher_is_better: bool
    min_change: float  # absolute, in the metric's units; or a fraction of the baseline if relative
    relative: bool = False

    @classmethod
    def of(cls, objective: Objective, min_change: float, relative: bool = False) -> Watch:
        return cls(objective.metric, objective.higher_is_better, min_change, relative)

    @property
    def objective(self) -> Objective:
        return Objective(self.metric, Mode.max if self.higher_is_better else Mode.min)

    def matters(self, before: float, after: float) -> bool:
        delta = abs(after - before)
        if self.relative:
            return before != 0 and delta / abs(before) >= self.min_change
        return delta >= self.min_change

    def is_worse(self, before: float, after: float) -> bool:
        return self.objective.better(before, after)

    def describe(self) -> str:
        size = f"{self.min_change:.0%}" if self.relative else f"{self.min_change:g}"
        return f"{'higher' if self.higher_is_better else 'lower'} is better, smallest change {size}"


@dataclass(frozen=True)
class Settings:
    p_max: float = 0.001  # change points: Student's t-test between the two sides
    welch_p: float = 0.01  # the latest level against the last stable segment
    welch_p_change: float = 0.05  # the same, when a change point already marks where that level began
    min_history: int = 5  # stable nights needed before any verdict
    window: int = 30  # nights per E-divisive window (Otava's sliding windows)


@dataclass(frozen=True)
class Night:
    night: date
    values: tuple[float, ...]  # one per seed

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))


@dataclass
class Judgement:
    """A night's :class:`Verdict` on a watched metric, with the evidence it rests on."""

    verdict: Verdict
    night: date
    mean: float
    spread: float  # standard deviation over tonight's seeds
    n: int
    reason: str
    baseline_mean: float | None = None
    baseline_spread: float | None = None
    baseline_from: date | None = None
    baseline_to: date | None = None
    delta: float | None = None
    p_value: float | None = None
    began: date | None = None  # first night of the level being judged, when it differs
    change_points: list[date] = field(default_factory=list)  # in the series this judgement saw


# ------------------------------------------------------------ change points
def student_p(left: np.ndarray, right: np.ndarray) -> float:
    """Two-sided Student's t-test from the two sides; one value has no spread (Otava's convention)."""
    if len(left) + len(right) <= 2:
        return 1.0
    sl = float(np.std(left, ddof=1)) if len(left) > 1 else 0.0
    sr = float(np.std(right, ddof=1)) if len(right) > 1 else 0.0
    with np.errstate(all="ignore"):
        return _p(stats.ttest_ind_from_stats(left.mean(), sl, len(left), right.mean(), sr, len(right)).pvalue)


def welch_p(left: Sequence[float], right: Sequence[float]) -> float:
    left, right = np.asarray(left, float), np.asarray(right, float)
    if len(left) < 2 or len(right) < 2:
        return 1.0
    with np.errstate(all="ignore"):  # seeds that agree exactly have no spread: handled by _p
        result = stats.ttest_ind_from_stats(
            left.mean(),
            left.std(ddof=1),
            len(left),
            right.mean(),
            right.std(ddof=1),
            len(right),
            equal_var=False,
        )
    return _p(result.pvalue)


def _p(p: float) -> float:
    """Identical constant sides give 0/0: no evidence of a change. Different constants give p = 0."""
    return 1.0 if math.isnan(p) else float(p)


def _best_split(x: np.ndarray, start: int, stop: int, open_end: bool) -> tuple[int, float] | None:
    """The split ``tau`` of ``x[start:stop]`` maximizing Q-hat over (tau, kappa), and that maximum.

    Q(X, Y) = 2/(m+n) Σ|X-Y| - 2m/((m+n)(n-1)) Σ_{i<k}|X_i-X_k| - 2n/((m+n)(m-1)) Σ_{j<k}|Y_j-Y_k|
    with X = x[start:tau], Y = x[tau:kappa]; block sums of the distance matrix come from one
    2-D prefix sum, so every (tau, kappa) is evaluated at once. A level lasts at least two
    nights -- one odd night in the middle of the history is an outlier, not a change -- except
    at the open end of the series, where tonight alone may begin a new level.
    """
    seg = x[start:stop]
    d = np.abs(seg[:, None] - seg[None, :])
    p = np.zeros((len(seg) + 1, len(seg) + 1))
    p[1:, 1:] = d.cumsum(0).cumsum(1)

    def block(a, b, c, e):
        return p[b, e] - p[a, e] - p[b, c] + p[a, c]

    tau, kappa = np.meshgrid(np.arange(1, len(seg)), np.arange(2, len(seg) + 1), indexing="ij")
    n, m = tau.astype(float), (kappa - tau).astype(float)
    valid = (n >= 2) & ((m >= 2) | ((m == 1) & (kappa == len(seg)) & open_end))
    if not valid.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        between = 2 / (m + n) * block(0, tau, tau, kappa)
        within_x = np.where(n > 1, 2 * m / ((m + n) * (n - 1)) * block(0, tau, 0, tau) / 2, 0.0)
        within_y = np.where(m > 1, 2 * n / ((m + n) * (m - 1)) * block(tau, kappa, tau, kappa) / 2, 0.0)
        q = np.where(valid, between - within_x - within_y, -np.inf)
    i, j = np.unravel_index(np.argmax(q), q.shape)
    return start + int(tau[i, j]), float(q[i, j])


def _bounds(points: Sequence[int], n: int) -> list[tuple[int, int]]:
    edges = [0, *sorted(points), n]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _divisive(x: np.ndarray, p_max: float, open_end: bool) -> list[int]:
    """E-divisive on one window: split the interval with the largest Q-hat while the split is significant."""
    points: list[int] = []
    while True:
        candidates = []
        for a, b in _bounds(points, len(x)):
            split = _best_split(x, a, b, open_end and b == len(x)) if b - a > 2 else None
            if split is not None:
                candidates.append((*split, a, b))
        if not candidates:
            return points
        tau, _, a, b = max(candidates, key=lambda c: c[1])
        if student_p(x[a:tau], x[tau:b]) > p_max:
            return points
        points.append(tau)


def change_points(series: Sequence[float], watch: Watch, p_max: float = 0.001, window: int = 30) -> list[int]:
    """Indices where a new level begins: Otava's split (sliding windows) and merge steps."""
    x = np.asarray(series, float)
    if len(x) < 3:
        return []
    weak: set[int] = set()
    step = max(1, window // 2)
    start = 0
    while start < len(x):
        stop = min(start + window, len(x))
        found = [start + i for i in _divisive(x[start:stop], min(0.5, p_max * 10), stop == len(x))]
        weak.update(found)
        start = max(max(found, default=0), start + step)
    points = sorted(weak)
    while points:  # merge: drop the weakest until every point is significant and matters
        bounds = _bounds(points, len(x))
        scored = []
        for k, tau in enumerate(points):
            left, right = x[bounds[k][0] : tau], x[tau : bounds[k + 1][1]]
            scored.append((student_p(left, right), watch.matters(left.mean(), right.mean()), tau))
        weakest = max(scored, key=lambda s: s[0])
        if weakest[0] <= p_max:
            unimportant = [s for s in scored if not s[1]]
            if not unimportant:
                return points
            weakest = unimportant[0]
        points.remove(weakest[2])
    return points


# ------------------------------------------------------------------ verdict
def judge(
    nights: Sequence[Night], watch: Watch, settings: Settings = Settings(), accepted: Sequence[date] = ()
) -> Judgement:
    """The latest night's verdict. ``nights`` are in date order, the last one is judged.

    Only nights on or after the latest accepted change count: an accepted change is a new
    baseline. Without a change point the baseline is every earlier night of that era and
    tonight is judged alone; after a change point the level since it is judged against the
    segment before it, so a regression stays flagged night after night until it is fixed
    or accepted.
    """
    latest = nights[-1]
    since = max((d for d in accepted if d <= latest.night), default=None)
    era = [n for n in nights if since is None or n.night >= since]
    judgement = Judgement(
        Verdict.insufficient_history,
        latest.night,
        latest.mean,
        _spread(latest.values),
        len(latest.values),
        reason="",
    )
    if len(era) - 1 < settings.min_history:
        judgement.reason = (
            f"{len(era) - 1} earlier night(s){' since the accepted change' if since else ''}; "
            f"{settings.min_history} needed before a verdict"
        )
        return judgement
    means = [n.mean for n in era]
    points = change_points(means, watch, settings.p_max, settings.window)
    judgement.change_points = [era[i].night for i in points]
    last = points[-1] if points else len(era) - 1
    before = points[-2] if len(points) > 1 else 0
    baseline, current = era[before:last], era[last:]
    if len(baseline) < settings.min_history:
        judgement.reason = (
            f"the level changed on {era[last].night} after only {len(baseline)} stable night(s); "
            f"accept it (sweeplab nightly accept) to make it the new baseline"
        )
        return judgement
    base_values = [v for n in baseline for v in n.values]
    cur_values = [v for n in current for v in n.values]
    base_mean, cur_mean = float(np.mean(base_values)), float(np.mean(cur_values))
    p = welch_p(cur_values, base_values)
    judgement.baseline_mean, judgement.baseline_spread = base_mean, _spread(base_values)
    judgement.baseline_from, judgement.baseline_to = baseline[0].night, baseline[-1].night
    judgement.delta, judgement.p_value = cur_mean - base_mean, p
    matters = watch.matters(base_mean, cur_mean)
    level = f"{len(current)} night(s) since {current[0].night}" if len(current) > 1 else "tonight"
    # A change point is history's evidence that the level moved (p <= p_max over the nightly
    # means); the seeds then only need to confirm the direction. Without one, the seeds alone
    # must show it at the stricter welch_p.
    threshold = settings.welch_p_change if points else settings.welch_p
    if p <= threshold and matters:
        worse = watch.is_worse(base_mean, cur_mean)
        judgement.verdict = Verdict.regressed if worse else Verdict.improved
        judgement.began = current[0].night
        judgement.reason = (
            f"{level}: {cur_mean:.4g} vs {base_mean:.4g} "
            f"({baseline[0].night}..{baseline[-1].night}), Welch p={p:.2g}"
        )
    else:
        judgement.verdict = Verdict.ok
        why = "change below the smallest that matters" if not matters else f"Welch p={p:.2g}"
        judgement.reason = f"{level}: {cur_mean:.4g} vs {base_mean:.4g}; {why}"
    return judgement


def _spread(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
