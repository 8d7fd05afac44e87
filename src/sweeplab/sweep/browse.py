"""Sweeps read back from the tracking store, for ``sweeplab sweeps list|show|compare|export``.

A sweep is its parent run (tag ``sweeplab.kind=sweep``) and the trials' child runs. Everything
here reads the store through the read model (:mod:`sweeplab.tracking.reader`: typed records,
MLflow not imported for a database or a server) and returns plain data; the terminal is
:mod:`sweeplab.cli.sweeps`'s. Nothing here imports Ray or torch.
"""

from __future__ import annotations

import csv
import difflib
import math
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sweeplab.groups import ConfigError
from sweeplab.metrics import (
    ROBUST,
    TEST_ACC,
    TEST_LOSS,
    VAL_ACC,
    VAL_LOSS,
    best_key,
    is_epoch_metric,
    robust_key,
)
from sweeplab.objective import Mode, Objective
from sweeplab.stage import Stage
from sweeplab.sweep import results
from sweeplab.sweep.results import RobustSelection, SweepSummary, TrialSummary
from sweeplab.tracking.reader import SWEEP_TAGS, Reader
from sweeplab.tracking.records import ModelVersion, RunRecord
from sweeplab.tracking.tags import (
    BEST_RUN_ID_TAG,
    BEST_TRIAL_TAG,
    REEVALUATES_TAG,
    STAGE_TAG,
    STATUS_TAG,
    SWEEP_PATH_TAG,
    SWEEP_TAG,
    TRIAL_ID_TAG,
)


class UnknownSweep(ConfigError):
    """No sweep (or more than one) answers to the name; the message is one line."""


@dataclass(frozen=True)
class Sweep:
    """A sweep's parent run, as the store holds it."""

    run: RunRecord

    @property
    def name(self) -> str:
        return self.run.tags.get(SWEEP_TAG, self.run.name)

    @property
    def experiment(self) -> str:
        return self.run.experiment

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def started_ms(self) -> int:
        return self.run.start_ms

    @property
    def params(self) -> dict[str, str]:
        return self.run.params

    @property
    def metrics(self) -> dict[str, float]:
        return self.run.metrics

    @property
    def tags(self) -> dict[str, str]:
        return self.run.tags

    @property
    def status(self) -> str:
        return self.tags.get(STATUS_TAG, "")

    @property
    def path(self) -> str:
        """Its folder or URI on the sweep storage (Tune's state, checkpoints, sweeplab.json)."""
        return self.tags.get(SWEEP_PATH_TAG, "")

    @property
    def metric(self) -> str:
        return self.params.get("tune.metric", VAL_LOSS)

    @property
    def mode(self) -> str:
        return self.params.get("tune.mode", Mode.min.value)

    @property
    def objective(self) -> Objective:
        return Objective(self.metric, self.mode)

    @property
    def summarized(self) -> bool:
        """The summary ran: counts, best trial, compute and test figures are on the parent."""
        return "trials/total" in self.metrics

    @property
    def best(self) -> float | None:
        """The best value of the sweep's metric (``best/<metric>``), once summarized."""
        return self.metrics.get(best_key(self.metric))

    @property
    def best_config(self) -> dict[str, str]:
        """The values the best weights were trained with last (params ``best.<key>``)."""
        return {k.removeprefix("best."): v for k, v in self.params.items() if k.startswith("best.")}

    def counts_from_metrics(self) -> dict[str, int]:
        return {
            k.removeprefix("trials/"): int(v)
            for k, v in self.metrics.items()
            if k.startswith("trials/") and k != "trials/total"
        }


# ------------------------------------------------------------------ finding sweeps
def list_sweeps(reader: Reader, experiment: str | None = None) -> list[Sweep]:
    """Every sweep, newest first."""
    return [Sweep(run) for run in reader.runs_tagged(SWEEP_TAGS, experiment)]


LATEST = "latest"  # names the sweep started last


def find(reader: Reader, name: str, experiment: str | None = None) -> Sweep:
    """The one sweep called ``name`` (``latest``: the newest; else a prefix only one sweep's name
    starts with); :class:`UnknownSweep` (one line) when none or several are."""
    every = list_sweeps(reader, experiment)  # newest first
    found = [s for s in every if s.name == name]
    where = f"experiment '{experiment}'" if experiment else "any experiment"
    if not found:
        if name == LATEST and every:
            return every[0]
        prefixed = [s for s in every if s.name.startswith(name)]
        if len({s.name for s in prefixed}) > 1:
            names = ", ".join(sorted({s.name for s in prefixed})[:5])
            raise UnknownSweep(
                f"'{name}' begins the names of several sweeps in {where} ({names}); give more of it"
            )
        found = prefixed
    if len(found) > 1:
        exps = sorted({s.experiment for s in found})
        hint = (
            f"choose one with --experiment ({', '.join(exps)})"
            if len(exps) > 1
            else f"parent runs {', '.join(s.run_id for s in found)}; delete the stray ones in the MLflow UI"
        )
        raise UnknownSweep(f"{len(found)} sweeps are called '{name}' in {where}: {hint}")
    if not found:
        close = difflib.get_close_matches(name, [s.name for s in every], n=3)
        raise UnknownSweep(
            f"no sweep '{name}' in {where} of the tracking store {reader.shown}"
            + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else "")
            + "; `sweeplab sweeps list` shows the sweeps there (tracking.uri=... for another store)"
        )
    return found[0]


def trial_counts(reader: Reader, sweep: Sweep) -> dict[str, int]:
    """Trials by status: the parent's ``trials/<status>`` once summarized, else its children's tags."""
    if sweep.summarized:
        return sweep.counts_from_metrics()
    return dict(Counter(r.tags.get(STATUS_TAG, "") for r in reader.children(sweep.run)))


def describe_counts(counts: dict[str, int]) -> str:
    parts = ", ".join(f"{n} {s or 'unknown'}" for s, n in sorted(counts.items()))
    return f"{sum(counts.values())} ({parts})" if counts else "0"


def trials(reader: Reader, sweep: Sweep) -> list[TrialSummary]:
    """Every trial judged as the sweep's end judges it (the epoch whose weights it kept), from one
    read of the sweep's metric for all; a trial still running has the status it has so far."""
    runs = reader.children(sweep.run)
    histories = reader.histories([r.run_id for r in runs], [sweep.metric])
    return [
        results.trial_of(run, histories[run.run_id], sweep.objective, unclosed=run.tags.get(STATUS_TAG, ""))
        for run in runs
    ]


def ranked(sweep: Sweep, trial_list: list[TrialSummary]) -> list[TrialSummary]:
    """Trials that trained, best first by the sweep's metric and mode."""
    done = [t for t in trial_list if t.epochs and math.isfinite(t.best)]
    return sweep.objective.ranked(done, key=lambda t: t.best)


def ranked_first(sweep: Sweep, trial_list: list[TrialSummary]) -> list[TrialSummary]:
    """Every trial: those that trained best first, then the others by name."""
    top = ranked(sweep, trial_list)
    return top + sorted((t for t in trial_list if t not in top), key=lambda t: t.name)


# ------------------------------------------------------------------ show
def summary(reader: Reader, sweep: Sweep, trial_list: list[TrialSummary] | None = None) -> SweepSummary:
    """What :func:`sweeplab.sweep.view.print_summary` shows at a sweep's end, from the store.

    Only for a summarized sweep: the best trial, test figures and compute accounting are the
    summary's, recorded on the parent run."""
    trial_list = trials(reader, sweep) if trial_list is None else trial_list
    m = sweep.metrics
    rows = tuple(trial_list)
    compute = results.Compute(
        epochs_run=int(m.get("compute/trial_epochs", 0)),
        epochs_budget=int(m.get("compute/trial_epochs_budget", 0)),
        saved_fraction=m.get("compute/saved_fraction", math.nan),
        trial_seconds=m.get("compute/trial_seconds", math.nan),
        wall_seconds=m.get("compute/wall_seconds", math.nan),
        efficiency=m.get("compute/efficiency", math.nan),
    )
    out = SweepSummary(
        name=sweep.name,
        parent_run_id=sweep.run_id,
        objective=sweep.objective,
        trials=rows,
        counts=results.counts(rows),
        compute=compute,
        diagnosis=results.diagnosis(rows),
    )
    best_run = sweep.tags.get(BEST_RUN_ID_TAG)
    best = next((t for t in trial_list if t.run_id == best_run), None)
    if best is not None and sweep.best is not None:
        out = replace(
            out,
            best=best,
            best_config=sweep.best_config or best.sampled,  # what its weights were trained with last
            best_epoch={k.removeprefix("best/"): v for k, v in m.items() if k.startswith("best/")},
            test={TEST_ACC: m.get(TEST_ACC, math.nan), TEST_LOSS: m.get(TEST_LOSS, math.nan)},
            robust=robust_winner(sweep, trial_list, best),
        )
    return out


def robust_winner(sweep: Sweep, trial_list: list[TrialSummary], best: TrialSummary) -> RobustSelection | None:
    """The re-evaluation stage's winner (mean ± std over fresh seeds), as the parent records it.

    The parent keeps the winner's figures only (``robust/*``), so the table of re-evaluated
    configurations shows the winner's row."""
    m, metric = sweep.metrics, sweep.metric
    if robust_key(metric, "mean") not in m:
        return None

    def pm(key: str) -> tuple[float, float]:
        return m.get(robust_key(key, "mean"), math.nan), m.get(robust_key(key, "std"), math.nan)

    of = best.tags.get(REEVALUATES_TAG, "")
    runs = [t for t in trial_list if t.tags.get(REEVALUATES_TAG) == of and t.epochs]
    config = {k: v for k, v in sweep.best_config.items() if k != "seed"}  # each repeat had its own
    row = results.RobustRow(
        of, config, len(runs), {metric: pm(metric), VAL_ACC: pm(VAL_ACC), TEST_ACC: pm(TEST_ACC)}
    )
    return RobustSelection(
        rows=(row,),
        winner=of,
        differs=bool(m.get("robust/differs", 0.0)),
        metrics={k: v for k, v in m.items() if k.startswith(ROBUST)},
    )


def best_so_far(sweep: Sweep, trial_list: list[TrialSummary]) -> dict[str, Any] | None:
    """An unsummarized sweep's best trial among those that logged epochs."""
    top = ranked(sweep, [t for t in trial_list if t.tags.get(STAGE_TAG, Stage.search) == Stage.search])
    return {"name": top[0].name, "value": top[0].best, "sampled": top[0].sampled} if top else None


def registry(reader: Reader, sweep: Sweep) -> list[ModelVersion]:
    return reader.model_versions(sweep.run_id)


# ------------------------------------------------------------------ compare
def comparison(reader: Reader, a: Sweep, b: Sweep) -> list[tuple[str, str, str]]:
    """(what, a's, b's) rows: how each sweep ran, its best figures and its best config, key by key."""

    def fmt(sweep: Sweep, key: str) -> str:
        value = sweep.metrics.get(key)
        return "—" if value is None else f"{value:.4f}"

    rows = [
        ("experiment", a.experiment, b.experiment),
        ("status", a.status, b.status),
        ("trials", describe_counts(trial_counts(reader, a)), describe_counts(trial_counts(reader, b))),
        ("metric", f"{a.metric} ({a.mode})", f"{b.metric} ({b.mode})"),
        ("best value", *(fmt(s, best_key(s.metric)) for s in (a, b))),
    ]
    for key in (best_key(VAL_LOSS), best_key(VAL_ACC)):
        rows.append((key, fmt(a, key), fmt(b, key)))
    epochs = (str(int(s.metrics["best/epoch"])) if "best/epoch" in s.metrics else "—" for s in (a, b))
    rows.append(("best epoch", *epochs))
    rows.append(("best trial", a.tags.get(BEST_TRIAL_TAG, "—"), b.tags.get(BEST_TRIAL_TAG, "—")))
    for key in (TEST_ACC, TEST_LOSS):
        rows.append((key, fmt(a, key), fmt(b, key)))
    if any(robust_key(s.metric, "mean") in s.metrics for s in (a, b)):  # re-evaluated: over fresh seeds
        for label, key in (("robust value", None), (f"robust {TEST_ACC}", TEST_ACC)):
            rows.append((label, *(_mean_std(s, key or s.metric) for s in (a, b))))
    keys = list(dict.fromkeys([*a.best_config, *b.best_config]))
    rows += [(k, a.best_config.get(k, "—"), b.best_config.get(k, "—")) for k in keys]
    return rows


def _mean_std(sweep: Sweep, key: str) -> str:
    mean, std = sweep.metrics.get(robust_key(key, "mean")), sweep.metrics.get(robust_key(key, "std"))
    return "—" if mean is None or std is None else f"{mean:.4f} ± {std:.4f}"


def better(a: Sweep, b: Sweep) -> Sweep | None:
    """The sweep with the better best value, when both were judged by the same metric and mode."""
    if a.objective != b.objective or a.best is None or b.best is None:
        return None
    objective = a.objective
    return a if objective.better(a.best, b.best) else b if objective.better(b.best, a.best) else None


# ------------------------------------------------------------------ export
def export_rows(reader: Reader, sweep: Sweep) -> list[dict[str, Any]]:
    """One row per trial and epoch: the trial, its status and seed, its sampled values, and every
    per-epoch metric. A trial that logged no epoch keeps one row (epoch empty), so none is lost."""
    runs = reader.children(sweep.run)
    histories = reader.histories([r.run_id for r in runs])
    rows = []
    for run in runs:
        head = {
            "sweep": sweep.name,
            "trial": run.name,
            "trial_id": run.tags.get(TRIAL_ID_TAG),
            "run_id": run.run_id,
            "status": run.tags.get(STATUS_TAG),
            "stage": run.tags.get(STAGE_TAG, Stage.search.value),  # or reevaluate: a top config again
            "reevaluates": run.tags.get(REEVALUATES_TAG),
            "seed": int(run.params["seed"]) if "seed" in run.params else None,
            **run.sampled,
        }
        by_epoch: dict[int, dict[str, Any]] = {}
        for key, points in histories[run.run_id].items():
            if is_epoch_metric(key):
                for p in points:
                    if p.step > 0:
                        by_epoch.setdefault(p.step, {})[key] = p.value
        rows += [{**head, **by_epoch[e], "epoch": e} for e in sorted(by_epoch)] or [{**head, "epoch": None}]
    return sorted(rows, key=lambda r: (r["trial"], r["epoch"] or 0))


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """Trial columns, sampled values in the order met, epoch, then the metrics (train/, val/, others)."""
    seen = list(dict.fromkeys(k for r in rows for k in r))
    metrics = sorted((k for k in seen if is_epoch_metric(k)), key=lambda k: (k.split("/")[0], k))
    return [k for k in seen if k not in metrics and k != "epoch"] + ["epoch"] + metrics


def write_export(rows: list[dict[str, Any]], fmt: str, output: str) -> None:
    """Rows to a CSV or Parquet file (``-``: CSV to stdout)."""
    cols = columns(rows)
    table = {c: _one_type([r.get(c) for r in rows]) for c in cols}
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(table), output)
        return
    fh = sys.stdout if output == "-" else open(output, "w", newline="")  # noqa: SIM115
    try:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for i in range(len(rows)):
            writer.writerow(["" if table[c][i] is None else table[c][i] for c in cols])
    finally:
        if fh is not sys.stdout:
            fh.close()


def _one_type(values: list[Any]) -> list[Any]:
    """A column of one type (Parquet needs it): numbers stay numbers unless text is mixed in."""
    kinds = {type(v) for v in values if v is not None}
    if str in kinds and len(kinds) > 1:
        return [None if v is None else str(v) for v in values]
    if kinds == {int, float}:
        return [None if v is None else float(v) for v in values]
    return values


def default_output(sweep: Sweep, fmt: str) -> str:
    return str(Path.cwd() / f"{sweep.name}.{fmt}")
