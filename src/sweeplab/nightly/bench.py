"""How good is the detector? Measured on synthetic nights, not asserted.

:func:`measure` replays seasons of nights through the same :func:`~sweeplab.nightly.detect.judge`
and rerun rule the runner uses (a night judged ``regressed`` is drawn again once and the
rerun's verdict is final):

* **false alarms**: ``series`` stationary seasons of ``nights`` nights, each night ``seeds``
  values drawn from N(mean, sigma) -- the seed noise of the course network's test accuracy
  (0.866 / 0.869 / 0.854 over seeds 0, 1, 2: sigma 0.008) with the suite's smallest change that
  matters for it (0.5 points). Every night with enough history is judged, as the scheduler
  would; the rate is per judged night and per season (a season with any false alarm);
* **detection**: ``series`` seasons whose level drops by ``step_sigmas`` standard deviations
  at night ``step_at``; the share flagged ``regressed`` on that night or the next.

``make bench`` prints the figures (goals: false alarms <= 1%, detection >= 95%).
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import numpy as np

from sweeplab.metrics import TEST_ACC
from sweeplab.nightly.detect import Night, Settings, Verdict, Watch, judge
from sweeplab.objective import Mode, Objective

FIRST_NIGHT = date(2025, 1, 1)


def _season(
    rng: np.random.Generator,
    level: np.ndarray,
    sigma: float,
    seeds: int,
    watch: Watch,
    settings: Settings,
    reruns: int,
    judge_from: int,
) -> list[int]:
    """Nights (indices) whose final verdict is ``regressed``."""
    history: list[Night] = []
    flagged = []
    for i, mu in enumerate(level):
        night = FIRST_NIGHT + timedelta(days=i)
        history.append(Night(night, tuple(rng.normal(mu, sigma, seeds))))
        if i < judge_from:
            continue
        judgement = judge(history, watch, settings)
        for _ in range(reruns if judgement.verdict == Verdict.regressed else 0):
            history[-1] = Night(night, tuple(rng.normal(mu, sigma, seeds)))  # the rerun replaces the night
            judgement = judge(history, watch, settings)
            if judgement.verdict != Verdict.regressed:
                break
        if judgement.verdict == Verdict.regressed:
            flagged.append(i)
    return flagged


def measure(
    series: int = 1000,
    nights: int = 30,
    seeds: int = 3,
    mean: float = 0.863,
    sigma: float = 0.008,
    min_change: float = 0.005,
    step_sigmas: float = 3.0,
    step_at: int = 20,
    settings: Settings | None = None,
    reruns: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """False-alarm rate on stationary seasons and the share of steps detected within 2 nights."""
    settings = settings or Settings()
    watch = Watch.of(Objective(TEST_ACC, Mode.max), min_change=min_change)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    flat = np.full(nights, mean)
    judged = nights - settings.min_history
    alarms = [
        _season(rng, flat, sigma, seeds, watch, settings, reruns, settings.min_history) for _ in range(series)
    ]
    stepped = np.where(np.arange(step_at + 2) >= step_at, mean - step_sigmas * sigma, mean)
    detected = sum(
        bool(
            {step_at, step_at + 1}
            & set(_season(rng, stepped, sigma, seeds, watch, settings, reruns, step_at))
        )
        for _ in range(series)
    )
    return {
        "series": series,
        "nights": nights,
        "seeds": seeds,
        "sigma": sigma,
        "min_change": min_change,
        "reruns": reruns,
        "welch_p": settings.welch_p,
        "welch_p_change": settings.welch_p_change,
        "p_max": settings.p_max,
        "false_alarms_per_night": sum(len(a) for a in alarms) / (series * judged),
        "false_alarms_per_season": sum(bool(a) for a in alarms) / series,
        "detected_within_2_nights": detected / series,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    figures = measure()
    print(
        f"nightly detector: false alarms {figures['false_alarms_per_night']:.2%} of judged nights, "
        f"{figures['false_alarms_per_season']:.2%} of {figures['nights']}-night seasons "
        f"(goal <= 1%); a {3:g}-sigma step detected within 2 nights in "
        f"{figures['detected_within_2_nights']:.1%} of series (goal >= 95%); "
        f"{figures['series']} series each, {figures['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
