"""The course's Fashion-MNIST network on the real data set reaches the course's accuracy."""

from __future__ import annotations

import statistics

import pytest

from sweeplab.data import load_data
from sweeplab.training import Trainer


@pytest.mark.slow
def test_course_fashion_mnist_reaches_086_over_three_seeds(make_cfg):
    accs = []
    data = None
    for seed in (0, 1, 2):
        cfg = make_cfg("experiment=course_fashion_mnist", "tracking.enabled=false", f"seed={seed}")
        data = data or load_data(cfg["data"])  # the real files: /usr/share/datasets/fashion-mnist in CI
        assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (55000, 5000, 10000)
        result = Trainer(cfg, data).fit()
        assert len(result.history) == 5
        accs.append(result.test["test/acc"])
    assert statistics.mean(accs) >= 0.86, accs
