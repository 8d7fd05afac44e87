"""``make bench ARGS=--only=peers``: sweeplab's default sweep side by side with Optuna and KerasTuner.

The same task for every tool, one tool at a time: the Fashion-MNIST MLP space of
``experiment=fashion_mnist_sweep`` on sweeplab's own 55,000 / 5,000 / 10,000 split, the
sweep's trial and epoch caps, and one wall-clock budget for the search. The peers are the
programs in ``bench/peers/`` (Optuna TPE + pruner over two workers; KerasTuner Hyperband on
Keras 3's torch backend), run in an environment of their own (``.bench/peers-venv``, pinned
in ``bench/peers/requirements.txt``, torch pinned as the project pins it), never in sweeplab's.

Every tool yields a list of trial-epochs with their time since the tool's command started
(the peers' JSON-lines logs; sweeplab's MLflow metric timestamps) and its own chosen model's
test accuracy. From those: wall and CPU seconds (the whole process tree, ``bench/peers/meter.py``),
trial-epochs, best validation accuracy, and when (seconds, trial-epochs) the best-so-far
validation accuracy first reached each threshold; per seed, then the median per tool. The order
of the tools rotates from seed to seed, so drift in the machine's speed is spread over all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import ROOT
from bench.results import machine
from sweeplab.processes import start_group, stop

STOP_GRACE_S = 30  # a stopped tool's grace period before SIGKILL
PEERS_DIR = Path(__file__).resolve().parent  # the peer programs, run by path in their own environment
BENCH_DIR = ROOT / ".bench"
VENV = BENCH_DIR / "peers-venv"
EXPERIMENT = "fashion_mnist_sweep"
TOOLS = ("sweeplab", "optuna", "kerastuner")
SCRIPTS = {"optuna": "optuna_mlp.py", "kerastuner": "kerastuner_mlp.py"}
LABELS = {
    "sweeplab": "sweeplab: default sweep (experiment=fashion_mnist_sweep)",
    "optuna": "Optuna: TPE + pruner, 2 workers x 1 thread, plain PyTorch loop",
    "kerastuner": "KerasTuner: Hyperband, Keras 3 on torch, 1 process x 2 threads",
}
SHORT = {"sweeplab": "sweeplab", "optuna": "Optuna", "kerastuner": "KerasTuner"}
THRESHOLDS = (0.89, 0.90)
GRACE_S = 900.0  # past the budget: start-up, the last epochs, the chosen model's test; then it is stopped
# sweeplab's space keys -> the names the peer programs build (bench/peers/task.py KEYS)
PEER_KEYS = {
    "model.hidden": "hidden",
    "model.activation": "activation",
    "optimizer": "optimizer",
    "optimizer.lr": "lr",
    "trainer.batch_size": "batch_size",
    "regularizer": "regularizer",
    "lr_schedule": "lr_schedule",
}

# a log file or a pipe gets the whole table, not one squeezed into 80 columns
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 132)


class PeerBenchError(RuntimeError):
    """The benchmark cannot go on; the message says what failed and where its output is."""


# ------------------------------------------------------------------ figures
@dataclass(frozen=True)
class Record:
    """One trial-epoch: seconds since the tool's command started, and its validation result."""

    t: float
    trial: str
    epoch: int
    val_acc: float
    val_loss: float | None = None


def read_log(path: Path) -> tuple[list[Record], dict[str, Any] | None]:
    """A peer's JSON-lines log -> its trial-epochs (in time order) and its final record."""
    records, final = [], None
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry.get("event") == "epoch":
            records.append(
                Record(
                    float(entry["t"]),
                    str(entry["trial"]),
                    int(entry["epoch"]),
                    float(entry["val_acc"]),
                    entry.get("val_loss"),
                )
            )
        elif entry.get("event") == "final":
            final = entry
    return sorted(records, key=lambda r: r.t), final


def best_so_far(records: Iterable[Record]) -> list[tuple[float, float]]:
    """(t, best validation accuracy up to and including that trial-epoch), in time order."""
    out, best = [], -math.inf
    for r in sorted(records, key=lambda r: r.t):
        best = max(best, r.val_acc)
        out.append((r.t, best))
    return out


def time_to(records: Sequence[Record], threshold: float) -> dict[str, float] | None:
    """When the best-so-far validation accuracy first reached ``threshold``: seconds and trial-epochs."""
    for count, r in enumerate(sorted(records, key=lambda r: r.t), start=1):
        if r.val_acc >= threshold:
            return {"t": r.t, "trial_epochs": count}
    return None


def figures(records: Sequence[Record], thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    return {
        "trial_epochs": len(records),
        "trials": len({r.trial for r in records}),
        "best_val_acc": max((r.val_acc for r in records), default=None),
        "first_epoch_s": min((r.t for r in records), default=None),
        "reach": {f"{thr:.2f}": time_to(records, thr) for thr in thresholds},
    }


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def medians(runs: Sequence[dict[str, Any]], thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """The median of each figure over one tool's seeds.

    A threshold never reached counts as infinitely late, so the median reaches it only if most
    seeds did (with two seeds: both).
    """
    out: dict[str, Any] = {"seeds": len(runs)}
    for key in ("wall_s", "cpu_s", "trial_epochs", "best_val_acc", "test_acc", "first_epoch_s"):
        out[key] = _median([r.get(key) for r in runs])
    out["reach"] = {}
    for thr in (f"{t:.2f}" for t in thresholds):
        reached = [r["reach"].get(thr) for r in runs]
        t = statistics.median([x["t"] if x else math.inf for x in reached]) if reached else math.inf
        n = (
            statistics.median([x["trial_epochs"] if x else math.inf for x in reached])
            if reached
            else math.inf
        )
        out["reach"][thr] = (
            None if math.isinf(t) else {"t": t, "trial_epochs": n if math.isfinite(n) else None}
        )
    return out


def goal(results: dict[str, Any], threshold: str = "0.90") -> list[tuple[str, bool]]:
    """Issue 7's goal, judged on the medians over the seeds: sweeplab's default sweep takes no more
    wall time than any peer, its chosen model's test accuracy is at least the best peer's, and its
    best-so-far validation accuracy reaches ``threshold`` sooner than every peer's. A run that
    failed or chose no model fails the goal for sweeplab; a peer's failed runs are left out of its
    medians (a peer that crashed at once would otherwise set the wall time to beat)."""
    runs = results["runs"]
    ours = results["medians"].get("sweeplab")
    peers = {
        tool: medians(ok)
        for tool in dict.fromkeys(r["tool"] for r in runs if r["tool"] != "sweeplab")
        if (ok := [r for r in runs if r["tool"] == tool and not r["error"]])
    }
    if ours is None or not peers:
        return []
    failed = any(r["error"] or r["test_acc"] is None for r in runs if r["tool"] == "sweeplab")

    def reach(m: dict[str, Any]) -> float:
        return m["reach"][threshold]["t"] if m["reach"].get(threshold) else math.inf

    def worst(value: float | None, default: float) -> float:
        return default if value is None else value

    best_test = max(worst(m["test_acc"], -math.inf) for m in peers.values())
    least_wall = min(worst(m["wall_s"], math.inf) for m in peers.values())
    first_reach = min(reach(m) for m in peers.values())

    def text(v: float, fmt: str) -> str:
        return "never" if math.isinf(v) else format(v, fmt)

    def seconds(v: float) -> str:
        return text(v, ".0f") + ("" if math.isinf(v) else " s")

    return [
        (
            f"wall time at most every peer's: {_num(ours['wall_s'], '.0f')} s vs {seconds(least_wall)}",
            not failed and worst(ours["wall_s"], math.inf) <= least_wall,
        ),
        (
            f"chosen model's test acc at least the best peer's: {_num(ours['test_acc'], '.4f')} vs "
            f"{text(best_test, '.4f')}",
            not failed and worst(ours["test_acc"], -math.inf) >= best_test,
        ),
        (
            f"val acc {threshold} reached sooner than every peer: {seconds(reach(ours))} vs "
            f"{seconds(first_reach)}",
            not failed and reach(ours) < first_reach,
        ),
    ]


# -------------------------------------------------------------- environment
def ensure_env(venv: Path = VENV, requirements: Path = PEERS_DIR / "requirements.txt") -> Path:
    """The peers' own virtual environment: torch first (pinned), then the pinned requirements.

    Reused while requirements.txt is unchanged (its hash is stamped in the environment).
    """
    python = venv / "bin" / "python"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / ".requirements.sha256"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    torch_pin = next(
        (
            line.strip()
            for line in requirements.read_text().splitlines()
            if line.strip().startswith("torch==")
        ),
        None,
    )
    if torch_pin is None:
        raise PeerBenchError(f"{requirements} pins no torch (a line torch==X); add the project's pin first")
    log = venv.parent / "peers-venv-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"installing the peers' environment in {venv} (log: {log}) ...")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            torch_pin,
        ],  # first: nothing later pulls another torch
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
    ]
    with log.open("w") as out:
        for step in steps:
            if python.exists() and step[1:3] == ["-m", "venv"]:
                continue
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise PeerBenchError(f"`{' '.join(step)}` failed; see {log}")
    stamp.write_text(digest)
    return python


# --------------------------------------------------------------------- task
def export_split(data_cfg: dict[str, Any], path: Path) -> tuple[Path, str]:
    """sweeplab's own split as uint8 arrays (x * 255 is exact: sweeplab scales uint8 / 255).

    Rewritten only when the data's fingerprint (files, split seed, sizes) changed.
    """
    import numpy as np
    import torch

    from sweeplab.data import load_data

    data = load_data(data_cfg)
    if path.exists():
        with np.load(path) as old:
            if str(old["fingerprint"]) == data.fingerprint:
                return path, data.fingerprint
    arrays: dict[str, Any] = {"fingerprint": np.array(data.fingerprint)}
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        raw = (x * 255).round().to(torch.uint8)
        if not torch.equal(raw.float() / 255.0, x):
            raise PeerBenchError(
                f"the {split} images are not uint8 / 255; the peers could not see the same data"
            )
        arrays[f"x_{split}"] = raw.reshape(len(raw), -1).numpy()
        arrays[f"y_{split}"] = y.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path, data.fingerprint


def peer_task(
    budget_s: float, max_trials: int | None, max_epochs: int | None, overrides: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the peers must search: sweeplab's space, group options resolved to their settings.

    Returns the task (without the split) and the data config the split comes from.
    """
    from sweeplab.config import compose, to_container
    from sweeplab.space import parse_space

    base = [f"experiment={EXPERIMENT}", *overrides]
    cfg = to_container(compose(base))
    space, groups = {}, {}
    for param in parse_space(cfg["search"]["space"]):
        key = PEER_KEYS.get(param.key)
        if key is None:
            raise PeerBenchError(
                f"sweeplab's space has {param.key}, which the peer programs do not build; "
                f"teach bench/peers/ that key or leave it out (they build: {', '.join(PEER_KEYS)})"
            )
        space[key] = {
            "kind": param.kind,
            "args": [list(a) if isinstance(a, tuple) else a for a in param.args],
        }
        if param.is_group:
            groups[key] = {
                opt: to_container(compose([*base, f"{param.key}={opt}"]))[param.key] for opt in param.args
            }
    task = {
        "experiment": EXPERIMENT,
        "space": space,
        "groups": groups,
        "base": {
            "hidden": cfg["model"]["hidden"],
            "activation": cfg["model"]["activation"],
            "batch_size": cfg["trainer"]["batch_size"],
            "optimizer": cfg["optimizer"],
            "regularizer": cfg["regularizer"],
            "lr_schedule": cfg["lr_schedule"],
        },
        "init": cfg["model"]["init"],
        "eval_batch_size": cfg["trainer"]["eval_batch_size"],
        "epochs": max_epochs or cfg["trainer"]["epochs"],
        "max_trials": max_trials or cfg["tune"]["num_samples"],
        "budget_s": budget_s,
    }
    return task, cfg["data"]


def write_task(
    run_dir: Path, budget_s: float, max_trials: int | None, max_epochs: int | None
) -> dict[str, Any]:
    """task.json in the run's folder: the peers' task plus the exported split it points at."""
    task, data_cfg = peer_task(budget_s, max_trials, max_epochs)
    split, fingerprint = export_split(data_cfg, BENCH_DIR / "peers" / "fashion_mnist_split.npz")
    task.update(split=str(split), data_fingerprint=fingerprint)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "task.json").write_text(json.dumps(task, indent=1))
    return task


# ------------------------------------------------------------ running tools
@dataclass
class Launch:
    t0: float  # epoch seconds just before the command started
    wall_s: float
    returncode: int
    usage: dict[str, Any] = field(default_factory=dict)
    killed: bool = False


def launch(command: list[str], run_dir: Path, stem: str, hard_limit_s: float, env: dict[str, str]) -> Launch:
    """Run one tool under the meter, output to <stem>.out; stop its whole tree at the hard limit."""
    usage_file, out_file = run_dir / f"{stem}.usage.json", run_dir / f"{stem}.out"
    meter = [sys.executable, str(PEERS_DIR / "meter.py"), "--out", str(usage_file), "--"]
    killed = False
    with out_file.open("w") as out:
        t0 = time.time()
        proc = start_group(  # its own session: Ctrl-C and a kill stop the tool and all it started
            [*meter, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        try:
            proc.wait(timeout=hard_limit_s)
        except subprocess.TimeoutExpired:
            killed = True
            stop(proc, STOP_GRACE_S)
        except BaseException:  # Ctrl-C or a kill: the tool runs in its own session and would not see it
            console.print(f"  stopping {stem} and everything it started ...")
            stop(proc, STOP_GRACE_S)
            raise
        wall = time.time() - t0
    usage = json.loads(usage_file.read_text()) if usage_file.exists() else {}
    return Launch(t0, wall, proc.returncode, usage, killed)


def run_peer(tool: str, seed: int, task: dict[str, Any], run_dir: Path, python: Path, **options) -> dict:
    stem = f"{tool}-seed{seed}"
    log = run_dir / f"{stem}.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    command = [
        str(python),
        str(PEERS_DIR / SCRIPTS[tool]),
        f"--task={run_dir / 'task.json'}",
        f"--log={log}",
        f"--workdir={run_dir / stem}",
        f"--seed={seed}",
    ]
    if tool == "optuna":
        command.append(f"--pruner={options.get('pruner', 'hyperband')}")
    # the log's times count from our launch (--t0), as sweeplab's are taken from the metric timestamps
    command.append(f"--t0={time.time()}")
    result = launch(command, run_dir, stem, task["budget_s"] + GRACE_S, env)
    records, final = read_log(log) if log.exists() else ([], None)
    return _summary(
        tool,
        seed,
        result,
        records,
        final and final.get("test_acc"),
        final and final.get("trial"),
        log,
        run_dir / f"{stem}.out",
        extra={"final": final},
    )


def sweeplab_command(seed: int, name: str, task: dict[str, Any], run_dir: Path) -> list[str]:
    exe = Path(sys.executable).with_name("sweeplab")
    return [
        str(exe),
        "sweep",
        f"experiment={EXPERIMENT}",
        f"seed={seed}",
        f"tune.name={name}",
        f"tracking.uri=sqlite:///{run_dir / 'mlflow.db'}",
        f"tracking.artifact_root={run_dir / 'mlartifacts'}",
        f"tune.storage_path={run_dir / 'sweeps'}",
        f"tune.time_budget_s={task['budget_s']}",
        f"tune.num_samples={task['max_trials']}",
        f"trainer.epochs={task['epochs']}",
        *task.get("sweeplab_overrides", []),  # a lever under test (e.g. tune=optuna), last: it wins
    ]


def sweeplab_records(uri: str, experiment: str, sweep_name: str, t0: float) -> tuple[list[Record], dict]:
    """A sweep's trial-epochs from MLflow (val/acc and val/loss per step, with their timestamps)."""
    from sweeplab.metrics import TEST_ACC, VAL_ACC, VAL_LOSS
    from sweeplab.tracking.reader import SWEEP_TAGS, open_reader
    from sweeplab.tracking.tags import BEST_TRIAL_ID_TAG, STATUS_TAG, SWEEP_TAG, TRIAL_ID_TAG

    reader = open_reader({"uri": uri})
    try:
        parents = reader.runs_tagged({**SWEEP_TAGS, SWEEP_TAG: sweep_name}, experiment)
    except ValueError:  # no such experiment: the sweep never got as far as the store
        parents = []
    if not parents:
        return [], {}
    parent = parents[0]
    kids = reader.children(parent)
    histories = reader.histories([k.run_id for k in kids], [VAL_ACC, VAL_LOSS])
    seen: dict[tuple[str, int], Record] = {}
    for run in kids:
        trial = run.tags.get(TRIAL_ID_TAG) or run.name
        losses = {p.step: p.value for p in histories[run.run_id].get(VAL_LOSS, [])}
        for p in histories[run.run_id].get(VAL_ACC, []):
            if (
                p.step > 0 and (trial, p.step) not in seen
            ):  # a retried trial never logs an epoch twice; be sure
                seen[(trial, p.step)] = Record(
                    p.timestamp_ms / 1000 - t0, trial, p.step, p.value, losses.get(p.step)
                )
    final = {
        "test_acc": parent.metrics.get(TEST_ACC),
        "trial": parent.tags.get(BEST_TRIAL_ID_TAG),
        "parent_run_id": parent.run_id,
        "status": parent.tags.get(STATUS_TAG),
    }
    return sorted(seen.values(), key=lambda r: r.t), final


def run_sweeplab(seed: int, task: dict[str, Any], run_dir: Path) -> dict:
    stem = f"sweeplab-seed{seed}"
    name = f"peers-{run_dir.name}-seed{seed}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = launch(
        sweeplab_command(seed, name, task, run_dir), run_dir, stem, task["budget_s"] + GRACE_S, env
    )
    records, final = sweeplab_records(f"sqlite:///{run_dir / 'mlflow.db'}", EXPERIMENT, name, result.t0)
    return _summary(
        "sweeplab",
        seed,
        result,
        records,
        final.get("test_acc"),
        final.get("trial"),
        None,
        run_dir / f"{stem}.out",
        extra={"final": final},
    )


def _summary(tool, seed, result: Launch, records, test_acc, chosen, log, out, extra) -> dict[str, Any]:
    error = None
    if result.killed:
        error = f"stopped at the hard limit (budget + {GRACE_S:.0f} s)"
    elif result.returncode != 0:
        error = f"exited with {result.returncode}; see {out}"
    elif test_acc is None:
        error = f"chose no model; see {out}"
    return {
        "tool": tool,
        "seed": seed,
        "wall_s": result.wall_s,
        "cpu_s": result.usage.get("cpu_s"),
        "cpu_exact": result.usage.get("cpu_exact"),  # False: a lower bound (no cgroup could be made)
        "cpu_method": result.usage.get("cpu_method"),
        "returncode": result.returncode,
        "error": error,
        "test_acc": test_acc,
        "chosen_trial": chosen,
        **figures(records),
        "log": str(log) if log else None,
        "output": str(out),
        "epochs": [asdict(r) for r in records],
        **extra,
    }


def run(
    budget_s: float,
    seeds: Sequence[int],
    tools: Sequence[str] = TOOLS,
    max_trials: int | None = None,
    max_epochs: int | None = None,
    pruner: str = "hyperband",
    out_dir: Path | None = None,
    sweeplab_overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Every tool on every seed, one at a time; returns (and writes to results.json) the raw results."""
    run_dir = out_dir or new_run_dir()
    task = write_task(run_dir, budget_s, max_trials, max_epochs)
    task["sweeplab_overrides"] = list(sweeplab_overrides)
    python = ensure_env() if set(tools) - {"sweeplab"} else None
    console.print(
        f"peers: {', '.join(tools)} · seeds {', '.join(map(str, seeds))} · budget {budget_s:g} s · "
        f"{task['max_trials']} trials × {task['epochs']} epochs max · {run_dir}"
    )
    results: dict[str, Any] = {
        "machine": machine(),
        "budget_s": budget_s,
        "max_trials": task["max_trials"],
        "max_epochs": task["epochs"],
        "seeds": list(seeds),
        "sweeplab_overrides": list(sweeplab_overrides),
        "thresholds": list(THRESHOLDS),
        "run_dir": str(run_dir),
        "runs": [],
        "medians": {},
    }
    for i, seed in enumerate(seeds):
        order = list(tools[i % len(tools) :]) + list(tools[: i % len(tools)])  # rotate: spread the drift
        for tool in order:
            console.print(f"  {LABELS[tool]}; seed {seed} ...")
            if tool == "sweeplab":
                result = run_sweeplab(seed, task, run_dir)
            else:
                result = run_peer(tool, seed, task, run_dir, python, pruner=pruner)
            results["runs"].append(result)
            console.print("    " + _one_line(result))
            _save(results, tools)  # after every tool: an interrupted benchmark keeps what it measured
    return results


def new_run_dir() -> Path:
    return BENCH_DIR / "peers" / datetime.now().strftime("%Y%m%d-%H%M%S")


def _save(results: dict[str, Any], tools: Sequence[str]) -> None:
    runs = results["runs"]
    results["medians"] = {
        tool: medians([r for r in runs if r["tool"] == tool])
        for tool in tools
        if any(r["tool"] == tool for r in runs)
    }
    path = Path(results["run_dir"]) / "results.json"
    path.with_suffix(".tmp").write_text(json.dumps(results, indent=1))
    os.replace(path.with_suffix(".tmp"), path)  # whole or not at all, should the benchmark be stopped


# ------------------------------------------------------------------- output
def _reach_text(reach: dict[str, float] | None) -> str:
    if reach is None:
        return "never"
    epochs = reach.get("trial_epochs")
    return f"{reach['t']:.0f} s, {epochs:.0f} ep" if epochs is not None else f"{reach['t']:.0f} s"


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _cpu(value: float | None, exact: bool) -> str:
    return _num(value, ".0f") if exact or value is None else f"≥ {value:.0f}"  # rusage alone: a lower bound


def _one_line(r: dict[str, Any]) -> str:
    text = (
        f"wall {r['wall_s']:.0f} s, CPU {_cpu(r['cpu_s'], r.get('cpu_exact') is not False)} s, "
        f"{r['trial_epochs']} trial-epochs, "
        f"best val acc {_num(r['best_val_acc'], '.4f')}, test acc {_num(r['test_acc'], '.4f')}"
    )
    return text + (f"  [red]{r['error']}[/red]" if r["error"] else "")


def _cells(results: dict[str, Any]) -> Iterable[tuple[list[str], bool, bool]]:
    """The table's rows as text: (cells, a tool's median row, the run failed), each tool's seeds
    then its median."""
    thresholds = [f"{t:.2f}" for t in results["thresholds"]]
    for tool, med in results["medians"].items():
        runs = [r for r in results["runs"] if r["tool"] == tool]
        for r in runs:
            cells = [
                SHORT[tool],
                str(r["seed"]),
                f"{r['wall_s']:.0f}",
                _cpu(r["cpu_s"], r.get("cpu_exact") is not False),
                _num(r["first_epoch_s"], ".0f"),
                str(r["trial_epochs"]),
                _num(r["best_val_acc"], ".4f"),
                _num(r["test_acc"], ".4f"),
                *(_reach_text(r["reach"][thr]) for thr in thresholds),
            ]
            yield cells, False, bool(r["error"])
        cells = [
            SHORT[tool],
            "median",
            _num(med["wall_s"], ".0f"),
            _cpu(med["cpu_s"], all(r.get("cpu_exact") is not False for r in runs)),
            _num(med["first_epoch_s"], ".0f"),
            _num(med["trial_epochs"], ".0f"),
            _num(med["best_val_acc"], ".4f"),
            _num(med["test_acc"], ".4f"),
            *(_reach_text(med["reach"][thr]) for thr in thresholds),
        ]
        yield cells, True, False


def _columns(results: dict[str, Any]) -> list[str]:
    columns = ["tool", "seed", "wall s", "CPU s", "1st epoch s", "trial-epochs", "best val acc", "test acc"]
    return columns + [f"≥ {t:.2f}" for t in results["thresholds"]]


def table(results: dict[str, Any]) -> Table:
    legend = " · ".join(LABELS[tool] for tool in results["medians"])
    t = Table(
        title=f"sweeplab vs its peers: search budget {results['budget_s']:g} s, "
        f"{results['max_trials']} trials × {results['max_epochs']} epochs max, one tool at a time · "
        f"{results['machine']}",
        caption=f"{legend}\ntimes count from the command's start; ≥ thr: when the best-so-far val acc first "
        "reached it (seconds, trial-epochs); ! the run failed or chose no model (see results.json)",
    )
    for col in _columns(results):
        t.add_column(col, justify="left" if col == "tool" else "right")
    for cells, median, failed in _cells(results):
        if failed:
            cells[7] += " [red]![/red]"
        if median:
            cells[0] = f"[bold]{cells[0]}[/bold]"
        t.add_row(*cells, end_section=median)
    return t


def markdown(results: dict[str, Any]) -> list[str]:
    """The table as Markdown lines (medians in bold; ! marks a run that failed or chose no model)."""
    lines = ["| " + " | ".join(_columns(results)) + " |", "|" + "---|" * len(_columns(results))]
    for cells, median, failed in _cells(results):
        if failed:
            cells[7] += " !"
        if median:
            cells[:2] = [f"**{c}**" for c in cells[:2]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report(results: dict[str, Any]) -> None:
    console.print(table(results))
    verdict = goal(results)
    if verdict:
        met = all(ok for _, ok in verdict)
        console.print(
            f"goal (medians over {len(results['seeds'])} seeds): "
            + ("[green]met[/green]" if met else "[red]not met[/red]")
        )
        for line, ok in verdict:
            console.print(f"  {'yes' if ok else 'NO '}  {line}")
    console.print(f"raw results: {Path(results['run_dir']) / 'results.json'}")


# the figures of results.json a saved summary keeps per run (not the trial-epochs, logs, outputs)
SAVED_KEYS = (
    "tool", "seed", "wall_s", "cpu_s", "cpu_exact", "first_epoch_s", "trial_epochs", "trials",
    "best_val_acc", "test_acc", "reach", "error",
)  # fmt: skip


def summary_result(results: dict[str, Any], command: Sequence[str]):
    """The run's summary as a saved result (bench.results): a row per tool's medians and per
    line of the goal's verdict, and the figures per tool and seed (not the trial-epochs, logs and
    outputs: results.json in the run's folder keeps those)."""
    from bench import results as saved

    summary = {k: results[k] for k in ("budget_s", "max_trials", "max_epochs", "seeds", "thresholds")}
    summary["sweeplab_overrides"] = results.get("sweeplab_overrides", [])
    summary["runs"] = [{k: r.get(k) for k in SAVED_KEYS} for r in results["runs"]]
    summary["medians"] = results["medians"]
    rows = []
    for tool, med in results["medians"].items():
        failed = any(r["error"] for r in results["runs"] if r["tool"] == tool)
        rows.append(
            saved.Row(
                "peers",
                f"peers: {SHORT[tool]}, median of {med['seeds']} seeds — {LABELS[tool].split(': ', 1)[1]}",
                f"wall {_num(med['wall_s'], '.0f')} s, test acc {_num(med['test_acc'], '.4f')}, "
                f"val acc 0.90 reached: {_reach_text(med['reach'].get('0.90'))}"
                + (" (a run failed or chose no model)" if failed else ""),
                None,
                "measured",
                None,
                {k: med.get(k) for k in ("wall_s", "cpu_s", "test_acc", "best_val_acc", "trial_epochs")},
            )
        )
    for line, ok in goal(results):
        what, measured = line.split(": ", 1)
        rows.append(saved.Row("peers", f"peers goal: {what}", measured, None, "the goal", ok))
    raw = str(Path(results["run_dir"]) / "results.json") if results.get("run_dir") else None
    return saved.new(["peers"], rows, command, peers=summary, raw=raw)


def save_summary(results: dict[str, Any], command: Sequence[str], directory: Path | None = None) -> Path:
    """The run's summary into benchmarks/results/ (or ``directory``); returns the file."""
    from bench import results as saved

    return saved.write(summary_result(results, command), directory or saved.RESULTS_DIR)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description="sweeplab's default sweep vs Optuna and KerasTuner on the same task, one tool at a time",
    )
    parser.add_argument("--budget-s", type=float, default=600.0, help="wall-clock budget of each search (s)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"subset of {','.join(TOOLS)}")
    parser.add_argument("--max-trials", type=int, default=None, help="trial cap (default: the sweep's)")
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="epochs per trial (default: the sweep's)"
    )
    parser.add_argument(
        "--pruner", choices=("hyperband", "median"), default="hyperband", help="Optuna's pruner"
    )
    parser.add_argument(
        "--sweeplab-overrides",
        default="",
        help="overrides added to sweeplab's sweep, to measure a lever (e.g. 'tune=optuna')",
    )
    parser.add_argument(
        "--report",
        metavar="RESULTS_JSON",
        help="print the table and the goal's verdict of an earlier run's results.json, and run nothing",
    )
    args = parser.parse_args(argv)
    if args.report:
        try:
            report(json.loads(Path(args.report).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            console.print(
                f"[red]error:[/red] cannot read {args.report} as a peers benchmark's results.json ({err})"
            )
            return 1
        return 0
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds={args.seeds}: give integers separated by commas, e.g. --seeds 0,1,2")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if unknown := sorted(set(tools) - set(TOOLS)):
        parser.error(f"unknown tool(s) {', '.join(unknown)}; choose from {', '.join(TOOLS)}")
    if args.budget_s <= 0 or not seeds:
        parser.error("--budget-s must be positive and --seeds must name at least one seed")
    run_dir = new_run_dir()
    signal.signal(signal.SIGTERM, _interrupt)  # a kill stops the running tool as Ctrl-C does
    try:
        results = run(
            args.budget_s, seeds, tools, args.max_trials, args.max_epochs, args.pruner, run_dir,
            args.sweeplab_overrides.split(),
        )  # fmt: skip
    except PeerBenchError as err:
        console.print(f"[red]error:[/red] {err}")
        return 1
    except KeyboardInterrupt:
        console.print(f"interrupted: the running tool was stopped; what was measured is in {run_dir}")
        return 130
    report(results)
    saved = save_summary(results, ["python", "-m", "bench.peers", *(sys.argv[1:] if argv is None else argv)])
    console.print(f"saved: {saved}")
    return 1 if any(r["error"] for r in results["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
