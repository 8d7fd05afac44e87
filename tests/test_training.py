"""The training loop: learning, reproducibility, optimizers, penalties, schedules, stopping, divergence."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import blobs

from sweeplab.regularizers import penalized_weights
from sweeplab.training import COMPLETED, DIVERGED, EARLY_STOPPED, EarlyStopping, Trainer

METRICS = {"train/loss", "train/acc", "val/loss", "val/acc", "lr", "epoch_time_s", "epoch"}


def small(make_cfg, *overrides):
    return make_cfg("model.hidden=[32]", "trainer.epochs=5", "trainer.batch_size=32", *overrides)


def test_learns_and_reports_every_epoch(make_cfg, blob_data):
    result = Trainer(small(make_cfg), blob_data).fit()
    assert result.status == COMPLETED
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert all(h.keys() >= METRICS for h in result.history)
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]
    assert result.best["val/acc"] > 0.9 and result.test["test/acc"] > 0.9


def test_same_seed_same_run_other_seed_other_run(make_cfg, blob_data):
    def losses(seed):
        return [h["val/loss"] for h in Trainer(small(make_cfg, f"seed={seed}"), blob_data).fit().history]

    assert losses(1) == losses(1)
    assert losses(1) != losses(2)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam", "adamw", "adagrad"])
def test_each_optimizer_trains(make_cfg, blob_data, optimizer):
    trainer = Trainer(small(make_cfg, f"optimizer={optimizer}"), blob_data)
    expected = {
        "sgd": "SGD",
        "momentum": "SGD",
        "rmsprop": "RMSprop",
        "adam": "Adam",
        "adamw": "AdamW",
        "adagrad": "Adagrad",
    }[optimizer]
    assert type(trainer.optimizer).__name__ == expected
    result = trainer.fit()
    assert result.history[-1]["train/loss"] < 0.7 * result.history[0]["train/loss"]


def test_optimizer_settings_reach_torch(make_cfg, blob_data):
    group = Trainer(small(make_cfg, "optimizer=momentum"), blob_data).optimizer.param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] is True
    group = Trainer(
        small(make_cfg, "optimizer=rmsprop", "optimizer.lr=0.005"), blob_data
    ).optimizer.param_groups[0]
    assert (group["lr"], group["alpha"], group["eps"]) == (0.005, 0.9, 1e-7)


def test_training_flushes_subnormal_floats(make_cfg, blob_data):
    """They made a high-lr Adam trial's epochs twice as slow; a run trains with them flushed to zero."""
    torch.set_flush_denormal(False)  # as a fresh process starts (earlier tests' runs flushed them)
    subnormal = torch.tensor([1e-39], dtype=torch.float32)
    assert (subnormal * 2).item() != 0.0  # this CPU computes subnormals, so the check below can fail
    Trainer(small(make_cfg), blob_data)
    assert (subnormal * 2).item() == 0.0


def weight_norms(trainer):
    w = penalized_weights(trainer.model)
    return sum(p.abs().sum().item() for p in w), sum(p.pow(2).sum().item() for p in w)


def test_l2_shrinks_weights_and_l1_sparsifies(make_cfg, blob_data):
    runs = {}
    for reg in ("none", "l2", "l1"):
        overrides = {"none": [], "l2": ["regularizer.l2=0.05"], "l1": ["regularizer.l1=0.02"]}[reg]
        cfg = small(
            make_cfg,
            f"regularizer={reg}",
            "optimizer=sgd",
            "optimizer.lr=0.1",
            "trainer.epochs=8",
            "trainer.early_stopping.enabled=false",
            *overrides,
        )
        trainer = Trainer(cfg, blob_data)
        result = trainer.fit()
        runs[reg] = (trainer, result)
    assert weight_norms(runs["l2"][0])[1] < 0.5 * weight_norms(runs["none"][0])[1]
    assert weight_norms(runs["l1"][0])[0] < 0.5 * weight_norms(runs["none"][0])[0]
    assert "train/penalty" in runs["l2"][1].history[0] and "train/penalty" not in runs["none"][1].history[0]
    # biases are not penalised: only Linear weights are in the penalty
    assert all(p.dim() == 2 for p in penalized_weights(runs["l2"][0].model))


@pytest.mark.parametrize(
    ("schedule", "overrides", "expected"),
    [
        ("constant", [], [0.01] * 6),
        (
            "step",
            ["lr_schedule.step_size=2", "lr_schedule.gamma=0.5"],
            [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025],
        ),
        ("exponential", ["lr_schedule.gamma=0.5"], [0.01 * 0.5**i for i in range(6)]),
    ],
)
def test_lr_schedules(make_cfg, blob_data, schedule, overrides, expected):
    cfg = small(
        make_cfg,
        "optimizer=sgd",
        "optimizer.lr=0.01",
        "trainer.epochs=6",
        "trainer.early_stopping.enabled=false",
        f"lr_schedule={schedule}",
        *overrides,
    )
    lrs = [h["lr"] for h in Trainer(cfg, blob_data).fit().history]
    assert lrs == pytest.approx(expected)


def test_cosine_anneals_to_min_and_plateau_reduces(make_cfg, blob_data):
    cfg = small(
        make_cfg,
        "optimizer=sgd",
        "optimizer.lr=0.01",
        "trainer.epochs=5",
        "lr_schedule=cosine",
        "trainer.early_stopping.enabled=false",
    )
    trainer = Trainer(cfg, blob_data)
    lrs = [h["lr"] for h in trainer.fit().history]
    assert lrs[0] == pytest.approx(0.01) and lrs == sorted(lrs, reverse=True)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)

    cfg = small(
        make_cfg,
        "optimizer=sgd",
        "optimizer.lr=0.01",
        "trainer.epochs=4",
        "lr_schedule=reduce_on_plateau",
        "lr_schedule.patience=0",
        "trainer.early_stopping.enabled=false",
    )
    plateau = ScriptedTrainer(cfg, blob_data, val_losses=[1.0, 1.0, 1.0, 1.0])
    assert [h["lr"] for h in plateau.fit().history] == pytest.approx([0.01, 0.01, 0.005, 0.0025])


class ScriptedTrainer(Trainer):
    """A real trainer whose validation loss follows a script (to test the stopping rule exactly)."""

    def __init__(self, cfg, data, val_losses):
        super().__init__(cfg, data)
        self.script = list(val_losses)
        self.weights_at_epoch = {}

    def evaluate(self, split):
        if split == "val":
            epoch = len(self.history) + 1
            self.weights_at_epoch[epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}
            return {"val/loss": self.script[epoch - 1], "val/acc": 0.5}
        return super().evaluate(split)


def test_early_stopping_stops_at_the_right_epoch_and_restores_best(make_cfg, blob_data):
    curve = [1.0, 0.8, 0.6, 0.65, 0.7, 0.62, 0.9, 0.5]  # best at epoch 3; patience 3 -> stop after epoch 6
    cfg = small(make_cfg, "trainer.epochs=8", "trainer.early_stopping.patience=3")
    trainer = ScriptedTrainer(cfg, blob_data, curve)
    result = trainer.fit()
    assert result.status == EARLY_STOPPED
    assert len(result.history) == 6 and result.best_epoch == 3
    best = trainer.weights_at_epoch[3]
    assert all(torch.equal(v, best[k]) for k, v in trainer.model.state_dict().items())


def test_a_run_restored_after_it_stopped_early_trains_no_more(make_cfg, blob_data):
    """A resumed sweep restores an early-stopped trial from its last checkpoint: it must not train on."""
    curve = [1.0, 0.8, 0.6, 0.65, 0.7, 0.62, 0.9, 0.5]
    cfg = small(make_cfg, "trainer.epochs=8", "trainer.early_stopping.patience=3")
    first = ScriptedTrainer(cfg, blob_data, curve)
    first.fit()
    again = ScriptedTrainer(cfg, blob_data, curve)
    again.restore(first.checkpoint())
    result = again.fit()
    assert result.status == EARLY_STOPPED and len(result.history) == 6  # no seventh epoch


def test_min_delta_and_smoothing():
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    for epoch, loss in enumerate([1.0, 0.95, 0.92], 1):  # improvements smaller than min_delta
        stopper.update(epoch, loss)
    assert stopper.should_stop and stopper.best_epoch == 3

    smooth = EarlyStopping(patience=2, smoothing=3)
    for epoch, loss in enumerate([1.0, 0.5, 0.9, 0.8, 0.7], 1):  # one lucky epoch at 2
        smooth.update(epoch, loss)
    raw = EarlyStopping(patience=2)
    for epoch, loss in enumerate([1.0, 0.5, 0.9, 0.8, 0.7], 1):
        raw.update(epoch, loss)
    assert raw.should_stop and not smooth.should_stop


def test_diverging_learning_rate_ends_as_diverged(make_cfg, blob_data):
    cfg = small(make_cfg, "optimizer=sgd", "optimizer.lr=1e6", "trainer.epochs=5")
    result = Trainer(cfg, blobs(spread=50.0)).fit()
    assert result.status == DIVERGED
    assert "nan" in result.reason or "inf" in result.reason
    assert len(result.history) < 5
    assert all(math.isfinite(h["train/loss"]) for h in result.history)


def test_checkpoint_restore_continues_exactly(make_cfg, blob_data):
    cfg = small(
        make_cfg,
        "trainer.epochs=4",
        "regularizer=dropout",
        "regularizer.dropout=0.2",
        "lr_schedule=step",
        "lr_schedule.step_size=1",
    )
    straight = Trainer(cfg, blob_data).fit().history

    first = Trainer({**cfg, "trainer": {**cfg["trainer"], "epochs": 2}}, blob_data)
    first.fit()
    state = first.checkpoint()
    resumed = Trainer(cfg, blob_data)
    resumed.restore(state)
    history = resumed.fit().history
    drop = ("epoch_time_s",)
    assert [{k: v for k, v in h.items() if k not in drop} for h in history] == [
        {k: v for k, v in h.items() if k not in drop} for h in straight
    ]


def save_as_on_a_gpu(state, path) -> None:
    """Write ``state`` as torch.save does on a CUDA machine: every storage tagged with device cuda:0.

    The legacy serialization keeps each storage's device as a pickled string, so the tag can be
    rewritten byte for byte; the values stay those of the CPU run."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    cpu_tag = b"X\x03\x00\x00\x00cpu"  # BINUNICODE "cpu", pickle protocol 2
    assert cpu_tag in buf.getvalue()
    path.write_bytes(buf.getvalue().replace(cpu_tag, b"X\x06\x00\x00\x00cuda:0"))


def test_a_checkpoint_written_on_a_gpu_restores_on_a_cpu(make_cfg, blob_data, tmp_path):
    from sweeplab.checkpoints import load

    cfg = small(make_cfg, "trainer.epochs=4", "regularizer=dropout", "regularizer.dropout=0.2")
    straight = Trainer(cfg, blob_data).fit().history
    first = Trainer({**cfg, "trainer": {**cfg["trainer"], "epochs": 2}}, blob_data)
    first.fit()
    path = tmp_path / "state.pt"
    save_as_on_a_gpu(first.checkpoint(), path)
    if not torch.cuda.is_available():  # the file really claims a GPU: a plain torch.load cannot open it here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=False)

    resumed = Trainer(cfg, blob_data)
    resumed.restore(load(path))
    assert {p.device for p in resumed.model.parameters()} == {resumed.device}
    history = resumed.fit().history
    drop = ("epoch_time_s",)
    assert [{k: v for k, v in h.items() if k not in drop} for h in history] == [
        {k: v for k, v in h.items() if k not in drop} for h in straight
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_checkpoint_restore_continues_exactly_on_a_gpu(make_cfg, blob_data):
    """Dropout masks on a GPU come from the GPU's generator: its state travels in the checkpoint."""
    cfg = small(make_cfg, "trainer.device=cuda", "trainer.epochs=4", "regularizer=dropout")
    straight = Trainer(cfg, blob_data).fit().history
    first = Trainer({**cfg, "trainer": {**cfg["trainer"], "epochs": 2}}, blob_data)
    first.fit()
    state = first.checkpoint()
    resumed = Trainer(cfg, blob_data)  # seeds the GPU's generator afresh, as a retried trial's process does
    resumed.restore(state)
    history = resumed.fit().history
    assert [h["val/loss"] for h in history] == [h["val/loss"] for h in straight]
