"""The end of a sweep: read every trial back from MLflow and write the sweep's verdict on the parent run.

Reading the store (not the driver's memory) makes a resumed sweep's summary the same
as an uninterrupted one's: every trial, whichever driver process ran it.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeplab import checkpoints
from sweeplab.config import flatten
from sweeplab.metrics import (
    EPOCH,
    EPOCH_TIME,
    ROBUST,
    ROBUST_SINGLE_WINNER_TEST_ACC,
    TEST_ACC,
    VAL_ACC,
    best_key,
    robust_key,
)
from sweeplab.metrics import best_epoch as best_epoch_of
from sweeplab.objective import Mode, Objective
from sweeplab.plots import TrialPoint, metric_vs_hyperparameters, overlaid_validation_curves
from sweeplab.space import parse_space
from sweeplab.stage import Stage
from sweeplab.status import TrialStatus
from sweeplab.tracking import Tracker, sampled_values
from sweeplab.tracking.tags import (
    BEST_EPOCH_TAG,
    BEST_RUN_ID_TAG,
    BEST_STATUS_TAG,
    BEST_TRIAL_ID_TAG,
    BEST_TRIAL_TAG,
    EPOCHS_TRAINED_TAG,
    REEVALUATES_TAG,
    STAGE_TAG,
    STATUS_REASON_TAG,
    STATUS_TAG,
    TRAIN_SECONDS_TAG,
    TRIAL_ID_TAG,
)


def kept_best(history, tags: Mapping[str, str], metric: str, mode: str | Mode) -> Mapping[str, float] | None:
    """The trial's best epoch as the sweep chooses it: the one whose weights its run keeps
    (``BEST_EPOCH_TAG``; a trial stopped by the time budget between checkpoints did not keep its
    best logged epoch's), else the best logged epoch."""
    kept = tags.get(BEST_EPOCH_TAG)
    entry = next((h for h in history if kept is not None and int(h[EPOCH]) == int(kept)), None)
    if entry is not None and math.isfinite(entry.get(metric, math.nan)):
        return entry
    return best_epoch_of(history, metric, mode)


def _best_value(best: Mapping[str, float] | None, objective: Objective) -> float:
    return best[objective.metric] if best is not None else objective.worst


def _status(tag: str | None) -> TrialStatus:
    try:
        return TrialStatus(tag)
    except ValueError:  # a run sweeplab did not close
        return TrialStatus.failed


def _no_model(trials: list[dict], ranked: list[dict], metric: str, budget_s: float | None) -> str:
    """Why a sweep has no model to test or register, and what to change, in one line."""
    if not trials:  # the budget counts from the command's start: its start-up may use it all
        return (
            f"no trial started within the time budget (tune.time_budget_s={budget_s}, "
            "counted from the sweep command's start); raise it"
        )
    how = ", ".join(f"{n} {s}" for s, n in Counter(t["status"] for t in (ranked or trials)).items())
    if ranked:  # stopped by the time budget before its first checkpoint, or diverged before a finite one
        return (
            f"no trial kept weights to test or register ({how}): none reached a checkpoint with a finite "
            f"{metric}; raise tune.time_budget_s or lower tune.checkpoint_every (a budget stopped them), "
            "or lower optimizer.lr (they diverged)"
        )
    fixes = []
    if any(t["status"] is TrialStatus.stopped_by_budget for t in trials):
        fixes.append("raise tune.time_budget_s (the budget stopped them before their first epoch)")
    if failed := next((t for t in trials if t["status"] is TrialStatus.failed), None):
        why = failed["tags"].get(STATUS_REASON_TAG) or "see its run"
        fixes.append(f"fix what failed them ({failed['name']}: {why})")
    if any(t["status"] is TrialStatus.diverged for t in trials):
        fixes.append("lower optimizer.lr (they diverged in their first epoch)")
    if any(t["status"] is TrialStatus.interrupted for t in trials):
        fixes.append("`sweeplab sweep resume` runs the interrupted ones again")
    fixes = fixes or ["see the trials' runs"]
    return f"no trial reported an epoch with a finite {metric} ({how}): " + "; ".join(fixes)


def summarize(cfg: Mapping[str, Any], state, tracker: Tracker, wall_seconds: float) -> dict[str, Any]:
    tune_cfg = cfg["tune"]
    objective = Objective.of(tune_cfg)
    metric, mode = tune_cfg["metric"], tune_cfg["mode"]
    max_epochs = cfg["trainer"]["epochs"]
    trials = []
    for run in tracker.child_runs(state.parent_run_id):
        history = tracker.history(run.info.run_id)
        sampled = sampled_values(run.data.params)
        best = kept_best(history, run.data.tags, metric, mode)
        trials.append(
            {
                "run_id": run.info.run_id,
                "name": run.info.run_name,
                "status": _status(run.data.tags.get(STATUS_TAG)),
                "trial_id": run.data.tags.get(TRIAL_ID_TAG),
                "sampled": sampled,
                "history": history,
                "best_epoch": best,
                "best": _best_value(best, objective),
                "metrics": run.data.metrics,
                "tags": run.data.tags,
            }
        )
    counts = Counter(t["status"] for t in trials)
    # what the trials trained, replays after a restore included (more than the epochs logged)
    epochs_run = sum(int(float(t["tags"].get(EPOCHS_TRAINED_TAG, len(t["history"])))) for t in trials)
    budget = len(trials) * max_epochs
    trial_seconds = sum(
        float(t["tags"].get(TRAIN_SECONDS_TAG, sum(h.get(EPOCH_TIME, 0.0) for h in t["history"])))
        for t in trials
    )
    slots = min(tune_cfg["max_concurrent_trials"] or len(trials), max(1, len(trials)))
    summary: dict[str, Any] = {
        "name": state.name,
        "parent_run_id": state.parent_run_id,
        "trials": len(trials),
        "counts": dict(counts),
        "epochs_run": epochs_run,
        "epochs_budget": budget,
        "saved_fraction": 1 - epochs_run / budget if budget else 0.0,
        "trial_seconds": trial_seconds,
        "wall_seconds": wall_seconds,
        "efficiency": trial_seconds / (wall_seconds * slots) if wall_seconds else 0.0,
        "slots": slots,
        "metric": metric,
        "mode": mode,
        "rows": trials,
    }
    parent = state.parent_run_id
    final = {f"trials/{status}": float(n) for status, n in counts.items()}
    final.update(
        {
            "trials/total": float(len(trials)),
            "compute/trial_epochs": float(epochs_run),
            "compute/trial_epochs_budget": float(budget),
            "compute/saved_fraction": summary["saved_fraction"],
            "compute/trial_seconds": trial_seconds,
            "compute/wall_seconds": wall_seconds,
            "compute/efficiency": summary["efficiency"],
        }
    )
    searched = [t for t in trials if t["tags"].get(STAGE_TAG, Stage.search) == Stage.search]
    ranked = objective.ranked(
        (t for t in searched if t["history"] and t["status"].rankable), key=lambda t: t["best"]
    )
    # the best trial whose run kept weights: one stopped by the time budget before its first
    # checkpoint, or diverged before a finite one, has none to evaluate or register
    best = next((t for t in ranked if _has_best(tracker, t)), None)
    if best is None:
        summary["no_model"] = _no_model(trials, ranked, metric, tune_cfg["time_budget_s"])
    else:
        repeats = [t for t in trials if t["tags"].get(STAGE_TAG) == Stage.reevaluate]
        # robust selection: the best mean over fresh seeds wins, not the luckiest run
        if repeats and (robust := _robust(tracker, repeats, best, objective)) is not None:
            summary["robust"] = robust
            summary["robust_metrics"] = robust.pop("metrics")
            final.update(summary["robust_metrics"])
            best = robust.pop("representative")
        best_epoch = best["best_epoch"]
        summary.update(best=best, best_epoch=best_epoch)
        final.update({best_key(k): v for k, v in best_epoch.items() if k.startswith(("val/", "train/"))})
        final[best_key(EPOCH)] = float(best_epoch[EPOCH])
        tracker.set_tags(
            parent,
            {
                BEST_RUN_ID_TAG: best["run_id"],
                BEST_TRIAL_TAG: best["name"],
                BEST_TRIAL_ID_TAG: best["trial_id"],
                BEST_STATUS_TAG: best["status"],
            },
        )
        chosen = summary["robust"]["winner"] if "robust" in summary else best["trial_id"]
        _plots(tracker, parent, ranked, cfg, metric, chosen)
        robust = summary.get("robust")
        value = final[robust_key(metric, "mean")] if robust else best_epoch[metric]  # a mean over seeds
        summary.update(_evaluate_and_register(tracker, cfg, state, best, value, final))
        # the values the best weights were trained with last (PBT changes them on the way)
        tracker.log_params(parent, {f"best.{k}": v for k, v in summary["best_config"].items()})
        final.update({k: v for k, v in summary.items() if k.startswith("test/")})
    tracker.log_metrics(parent, final, step=0)
    diag = {
        t["name"]: {
            k: t["metrics"][k]
            for k in ("overfit/best_epoch", "overfit/gap_acc", "overfit/gap_loss")
            if k in t["metrics"]
        }
        for t in trials
    }
    summary["diagnosis"] = diag
    status = "completed" if best is not None else "failed"  # a sweep that chose no model failed
    tracker.end_run(
        parent, status, f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    )
    return summary


def _plots(tracker: Tracker, parent: str, ranked, cfg, metric: str, chosen: str) -> None:
    """Figures on the parent; ``chosen`` is the trial id of the configuration the sweep picked."""
    params = parse_space(cfg["search"]["space"])
    log_keys = [p.key for p in params if p.kind == "loguniform"]
    keys = [p.key for p in params]
    epochs = {t["trial_id"]: int(t["history"][-1][EPOCH]) for t in ranked}  # how far each trained
    points = [
        TrialPoint(t["sampled"], t["best"], epochs[t["trial_id"]], t["status"], t["trial_id"] == chosen)
        for t in ranked
    ]
    top = {f"{t['name']} ({t['best']:.4f})": t["history"] for t in ranked[: cfg["tune"]["top_k"]]}
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
    tracker: Tracker, repeats: list[dict], single: dict, objective: Objective
) -> dict[str, Any] | None:
    """Per re-evaluated configuration: the mean and spread of the metric, val/acc at each run's
    best epoch and test/acc of each run's best weights. The winner has the best mean metric."""
    metric = objective.metric
    rows = []
    for of in dict.fromkeys(t["tags"][REEVALUATES_TAG] for t in repeats):
        # a repeat counts with a finite best and weights to test: one the time budget stopped
        # before its first checkpoint, or one that diverged at once, has neither
        runs = [
            t
            for t in repeats
            if t["tags"][REEVALUATES_TAG] == of and math.isfinite(t["best"]) and _has_best(tracker, t)
        ]
        if not runs:
            continue
        epochs = [t["best_epoch"] for t in runs]
        tests = [_tested(tracker, t["run_id"])[2].get(TEST_ACC, math.nan) for t in runs]
        rows.append(
            {
                "of": of,
                "sampled": {k: v for k, v in runs[0]["sampled"].items() if k != "seed"},
                "runs": len(runs),
                metric: _mean_std([t["best"] for t in runs]),
                VAL_ACC: _mean_std([e.get(VAL_ACC, math.nan) for e in epochs]),
                TEST_ACC: _mean_std(tests),
                "representative": objective.best(runs, key=lambda t: t["best"]),
            }
        )
    if not rows:  # no repeat kept weights: the best single run stands
        return None
    rows = objective.ranked(rows, key=lambda r: r[metric][0])
    winner = rows[0]
    metrics = {
        robust_key(metric, "mean"): winner[metric][0],
        robust_key(metric, "std"): winner[metric][1],
        robust_key(VAL_ACC, "mean"): winner[VAL_ACC][0],
        robust_key(VAL_ACC, "std"): winner[VAL_ACC][1],
        robust_key(TEST_ACC, "mean"): winner[TEST_ACC][0],
        robust_key(TEST_ACC, "std"): winner[TEST_ACC][1],
        f"{ROBUST}differs": float(winner["of"] != single["trial_id"]),
        # without the stage
        ROBUST_SINGLE_WINNER_TEST_ACC: _tested(tracker, single["run_id"])[2].get(TEST_ACC, math.nan),
    }
    return {
        "rows": [{k: v for k, v in r.items() if k != "representative"} for r in rows],
        "winner": winner["of"],
        "single_winner": single["trial_id"],
        "differs": winner["of"] != single["trial_id"],
        "metrics": metrics,
        "representative": winner["representative"],
    }


def _has_best(tracker: Tracker, trial: dict) -> bool:
    return tracker.has_artifact(trial["run_id"], "checkpoints/best.pt")


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    std = (sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) ** 0.5 if len(finite) > 1 else 0.0
    return mean, std


def trained_values(sampled: dict[str, Any], trial_cfg: dict[str, Any]) -> dict[str, Any]:
    """The sampled values as the weights were trained with them last: a value PBT perturbed is
    read from the trial's config; a group option (``optimizer=momentum``) is the option chosen,
    which its config names otherwise (``optimizer.name: sgd``)."""
    flat = flatten(trial_cfg)
    return {k: flat.get(k, v) if "." in k else v for k, v in sampled.items()}


def _evaluate_and_register(tracker: Tracker, cfg, state, best, value: float, final: dict) -> dict[str, Any]:
    """The chosen model meets the test set once; it is logged on the parent and registered."""
    from sweeplab.models import deployable

    ckpt, evaluator, test = _tested(tracker, best["run_id"])
    trial_cfg = ckpt["config"]
    out: dict[str, Any] = {**test, "best_config": trained_values(best["sampled"], trial_cfg)}
    parent = state.parent_run_id
    tracker.log_config(parent, trial_cfg, "best_config.yaml")
    tracker.log_checkpoint(parent, ckpt)
    model = deployable(evaluator.model, evaluator.data)
    info = tracker.log_model(parent, model, evaluator.data.inputs("val", 8), step=0)
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
        out.update(registered=name, version=version, alias_moved=moved)
    return out
