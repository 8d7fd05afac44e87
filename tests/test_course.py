"""The course's Fashion-MNIST network on the real data set reaches the course's accuracy."""

from __future__ import annotations

import statistics

import pytest
import torch

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


POSITIVE = ["great", "wonderful", "superb", "moving", "brilliant", "loved", "masterpiece"]
NEGATIVE = ["awful", "boring", "terrible", "waste", "dull", "hated", "mess"]
NEUTRAL = ["the", "movie", "film", "plot", "actor", "scene", "story", "it", "was", "and", "a", "of"]


def write_reviews(root, n_train=240, n_test=80, seed=0):
    """A learnable aclImdb/ folder: reviews mix neutral words with a few words of their sentiment."""
    import random

    rng = random.Random(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, pool in (("pos", POSITIVE), ("neg", NEGATIVE)):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(n // 2):
                noise = rng.choices(POSITIVE + NEGATIVE, k=1)
                words = rng.choices(NEUTRAL, k=30) + rng.choices(pool, k=3) + noise
                rng.shuffle(words)
                (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(" ".join(words) + "<br />")
    return root


@pytest.mark.parametrize("experiment", ["course_imdb", "course_imdb_l2", "course_imdb_dropout"])
def test_course_imdb_experiments_train_on_aclimdb(tmp_path, make_cfg, experiment):
    root = write_reviews(tmp_path)
    cfg = make_cfg(
        f"experiment={experiment}",
        f"data.root={root}",
        "data.val_size=60",
        "trainer.epochs=6",
        "trainer.batch_size=32",
        "tracking.enabled=false",
    )
    data = load_data(cfg["data"])
    assert data.input_shape == (10000,) and data.num_classes == 2  # 10000-word multi-hot, one sigmoid unit
    trainer = Trainer(cfg, data)
    widths = [m.out_features for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [16, 16, 1]
    dropouts = [m.p for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == ([0.5, 0.5] if experiment.endswith("dropout") else [])
    result = trainer.fit()
    assert len(result.history) == 6  # early stopping is off: the curves show the whole run
    assert ("train/penalty" in result.history[0]) == experiment.endswith("l2")
    assert result.test["test/acc"] >= 0.85
