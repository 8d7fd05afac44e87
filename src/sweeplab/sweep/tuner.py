"""A search space and tune settings become a Ray Tune ``Tuner`` (new, or restored for a resume)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune.search import BasicVariantGenerator

from sweeplab.config import ConfigError
from sweeplab.overrides import under
from sweeplab.space import Param, grid_size
from sweeplab.stage import REEVALUATION_EXPERIMENT, REEVALUATION_POINT

# Trials need neither where MLflow lives nor where the cluster is (and such overrides can
# carry credentials): they compose their config without them.
DRIVER_ONLY = ("tracking", "cluster")  # their options and every key in them
# Nor what the config files say about them: a team's conf/ may give the store URI with its
# password (or an ${oc.env:...} only the driver's machine can resolve). Cleared last, it never
# reaches a trial's config, Tune's result files or checkpoints.
DRIVER_VALUES = ("tracking.uri=null", "cluster.address=null")


def param_space(params: Sequence[Param], search_alg: str) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for p in params:
        values = [_tune_value(v) for v in p.args] if p.discrete else None
        if p.kind == "grid" or (p.kind == "choice" and search_alg == "grid"):
            space[p.key] = tune.grid_search(values)
        elif p.kind == "choice":
            space[p.key] = tune.choice(values)
        elif p.kind == "uniform":
            space[p.key] = tune.uniform(*p.args)
        elif p.kind == "loguniform":
            space[p.key] = tune.loguniform(*p.args)
        elif p.kind == "randint":  # inclusive bounds, like the other integer kinds
            space[p.key] = tune.randint(p.args[0], p.args[1] + 1)
        elif p.kind == "qrandint":
            space[p.key] = tune.qrandint(*p.args)
    return space


def _tune_value(value: Any) -> Any:
    """Lists (layer widths) travel as Hydra list strings: Optuna's categories must be scalars."""
    if isinstance(value, tuple):
        return "[" + ",".join(str(_tune_value(v)) for v in value) + "]"
    return value


def scheduler(tune_cfg: Mapping[str, Any], max_epochs: int, params: Sequence[Param]):
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
    )

    name = tune_cfg["scheduler"]
    # time_attr="epoch": the trial's final result repeats its last epoch, so it never counts as progress
    if name == "fifo":
        return FIFOScheduler()
    if name in ("asha", "hyperband"):
        # hyperband is asynchronous HyperBand: several ASHA brackets with different grace periods.
        # Tune's synchronous HyperBandScheduler pauses trials until a bracket fills, which can
        # leave a small sweep waiting forever.
        return ASHAScheduler(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=tune_cfg["grace_period"],
            reduction_factor=tune_cfg["reduction_factor"],
            brackets=3 if name == "hyperband" else 1,
        )
    if name == "median":
        return MedianStoppingRule(
            time_attr="epoch", grace_period=tune_cfg["grace_period"], min_samples_required=3
        )
    if name == "pbt":
        mutable = {
            p.key: param_space([p], "random")[p.key] for p in params if p.kind in ("uniform", "loguniform")
        }
        if not mutable:
            raise ConfigError(
                "tune.scheduler=pbt perturbs continuous values; the search space has no "
                "uniform[...] or loguniform[...] key (e.g. optimizer.lr: loguniform[1e-4, 1e-1])"
            )
        bounds = {p.key: (p.args[0], p.args[1]) for p in params if p.key in mutable}
        return PopulationBasedTraining(
            time_attr="epoch",
            perturbation_interval=tune_cfg["perturbation_interval"],
            hyperparam_mutations=mutable,
            custom_explore_fn=functools.partial(within_bounds, bounds),
        )
    raise ConfigError(f"unknown tune.scheduler {name!r}; choose one of: asha, fifo, hyperband, median, pbt")


def within_bounds(bounds: Mapping[str, tuple[float, float]], config: dict[str, Any]) -> dict[str, Any]:
    """PBT multiplies a value by 0.8 or 1.2 without looking at the space; keep it inside the
    space's bounds (a dropout of 1.04 or a momentum of 1.19 is an error, not an exploration)."""
    for key, (low, high) in bounds.items():
        if key in config:
            config[key] = min(max(config[key], low), high)
    return config


def checkpoint_epochs(tune_cfg: Mapping[str, Any], max_epochs: int) -> frozenset[int] | None:
    """The epochs a trial writes a checkpoint at (and its last epoch); None: every epoch.

    A checkpoint costs a trial about 50 ms an epoch here (its state written and handed to Tune),
    2-3 % of a Fashion-MNIST MLP's epoch. It is needed where a trial may be resumed (every
    ``checkpoint_every`` epochs bounds what a retry repeats) and where the scheduler may stop a
    trial (ASHA's rungs: its best weights so far go with it) or copy one (PBT, at any epoch;
    the median rule may stop a trial at any epoch too)."""
    if tune_cfg["scheduler"] in ("pbt", "median"):
        return None
    every = tune_cfg["checkpoint_every"]
    epochs = set(range(every, max_epochs + 1, every)) | {max_epochs}
    if tune_cfg["scheduler"] in ("asha", "hyperband"):  # every bracket's rungs are among these
        rung = tune_cfg["grace_period"]
        while rung < max_epochs:
            epochs.add(rung)
            rung *= tune_cfg["reduction_factor"]
    return frozenset(epochs)


class VariantGenerator(BasicVariantGenerator):
    """Tune's random/grid generator, whose concurrency a resume may change: Tune restores the
    generator's saved state over whatever the restored sweep was given."""

    pinned_max_concurrent: int | None = None

    def set_state(self, state):
        super().set_state(state)
        if self.pinned_max_concurrent:
            self.max_concurrent = self.pinned_max_concurrent


def population_limit(tune_cfg: Mapping[str, Any]) -> int:
    """How many trials the generator keeps alive. PBT's population is every trial at once: it
    pauses and resumes them in turn at each perturbation step; created two at a time, a small
    sweep's trials never overlap and no trial is ever exploited. Running trials are still bound by
    the CPUs (or GPUs) each asks for."""
    return 0 if tune_cfg["scheduler"] == "pbt" else tune_cfg["max_concurrent_trials"]


def search_algorithm(tune_cfg: Mapping[str, Any], seed: int):
    if tune_cfg["search_alg"] in ("random", "grid"):
        # random sampling and grid expansion, seeded: the same sweep samples the same configurations
        return VariantGenerator(random_state=seed, max_concurrent=population_limit(tune_cfg))
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(seed=seed)


def expected_trials(tune_cfg: Mapping[str, Any], params: Sequence[Param]) -> int:
    """Tune's count: every grid point num_samples times (random and optuna: num_samples)."""
    if tune_cfg["search_alg"] == "grid":
        return tune_cfg["num_samples"] * math.prod(len(p.args) for p in params)
    return tune_cfg["num_samples"] * grid_size(params)


def with_operational_settings(tuner, tune_cfg: Mapping[str, Any]):
    """A resumed sweep runs with the concurrency, time budget and retries it is given now.

    Tune restores a sweep's run and tune configs as they were pickled and has no API to change
    them; these are the attributes its resumed fit reads (Ray 2.60's TunerInternal)."""
    from ray import tune

    internal = tuner._local_tuner
    internal._run_config.failure_config = tune.FailureConfig(max_failures=tune_cfg["max_failures"])
    internal._tune_config.time_budget_s = tune_cfg["time_budget_s"]
    alg = internal._tune_config.search_alg
    if isinstance(alg, VariantGenerator):
        alg.pinned_max_concurrent = population_limit(tune_cfg)
    else:  # Optuna: Tune's own limiter
        internal._tune_config.max_concurrent_trials = tune_cfg["max_concurrent_trials"]
    return tuner


def trial_overrides(base_overrides: Sequence[str]) -> list[str]:
    driver_only = under(base_overrides, DRIVER_ONLY)
    return [o for o in base_overrides if o not in driver_only] + list(DRIVER_VALUES)


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default spells out every sampled value)."""
    return f"trial_{trial.trial_id}"


def build(
    cfg: Mapping[str, Any],
    state,
    params: Sequence[Param],
    callbacks: list,
    stopper,
    restore: bool,
    points: list[dict[str, Any]] | None = None,
):
    """The Tuner for a new sweep, or Tune's own restored one for a resumed sweep; with ``points``
    the re-evaluation stage: each point (a trial's values and a fresh seed) trained once."""
    from ray import tune

    from sweeplab.sweep.tune_state import StateBackup, repair
    from sweeplab.trial import run_trial, shared_data

    tune_cfg = cfg["tune"]
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            base_overrides=trial_overrides(state.base_overrides),
            metric=tune_cfg["metric"],
            mode=tune_cfg["mode"],
            fail_once_at_epoch=tune_cfg["fail_once_at_epoch"],
            drill_dir=state.path if state.store.is_local else None,
            checkpoint_at=checkpoint_epochs(tune_cfg, cfg["trainer"]["epochs"]),
            data=shared_data(cfg["data"]),
        ),
        {"cpu": tune_cfg["cpus_per_trial"], "gpu": tune_cfg["gpus_per_trial"]},
    )
    if points is None:
        storage, name, space = state.storage, state.name, param_space(params, tune_cfg["search_alg"])
        sched, search = (
            scheduler(tune_cfg, cfg["trainer"]["epochs"], params),
            search_algorithm(tune_cfg, cfg["seed"]),
        )
        samples, budget = tune_cfg["num_samples"], tune_cfg["time_budget_s"]
    else:
        storage, name = state.path, REEVALUATION_EXPERIMENT
        space = {REEVALUATION_POINT: tune.grid_search(points)}
        sched, search = (
            scheduler({**tune_cfg, "scheduler": "fifo"}, 0, ()),
            search_algorithm({**tune_cfg, "search_alg": "grid", "scheduler": "fifo"}, cfg["seed"]),
        )
        samples, budget = 1, None
    if state.store.is_local:  # Tune overwrites its state in place there; see tune_state
        callbacks = [*callbacks, StateBackup()]
        if restore:
            repair(Path(storage, name))
    if restore:
        tuner = tune.Tuner.restore(
            f"{storage}/{name}", trainable, resume_unfinished=True, resume_errored=True, param_space=space
        )
        return with_operational_settings(tuner, {**tune_cfg, "time_budget_s": budget})
    # Tune keeps every checkpoint while a trial runs: its own retention deletes the checkpoint its
    # last saved sweep state points at (seen: a driver killed between the two could not resume).
    # When a trial ends, the recorder has all but its best (by the sweep's metric) and its last
    # deleted, after its best.pt is in MLflow.
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=tune_cfg["metric"],
            mode=tune_cfg["mode"],
            scheduler=sched,
            search_alg=search,
            num_samples=samples,
            # random/grid: the generator above limits concurrency; Tune's limiter wraps searchers only
            max_concurrent_trials=tune_cfg["max_concurrent_trials"]
            if tune_cfg["search_alg"] == "optuna" and points is None
            else None,
            reuse_actors=tune_cfg["reuse_actors"],
            trial_dirname_creator=trial_dirname,
            time_budget_s=budget,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            callbacks=callbacks,
            stop=stopper,
            failure_config=tune.FailureConfig(max_failures=tune_cfg["max_failures"]),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            # object storage: Tune's own sweep state goes up every few seconds, so a driver that
            # dies loses little (trials upload their checkpoints themselves)
            sync_config=tune.SyncConfig(sync_period=5),
            verbose=0,
        ),
    )
