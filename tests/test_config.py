"""Every config group option composes and validates; typos fail before any work, naming the key."""

from __future__ import annotations

import pytest
import torch
from conftest import blobs

from sweeplab.build import build_model
from sweeplab.config import GROUPS, ConfigError, compose, group_options, to_container, validate_sweep
from sweeplab.data import DataBundle
from sweeplab.training import Trainer

ALIASES = {("optimizer", "momentum"): "sgd"}  # an option that presets another's schema


def image_and_token_data() -> tuple[DataBundle, DataBundle]:
    flat = blobs(n=60, dim=4 * 7 * 7, classes=3)
    splits = [flat.x_train, flat.y_train, flat.x_val, flat.y_val, flat.x_test, flat.y_test]
    images = [t.view(len(t), 4, 7, 7) if t.is_floating_point() else t for t in splits]
    tokens = [torch.randint(1, 50, (len(t), 12)) if t.is_floating_point() else t for t in splits]
    common = dict(num_classes=3, class_names=flat.class_names, fingerprint="x")
    return (
        DataBundle(*images, kind="image", **common),
        DataBundle(*tokens, kind="tokens", vocab=[f"w{i}" for i in range(50)], num_embeddings=50, **common),
    )


def regression_data() -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g)
    y = x @ torch.randn(5, 2, generator=g)
    return DataBundle.of((x[:36], y[:36]), (x[36:48], y[36:48]), (x[48:], y[48:]))


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "experiment"])
def test_every_option_composes_and_instantiates(group, make_cfg):
    options = group_options(group)
    assert options, f"conf/{group}/ has no options"
    images, tokens = image_and_token_data()
    for option in options:
        cfg = make_cfg(f"{group}={option}")
        if "name" in cfg[group] and group != "tune":  # tune.name names the sweep, not the option
            assert cfg[group]["name"] == ALIASES.get((group, option), option)
        if group == "data":
            continue  # loading is tested in tests/data
        data = tokens if cfg["model"]["name"] == "embedding_bag" else images
        if group == "loss" and option != "auto":  # the regression losses
            data = regression_data()
        trainer = Trainer(cfg, data)
        trainer.train_epoch()  # the built optimizer, schedule and penalty actually run


def test_experiments_compose(make_cfg):
    cfg = make_cfg("experiment=course_fashion_mnist")
    assert cfg["model"]["hidden"] == [128]
    assert cfg["optimizer"]["name"] == "rmsprop"
    assert (cfg["trainer"]["epochs"], cfg["trainer"]["batch_size"]) == (5, 128)
    imdb = make_cfg("experiment=course_imdb")
    assert imdb["model"]["hidden"] == [16, 16] and imdb["trainer"]["batch_size"] == 512
    assert imdb["data"]["num_words"] == 10000 and imdb["regularizer"]["name"] == "none"
    assert make_cfg("experiment=course_imdb_l2")["regularizer"]["l2"] == 0.001
    dropout = make_cfg("experiment=course_imdb_dropout")
    assert dropout["regularizer"]["dropout"] == 0.5 and dropout["model"]["hidden"] == [16, 16]


def test_overrides_follow_hydra_grammar(make_cfg):
    cfg = make_cfg("model.hidden=[256,128]", "optimizer=adam", "optimizer.lr=3e-4", "regularizer=l2")
    assert cfg["model"]["hidden"] == [256, 128]
    assert cfg["optimizer"] == {**cfg["optimizer"], "name": "adam", "lr": 3e-4}
    assert cfg["regularizer"]["l2"] > 0


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.hiden=[64]", ["model.hiden", "did you mean 'hidden'", "activation"]),
        ("trainer.early_stopping.patince=3", ["trainer.early_stopping.patince", "patience"]),
        ("model=transformer", ["'transformer'", "model", "cnn, embedding_bag, mlp"]),
        ("optimizer=adamm", ["did you mean 'adam'", "adagrad, adam, adamw"]),
        ("optimizer.lr=fast", ["optimizer.lr", "'fast'", "Float"]),
        ("model.activation=softplus", ["model.activation", "relu, tanh, gelu, sigmoid"]),
        ("data.vectorize=bert", ["data.vectorize"]),
    ],
)
def test_typos_fail_with_one_line_naming_the_key(override, expected):
    with pytest.raises(ConfigError) as err:
        compose([override])
    message = str(err.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message


def test_plain_containers_cross_into_training(make_cfg):
    cfg = make_cfg()
    assert type(cfg) is dict and type(cfg["model"]) is dict
    assert isinstance(cfg["model"]["activation"], str)  # enums become plain strings
    assert to_container(compose([]))["data"]["name"] == "fashion_mnist"


def test_build_model_rejects_mismatched_data(make_cfg):
    cfg = make_cfg("model=embedding_bag")
    with pytest.raises(ValueError, match="data.vectorize=sequence"):
        build_model(cfg["model"], cfg["regularizer"], blobs(n=30))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.epochs=-3", "trainer.epochs"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.eval_batch_size=-1", "trainer.eval_batch_size"),
        ("tune.num_samples=0", "tune.num_samples"),
        ("tune.grace_period=0", "tune.grace_period"),
        ("tune.reduction_factor=1", "tune.reduction_factor"),
        ("tune.max_concurrent_trials=0", "tune.max_concurrent_trials"),
        ("trainer.early_stopping.patience=0", "trainer.early_stopping.patience"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("regularizer.dropout=1.0", "regularizer.dropout"),
    ],
)
def test_settings_that_cannot_work_are_refused_while_composing(override, key):
    with pytest.raises(ConfigError) as err:
        compose([override])
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{key}=") and "must be" in message


def test_every_experiment_passes_validation():  # the other groups' options compose in the test above
    for option in group_options("experiment"):
        compose([f"experiment={option}"])


def test_a_sweep_refuses_a_grace_period_longer_than_its_trials():
    cfg = to_container(compose(["tune=asha", "tune.grace_period=5", "trainer.epochs=3"]))
    with pytest.raises(ConfigError, match="tune.grace_period=5 is more than the 3 epochs"):
        validate_sweep(cfg, max_epochs=3)
    validate_sweep(cfg, max_epochs=5)  # e.g. the search space lets trials run 5 epochs
    fifo = to_container(compose(["tune=fifo", "tune.grace_period=5", "trainer.epochs=3"]))
    validate_sweep(fifo, max_epochs=3)  # FIFO stops nothing: the grace period means nothing to it


@pytest.mark.parametrize("search", ["fashion_mlp", "optimizers", "regularizers"])
def test_a_trials_config_set_on_a_composed_one_equals_composing_it_whole(search):
    """Trials compose each choice of group options once and set their other values on it: the
    same config as composing every override, for the values Tune samples from the space."""
    import random

    from sweeplab.space import parse_space
    from sweeplab.sweep.tuner import param_space
    from sweeplab.trial import trial_config, trial_overrides

    base = ["experiment=fashion_mnist_sweep", f"search={search}"]
    space = param_space(parse_space(to_container(compose(base))["search"]["space"]), "random")
    random.seed(0)
    for _ in range(12):
        # a grid is {"grid_search": values}; the others are Tune's domains
        sampled = {
            k: random.choice(d["grid_search"]) if isinstance(d, dict) else d.sample()
            for k, d in space.items()
        }
        assert trial_config(base, sampled) == to_container(compose(trial_overrides(base, sampled))), sampled


def test_a_value_a_group_option_lacks_fails_as_composing_would():
    from sweeplab.trial import trial_config

    with pytest.raises(ConfigError, match="momentum"):
        trial_config(["optimizer=adam"], {"optimizer": "adam", "optimizer.momentum": 0.9})
