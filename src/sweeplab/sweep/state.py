"""A sweep's identity on storage (``sweeplab.json`` beside Tune's own state) and finding it again.

The driver also keeps a folder on its own disk: the outbox journal (every MLflow write
not yet delivered, and the recorder's per-trial state) and the driver's log. For a
sweep on local or shared storage that folder is the sweep's folder itself; for one in
an object store it is a cache folder, and a copy of the journal is kept on the storage
whenever the driver stops, so another machine can resume.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sweeplab.config import ConfigError
from sweeplab.stage import Stage
from sweeplab.sweep.storage import Storage

STATE_FILE = "sweeplab.json"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class SweepState:
    name: str
    storage: str  # the storage root; Tune's experiment folder is <storage>/<name>
    parent_run_id: str
    experiment: str
    base_overrides: list[str]  # what composes the sweep's config (trials add their sampled values)
    tracking: dict[str, Any]  # the tracking config with the resolved store (no password)
    tune: dict[str, Any]
    max_epochs: int
    smoothing: int = 3
    config_hash: str = ""  # of the composed config: resume notices a changed conf/
    driver_seconds: list[float] = field(default_factory=list)  # wall time of each driver run
    summarized: bool = False
    stage: Stage = Stage.search  # then reevaluate when the sweep re-trains its top configurations

    @property
    def store(self) -> Storage:
        return Storage(self.storage)

    @property
    def path(self) -> str:
        """Tune's experiment folder (a path or a URI)."""
        return self.store.join(self.name)

    @property
    def local_dir(self) -> Path:
        if self.store.is_local:
            return Path(self.path)
        cache = Path(os.environ.get("SWEEPLAB_CACHE_DIR", Path.home() / ".cache" / "sweeplab"))
        return cache / "sweeps" / self.name

    def save(self) -> None:
        self.store.write_text(f"{self.name}/{STATE_FILE}", json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, storage: Storage, name: str) -> SweepState:
        data = json.loads(storage.read_text(f"{name}/{STATE_FILE}"))
        known = cls.__dataclass_fields__
        state = cls(**{k: v for k, v in data.items() if k in known})
        state.stage = Stage(state.stage)
        return state


def exists(storage: Storage, name: str) -> bool:
    return storage.exists(f"{name}/{STATE_FILE}")


LATEST = "latest"  # the sweep whose folder changed last: the one that ran last


def find_sweep(ref: str, tune_cfg: dict[str, Any], tracking_cfg: dict[str, Any]) -> SweepState:
    """A sweep by its folder (or URI), by name under ``tune.storage_path`` (``latest``, or a prefix
    only one sweep's name there starts with), or by its parent run id."""
    candidates: list[tuple[Storage, str]] = []
    if "://" in ref:
        root, _, name = ref.rstrip("/").rpartition("/")
        candidates.append((Storage(root), name))
    elif Path(ref).is_dir():
        path = Path(ref).resolve()
        candidates.append((Storage(str(path.parent)), path.name))
    if "/" not in ref:
        candidates.append((Storage.from_config(tune_cfg), ref))
    for storage, name in candidates:
        if exists(storage, name):
            return SweepState.load(storage, name)
    if "/" not in ref and (name := _named(Storage.from_config(tune_cfg), ref)):
        return SweepState.load(Storage.from_config(tune_cfg), name)
    if RUN_ID.match(ref):  # only then is the tracking store worth asking (it takes seconds)
        from sweeplab.tracking import Tracker

        uri = Tracker(tracking_cfg).sweep_path_of(ref)
        if uri:
            root, _, name = uri.rstrip("/").rpartition("/")
            if exists(Storage(root), name):
                return SweepState.load(Storage(root), name)
    searched = ", ".join(s.join(n) for s, n in candidates) or ref
    raise ConfigError(
        f"no sweep '{ref}': looked for {STATE_FILE} in {searched}"
        + (" and for an MLflow parent run with that id" if RUN_ID.match(ref) else "")
        + "; give the sweep's name (with tune.storage_path=... if it is elsewhere), its folder, "
        "or its parent run id"
    )


def _named(storage: Storage, ref: str) -> str | None:
    """The sweep ``latest`` or a unique prefix names under ``storage``; one line when several do."""
    changed = storage.folders()
    names = sorted((n for n in changed if exists(storage, n)), key=lambda n: changed[n], reverse=True)
    if ref == LATEST:
        return names[0] if names else None
    prefixed = [n for n in names if n.startswith(ref)]
    if len(prefixed) > 1:
        raise ConfigError(
            f"'{ref}' begins the names of several sweeps in {storage.uri} "
            f"({', '.join(sorted(prefixed)[:5])}); give more of it"
        )
    return prefixed[0] if prefixed else None
