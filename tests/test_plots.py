"""The sweep's metric-vs-hyperparameters figure: what its y-axis shows, and that it draws any sweep."""

from __future__ import annotations

import math

import matplotlib.image
import pytest

from sweeplab.plots import TrialPoint, informative_range, metric_vs_hyperparameters

# a sweep as `make sweep` leaves it: good trials between 0.29 and 0.40, trials ASHA stopped after
# an epoch or three around 0.45-0.65, and a few learning rates that never learned (chance: 2.25)
GOOD = [0.29 + 0.11 * i / 19 for i in range(20)]
STOPPED = [0.45 + 0.2 * i / 29 for i in range(30)]
NEVER_LEARNED = [2.25, 2.26, 2.3]


def test_outliers_on_the_bad_side_do_not_squeeze_the_good_trials():
    lo, hi = informative_range(GOOD + STOPPED + NEVER_LEARNED, "min")
    assert lo < 0.29 and 0.65 <= hi < 0.8  # every good and stopped trial on the axis, not the 2.25s
    assert (0.40 - 0.29) / (hi - lo) > 0.2  # the good region keeps a fifth of the axis, not 5%


def test_the_good_side_is_never_cut():
    lucky = 0.05  # far below the rest: the best trial, not an outlier to hide
    lo, hi = informative_range([lucky, *GOOD, *NEVER_LEARNED], "min")
    assert lo < lucky and hi < 1.0
    accuracies = [1 - v / 2.5 for v in GOOD + NEVER_LEARNED]  # mode max: the bad side is below
    lo, hi = informative_range([*accuracies, -math.inf], "max")
    assert lo > 0.5 and hi > max(accuracies)


def test_few_or_equal_values_get_a_range():
    for values in ([0.3], [0.3, 0.3, 0.3, 0.3], [], [math.inf]):
        lo, hi = informative_range(values, "min")
        assert lo < hi and all(lo <= v <= hi for v in values if math.isfinite(v))


@pytest.mark.parametrize("mode", ["min", "max"])
def test_the_figure_draws_a_mixed_sweep(tmp_path, mode):
    statuses = ["completed", "early_stopped", "stopped_by_scheduler", "diverged"]
    points = [
        TrialPoint(
            {
                "optimizer.lr": 10 ** (-4 + 3 * i / 53),
                "optimizer": ["sgd", "adam"][i % 2],
                "trainer.batch_size": 64,
            },
            value,
            epochs=1 + i % 20,
            status=statuses[i % 4],
            best=i == 0,
        )
        for i, value in enumerate(GOOD + STOPPED + NEVER_LEARNED + [math.inf])
    ]
    keys = ["optimizer.lr", "optimizer", "trainer.batch_size"]
    path = metric_vs_hyperparameters(points, keys, "val/loss", mode, ["optimizer.lr"], tmp_path / "m.png")
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 1000 and height > 300
