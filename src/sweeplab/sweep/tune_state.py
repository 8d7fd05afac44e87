"""Tune's saved sweep state survives a driver killed while copying it to storage.

Tune saves its state (``experiment_state-<session>.json``, the search algorithm's and the
callbacks' state) at every step into a staging folder on the driver's disk, then copies the
folder to the sweep's storage from a background thread, overwriting the files there in
place. A driver killed with SIGKILL mid-copy leaves them cut short or mixed from two steps;
Tune then cannot restore the sweep and silently starts it over (seen in CI: the resumed
sweep ended at once with half its trials never run).

So after every step, when Tune's own save is complete, the staged files go to storage as one
set in one file, replaced atomically; a resume whose state file does not parse puts that set
back. Local and shared storage only: an object store replaces each file whole.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

from ray.tune import Callback

log = logging.getLogger(__name__)

PATTERN = "experiment_state-*.json"
BACKUP = ".tune-state-last-complete.pkl"


class StateBackup(Callback):
    """After each step, Tune's staged state files, as one set, beside its copies in storage."""

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if not trials:
            return
        staging, target = Path(trials[0].local_experiment_path), Path(trials[0].remote_experiment_path)
        names = [f for f in staging.iterdir() if f.suffix in (".json", ".pkl") and f.is_file()]
        files = {f.name: f.read_bytes() for f in names}
        partial = target / f"{BACKUP}.partial"
        try:
            partial.write_bytes(pickle.dumps(files))
            os.replace(partial, target / BACKUP)  # a kill mid-write leaves the previous set whole
        except OSError as exc:  # a full disk, say: Tune's own copy fails too and says so
            log.warning("could not save Tune's state beside the sweep: %s", exc)


def _complete(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return True


def repair(experiment_dir: Path) -> None:
    """Before a resume: a state file cut short by a killed driver is replaced, with the search
    algorithm's and the callbacks' state, by the last complete set (Tune keeps every checkpoint
    of a running trial, so the ones that set points at are still there)."""
    states = sorted(experiment_dir.glob(PATTERN))  # the newest session's file is the one Tune reads
    backup = experiment_dir / BACKUP
    if not states or _complete(states[-1]) or not backup.exists():
        return
    log.warning("%s was cut short (the driver died copying it); using the last complete set", states[-1].name)
    for name, data in pickle.loads(backup.read_bytes()).items():
        partial = experiment_dir / f"{name}.partial"
        partial.write_bytes(data)
        os.replace(partial, experiment_dir / name)
