"""``--only=latency``: how long the command line takes to answer, each command a fresh process.

``sweeplab --help``, and ``sweeplab sweeps list`` and ``sweeplab sweeps show <name>`` on a SQLite
tracking store holding 100 sweeps, run as a user runs them (the installed ``sweeplab`` beside
this Python): the median of 5 runs after a warm-up, against a budget.

The store is written straight with MLflow's client, laid out as ``sweeplab sweep`` lays out a
sweep (``Tracker.start_sweep_run``, ``sweep.recorder``, ``sweep.summary``): a parent run tagged
``sweeplab.kind=sweep`` with the sweep's config, space, summary metrics and best trial, and one
child run per trial with its sampled values, config and per-epoch metrics. 100 sweeps of
8 trials x 5 epochs take a minute or two to write instead of hours to run; the store is kept in
``.bench/latency-store-v1/`` and reused.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import EPOCH_METRICS, ROOT
from sweeplab.metrics import (
    EPOCH,
    TEST_ACC,
    TEST_LOSS,
    TRAIN,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL,
    VAL_ACC,
    VAL_LOSS,
    best_key,
)
from sweeplab.objective import Objective
from sweeplab.stage import Stage
from sweeplab.tracking import tags

STORE_DIR = ROOT / ".bench" / "latency-store-v1"
SWEEPS, TRIALS, EPOCHS = 100, 8, 5
BUDGETS_S = {"help": 0.3, "list": 1.0, "show": 1.0}
RUNS, WARMUP = 5, 1
# how a sweep's trials ended, in turn (an ASHA sweep stops most of them early)
ENDINGS = ("completed", "stopped_by_scheduler", "completed", "early_stopped", "stopped_by_scheduler")
DAY_MS = 86_400_000


def sweep_name(i: int) -> str:
    return f"latency-{i:03d}"


def _log(client, run_id: str, metrics=(), params=None, tags=None) -> None:
    """log_batch in MLflow-sized requests (100 params or tags, 1000 metrics)."""
    from mlflow.entities import Metric, Param, RunTag

    items = {
        "metrics": [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in metrics],
        "params": [Param(k, str(v)) for k, v in (params or {}).items()],
        "tags": [RunTag(k, str(v)) for k, v in (tags or {}).items()],
    }
    for kind, entities in items.items():
        size = 1000 if kind == "metrics" else 100
        for i in range(0, len(entities), size):
            client.log_batch(run_id, **{kind: entities[i : i + size]})


def build_store(root: Path, sweeps: int = SWEEPS, trials: int = TRIALS, epochs: int = EPOCHS) -> str:
    """A fresh SQLite store ``root/mlflow.db`` holding ``sweeps`` finished sweeps of the
    Fashion-MNIST MLP (experiment=fashion_mnist_sweep); returns its URI."""
    from mlflow.tracking import MlflowClient

    from sweeplab.config import compose, flatten, to_container
    from sweeplab.metrics import best_epoch, overfitting
    from sweeplab.space import parse_space
    from sweeplab.tracking.views import sweep_view

    for logger in ("mlflow", "alembic"):  # their narration of the new store's migrations
        logging.getLogger(logger).setLevel(logging.WARNING)
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    cfg = to_container(compose(["experiment=fashion_mnist_sweep"]))
    space = parse_space(cfg["search"]["space"])
    metric, mode = cfg["tune"]["metric"], cfg["tune"]["mode"]
    base = flatten({k: v for k, v in cfg.items() if k != "search"})
    name = cfg["tracking"]["experiment"]
    exp = client.create_experiment(name, artifact_location=(root / "mlartifacts" / name).as_uri())
    rng = random.Random(0)
    now = int(time.time() * 1000)
    for i in range(sweeps):
        sweep = sweep_name(i)
        start = now - (sweeps - i) * DAY_MS  # one a day, the last one yesterday
        parent = client.create_run(
            exp,
            start_time=start,
            run_name=sweep,
            tags={
                tags.KIND_TAG: tags.SWEEP_KIND,
                tags.SWEEP_TAG: sweep,
                tags.SWEEP_PATH_TAG: str(root / "sweeps" / sweep),
                tags.STATUS_TAG: "running",
                tags.VERSION_TAG: "bench",
            },
        ).info.run_id
        _log(
            client,
            parent,
            params={
                **{**base, "tune.name": sweep},
                "search.name": cfg["search"]["name"],
                **{f"search.space.{p.key}": p.describe() for p in space},
            },
        )
        key, view = sweep_view(sweep, metric, mode, [p.key for p in space], metric)
        client.set_experiment_tag(exp, key, view)
        kids = []
        for t in range(trials):
            trial, trial_id, status = f"trial-{t:03d}", f"{i:05x}_{t:05d}", ENDINGS[t % len(ENDINGS)]
            sampled = {p.key: _sample(p, rng) for p in space}
            history = [{"epoch": e, **h} for e, h in enumerate(_history(rng, epochs), 1)]
            best = best_epoch(history, metric, mode)
            t0 = start + 30_000 + t * 60_000  # two trials at a time, a minute each
            end = t0 + epochs * 10_000
            kid = client.create_run(
                exp,
                start_time=t0,
                run_name=trial,
                tags={
                    tags.PARENT_RUN_ID_TAG: parent,
                    tags.TRIAL_ID_TAG: trial_id,
                    tags.TRIAL_NUMBER_TAG: str(t),
                    tags.SWEEP_TAG: sweep,
                    tags.STAGE_TAG: Stage.search.value,
                    tags.STATUS_TAG: status,
                    tags.EPOCHS_TRAINED_TAG: str(epochs),
                    tags.TRAIN_SECONDS_TAG: f"{epochs * 9.5:.1f}",
                    tags.BEST_EPOCH_TAG: str(best["epoch"]),
                },
            ).info.run_id
            points = [
                (k, v, t0 + h["epoch"] * 10_000, h["epoch"])
                for h in history
                for k, v in h.items()
                if k != "epoch"
            ] + [(k, v, end, epochs) for k, v in overfitting(history).items()]
            params = {**base, **{k: v for k, v in sampled.items() if "." in k}}
            _log(client, kid, points, {**params, **{f"sampled.{k}": v for k, v in sampled.items()}})
            client.set_terminated(kid, "FINISHED", end_time=end)
            kids.append({"run_id": kid, "trial": trial, "trial_id": trial_id, "status": status,
                         "sampled": sampled, "best": best})  # fmt: skip
        _summarize(client, parent, kids, metric, mode, start, epochs)
    return uri


def _sample(p, rng: random.Random) -> Any:
    if p.kind == "loguniform":
        lo, hi = p.args
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    value = rng.choice(p.args)
    return list(value) if isinstance(value, tuple) else value


def _history(rng: random.Random, epochs: int) -> list[dict[str, float]]:
    """A plausible learning curve: the loss falls and the accuracy rises, epoch by epoch."""
    out, acc = [], rng.uniform(0.70, 0.80)
    for _ in range(epochs):
        acc = min(0.91, acc + rng.uniform(0.0, 0.04))
        out.append(
            {
                **EPOCH_METRICS,
                TRAIN_ACC: acc + 0.01,
                TRAIN_LOSS: 1.6 - 1.4 * acc,
                VAL_ACC: acc,
                VAL_LOSS: 1.65 - 1.4 * acc,
                "epoch_time_s": rng.uniform(8.0, 11.0),
            }
        )
    return out


def _summarize(
    client, parent: str, kids: list[dict], metric: str, mode: str, start: int, epochs: int
) -> None:
    """What sweep.summary writes on the parent: counts, compute, the best trial and its figures."""
    best = Objective(metric, mode).best(kids, key=lambda k: k["best"][metric])
    counts = Counter(k["status"] for k in kids)
    trial_seconds, wall = len(kids) * epochs * 9.5, 30.0 * len(kids) + 60
    final = {
        **{f"trials/{s}": n for s, n in counts.items()},
        "trials/total": len(kids),
        "compute/trial_epochs": len(kids) * epochs,
        "compute/trial_epochs_budget": len(kids) * epochs,
        "compute/saved_fraction": 0.0,
        "compute/trial_seconds": trial_seconds,
        "compute/wall_seconds": wall,
        "compute/efficiency": trial_seconds / (wall * 2),
        **{best_key(k): v for k, v in best["best"].items() if k.startswith((VAL, TRAIN))},
        best_key(EPOCH): best["best"][EPOCH],
        TEST_ACC: best["best"][VAL_ACC] - 0.004,
        TEST_LOSS: best["best"][VAL_LOSS] + 0.01,
    }
    end = start + int(wall * 1000)
    _log(
        client,
        parent,
        [(k, v, end, 0) for k, v in final.items()],
        params={f"best.{k}": v for k, v in best["sampled"].items()},
        tags={
            tags.BEST_RUN_ID_TAG: best["run_id"],
            tags.BEST_TRIAL_TAG: best["trial"],
            tags.BEST_TRIAL_ID_TAG: best["trial_id"],
            tags.BEST_STATUS_TAG: best["status"],
            tags.STATUS_TAG: "completed",
            tags.STATUS_REASON_TAG: f"{len(kids)} trials: "
            + ", ".join(f"{n} {s}" for s, n in counts.items()),
        },
    )
    client.set_terminated(parent, "FINISHED", end_time=end)


def cached_store(
    root: Path = STORE_DIR, sweeps: int = SWEEPS, trials: int = TRIALS, epochs: int = EPOCHS
) -> str:
    """The store in ``root``, built once: rebuilt when missing, unfinished or of another size."""
    marker, shape = root / "built.json", {"sweeps": sweeps, "trials": trials, "epochs": epochs}
    if marker.exists() and json.loads(marker.read_text()) == shape:
        return f"sqlite:///{root / 'mlflow.db'}"
    shutil.rmtree(root, ignore_errors=True)
    uri = build_store(root, sweeps, trials, epochs)
    marker.write_text(json.dumps(shape))
    return uri


def sweeplab_exe() -> str:
    """The installed command beside this Python (a virtualenv's bin/)."""
    exe = Path(sys.executable).with_name("sweeplab")
    return str(exe) if exe.exists() else shutil.which("sweeplab") or "sweeplab"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["COLUMNS"] = "160"  # the tables Rich prints to a pipe
    return subprocess.run([sweeplab_exe(), *args], cwd=cwd, env=env, capture_output=True, text=True)


def time_command(args: list[str], cwd: Path, runs: int = RUNS, warmup: int = WARMUP) -> dict[str, Any]:
    """Wall seconds of ``sweeplab <args>`` as fresh processes: each measured run, their median,
    and the exit codes (a failing command is measured, and fails its budget)."""
    seconds, codes = [], []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        done = run(args, cwd)
        if i >= warmup:
            seconds.append(time.perf_counter() - t0)
            codes.append(done.returncode)
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "runs_s": [round(s, 4) for s in seconds],
        "exit_codes": sorted(set(codes)),
        "error": done.stderr.strip().splitlines()[-1] if done.returncode and done.stderr.strip() else None,
    }


def measure(root: Path = STORE_DIR, runs: int = RUNS) -> list[dict[str, Any]]:
    """Each command's timing and budget (built store first: its time is not measured)."""
    uri = cached_store(root)
    store = f"tracking.uri={uri}"
    commands = {
        "help": ["--help"],
        "list": ["sweeps", "list", store],
        "show": ["sweeps", "show", sweep_name(SWEEPS // 2), store],
    }
    out = []
    for key, args in commands.items():
        shown = " ".join(["sweeplab", *args]).replace(store, "tracking.uri=<store>")
        out.append(
            {"key": key, "command": shown, "budget_s": BUDGETS_S[key], **time_command(args, root, runs)}
        )
    return out
