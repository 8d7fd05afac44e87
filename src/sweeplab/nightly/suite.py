"""Benchmark suites and nightly settings: their schema, composition and validation.

``conf/nightly.yaml`` is the primary config of ``sweeplab nightly``: the ``nightly`` block
(history store, reports folder, reruns, schedule, detection thresholds) and one suite from
the ``benchmark`` group (``conf/benchmark/<suite>.yaml``). A suite names its entries; each
entry is a sweeplab config (an experiment, a search space, overrides), a fixed budget, the
seeds it is repeated with and the metrics it watches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from sweeplab.config import ConfigError, compose, to_container
from sweeplab.metrics import EPOCH_TIME, TEST_ACC, TEST_LOSS, VAL_ACC, VAL_LOSS, best_key
from sweeplab.nightly.detect import Settings, Watch
from sweeplab.objective import Mode, Objective
from sweeplab.overrides import key_of

# what an entry's kind measures; `epoch_time_s` is a median over epochs (a sweep: the mean over trial epochs)
METRICS = {
    "train": (
        TEST_ACC,
        TEST_LOSS,
        best_key(VAL_ACC),
        best_key(VAL_LOSS),
        EPOCH_TIME,
        "epochs",
        "wall_seconds",
    ),
    "sweep": (
        TEST_ACC,
        TEST_LOSS,
        best_key(VAL_LOSS),
        EPOCH_TIME,
        "epochs_run",
        "trials",
        "wall_seconds",
    ),
}
NIGHTLY_PREFIXES = ("nightly.", "benchmark.", "benchmark=", "hydra.", "+nightly.", "+benchmark.")


class Direction(str, Enum):
    """A watch's ``direction`` in a suite's file: the :class:`~sweeplab.objective.Mode` in words."""

    higher = "higher"
    lower = "lower"

    @property
    def mode(self) -> Mode:
        return Mode.max if self is Direction.higher else Mode.min


class EntryKind(str, Enum):
    train = "train"
    sweep = "sweep"


@dataclass
class WatchConfig:
    direction: Direction = MISSING
    min_change: str = MISSING  # "0.005" in the metric's units, or "10%" of the baseline


@dataclass
class BudgetConfig:
    epochs: int | None = None  # trainer.epochs
    trials: int | None = None  # tune.num_samples (sweeps)
    time_s: float | None = None  # tune.time_budget_s (sweeps)


@dataclass
class EntryConfig:
    kind: EntryKind = EntryKind.train
    experiment: str | None = None
    search: str | None = None
    overrides: list[str] = field(default_factory=list)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    seeds: list[int] = field(default_factory=lambda: [0])
    watch: dict[str, WatchConfig] = field(default_factory=dict)
    skip_if_missing: bool = False  # data never downloaded at night: a missing data set skips the entry
    description: str = ""


@dataclass
class SuiteConfig:
    name: str = MISSING
    description: str = ""
    min_history: int | None = None  # overrides nightly.detection.min_history for this suite
    entries: dict[str, EntryConfig] = field(default_factory=dict)


@dataclass
class DetectionConfig:
    p_max: float = 0.001
    welch_p: float = 0.01
    welch_p_change: float = 0.05
    min_history: int = 5
    window: int = 30


@dataclass
class NightlyConfig:
    history_url: str | None = None  # None: $SWEEPLAB_NIGHTLY_DB, else sqlite:///<cwd>/nightly.db
    reports_dir: str = "reports/nightly"
    reruns: int = 1  # a `regressed` entry is run again this often before the verdict is final
    schedule: str = "0 2 * * *"
    timezone: str = "UTC"
    catch_up_hours: float = 24.0  # after downtime, a missed night younger than this runs once
    on_regression: str | None = None  # a command; gets the report path as its last argument
    claim_timeout_s: float = 900.0  # a claim without a heartbeat for this long is taken over
    detection: DetectionConfig = field(default_factory=DetectionConfig)


@dataclass
class NightlyRoot:
    nightly: NightlyConfig = field(default_factory=NightlyConfig)
    benchmark: SuiteConfig = MISSING


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_nightly", node=NightlyRoot)
    cs.store(group="benchmark", name="base_suite", node=SuiteConfig)


# ------------------------------------------------------------------ loading
@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    overrides: tuple[str, ...]  # sweeplab config overrides, without the seed
    seeds: tuple[int, ...]
    watches: tuple[Watch, ...]
    skip_if_missing: bool
    description: str


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    entries: tuple[Entry, ...]
    settings: Settings

    def entry(self, name: str) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise ConfigError(f"suite '{self.name}' has no entry '{name}'; its entries: {self.entry_names()}")

    def entry_names(self) -> str:
        return ", ".join(e.name for e in self.entries)


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``nightly.*`` / ``benchmark.*`` go to the nightly config; everything else to every entry."""
    mine = [o for o in overrides if o.startswith(NIGHTLY_PREFIXES)]
    return mine, [o for o in overrides if o not in mine]


def load(suite: str | None, overrides: list[str] = ()) -> tuple[Suite, dict[str, Any]]:
    """Compose ``conf/nightly.yaml`` with a suite; return the suite and the ``nightly`` settings."""
    register()
    overrides = list(overrides)
    for o in overrides:
        _check_key(o)
    if suite and not any(o.startswith("benchmark=") for o in overrides):  # an explicit override wins
        overrides.append(f"benchmark={suite}")
    try:
        cfg = to_container(compose(overrides, config_name="nightly"))
    except ConfigError as exc:  # the generic hint names `sweeplab train`; here the files are the suites
        hint = " (see the current values with `sweeplab train --cfg`)"
        raise ConfigError(str(exc).replace(hint, " (see conf/nightly.yaml and conf/benchmark/)")) from None
    settings = cfg["nightly"]
    return build_suite(cfg["benchmark"], settings["detection"]), settings


def _check_key(override: str) -> None:
    """Hydra names a misspelled nightly key without the valid ones; name them here."""
    key = key_of(override)
    if not key.startswith("nightly."):
        return
    node: Any = NightlyRoot
    path = []
    for part in key.split("."):
        if not (is_dataclass(node) and isinstance(node, type)):
            return
        names = [f.name for f in fields(node)]
        if part not in names:
            where = ".".join(path) or "<root>"
            raise ConfigError(f"unknown config key '{key}'; valid keys under '{where}': {', '.join(names)}")
        path.append(part)
        node = next(f.type for f in fields(node) if f.name == part)
        node = globals().get(node, node) if isinstance(node, str) else node


def build_suite(cfg: dict[str, Any], detection: dict[str, Any]) -> Suite:
    entries = []
    for name, e in cfg["entries"].items():
        if not e["seeds"]:
            raise ConfigError(
                f"entry '{name}' of suite '{cfg['name']}' has no seeds; give it e.g. seeds: [0, 1, 2]"
            )
        watches = tuple(_watch(name, metric, w, e["kind"]) for metric, w in e["watch"].items())
        if not watches:
            raise ConfigError(
                f"entry '{name}' of suite '{cfg['name']}' watches no metric; add e.g. "
                f"watch: {{{TEST_ACC}: {{direction: higher, min_change: 0.005}}}}"
            )
        entries.append(
            Entry(
                name,
                e["kind"],
                tuple(_entry_overrides(e)),
                tuple(e["seeds"]),
                watches,
                e["skip_if_missing"],
                e["description"],
            )
        )
    if not entries:
        raise ConfigError(f"suite '{cfg['name']}' has no entries")
    history = cfg["min_history"] if cfg["min_history"] is not None else detection["min_history"]
    settings = Settings(
        detection["p_max"], detection["welch_p"], detection["welch_p_change"], history, detection["window"]
    )
    return Suite(cfg["name"], cfg["description"], tuple(entries), settings)


def _entry_overrides(e: dict[str, Any]) -> list[str]:
    out = [f"experiment={e['experiment']}"] if e["experiment"] else []
    out += [f"search={e['search']}"] if e["search"] else []
    budget = e["budget"]
    if budget["epochs"] is not None:
        out.append(f"trainer.epochs={budget['epochs']}")
    if budget["trials"] is not None:
        out.append(f"tune.num_samples={budget['trials']}")
    if budget["time_s"] is not None:
        out.append(f"tune.time_budget_s={budget['time_s']}")
    return out + list(e["overrides"])


def _watch(entry: str, metric: str, w: dict[str, Any], kind: str) -> Watch:
    if metric not in METRICS[kind]:
        raise ConfigError(
            f"entry '{entry}' watches '{metric}', which a {kind} entry does not measure; "
            f"choose from: {', '.join(METRICS[kind])}"
        )
    text = str(w["min_change"]).strip()
    m = re.fullmatch(r"([0-9.eE+-]+)\s*(%?)", text)
    try:
        value = float(m.group(1)) if m else -1.0
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigError(
            f"entry '{entry}', metric '{metric}': min_change '{text}' is not a number or a percentage; "
            "write e.g. 0.005 (in the metric's units) or 10%"
        )
    relative = bool(m.group(2))
    objective = Objective(metric, Direction(w["direction"]).mode)
    return Watch.of(objective, value / 100 if relative else value, relative)


def compose_entry(entry: str, overrides: list[str]) -> dict[str, Any]:
    """An entry's sweeplab config (validated by the same schema as `sweeplab train`)."""
    try:
        return to_container(compose(overrides))
    except ConfigError as exc:
        raise ConfigError(f"entry '{entry}': {exc}") from None
