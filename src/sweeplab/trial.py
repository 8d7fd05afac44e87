"""The Ray Tune trainable: one trial is one training run. The only user of Tune's reporting API.

A trial composes its config from the sweep's base overrides plus its sampled values
(validated by the same schema as ``sweeplab train``), trains with the plain
:class:`~sweeplab.training.Trainer`, and reports once per epoch. At the epochs the sweep
asks for (``tuner.checkpoint_epochs``) the report carries a checkpoint holding everything
needed to continue (a retried trial resumes from it, and PBT copies it between trials) and
the trial's best weights so far. It writes nothing to MLflow: the driver does.
"""

from __future__ import annotations

import json
import math
import tempfile
import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from sweeplab import checkpoints
from sweeplab.config import ConfigError, compose, flatten, to_container, with_value
from sweeplab.data import DataBundle, DataError, load_data
from sweeplab.data.bundle import from_arrays, to_arrays
from sweeplab.metrics import EPOCH, VAL_LOSS, best_epoch, hp_metric
from sweeplab.objective import Mode, Objective
from sweeplab.space import override_value, parse_space, to_override
from sweeplab.stage import REEVALUATION_POINT
from sweeplab.status import TrialStatus
from sweeplab.targets import TargetImportError
from sweeplab.training import Trainer

FINAL = "final"  # marks the one result a trial sends after its last epoch
FATAL = "fatal"  # with FINAL: the trial's code could not be imported here; no trial can run (sweep stops)
RESTORED_HISTORY = "restored_history"  # the epochs a restored trial's checkpoint already holds
EXPLOITED_FROM = "exploited_from"  # PBT: the trial whose checkpoint this trial continues from
CHECKPOINT_BEST = "checkpoint_best_epoch"  # sent with a checkpoint: the epoch of the best weights it holds
PERTURBED_KINDS = ("uniform", "loguniform")  # what PBT perturbs (tuner.scheduler's mutations)
# Errors that would only repeat on a retry: the trial ends `failed` with the reason instead.
SETUP_ERRORS = (ConfigError, DataError, ValueError)
# Each worker process keeps the data sets it has loaded: with reused actors, a
# data set is read once per worker, not once per trial.
_DATA_CACHE: dict[str, DataBundle] = {}
_COMPOSED: dict[tuple[str, ...], Any] = {}  # and configs composed for a choice of group options


def trial_overrides(base_overrides: Sequence[str], sampled: Mapping[str, Any]) -> list[str]:
    """Base overrides, then the sampled values with group choices first (as the space sorted them)."""
    groups = [k for k in sampled if "." not in k]
    keys = groups + [k for k in sampled if "." in k]
    return [*base_overrides, *(to_override(k, sampled[k]) for k in keys)]


def trial_config(base_overrides: Sequence[str], sampled: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's config: the base overrides and its group choices composed (once per worker for
    each choice: ~0.12 s), then its other values set on it as their overrides would set them."""
    groups = [to_override(k, v) for k, v in sampled.items() if "." not in k]
    key = (*base_overrides, *groups)
    if key not in _COMPOSED:
        if len(_COMPOSED) >= 64:  # a bound on memory: a space has far fewer group combinations
            _COMPOSED.clear()
        _COMPOSED[key] = compose(list(key))
    cfg = _COMPOSED[key]
    try:
        for k, v in sampled.items():
            if "." in k:
                cfg = with_value(cfg, k, override_value(to_override(k, v)))
    except ConfigError:  # composed whole, the error reads as the command line's would
        return to_container(compose(trial_overrides(base_overrides, sampled)))
    return to_container(cfg)


def data_key(data_cfg: Mapping[str, Any]) -> str:
    return json.dumps(data_cfg, sort_keys=True)


def cached_data(data_cfg: Mapping[str, Any], shared: Mapping[str, Any] | None = None) -> DataBundle:
    """The data set of ``data_cfg``: from ``shared`` (:func:`shared_data`, through Ray's object
    store) when it is there, else loaded here; kept for the next trial of this worker."""
    key = data_key(data_cfg)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one data set per worker at a time: memory stays bounded
        _DATA_CACHE[key] = from_arrays(shared[key]) if shared and key in shared else load_data(data_cfg)
    return _DATA_CACHE[key]


def shared_data(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep's data set as the driver loaded it, for its trials: one copy per node in Ray's
    object store, read by every trial there without loading or copying it (about 1 s and
    200 MB per trial process for Fashion-MNIST), and by nodes that do not have the files.
    Streamed data (Datasets read batch by batch) is not shared: each trial opens it itself."""
    bundle = cached_data(data_cfg)
    return {} if bundle.is_streamed else {data_key(data_cfg): to_arrays(bundle)}


def trial_number(trial_id: str) -> int:
    """Tune's trial ids end in a counter (``ab12c_00007``); searchers that name trials otherwise
    get a stable number from the id."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if "_" in trial_id and tail.isdigit() else zlib.crc32(trial_id.encode()) % 100_000


def cpu_share() -> int:
    """The CPUs Ray assigned to this trial (Ray sets OMP_NUM_THREADS=1 for workers otherwise)."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, int(cpus))


def perturbed_keys(cfg: Mapping[str, Any]) -> list[str]:
    """The keys a PBT sweep perturbs, each recorded per epoch as ``hp/<key>``; none otherwise."""
    if cfg["tune"]["scheduler"] != "pbt":
        return []
    return [p.key for p in parse_space(cfg["search"]["space"]) if p.kind in PERTURBED_KINDS]


def load_state(checkpoint: tune.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as path:
        return checkpoints.load(Path(path) / checkpoints.STATE_FILE)


def run_trial(
    sampled: dict[str, Any],
    base_overrides: Sequence[str] = (),
    metric: str = VAL_LOSS,
    mode: str | Mode = Mode.min,
    fail_once_at_epoch: int = 0,
    drill_dir: str | None = None,
    checkpoint_at: Collection[int] | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    """Train one configuration; report each epoch (with a checkpoint at the epochs in
    ``checkpoint_at``, its last one, and every epoch when None), then one final result.
    ``data`` is :func:`shared_data`: the data set the driver loaded."""
    # where this trial process runs: sent with its first result
    extra: dict[str, Any] = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
    }
    trial_id = tune.get_context().get_trial_id()
    objective = Objective(metric, mode)
    point = sampled.get(REEVALUATION_POINT)  # a re-evaluation: another trial's values, a fresh seed
    sampled = point["sampled"] if point else sampled
    try:
        cfg = trial_config(base_overrides, sampled)
        if point:
            cfg["seed"] = point["seed"]
        elif "seed" not in sampled:  # each trial (each repeat of a grid point too) draws its own seed
            cfg["seed"] += trial_number(trial_id)
        flat = flatten(cfg)
        # the values this trial trains with (a re-evaluation repeats fixed values: none)
        hp = {hp_metric(k): float(flat[k]) for k in ([] if point else perturbed_keys(cfg))}
        extra["config_json"] = json.dumps(cfg)  # the driver records it without composing it again
        torch.set_num_threads(cfg["trainer"]["num_threads"] or cpu_share())
        trainer = Trainer(cfg, cached_data(cfg["data"], data))
    except SETUP_ERRORS as exc:
        tune.report(
            {
                FINAL: 1,
                FATAL: int(isinstance(exc, TargetImportError)),
                "trial_status": TrialStatus.failed.value,
                "trial_reason": str(exc),
                EPOCH: 0,
                metric: objective.worst,
                **extra,
            }
        )
        return
    # The first epoch of the weights this trial trains itself: after a PBT exploit the checkpoint
    # holds the donor's history (its epochs, which the trial continues: PBT carries the donor's
    # time over), and the trial's verdict is drawn from its own epochs only.
    trained_since = 1
    best: dict[str, Any] = {}  # this trial's best epoch so far by the sweep's metric: epoch, value, weights
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after a failure, a resumed sweep, or a PBT exploit
        state = load_state(checkpoint)
        trainer.restore(state)  # every setting from cfg: PBT's perturbed values take effect
        writer = state.get("trial_id", trial_id)
        if writer != trial_id:  # PBT exploit: the driver records the donor and renumbers the epochs
            trained_since = len(trainer.history) + 1
            if trained_since <= cfg["trainer"]["epochs"]:  # a finished donor's copy trains nothing
                extra[EXPLOITED_FROM] = writer
        else:
            trained_since = state.get("trained_since", 1)
            best = checkpoints.sweep_best(state)
            # its own epochs so far: the driver may have died before it logged the last of them
            extra[RESTORED_HISTORY] = json.dumps(trainer.history)

    def report_epoch(metrics: dict[str, float]) -> None:
        # the epoch's entry in the trainer's history (so in its checkpoints) keeps the values it
        # trained with: epochs the driver logs from a restored checkpoint carry them too
        metrics.update(hp)
        epoch = int(metrics[EPOCH])
        _maybe_fail(fail_once_at_epoch, epoch, drill_dir)
        value = metrics.get(metric, math.nan)
        better = not best or objective.at_least_as_good(value, best["value"])
        if math.isfinite(value) and better:
            # a tie goes to the later epoch, as the driver ranks them; the weights are copied now,
            # since a checkpoint at a later epoch must still hold them
            weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            best.update(epoch=epoch, value=value, model=weights)
        last = epoch >= cfg["trainer"]["epochs"] or trainer.stopper.should_stop
        if not (checkpoint_at is None or epoch in checkpoint_at or last):
            tune.report({**metrics, **extra})
            extra.clear()
            return
        # The writer's id tells a trial that restores it (PBT) whose weights these are.
        state = {
            **trainer.checkpoint(),
            "best_state": None,  # early stopping's copy: the sweep's best weights go in sweep_best
            "config": cfg,
            "trial_id": trial_id,
            "trained_since": trained_since,
            **checkpoints.with_sweep_best(best, epoch),
        }
        with tempfile.TemporaryDirectory() as tmp:
            checkpoints.save(state, Path(tmp) / checkpoints.STATE_FILE)
            result = {**metrics, **extra, CHECKPOINT_BEST: best.get("epoch", epoch)}
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        extra.clear()

    result = trainer.fit(report_epoch, evaluate_test=False)
    # The final result carries the trial's own verdict and its best value of the sweep's metric,
    # so searchers (Optuna) learn from the best epoch, and a diverged trial counts as the worst.
    own = [h for h in result.history if h[EPOCH] >= trained_since]
    best = best_epoch(own, metric, mode) or {}
    final = {k: v for k, v in best.items() if k.startswith(("val/", "train/"))}
    score = objective.worst if result.status == TrialStatus.diverged else best.get(metric, objective.worst)
    final.update(
        {
            FINAL: 1,
            "trial_status": TrialStatus(result.status).value,
            "trial_reason": result.reason,
            EPOCH: result.history[-1][EPOCH] if result.history else 0,
            "best_epoch": best.get(EPOCH, 0),
            metric: score,
            **extra,  # still unsent when the trial diverged before its first epoch ended
        }
    )
    tune.report(final)


def _maybe_fail(at_epoch: int, epoch: int, drill_dir: str | None) -> None:
    """Failure drill (``tune.fail_once_at_epoch``): each trial raises once, at one epoch.

    The marker lives in the sweep's directory, so the retry of the same trial sees it
    and carries on.
    """
    if not at_epoch or epoch != at_epoch or drill_dir is None:
        return
    marker = Path(drill_dir) / "drills" / f"{tune.get_context().get_trial_id()}.failed"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise RuntimeError(f"injected failure at epoch {epoch}")
