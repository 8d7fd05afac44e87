"""Freeing a finished sweep's storage (``sweeplab sweeps prune <name>``).

Tune keeps each trial's best and last checkpoints under ``<storage>/<name>/trial_*/checkpoint_*``
(``reevaluate/trial_*/checkpoint_*`` for the re-evaluation stage) so a retried or resumed trial
can continue. Once the sweep is summarized nothing continues:
the best trial's weights (``checkpoints/best.pt``) and the registered model are in MLflow. What
pruning keeps: ``sweeplab.json``, the outbox journal, ``driver.log``, Tune's experiment state and
every trial's results — what tells a finished sweep apart and what ``sweeplab sweep resume``
reads to say that it has finished.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sweeplab.config import ConfigError
from sweeplab.sweep import state as sweep_state
from sweeplab.sweep.state import SweepState
from sweeplab.sweep.storage import Storage
from sweeplab.tracking.outbox import FILE as OUTBOX_FILE
from sweeplab.tracking.outbox import Outbox

# a trial's checkpoint folder, at the top (the search) or one level down (reevaluate/: the re-evaluation)
CHECKPOINT_DIR = re.compile(r"^((?:[^/]+/)?trial_[^/]+)/checkpoint_[^/]+/")


class PruneRefused(ConfigError):
    """The sweep cannot be pruned (not finished, records undelivered); one line saying why."""


@dataclass
class Pruned:
    folders: int  # checkpoint folders deleted
    trials: int  # trials they belonged to
    bytes: int  # the size of the files in them


def load_state(sweep_path: str, endpoint: str | None = None) -> SweepState:
    """The ``sweeplab.json`` of the sweep at ``sweep_path`` (a folder or an object-store URI)."""
    root, _, name = sweep_path.rstrip("/").rpartition("/")
    storage = Storage.from_config({"storage_path": root, "storage_endpoint": endpoint})
    if not root or not sweep_state.exists(storage, name):
        raise ConfigError(
            f"sweep {name or sweep_path}: no {sweep_state.STATE_FILE} in {sweep_path} "
            "(its storage was moved or deleted); nothing to prune"
        )
    return SweepState.load(storage, name)


def undelivered(state: SweepState) -> int:
    """Records the sweep's journal still holds for MLflow (waiting or refused by the store).

    The driver's own copy if this machine has it, else (object store) the copy on the storage."""
    local = state.local_dir / OUTBOX_FILE
    with tempfile.TemporaryDirectory() as tmp:
        if not local.exists():
            copy = Path(tmp) / OUTBOX_FILE
            if state.store.is_local or not state.store.download(f"{state.name}/{OUTBOX_FILE}", copy):
                return 0
            local = copy
        outbox = Outbox(local, deliver=None)  # never started: reading only
        try:
            return outbox.pending() + len(outbox.rejected())
        finally:
            outbox.close()


def prune(state: SweepState) -> Pruned:
    """Delete the trials' checkpoint folders of a finished sweep whose records all reached MLflow."""
    if not state.summarized:
        raise PruneRefused(
            f"sweep {state.name} has not finished (no summary yet): its checkpoints are what "
            f"`sweeplab sweep resume {state.name}` continues from; nothing pruned"
        )
    if waiting := undelivered(state):
        raise PruneRefused(
            f"sweep {state.name}: {waiting} tracking records in its journal have not reached MLflow "
            f"(`sweeplab sweep sync {state.name}` delivers them, or names what the store refused); "
            "nothing pruned"
        )
    sizes: dict[str, int] = {}
    for rel, size in state.store.files(state.name).items():
        if match := CHECKPOINT_DIR.match(rel):
            folder = match[0].rstrip("/")
            sizes[folder] = sizes.get(folder, 0) + size
    for folder in sizes:
        state.store.delete(f"{state.name}/{folder}")
    return Pruned(len(sizes), len({f.rsplit("/", 1)[0] for f in sizes}), sum(sizes.values()))
