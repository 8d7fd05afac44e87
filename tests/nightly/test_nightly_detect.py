"""Regression detection on synthetic histories: numbers in, verdicts out (no store, no training)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from sweeplab.nightly import detect
from sweeplab.nightly.bench import measure
from sweeplab.nightly.detect import Night, Settings, Watch, change_points, judge

ACC = Watch("test/acc", higher_is_better=True, min_change=0.005)
TIME = Watch("epoch_time_s", higher_is_better=False, min_change=0.10, relative=True)
DAY0 = date(2026, 3, 1)


def nights(levels, sigma=0.008, seeds=3, seed=0) -> list[Night]:
    """One Night per level: ``seeds`` values drawn around it (the course network's seed noise)."""
    rng = np.random.default_rng(seed)
    return [Night(DAY0 + timedelta(i), tuple(rng.normal(mu, sigma, seeds))) for i, mu in enumerate(levels)]


def q_brute(x, start, tau, kappa) -> float:
    """Matteson & James's Q-hat written out with loops: what the vectorized split must equal."""
    a, b = x[start:tau], x[tau:kappa]
    n, m = len(a), len(b)
    between = sum(abs(i - j) for i in a for j in b)
    within_a = sum(abs(a[i] - a[k]) for i in range(n) for k in range(i + 1, n))
    within_b = sum(abs(b[i] - b[k]) for i in range(m) for k in range(i + 1, m))
    q = 2 / (m + n) * between
    q -= 2 * m / ((m + n) * (n - 1)) * within_a if n > 1 else 0
    q -= 2 * n / ((m + n) * (m - 1)) * within_b if m > 1 else 0
    return q


@pytest.mark.parametrize("seed", range(5))
def test_best_split_maximizes_q_hat_like_the_definition(seed):
    x = np.random.default_rng(seed).normal(size=14)
    x[9:] += 1.5
    tau, q = detect._best_split(x, 0, len(x), open_end=True)
    candidates = [
        (q_brute(x, 0, t, k), t)
        for t in range(2, len(x))
        for k in range(t + 1, len(x) + 1)
        if k - t >= 2 or k == len(x)  # a level lasts two nights, except tonight's
    ]
    best_q, best_tau = max(candidates)
    assert tau == best_tau and q == pytest.approx(best_q)


def test_a_real_step_is_flagged_at_the_night_it_began():
    levels = [0.86] * 12 + [0.80] * 3  # the level drops by 6 points on night 12
    history = nights(levels)
    verdicts = [judge(history[: i + 1], ACC) for i in range(len(history))]
    assert [v.verdict for v in verdicts[5:12]] == ["ok"] * 7
    first = next(i for i, v in enumerate(verdicts) if v.verdict == "regressed")
    assert first in (12, 13)  # detected on the first or second night of the new level
    assert all(v.verdict == "regressed" for v in verdicts[first:])  # and stays flagged until accepted
    assert verdicts[-1].began == history[12].night  # the report names the night it began
    assert verdicts[-1].baseline_to == history[11].night
    assert change_points([n.mean for n in history], ACC) == [12]


def test_an_improvement_is_improved_not_regressed():
    history = nights([0.86] * 10 + [0.90] * 2)
    assert judge(history, ACC).verdict == "improved"
    slower = [Night(n.night, tuple(v * 100 for v in n.values)) for n in nights([1.0] * 10 + [1.3] * 2)]
    assert judge(slower, TIME).verdict == "regressed"  # lower is better: time going up is worse


def test_noise_within_the_normal_spread_is_not_flagged():
    verdicts = [judge(nights([0.86] * 20, seed=seed), ACC).verdict for seed in range(100)]
    assert verdicts.count("regressed") <= 2  # before the rerun; the bench measures the rate with it
    assert verdicts.count("ok") >= 95


def test_a_change_smaller_than_the_one_that_matters_is_ok():
    exact = [Night(DAY0 + timedelta(i), (0.8600, 0.8610, 0.8590)) for i in range(8)]
    exact.append(Night(DAY0 + timedelta(8), (0.8570, 0.8580, 0.8560)))  # 0.3 points lower, every seed
    verdict = judge(exact, ACC)
    assert verdict.verdict == "ok" and verdict.delta == pytest.approx(-0.003)
    assert judge(exact, Watch("test/acc", True, 0.002)).verdict == "regressed"  # a finer threshold sees it


def test_too_little_history_gives_insufficient_history():
    history = nights([0.86] * 4 + [0.5])
    verdict = judge(history, ACC, Settings(min_history=5))
    assert verdict.verdict == "insufficient_history" and "4 earlier night" in verdict.reason
    assert judge(nights([0.86] * 5 + [0.5]), ACC, Settings(min_history=5)).verdict == "regressed"


def test_an_accepted_change_resets_the_baseline():
    history = nights([0.86] * 8 + [0.80] * 8)
    assert judge(history, ACC).verdict == "regressed"
    accepted = [history[8].night]  # the night the new level began
    assert judge(history, ACC, accepted=accepted).verdict == "ok"
    assert judge(history[:11], ACC, accepted=accepted).verdict == "insufficient_history"  # 2 nights since
    worse_again = [*history, Night(history[-1].night + timedelta(1), (0.74, 0.745, 0.738))]
    verdict = judge(worse_again, ACC, accepted=accepted)
    assert verdict.verdict == "regressed" and verdict.baseline_from == accepted[0]


def test_deterministic_seeds_are_judged_without_dividing_by_zero():
    same = [Night(DAY0 + timedelta(i), (0.9443, 0.9331, 0.9304)) for i in range(6)]
    assert judge(same, ACC).verdict == "ok"
    low = [*same, Night(DAY0 + timedelta(6), (0.3259, 0.5766, 0.5627))]  # a learning rate 10x too low
    verdict = judge(low, ACC)
    assert verdict.verdict == "regressed" and verdict.began == low[-1].night


def test_one_seed_is_never_judged_on_its_first_changed_night():
    history = [Night(DAY0 + timedelta(i), (0.9,)) for i in range(6)] + [Night(DAY0 + timedelta(6), (0.5,))]
    assert judge(history, ACC).verdict == "ok"  # no spread to test against: history must confirm it
    history.append(Night(DAY0 + timedelta(7), (0.5,)))
    assert judge(history, ACC).verdict == "regressed"


def test_bench_measures_false_alarms_and_detection():
    figures = measure(series=40, nights=20, step_at=12, seed=3)
    assert figures["false_alarms_per_night"] <= 0.02
    assert figures["detected_within_2_nights"] >= 0.8
    blind = measure(series=40, nights=20, step_at=12, seed=3, min_change=1.0)  # nothing that small matters
    assert blind["detected_within_2_nights"] == 0.0
