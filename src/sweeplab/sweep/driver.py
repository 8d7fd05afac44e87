"""Sweeps: a search space becomes a Ray Tune Tuner; a driver-side callback records it in MLflow.

    sweeplab sweep [overrides...]        start a sweep (search=..., tune=..., cluster=...)
    sweeplab sweep resume <sweep>        continue one (by name, path or parent run id)

All MLflow writes happen here on the driver, in :class:`SweepRecorder` (one writer:
the embedded SQLite store is safe with parallel trials; a retried trial continues
its own child run). Trials (``sweeplab.trial``) only report to Tune.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sweeplab.config import ConfigError, compose, to_container

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",  # Ray's default, said explicitly (before Ray is imported): no warning per start
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0: Tune prints nothing; sweeplab shows progress itself
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",  # a trial's error goes to its MLflow run, not the console
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/TensorBoard files; JSON results are kept explicitly
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_GLOBAL_CHECKPOINT_S": "1",  # sweep state saved every second: a killed driver resumes, not restarts
    "RAY_CHDIR_TO_TRIAL_DIR": "0",  # trials keep the user's working directory (relative data.root works)
}
for _key, _value in RAY_ENV.items():  # read by Ray at import time, so set before sweeplab.trial imports it
    os.environ.setdefault(_key, _value)
from sweeplab.space import Param, grid_size, parse_space, validate_space  # noqa: E402
from sweeplab.trial import FINAL, load_state, run_trial  # noqa: E402

STATE_FILE = "sweeplab.json"  # beside Tune's own state: what `sweep resume` needs to rebuild the sweep
# A resumed Tuner un-pickles its own copy of the recorder; it finds its live view here and
# registers itself, so the driver reaches whichever copy Tune is using.
_VIEWS: dict[str, Callable[[SweepRecorder], None] | None] = {}
_RECORDERS: dict[str, SweepRecorder] = {}


# ------------------------------------------------------- tune building blocks
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
        return PopulationBasedTraining(
            time_attr="epoch",
            perturbation_interval=tune_cfg["perturbation_interval"],
            hyperparam_mutations=mutable,
        )
    raise ConfigError(f"unknown tune.scheduler {name!r}; choose one of: asha, fifo, hyperband, median, pbt")


def search_algorithm(tune_cfg: Mapping[str, Any], seed: int):
    if tune_cfg["search_alg"] in ("random", "grid"):
        from ray.tune.search import BasicVariantGenerator

        # random sampling and grid expansion, seeded: the same sweep samples the same configurations
        return BasicVariantGenerator(random_state=seed, max_concurrent=tune_cfg["max_concurrent_trials"])
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(seed=seed)


# ------------------------------------------------------------ the recorder
@dataclass
class TrialRecord:
    trial_id: str
    number: int
    sampled: dict[str, Any]
    run_id: str | None = None
    status: str = "pending"
    reason: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    last_logged: int = 0
    retries: int = 0
    config_logged: bool = False


class SweepRecorder:
    """A Tune callback on the driver: every MLflow write of a sweep, and the live table.

    It pickles to its settings alone (Tune stores callbacks in the sweep's state), and
    on a resumed sweep it finds the child runs already written, by trial id, so a trial
    continues its own run and an epoch already logged is never logged twice.
    """

    def __init__(self, sweep: SweepState, show: Callable[[SweepRecorder], None] | None = None):
        self.sweep = sweep
        self.show = show
        self._setup_done = False

    def __getstate__(self):
        return {"sweep": self.sweep, "show": None, "_setup_done": False}

    # Tune looks these up by name; the base class only adds no-op defaults, so we
    # subclass lazily in `make_callback` to keep Ray out of module import time.
    def setup(self, **info) -> None:
        if self._setup_done:
            return
        from sweeplab.tracking import Tracker, sampled_values

        _RECORDERS[self.sweep.name] = self
        self.show = self.show or _VIEWS.get(self.sweep.name)
        self.tracker = Tracker(self.sweep.tracking)
        self.trials: dict[str, TrialRecord] = {}
        self.started = time.monotonic()
        for run in self.tracker.child_runs(self.sweep.parent_run_id):
            tid = run.data.tags.get("sweeplab.trial_id")
            if tid:
                sampled = sampled_values(run)
                rec = TrialRecord(
                    tid, int(run.data.tags.get("sweeplab.trial_number", 0)), sampled, run.info.run_id
                )
                rec.status = run.data.tags.get("sweeplab.status", "running")
                if rec.status == "interrupted":  # it will start again in this resumed sweep
                    rec.status = "pending"
                rec.history = self.tracker.history(run.info.run_id)
                rec.last_logged = int(max((h["epoch"] for h in rec.history), default=0))
                rec.retries = int(run.data.tags.get("sweeplab.retries", 0))
                rec.config_logged = "trainer.epochs" in run.data.params
                self.trials[tid] = rec
        self._setup_done = True

    def record(self, trial) -> TrialRecord:
        rec = self.trials.get(trial.trial_id)
        if rec is None:
            number = int(trial.trial_id.rsplit("_", 1)[-1]) if "_" in trial.trial_id else len(self.trials)
            rec = self.trials[trial.trial_id] = TrialRecord(trial.trial_id, number, dict(trial.config))
        if not rec.sampled:
            rec.sampled = dict(trial.config)
        return rec

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        rec = self.record(trial)
        if rec.run_id is None:
            rec.run_id = self.tracker.start_run(
                self.sweep.experiment,
                f"trial-{rec.number:03d}",
                {f"sampled.{k}": v for k, v in rec.sampled.items()},
                parent_run_id=self.sweep.parent_run_id,
                tags={
                    "sweeplab.trial_id": rec.trial_id,
                    "sweeplab.trial_number": rec.number,
                    "sweeplab.sweep": self.sweep.name,
                    "sweeplab.status": "running",
                },
            )
        else:
            self.tracker.reopen(rec.run_id)
        rec.status = "running"
        self._show()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        rec = self.record(trial)
        if result.get("config_json") and not rec.config_logged:  # the trial's resolved config, once
            cfg = json.loads(result["config_json"])
            self.tracker.log_params(rec.run_id, cfg)
            self.tracker.log_config(rec.run_id, cfg)
            self.tracker.set_tags(rec.run_id, {"sweeplab.node": result["node_id"]})
            rec.config_logged = True
        if result.get(FINAL):
            rec.status, rec.reason = result["trial_status"], result.get("trial_reason", "")
            return
        epoch = int(result["epoch"])
        if epoch > rec.last_logged:  # a replayed epoch (restored from an older checkpoint) is logged once
            metrics = {
                k: result[k]
                for k in result
                if k.startswith(("train/", "val/")) or k in ("lr", "epoch_time_s")
            }
            metrics["epoch"] = epoch
            self.tracker.log_metrics(rec.run_id, metrics, step=epoch)
            rec.history.append(metrics)
            rec.last_logged = epoch
        self._show()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        rec = self.record(trial)
        rec.retries += 1
        error = _error_text(trial)
        self.tracker.set_tags(
            rec.run_id, {"sweeplab.retries": rec.retries, "sweeplab.last_error": error[-4000:]}
        )
        rec.status = "retrying"
        self._show()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        rec = self.record(trial)
        rec.status, rec.reason = "failed", _error_text(trial)
        self._finish(trial, rec)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        # A scheduler that pauses a trial reports it complete: its run is closed as stopped by
        # the scheduler, and reopened (on_trial_start) if the trial goes on.
        rec = self.record(trial)
        if not trial.last_result.get(FINAL):
            # Schedulers stop trials that reach max_t too; only a trial cut short was stopped by one.
            if rec.last_logged >= self.sweep.max_epochs:
                rec.status, rec.reason = "completed", f"ran all {self.sweep.max_epochs} epochs"
            else:
                rec.status = "stopped_by_scheduler"
                rec.reason = (
                    f"stopped by the {self.sweep.tune['scheduler']} scheduler after epoch {rec.last_logged}"
                )
        self._finish(trial, rec)

    def _finish(self, trial, rec: TrialRecord) -> None:
        if rec.run_id is None:  # failed before it started
            return
        best = best_checkpoint(load_state(trial.checkpoint)) if trial.checkpoint is not None else None
        self.tracker.finish_trial(
            rec.run_id,
            f"trial-{rec.number:03d}",
            rec.history,
            rec.status,
            rec.reason,
            best,
            smoothing=self.sweep.smoothing,
        )
        self._show()

    def on_experiment_end(self, trials, **info) -> None:
        self._show()

    def _show(self) -> None:
        if self.show is not None:
            self.show(self)


def best_checkpoint(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trial's best weights and config, as `checkpoints/best.pt` of its run (None before any epoch)."""
    if state.get("best_state") is None:
        return None
    best = min(state["history"], key=lambda h: h["val/loss"]) if state["history"] else {}
    return {
        "model_state": state["best_state"],
        "config": state["config"],
        "epoch": best.get("epoch"),
        "metrics": best,
    }


def make_callback(sweep: SweepState, show: Callable[[SweepRecorder], None] | None = None):
    from ray.tune import Callback

    class _Recorder(SweepRecorder, Callback):
        pass

    _Recorder.__qualname__ = _Recorder.__name__ = "SweepRecorder"
    return _Recorder(sweep, show)


def trial_dirname(trial) -> str:
    """Short trial folders (Tune's default spells out every sampled value)."""
    return f"trial_{trial.trial_id}"


def _error_text(trial) -> str:
    text = trial.get_error() or ""
    if not text and trial.error_file and Path(trial.error_file).is_file():  # not yet synced to storage
        text = Path(trial.error_file).read_text()
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "trial raised an error (see the trial's error.txt)"


# ------------------------------------------------------------------ state
@dataclass
class SweepState:
    """What identifies a sweep and rebuilds it on resume (saved as sweeplab.json)."""

    name: str
    path: str  # Tune's experiment directory
    parent_run_id: str
    experiment: str
    base_overrides: list[str]
    tracking: dict[str, Any]
    tune: dict[str, Any]
    max_epochs: int
    smoothing: int = 3

    def save(self) -> None:
        Path(self.path).mkdir(parents=True, exist_ok=True)
        (Path(self.path) / STATE_FILE).write_text(json.dumps(self.__dict__, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> SweepState:
        return cls(**json.loads((Path(path) / STATE_FILE).read_text()))


def find_sweep(ref: str, cfg: Mapping[str, Any]) -> Path:
    """A sweep by directory, by name under tune.storage_path, or by its MLflow parent run id."""
    candidates = [Path(ref), Path(cfg["tune"]["storage_path"]) / ref]
    for path in candidates:
        if (path / STATE_FILE).is_file():
            return path.resolve()
    from sweeplab.tracking import Tracker

    path = Tracker(cfg["tracking"]).sweep_path_of(ref)
    if path and (Path(path) / STATE_FILE).is_file():
        return Path(path)
    searched = ", ".join(str(p) for p in candidates)
    raise ConfigError(
        f"no sweep '{ref}': looked for {STATE_FILE} in {searched} and for an MLflow parent run "
        "with that id; give the sweep's name, its directory, or its parent run id"
    )


# ------------------------------------------------------------------ driving


def init_ray(cluster: Mapping[str, Any]) -> None:
    """Local Ray by default (a fresh instance, never a stray cluster); ``cluster.address`` joins one."""
    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if cluster.get("address"):
        # a running cluster does not inherit the driver's environment: send what trials need along
        env = {k: os.environ[k] for k in os.environ if k.startswith("SWEEPLAB_") or k in RAY_ENV}
        ray.init(address=cluster["address"], runtime_env={"env_vars": env}, **kwargs)
    else:
        ray.init(
            address="local",
            num_cpus=cluster.get("num_cpus"),
            include_dashboard=False,
            object_store_memory=1 << 30,
            **kwargs,
        )


def expected_trials(tune_cfg: Mapping[str, Any], params: Sequence[Param]) -> int:
    """Tune's count: every grid point num_samples times (random and optuna: num_samples)."""
    if tune_cfg["search_alg"] == "grid":
        return tune_cfg["num_samples"] * math.prod(len(p.args) for p in params)
    return tune_cfg["num_samples"] * grid_size(params)


def cluster_tags(cluster: Mapping[str, Any]) -> dict[str, Any]:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        "cluster.address": cluster.get("address") or "local",
        "cluster.nodes": len(nodes),
        "cluster.cpus": int(ray.cluster_resources().get("CPU", 0)),
    }


@dataclass
class SweepOutcome:
    state: SweepState
    summary: dict[str, Any]


def start(
    cfg: dict[str, Any], base_overrides: Sequence[str], show: Callable[[SweepRecorder], None] | None = None
) -> SweepOutcome:
    """Validate the space, open the parent run, run the trials, summarize on the parent."""
    tune_cfg = cfg["tune"]
    params = parse_space(cfg["search"]["space"])
    validate_space(params, base_overrides, tune_cfg["search_alg"])
    scheduler(tune_cfg, cfg["trainer"]["epochs"], params)  # fails on a bad scheduler/space pairing now

    from sweeplab.tracking import Tracker

    name = tune_cfg["name"] or f"{cfg['tracking']['experiment']}-{datetime.now():%Y%m%d-%H%M%S}"
    path = (Path(tune_cfg["storage_path"]) / name).resolve()
    if (path / STATE_FILE).exists():
        raise ConfigError(
            f"a sweep named '{name}' exists in {path}; resume it with `sweeplab sweep resume {name}` "
            "or choose another tune.name"
        )
    tracker = Tracker(cfg["tracking"])
    parent = tracker.start_sweep_run(
        cfg["tracking"]["experiment"], name, cfg, params, str(path), _environment()
    )
    state = SweepState(
        name,
        str(path),
        parent,
        cfg["tracking"]["experiment"],
        list(base_overrides),
        cfg["tracking"],
        tune_cfg,
        cfg["trainer"]["epochs"],
        max(3, cfg["trainer"]["early_stopping"]["smoothing"]),
    )
    state.save()
    return _run(cfg, state, params, show, restore=False)


def resume(
    ref: str, overrides: Sequence[str] = (), show: Callable[[SweepRecorder], None] | None = None
) -> SweepOutcome:
    cfg = to_container(compose(list(overrides)))
    path = find_sweep(ref, cfg)
    state = SweepState.load(path)
    cfg = to_container(compose(state.base_overrides))
    params = parse_space(cfg["search"]["space"])
    return _run(cfg, state, params, show, restore=True)


def _run(
    cfg: dict[str, Any],
    state: SweepState,
    params: Sequence[Param],
    show: Callable[[SweepRecorder], None] | None,
    restore: bool,
) -> SweepOutcome:
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from sweeplab.tracking import Tracker

    tune_cfg = cfg["tune"]
    init_ray(cfg["cluster"])
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            base_overrides=state.base_overrides,
            metric=tune_cfg["metric"],
            mode=tune_cfg["mode"],
            fail_once_at_epoch=tune_cfg["fail_once_at_epoch"],
            drill_dir=state.path,
        ),
        {"cpu": tune_cfg["cpus_per_trial"], "gpu": tune_cfg["gpus_per_trial"]},
    )
    recorder = make_callback(state, show)
    _VIEWS[state.name] = show
    tracker = Tracker(state.tracking)
    tracker.reopen(state.parent_run_id)
    tracker.set_tags(state.parent_run_id, cluster_tags(cfg["cluster"]))
    t0 = time.monotonic()
    try:
        if restore:
            tuner = tune.Tuner.restore(
                state.path,
                trainable,
                resume_unfinished=True,
                resume_errored=True,
                param_space=param_space(params, tune_cfg["search_alg"]),
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(params, tune_cfg["search_alg"]),
                tune_config=tune.TuneConfig(
                    metric=tune_cfg["metric"],
                    mode=tune_cfg["mode"],
                    scheduler=scheduler(tune_cfg, cfg["trainer"]["epochs"], params),
                    search_alg=search_algorithm(tune_cfg, cfg["seed"]),
                    num_samples=tune_cfg["num_samples"],
                    # random/grid: the generator above limits concurrency; Tune's limiter wraps searchers only
                    max_concurrent_trials=tune_cfg["max_concurrent_trials"]
                    if tune_cfg["search_alg"] == "optuna"
                    else None,
                    reuse_actors=tune_cfg["reuse_actors"],
                    trial_dirname_creator=trial_dirname,
                    time_budget_s=tune_cfg["time_budget_s"],
                ),
                run_config=tune.RunConfig(
                    name=state.name,
                    storage_path=str(Path(state.path).parent),
                    callbacks=[recorder, JsonLoggerCallback()],
                    failure_config=tune.FailureConfig(max_failures=tune_cfg["max_failures"]),
                    # the latest checkpoint holds the best weights too; PBT exploits older ones as well
                    checkpoint_config=tune.CheckpointConfig(
                        num_to_keep=3 if tune_cfg["scheduler"] == "pbt" else 1
                    ),
                    verbose=0,
                ),
            )
        tuner.fit()
        recorder = _RECORDERS.pop(state.name, recorder)
    except KeyboardInterrupt:  # a second Ctrl-C: Tune gives up saving and re-raises
        recorder = _RECORDERS.pop(state.name, recorder)
        _close_unfinished(recorder, tracker, "interrupted")
        tracker.mark_interrupted(state.parent_run_id, state.name)
        raise
    wall = time.monotonic() - t0
    # Tune's Ctrl-C handler saves the sweep and returns normally; so does the end of a time budget.
    unfinished = [r for r in recorder.trials.values() if r.status in ("running", "retrying", "pending")]
    finished = len(recorder.trials) - len(unfinished)
    budget = tune_cfg["time_budget_s"]
    if (unfinished or finished < expected_trials(tune_cfg, params)) and not (budget and wall >= budget):
        _close_unfinished(recorder, tracker, "interrupted")
        tracker.mark_interrupted(state.parent_run_id, state.name)
        raise SweepInterrupted(state)
    _close_unfinished(recorder, tracker, "stopped_by_budget")
    from sweeplab.sweep.summary import summarize

    summary = summarize(cfg, state, tracker, wall)
    return SweepOutcome(state, summary)


class SweepInterrupted(KeyboardInterrupt):
    def __init__(self, state: SweepState):
        super().__init__(
            f"sweep {state.name} interrupted; continue it with `sweeplab sweep resume {state.name}`"
        )
        self.state = state


def _close_unfinished(recorder: SweepRecorder, tracker, status: str) -> None:
    """Trials cut off by Ctrl-C or the time budget: close their runs (a resume reopens them)."""
    for rec in getattr(recorder, "trials", {}).values():
        if rec.status in ("running", "retrying", "pending") and rec.run_id:
            reason = (
                "the sweep's time budget ran out"
                if status == "stopped_by_budget"
                else "the sweep was interrupted"
            )
            tracker.end_run(rec.run_id, status, reason)
            rec.status = status


def _environment() -> dict[str, str]:
    import mlflow
    import ray
    import torch

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "ray": ray.__version__,
        "mlflow": mlflow.__version__,
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }
