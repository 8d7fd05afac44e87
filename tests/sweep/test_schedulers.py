"""What each scheduler and searcher does to a sweep, read back from the store (digits data, real Ray).

Each test asserts the scheduler's own rule against the recorded curves — ASHA's rungs, the
median rule, PBT's exploits and perturbations, Optuna's samples — not the config echoed back.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from conftest import blobs
from mlflow.tracking import MlflowClient

from sweeplab import sweep
from sweeplab.config import compose, to_container
from sweeplab.training import Trainer


def run_sweep(*overrides: str):
    overrides = ["data=digits", "tracking.experiment=sweeps", "tune.register_model=false", *overrides]
    return sweep.start(to_container(compose(overrides)), overrides)


def trials(workdir, outcome) -> list[dict]:
    """Every child run: status, last epoch, per-epoch metrics by key, tags; in trial order."""
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    parent = client.get_run(outcome.state.parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    out = []
    for run in runs:
        curves = {
            key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
            for key in run.data.metrics
        }
        out.append(
            {
                "number": int(run.data.tags["sweeplab.trial_number"]),
                "trial_id": run.data.tags["sweeplab.trial_id"],
                "status": run.data.tags["sweeplab.status"],
                "epochs": max(curves["val/loss"], default=0),
                "curves": curves,
                "tags": run.data.tags,
                "params": run.data.params,
            }
        )
    return sorted(out, key=lambda t: t["number"])


def test_trials_checkpoint_where_they_may_be_resumed_stopped_or_copied():
    from sweeplab.sweep.tuner import checkpoint_epochs

    def tune(scheduler, every=5, grace=1, factor=4):
        keys = ("scheduler", "checkpoint_every", "grace_period", "reduction_factor")
        return dict(zip(keys, (scheduler, every, grace, factor), strict=True))

    assert checkpoint_epochs(tune("fifo"), 12) == {5, 10, 12}  # every 5 epochs and the last
    assert checkpoint_epochs(tune("asha"), 20) == {1, 4, 16, 5, 10, 15, 20}  # and ASHA's rungs
    assert checkpoint_epochs(tune("hyperband", grace=2, factor=3), 20) == {2, 6, 18, 5, 10, 15, 20}
    assert checkpoint_epochs(tune("fifo", every=1), 3) == {1, 2, 3}
    assert checkpoint_epochs(tune("pbt"), 20) is None  # PBT copies a trial at any epoch: every epoch
    assert checkpoint_epochs(tune("median"), 20) is None  # the median rule stops at any epoch


def test_asha_stops_trials_only_at_its_rungs(workdir):
    """grace 1, reduction 2, 4 epochs: rungs at epochs 1 and 2 (4 is the end); a trial ASHA
    stops has run exactly a rung's epochs."""
    outcome = run_sweep(
        "search=lr_batch", "tune=asha", "tune.num_samples=6", "tune.grace_period=1",
        "tune.reduction_factor=2", "trainer.epochs=4", "optimizer=sgd",
    )  # fmt: skip
    runs = trials(workdir, outcome)
    stopped = [t for t in runs if t["status"] == "stopped_by_scheduler"]
    assert stopped, [(t["status"], t["epochs"]) for t in runs]
    assert {t["epochs"] for t in stopped} <= {1, 2}
    assert all(t["epochs"] == 4 for t in runs if t["status"] == "completed")


def test_hyperband_brackets_stop_trials_at_their_rungs(workdir):
    """Asynchronous HyperBand over 9 epochs, grace 1, reduction 3: brackets with rungs at
    (1, 3), (3) and none; a stopped trial ran 1 or 3 epochs, never 2 or 4..8."""
    outcome = run_sweep(
        "search=lr_batch", "tune=hyperband", "tune.num_samples=8", "tune.grace_period=1",
        "trainer.epochs=9", "trainer.early_stopping.enabled=false", "optimizer=sgd",
    )  # fmt: skip
    runs = trials(workdir, outcome)
    stopped = [t for t in runs if t["status"] == "stopped_by_scheduler"]
    assert stopped, [(t["status"], t["epochs"]) for t in runs]
    assert {t["epochs"] for t in stopped} <= {1, 3}
    assert all(t["epochs"] == 9 for t in runs if t["status"] == "completed")


def test_median_rule_stops_a_trial_worse_than_the_median_of_the_others(workdir):
    """One trial at a time, so the trials the rule compared with are exactly those before it.
    A stopped trial's best val/loss by its last epoch t is worse than the median of the earlier
    trials' mean val/loss over epochs 1..t (Tune's rule, grace period 1, three trials needed)."""
    outcome = run_sweep(
        "search=lr_batch", "tune=median", "tune.grace_period=1", "tune.num_samples=7",
        "tune.max_concurrent_trials=1", "trainer.epochs=4", "optimizer=sgd",
    )  # fmt: skip
    runs = trials(workdir, outcome)
    stopped = [t for t in runs if t["status"] == "stopped_by_scheduler"]
    assert stopped, [(t["status"], t["epochs"]) for t in runs]
    for trial in stopped:
        t = trial["epochs"]
        loss = trial["curves"]["val/loss"]
        best = min(loss[e] for e in range(1, t + 1))
        means = [
            statistics.mean(o["curves"]["val/loss"][e] for e in range(1, t + 1))
            for o in runs
            if o["number"] < trial["number"] and o["epochs"] >= t
        ]
        assert len(means) >= 3 and best > statistics.median(means)


def test_pbt_exploits_applies_and_records_perturbed_values(workdir):
    """PBT copies a strong trial's weights into a weak one and perturbs its values: the weak
    trial's run names its donor, keeps its own epoch numbering, and records per epoch the
    values it trained with — the learning rate the optimizer actually used matches them."""
    outcome = run_sweep(
        "search=lr_batch", "tune=pbt", "tune.num_samples=4", "tune.perturbation_interval=1",
        "trainer.epochs=5", "optimizer=adam", "trainer.early_stopping.enabled=false",
    )  # fmt: skip
    runs = trials(workdir, outcome)
    ids = {t["trial_id"] for t in runs}
    exploited = [t for t in runs if "sweeplab.exploited_from" in t["tags"]]
    assert exploited, "PBT never exploited"
    for t in runs:
        lr = t["curves"]["hp/optimizer.lr"]
        assert sorted(lr) == sorted(t["curves"]["val/loss"]) == list(range(1, t["epochs"] + 1))
        # constant schedule: the rate the optimizer ran each epoch with is the recorded value
        assert all(t["curves"]["lr"][e] == pytest.approx(v, rel=1e-9) for e, v in lr.items())
    for t in exploited:
        assert t["tags"]["sweeplab.exploited_from"] in ids - {t["trial_id"]}
        lr = t["curves"]["hp/optimizer.lr"]
        at = [int(e.split(":")[0]) for e in t["tags"]["sweeplab.exploits"].split(",")]
        assert any(e > 1 and lr[e] != lr[e - 1] for e in at if e in lr)


def test_optuna_samples_the_trials(workdir):
    """The trials' values are Optuna's first draws with the sweep's seed (TPE starts random)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from sweeplab.space import parse_space
    from sweeplab.sweep.tuner import param_space

    outcome = run_sweep("search=lr_batch", "tune=optuna", "tune.num_samples=3", "trainer.epochs=2")
    cfg = to_container(compose(["data=digits", "search=lr_batch", "tune=optuna"]))
    space = OptunaSearch.convert_search_space(param_space(parse_space(cfg["search"]["space"]), "optuna"))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=cfg["seed"]))
    draws = [study.ask(fixed_distributions=space).params for _ in range(3)]
    sampled = {
        (float(t["params"]["sampled.optimizer.lr"]), int(t["params"]["sampled.trainer.batch_size"]))
        for t in trials(workdir, outcome)
    }
    assert sampled == {(d["optimizer.lr"], d["trainer.batch_size"]) for d in draws}


# ------------------------------------------------------------ PBT's restore, without Ray
def test_restore_keeps_progress_and_takes_every_setting_from_the_config(make_cfg):
    """A PBT exploit: another run's checkpoint under perturbed values. Weights, optimizer moments
    and the schedule's position come from the checkpoint; momentum, weight decay, betas, the
    schedule's gamma, patience, dropout and the penalty from the new config."""
    data = blobs()
    common = ("model.hidden=[32]", "trainer.batch_size=32", "optimizer=adamw", "regularizer=dropout",
              "lr_schedule=step", "lr_schedule.step_size=1")  # fmt: skip
    donor = Trainer(
        make_cfg(*common, "trainer.epochs=2", "optimizer.lr=0.01", "optimizer.weight_decay=0.01",
                 "optimizer.betas=[0.9,0.999]", "regularizer.dropout=0.1", "regularizer.l2=0.0001",
                 "lr_schedule.gamma=0.5", "trainer.early_stopping.patience=3"),
        data,
    )  # fmt: skip
    donor.fit()
    state = donor.checkpoint()
    new = Trainer(
        make_cfg(*common, "trainer.epochs=3", "optimizer.lr=0.02", "optimizer.weight_decay=0.05",
                 "optimizer.betas=[0.8,0.99]", "regularizer.dropout=0.3", "regularizer.l2=0.001",
                 "lr_schedule.gamma=0.7", "trainer.early_stopping.patience=7"),
        data,
    )  # fmt: skip
    new.restore(state)
    group = new.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.05 and tuple(group["betas"]) == (0.8, 0.99)
    assert group["lr"] == pytest.approx(0.02 * 0.5**2)  # two steps of the donor's schedule, new base
    assert new.schedule.gamma == 0.7 and new.schedule.base_lrs == [0.02]
    assert new.stopper.patience == 7 and new.stopper.best_epoch == donor.stopper.best_epoch
    assert {m.p for m in new.model.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}
    assert new.penalty.l2 == 0.001
    moments = donor.optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(new.optimizer.state_dict()["state"][0]["exp_avg"], moments)
    result = new.fit(evaluate_test=False)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[-1]["lr"] == pytest.approx(0.02 * 0.5**2)
    assert new.optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * 0.5**2 * 0.7)
    assert math.isfinite(result.history[-1]["val/loss"])


# ------------------------------------------------------------ PBT's epochs in the driver, without Ray
class Journal:
    """Stands in for the outbox: keeps what the recorder appends."""

    def __init__(self):
        self.records = []

    def write(self, records=(), state=None):
        self.records += list(records)


def recorder_and_trial():
    """The driver's recorder with a journal for an outbox, and one trial's handle as Tune passes it."""
    from types import SimpleNamespace

    from sweeplab.sweep.recorder import SweepRecorder

    recorder = SweepRecorder("s")
    recorder.session = SimpleNamespace(show=None, clock=dict, state=SimpleNamespace(experiment="e"))
    recorder.outbox, recorder.trials = Journal(), {}
    return recorder, SimpleNamespace(trial_id="a_00001", config={"optimizer.lr": 0.01})


def hp_steps(recorder) -> list[tuple[int, float]]:
    """(step, value) of each hp/optimizer.lr point the recorder logged, in order."""
    return [
        (step, value)
        for r in recorder.outbox.records
        if r.kind == "log"
        for key, value, _, step in r.payload["metrics"]
        if key == "hp/optimizer.lr"
    ]


def test_an_exploited_trial_keeps_its_own_epoch_numbering():
    """After an exploit the trial reports the donor's epochs (the weights' age, PBT's clock); its run
    goes on with its own next epoch, whether the donor was ahead or behind, and names the donor."""
    from sweeplab.trial import EXPLOITED_FROM

    recorder, trial = recorder_and_trial()
    reported = [(1, {}), (2, {}), (6, {EXPLOITED_FROM: "a_00000"}), (7, {}), (2, {EXPLOITED_FROM: "a_00002"})]
    for epoch, extra in reported:
        result = {"epoch": epoch, "val/loss": 1.0 / epoch, "hp/optimizer.lr": 0.01 * epoch, **extra}
        recorder.on_trial_result(0, [], trial, result)
    assert hp_steps(recorder) == [(1, 0.01), (2, 0.02), (3, 0.06), (4, 0.07), (5, 0.02)]
    tags = {}
    for r in recorder.outbox.records:
        tags.update(r.payload.get("tags", {}) if r.kind == "log" else {})
    assert tags["sweeplab.exploited_from"] == "a_00002"
    assert tags["sweeplab.exploits"] == "3:a_00000,5:a_00002"


def test_epochs_restored_after_an_exploit_keep_the_runs_numbering_and_values():
    """A trial that restores its own checkpoint after an exploit (a PBT pause, a retry, a resumed
    sweep) may hold epochs the driver never logged: they are logged in its run's numbering, with
    the values they trained with, and none twice."""
    import json

    from sweeplab.trial import EXPLOITED_FROM, FINAL, RESTORED_HISTORY

    recorder, trial = recorder_and_trial()

    def entry(epoch):
        return {"epoch": epoch, "val/loss": 1.0 / epoch, "hp/optimizer.lr": 0.01 * epoch}

    for epoch, extra in [(1, {}), (2, {}), (6, {EXPLOITED_FROM: "a_00000"})]:  # run epochs 1, 2, 3
        recorder.on_trial_result(0, [], trial, {**entry(epoch), **extra})
    # the trial ran reported epochs 7 and 8 (run epochs 4 and 5) unseen, then restored its checkpoint
    history = [entry(e) for e in range(1, 9)]
    final = {FINAL: 1, "trial_status": "completed", "epoch": 8, RESTORED_HISTORY: json.dumps(history)}
    recorder.on_trial_result(0, [], trial, final)
    assert hp_steps(recorder) == [(1, 0.01), (2, 0.02), (3, 0.06), (4, 0.07), (5, 0.08)]


def test_the_best_config_names_the_group_option_chosen_and_the_values_trained_with():
    from sweeplab.sweep.summary import trained_values

    # optimizer=momentum composes an optimizer whose name is sgd; PBT moved the rate to 0.012
    trial_cfg = to_container(compose(["optimizer=momentum", "optimizer.lr=0.012"]))
    sampled = {"optimizer": "momentum", "optimizer.lr": 0.01, "trainer.batch_size": 64}
    assert trained_values(sampled, trial_cfg) == {
        "optimizer": "momentum",
        "optimizer.lr": 0.012,
        "trainer.batch_size": trial_cfg["trainer"]["batch_size"],
    }
