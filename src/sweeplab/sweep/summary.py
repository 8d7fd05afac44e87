"""The end of a sweep: read every trial back from MLflow and write the sweep's verdict on the parent run.

Reading the store (not the driver's memory) makes a resumed sweep's summary the same
as an uninterrupted one's: every trial, whichever driver process ran it. The choosing (ranking,
the best trial with weights, robust selection, compute accounting, the no-model reason) is pure,
in :mod:`sweeplab.sweep.results`; here are the steps with side effects around it.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from sweeplab import checkpoints
from sweeplab.config import flatten
from sweeplab.metrics import EPOCH, ROBUST, TEST_ACC, best_key, robust_key
from sweeplab.objective import Objective
from sweeplab.plots import TrialPoint, metric_vs_hyperparameters, overlaid_validation_curves
from sweeplab.space import parse_space
from sweeplab.status import TrialStatus
from sweeplab.sweep import results
from sweeplab.sweep.results import (
    Registration,
    RobustSelection,
    SweepSummary,
    TrialSummary,
    kept_best,
)
from sweeplab.tracking import Tracker
from sweeplab.tracking.reader import Reader, child_runs, open_reader
from sweeplab.tracking.tags import (
    BEST_RUN_ID_TAG,
    BEST_STATUS_TAG,
    BEST_TRIAL_ID_TAG,
    BEST_TRIAL_TAG,
)

__all__ = ["SweepSummary", "TrialSummary", "kept_best", "model_name", "summarize", "trained_values"]


def read_trials(reader: Reader, parent_run_id: str, objective: Objective) -> list[TrialSummary]:
    """Every trial of the sweep as the store holds it (whichever driver process ran it)."""
    runs, points = child_runs(reader, parent_run_id)
    return [results.trial_of(run, points[run.run_id], objective) for run in runs]


def summarize(cfg: Mapping[str, Any], state, tracker: Tracker, wall_seconds: float) -> SweepSummary:
    """Read the trials, choose (pure, :mod:`sweeplab.sweep.results`), then write the verdict: the
    chosen model meets the test set, figures and tags on the parent, the registry, the run closed."""
    tune_cfg = cfg["tune"]
    objective = Objective.of(tune_cfg)
    metric = objective.metric
    parent = state.parent_run_id
    trials = read_trials(open_reader(tracker.cfg), parent, objective)
    summary = SweepSummary(
        name=state.name,
        parent_run_id=parent,
        objective=objective,
        trials=tuple(trials),
        counts=results.counts(trials),
        compute=results.compute(
            trials, cfg["trainer"]["epochs"], tune_cfg["max_concurrent_trials"], wall_seconds
        ),
        diagnosis=results.diagnosis(trials),
    )
    final = _compute_metrics(summary)
    ranked = results.ranked(trials, objective)
    best = results.choose_best(ranked, lambda t: _has_best(tracker, t))
    if best is None:
        summary = replace(
            summary, no_model=results.no_model_reason(trials, ranked, metric, tune_cfg["time_budget_s"])
        )
    else:
        summary = _with_best(cfg, state, tracker, summary, ranked, best, final)
    tracker.log_metrics(parent, final, step=0)
    # a sweep that chose no model failed
    status = TrialStatus.completed if summary.best is not None else TrialStatus.failed
    tracker.end_run(
        parent,
        status,
        f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in summary.counts.items()),
    )
    return summary


def _compute_metrics(summary: SweepSummary) -> dict[str, float]:
    """The counts and compute accounting as the parent's metrics."""
    c = summary.compute
    final = {f"trials/{status}": float(n) for status, n in summary.counts.items()}
    final.update(
        {
            "trials/total": float(len(summary.trials)),
            "compute/trial_epochs": float(c.epochs_run),
            "compute/trial_epochs_budget": float(c.epochs_budget),
            "compute/saved_fraction": c.saved_fraction,
            "compute/trial_seconds": c.trial_seconds,
            "compute/wall_seconds": c.wall_seconds,
            "compute/efficiency": c.efficiency,
        }
    )
    return final


def _with_best(
    cfg, state, tracker: Tracker, summary: SweepSummary, ranked, best: TrialSummary, final: dict
) -> SweepSummary:
    """The chosen trial (the robust winner's best repeat after a re-evaluation) tagged on the
    parent, plotted, tested, logged and registered; ``final`` gains its figures."""
    objective, parent = summary.objective, state.parent_run_id
    metric = objective.metric
    robust = _robust(tracker, results.repeats(summary.trials), best, objective)
    if robust is not None:
        final.update(robust.metrics)
        best = robust.representative
    best_epoch = best.best_epoch
    final.update({best_key(k): v for k, v in best_epoch.items() if k.startswith(("val/", "train/"))})
    final[best_key(EPOCH)] = float(best_epoch[EPOCH])
    tracker.set_tags(
        parent,
        {
            BEST_RUN_ID_TAG: best.run_id,
            BEST_TRIAL_TAG: best.name,
            BEST_TRIAL_ID_TAG: best.trial_id,
            BEST_STATUS_TAG: best.status,
        },
    )
    chosen = robust.winner if robust is not None else best.trial_id
    _plots(tracker, parent, ranked, cfg, metric, chosen)
    value = final[robust_key(metric, "mean")] if robust else best_epoch[metric]  # a mean over seeds
    test, best_config, registration = _evaluate_and_register(tracker, cfg, state, best, value, final)
    # the values the best weights were trained with last (PBT changes them on the way)
    tracker.log_params(parent, {f"best.{k}": v for k, v in best_config.items()})
    final.update({k: v for k, v in test.items() if k.startswith("test/")})
    return replace(
        summary,
        best=best,
        best_epoch=best_epoch,
        best_config=best_config,
        test=test,
        robust=robust,
        registration=registration,
    )


def _plots(tracker: Tracker, parent: str, ranked, cfg, metric: str, chosen: str) -> None:
    """Figures on the parent; ``chosen`` is the trial id of the configuration the sweep picked."""
    params = parse_space(cfg["search"]["space"])
    log_keys = [p.key for p in params if p.kind == "loguniform"]
    keys = [p.key for p in params]
    epochs = {t.trial_id: int(t.history[-1][EPOCH]) for t in ranked}  # how far each trained
    points = [
        TrialPoint(t.sampled, t.best, epochs[t.trial_id], t.status, t.trial_id == chosen) for t in ranked
    ]
    top = {f"{t.name} ({t.best:.4f})": list(t.history) for t in ranked[: cfg["tune"]["top_k"]]}
    with tempfile.TemporaryDirectory() as tmp:
        tracker.log_file(
            parent,
            overlaid_validation_curves(
                top, Path(tmp) / "top_trials_val_curves.png", f"top {len(top)} trials by {metric}"
            ),
            "plots",
        )
        tracker.log_file(
            parent,
            metric_vs_hyperparameters(
                points,
                keys,
                metric,
                cfg["tune"]["mode"],
                log_keys,
                Path(tmp) / "metric_vs_hyperparameters.png",
            ),
            "plots",
        )


def model_name(cfg: Mapping[str, Any]) -> str:
    """The registered model: ``tracking.model_name``, else the experiment and what it was
    trained on (a sweep on digits never competes with one on Fashion-MNIST)."""
    return cfg["tracking"].get("model_name") or f"{cfg['tracking']['experiment']}-{cfg['data']['name']}"


def _tested(tracker: Tracker, run_id: str):
    """A trial's best weights meet the test set: (checkpoint, evaluator holding them, test metrics)."""
    from sweeplab.training import Evaluator
    from sweeplab.trial import cached_data

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = checkpoints.load(tracker.download_file(run_id, "checkpoints/best.pt", tmp))
    evaluator = Evaluator(ckpt["config"], cached_data(ckpt["config"]["data"]))
    evaluator.model.load_state_dict(ckpt["model_state"])
    return ckpt, evaluator, evaluator.evaluate("test")


def _robust(
    tracker: Tracker, repeat_runs: list[TrialSummary], single: TrialSummary, objective: Objective
) -> RobustSelection | None:
    """The re-evaluation's repeats that count meet the test set (as does the best single run), and
    :func:`sweeplab.sweep.results.robust_selection` chooses: the best mean metric wins."""
    groups = results.counted_repeats(repeat_runs, lambda t: _has_best(tracker, t))
    if not groups:  # no repeat kept weights: the best single run stands
        return None
    runs = [t for group in groups.values() for t in group] + [single]
    test_acc = {t.run_id: _tested(tracker, t.run_id)[2].get(TEST_ACC, math.nan) for t in runs}
    return results.robust_selection(groups, test_acc, single, objective)


def _has_best(tracker: Tracker, trial: TrialSummary) -> bool:
    return tracker.has_artifact(trial.run_id, "checkpoints/best.pt")


def trained_values(sampled: dict[str, Any], trial_cfg: dict[str, Any]) -> dict[str, Any]:
    """The sampled values as the weights were trained with them last: a value PBT perturbed is
    read from the trial's config; a group option (``optimizer=momentum``) is the option chosen,
    which its config names otherwise (``optimizer.name: sgd``)."""
    flat = flatten(trial_cfg)
    return {k: flat.get(k, v) if "." in k else v for k, v in sampled.items()}


def _evaluate_and_register(
    tracker: Tracker, cfg, state, best: TrialSummary, value: float, final: dict
) -> tuple[dict[str, float], dict[str, Any], Registration | None]:
    """The chosen model meets the test set once; it is logged on the parent and registered.
    Returns the test metrics, the values its weights were trained with, and its registration."""
    from sweeplab.models import deployable

    ckpt, evaluator, test = _tested(tracker, best.run_id)
    trial_cfg = ckpt["config"]
    best_config = trained_values(best.sampled, trial_cfg)
    parent = state.parent_run_id
    tracker.log_config(parent, trial_cfg, "best_config.yaml")
    tracker.log_checkpoint(parent, ckpt)
    model = deployable(evaluator.model, evaluator.data)
    info = tracker.log_model(parent, model, evaluator.data.inputs("val", 8), step=0)
    registration = None
    if cfg["tune"]["register_model"]:
        name = model_name(cfg)
        version, moved = tracker.register_best(
            name,
            parent,
            info.model_id,
            cfg["tune"]["metric"],
            cfg["tune"]["mode"],
            value,
            evaluator.data.fingerprint,
            {k: f"{v:.6g}" for k, v in final.items() if k.startswith(ROBUST)},
        )
        registration = Registration(name, version, moved)
    return dict(test), best_config, registration
