"""The task every peer program solves, as the orchestrator hands it over, and the log it keeps.

The orchestrator (``bench.peers.race``) writes two files into the bench folder: the
split (``split.npz``, sweeplab's own 55,000 / 5,000 / 10,000 Fashion-MNIST split) and
``task.json`` (sweeplab's search space and budgets, read from its composed config, with every
group option resolved to its settings). A peer reads both, so it searches exactly the space
sweeplab searches, and writes one JSON line per trial-epoch plus one final line, which the
orchestrator turns into the figures.

This runs in the peers' own environment: standard library and numpy only, no sweeplab.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

# The keys of sweeplab's space that the peers know how to build; anything else is refused.
KEYS = ("hidden", "activation", "optimizer", "lr", "batch_size", "regularizer", "lr_schedule")


class TaskError(RuntimeError):
    """The task asks for something this peer cannot express."""


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--task", type=Path, required=True, help="task.json written by the orchestrator")
    parser.add_argument("--log", type=Path, required=True, help="JSON-lines log to write")
    parser.add_argument("--workdir", type=Path, required=True, help="the tool's own files (storage, models)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--t0", type=float, default=None, help="epoch seconds the orchestrator launched us")
    return parser


def load_task(path: Path) -> dict[str, Any]:
    task = json.loads(Path(path).read_text())
    unknown = sorted(set(task["space"]) - set(KEYS))
    if unknown:
        raise TaskError(
            f"sweeplab's search space has {', '.join(unknown)}, which the peer programs do not build; "
            f"teach bench/peers/ those keys (known: {', '.join(KEYS)})"
        )
    return task


def load_split(path: Path) -> dict[str, np.ndarray]:
    """x as float32 (N, 784) scaled to [0, 1] exactly as sweeplab scales (uint8 / 255 in float32)."""
    with np.load(path) as npz:
        out = {}
        for split in ("train", "val", "test"):
            out[f"x_{split}"] = npz[f"x_{split}"].reshape(len(npz[f"x_{split}"]), -1).astype(np.float32)
            out[f"x_{split}"] /= np.float32(255.0)
            out[f"y_{split}"] = npz[f"y_{split}"].astype(np.int64)
    return out


# ------------------------------------------------------------------- the space
def encode(value: Any) -> Any:
    """Choices must be scalars for Optuna and KerasTuner: layer widths travel as "[256, 128]"."""
    return json.dumps(value) if isinstance(value, list) else value


def decode(key: str, value: Any) -> Any:
    return json.loads(value) if key == "hidden" else value


def settings(task: dict[str, Any], key: str, value: Any) -> Any:
    """A sampled group option (optimizer, regularizer, lr_schedule) -> its resolved settings."""
    options = task["groups"].get(key)
    return options[value] if options is not None else value


def fixed(task: dict[str, Any], key: str) -> Any:
    """The value of a key outside the space: sweeplab's base config."""
    return task["base"][key]


# ---------------------------------------------------------------- the clock
class Clock:
    """Seconds since the orchestrator launched the tool, and the search's deadline.

    The budget starts when the search starts (after imports and data loading), as Ray Tune's
    ``time_budget_s`` and Optuna's ``timeout`` count it; the log's times count from launch.
    """

    def __init__(self, t0: float | None, budget_s: float | None):
        self.t0 = t0 if t0 is not None else time.time()
        self.budget_s = budget_s
        self.deadline = math.inf

    def start_search(self) -> float:
        if self.budget_s:
            self.deadline = time.time() + self.budget_s
        return self.deadline

    def since_launch(self) -> float:
        return time.time() - self.t0

    def out_of_time(self) -> bool:
        return time.time() >= self.deadline


# ------------------------------------------------------------------ the log
class Log:
    """Appends JSON lines; one short write per line, so two workers may share a file safely."""

    def __init__(self, path: Path, clock: Clock):
        self.path, self.clock = Path(path), clock
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({"t": round(self.clock.since_launch(), 3), **record}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def epoch(self, trial: Any, epoch: int, val_acc: float, val_loss: float) -> None:
        self.write(
            {
                "event": "epoch",
                "trial": str(trial),
                "epoch": int(epoch),
                "val_acc": float(val_acc),
                "val_loss": float(val_loss),
            }
        )

    def final(self, trial: Any, test_acc: float, test_loss: float, **extra: Any) -> None:
        self.write(
            {
                "event": "final",
                "trial": str(trial),
                "test_acc": float(test_acc),
                "test_loss": float(test_loss),
                **extra,
            }
        )
