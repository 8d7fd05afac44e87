"""The objective: one tie rule and one place for min/max, and the helpers that go through it."""

from __future__ import annotations

import math

import pytest

from sweeplab.metrics import best_epoch, worst
from sweeplab.objective import Mode, Objective
from sweeplab.stage import REEVALUATION_EXPERIMENT, REEVALUATION_POINT, Stage

LOSS = Objective("val/loss", "min")
ACC = Objective("val/acc", Mode.max)


def test_mode_is_the_configs_text():
    assert LOSS.mode is Mode.min and Mode("max") is Mode.max and Mode.min == "min"
    assert Objective("m", "min") == Objective("m", Mode.min)
    with pytest.raises(ValueError):
        Objective("m", "up")


def test_better_is_strict_and_a_missing_value_is_never_better():
    assert LOSS.better(0.1, 0.2) and not LOSS.better(0.2, 0.1)
    assert ACC.better(0.9, 0.8) and not ACC.better(0.8, 0.9)
    assert not LOSS.better(0.3, 0.3) and not ACC.better(0.3, 0.3)  # a tie is not better
    for o in (LOSS, ACC):
        assert not o.better(math.nan, 1.0) and not o.better(1.0, math.nan) and not o.better(None, 1.0)
        assert o.better(0.5, o.worst)  # any number beats "no value"
        assert o.at_least_as_good(0.3, 0.3) and not o.at_least_as_good(math.nan, 0.3)
    assert worst("min") == math.inf and worst("max") == -math.inf


def test_best_and_ranked_keep_the_first_of_equals_and_put_missing_values_last():
    items = [("a", 0.3), ("b", math.nan), ("c", 0.1), ("d", None), ("e", 0.1), ("f", 0.5)]
    key = lambda t: t[1]  # noqa: E731
    assert LOSS.best(items, key=key)[0] == "c"
    assert ACC.best(items, key=key)[0] == "f"
    assert [n for n, _ in LOSS.ranked(items, key=key)] == ["c", "e", "a", "f", "b", "d"]
    assert [n for n, _ in ACC.ranked(items, key=key)] == ["f", "a", "c", "e", "b", "d"]
    assert LOSS.best([], default=LOSS.worst) == math.inf and LOSS.best([math.nan]) is None
    assert ACC.ranked([0.2, -math.inf, 0.4]) == [0.4, 0.2, -math.inf]  # the worst sentinel last


def test_is_improvement_needs_more_than_min_delta():
    assert LOSS.is_improvement(0.8, 1.0, 0.1) and not LOSS.is_improvement(0.95, 1.0, 0.1)
    assert ACC.is_improvement(0.95, 0.8, 0.1) and not ACC.is_improvement(0.85, 0.8, 0.1)
    assert LOSS.is_improvement(1.0, LOSS.worst) and not LOSS.is_improvement(1.0, 1.0)


def test_a_trials_best_epoch_is_the_later_of_equals():
    history = [
        {"epoch": 1, "m": 0.5},
        {"epoch": 2, "m": 0.2},
        {"epoch": 3, "m": math.nan},
        {"epoch": 4, "m": 0.2},
    ]
    assert best_epoch(history, "m", "min")["epoch"] == 4
    assert best_epoch(history, "m", "max")["epoch"] == 1
    assert best_epoch([{"epoch": 1, "m": math.inf}], "m", "max") is None  # only finite values count


def test_the_stages_keep_the_names_stored_sweeps_carry():
    assert [s.value for s in Stage] == ["search", "reevaluate"]
    assert REEVALUATION_EXPERIMENT == REEVALUATION_POINT == "reevaluate"
    assert f"{Stage.reevaluate}" == "reevaluate" and Stage.reevaluate.trial_prefix == "reeval"
