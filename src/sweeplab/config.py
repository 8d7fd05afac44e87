"""The shape of sweeplab's configuration: the one place it is declared.

Every config group option (``conf/<group>/<option>.yaml``) starts from one of the
schema dataclasses below, registered in Hydra's ConfigStore as ``<group>/base_<name>``.
A misspelled key, a value of the wrong type or an unknown enum value therefore fails
while composing — before any data is loaded — and :func:`compose` turns Hydra's and
OmegaConf's exceptions into one :class:`ConfigError` line that names the key and
what would be valid.

After composing, the config is converted to plain dicts (:func:`to_container`):
everything downstream (training, Ray workers, tracking) sees ordinary Python data.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sweeplab import project
from sweeplab.groups import (  # noqa: F401 - config's names, as its callers import them
    BUILT,
    GROUPS,
    SWEEP_ONLY_GROUPS,
    ConfigError,
    config_dirs,
    group_options,
)
from sweeplab.metrics import VAL_LOSS
from sweeplab.objective import Mode
from sweeplab.overrides import key_of, value_for, value_text


# --------------------------------------------------------------------- data
class Scale(str, Enum):
    none = "none"
    unit = "unit"
    standardize = "standardize"


class Vectorize(str, Enum):
    multi_hot = "multi_hot"
    tfidf = "tfidf"
    sequence = "sequence"


@dataclass
class DataConfig:
    _target_: str = MISSING  # a function returning a DataBundle (sweeplab.build.build_data)
    name: str = MISSING
    root: str | None = None
    val_size: float = 0.1  # a fraction in (0, 1) or a number of samples
    split_seed: int = 0
    scale: Scale = Scale.unit


@dataclass
class FashionMNISTConfig(DataConfig):
    _target_: str = "sweeplab.data.fashion_mnist.load"
    name: str = "fashion_mnist"
    val_size: float = 5000
    download: bool = True


@dataclass
class DigitsConfig(DataConfig):
    _target_: str = "sweeplab.data.digits.load"
    name: str = "digits"
    val_size: float = 0.2


@dataclass
class IMDBConfig(DataConfig):
    _target_: str = "sweeplab.data.imdb.load"
    name: str = "imdb"
    val_size: float = 10000
    scale: Scale = Scale.none
    download: bool = True
    vectorize: Vectorize = Vectorize.multi_hot
    num_words: int = 10000
    max_len: int = 256
    char_ngrams: list[int] = field(default_factory=list)
    ngram_buckets: int = 100000
    lowercase: bool = True


@dataclass
class NPZConfig(DataConfig):
    _target_: str = "sweeplab.data.npz.load"
    name: str = "npz"
    path: str | None = None
    test_size: float = 0.2


# -------------------------------------------------------------------- model
class Activation(str, Enum):
    relu = "relu"
    tanh = "tanh"
    gelu = "gelu"
    sigmoid = "sigmoid"


class Init(str, Enum):
    glorot_uniform = "glorot_uniform"  # Keras's default: the course's networks
    torch_default = "torch_default"  # PyTorch's Kaiming-uniform default


@dataclass
class ModelConfig:
    _target_: str = MISSING  # an nn.Module class or factory, given the data's metadata (build_model)
    name: str = MISSING
    activation: Activation = Activation.relu
    init: Init = Init.glorot_uniform


@dataclass
class MLPConfig(ModelConfig):
    _target_: str = "sweeplab.models.MLP"
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128])


@dataclass
class CNNConfig(ModelConfig):
    _target_: str = "sweeplab.models.CNN"
    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [32, 64])
    kernel_size: int = 3
    hidden: list[int] = field(default_factory=lambda: [128])


@dataclass
class EmbeddingBagConfig(ModelConfig):
    _target_: str = "sweeplab.models.EmbeddingBagClassifier"
    name: str = "embedding_bag"
    embedding_dim: int = 64
    hidden: list[int] = field(default_factory=list)
    pretrained: str | None = None  # GloVe / word2vec text file
    freeze_pretrained: bool = False


# ---------------------------------------------------------------- optimizer
@dataclass
class OptimizerConfig:
    _target_: str = MISSING  # a torch.optim class (or factory), given the parameters (build_optimizer)
    _partial_: bool = True
    name: str = MISSING
    lr: float = 1e-3


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False


@dataclass
class RMSpropConfig(OptimizerConfig):
    _target_: str = "torch.optim.RMSprop"
    name: str = "rmsprop"
    alpha: float = 0.9  # Keras's rho
    eps: float = 1e-7
    momentum: float = 0.0
    centered: bool = False


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    name: str = "adam"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-7
    amsgrad: bool = False


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    name: str = "adamw"
    weight_decay: float = 0.01  # decoupled decay: AdamW's whole point


@dataclass
class AdagradConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adagrad"
    name: str = "adagrad"
    lr: float = 0.01
    initial_accumulator_value: float = 0.1
    eps: float = 1e-7


# -------------------------------------------------------------- regularizer
@dataclass
class RegularizerConfig:
    """Weight penalties (on weights, not biases, as Keras's kernel_regularizer) and layer regularizers."""

    _target_: str = "sweeplab.regularizers.WeightPenalty"  # given the model (build_penalty)
    name: str = "none"
    l1: float = 0.0
    l2: float = 0.0
    dropout: float = 0.0
    batch_norm: bool = False


# ------------------------------------------------------------- lr schedule
@dataclass
class LRScheduleConfig:
    _target_: str = MISSING  # given the optimizer (and epochs, if it asks): build_lr_schedule
    _partial_: bool = True
    name: str = MISSING


@dataclass
class ConstantLRConfig(LRScheduleConfig):
    _target_: str = "sweeplab.schedules.constant"
    name: str = "constant"


@dataclass
class StepLRConfig(LRScheduleConfig):
    _target_: str = "torch.optim.lr_scheduler.StepLR"
    name: str = "step"
    step_size: int = 10  # epochs
    gamma: float = 0.5


@dataclass
class ExponentialLRConfig(LRScheduleConfig):
    _target_: str = "torch.optim.lr_scheduler.ExponentialLR"
    name: str = "exponential"
    gamma: float = 0.95  # per epoch


@dataclass
class CosineLRConfig(LRScheduleConfig):
    _target_: str = "sweeplab.schedules.cosine"
    name: str = "cosine"
    min_lr: float = 0.0  # reached at trainer.epochs


@dataclass
class ReduceOnPlateauConfig(LRScheduleConfig):
    _target_: str = "torch.optim.lr_scheduler.ReduceLROnPlateau"
    name: str = "reduce_on_plateau"
    factor: float = 0.5
    patience: int = 2
    min_lr: float = 0.0


# --------------------------------------------------------------------- loss
@dataclass
class LossConfig:
    """The training loss; ``auto`` (no target) is the task's own: cross-entropy for classes, one
    sigmoid unit's binary cross-entropy for two, mean squared error for regression."""

    _target_: str | None = None
    name: str = "auto"


# ------------------------------------------------------------------ trainer
class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True
    patience: int = 5
    min_delta: float = 0.0
    smoothing: int = 1  # moving-average window over val/loss; 1 = raw
    restore_best: bool = True


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 128
    eval_batch_size: int = 2048
    num_threads: int = 0  # 0: leave torch's default
    loader_workers: int = 0  # streamed data (Datasets): DataLoader processes; 0 reads in the trial
    device: Device = Device.auto
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


# ----------------------------------------------------------------- tracking
@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db
    artifact_root: str = "mlartifacts"  # for a new experiment on a local store
    experiment: str = "sweeplab"
    run_name: str | None = None
    model_name: str | None = None  # a sweep's registered model; default <experiment>-<data.name>
    log_model: bool = True
    ui_port: int = 5000


# ------------------------------------------------------------------- sweeps
@dataclass
class SearchConfig:
    """A search space: dotted config keys (or group names) -> distributions; see sweeplab.space."""

    name: str | None = None  # a project's space is named by its file (config.name_options)
    space: dict[str, Any] = field(default_factory=dict)


class Scheduler(str, Enum):
    fifo = "fifo"
    asha = "asha"
    hyperband = "hyperband"
    median = "median"
    pbt = "pbt"


class SearchAlg(str, Enum):
    random = "random"
    grid = "grid"
    optuna = "optuna"


@dataclass
class ReevaluateConfig:
    """Robust selection: the top_k configurations trained again with fresh seeds; the winner is
    the best mean of the sweep's metric (0: off, the best single run wins)."""

    top_k: int = 0
    seeds: int = 3


@dataclass
class TuneConfig:
    scheduler: Scheduler = Scheduler.asha
    search_alg: SearchAlg = SearchAlg.random
    num_samples: int = 8
    max_concurrent_trials: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    time_budget_s: float | None = None
    metric: str = VAL_LOSS
    mode: Mode = Mode.min  # sweeplab.objective's: which way the metric is better
    max_failures: int = 1  # a failed trial is retried this often from its last checkpoint
    # a trial's checkpoint (its weights, optimizer state and best weights so far) is written every
    # this many epochs, at its last epoch and where the scheduler may stop or copy it; a retried or
    # resumed trial repeats at most checkpoint_every - 1 epochs
    checkpoint_every: int = 5
    grace_period: int = 1  # epochs every trial runs before a scheduler may stop it
    reduction_factor: int = 3
    perturbation_interval: int = 2  # pbt: epochs between exploit/explore steps
    reuse_actors: bool = True
    # where the sweep's state and every trial's checkpoints live: a local folder, a folder every
    # node mounts (NFS), or an object store (s3://bucket/prefix); keys from the AWS environment
    storage_path: str = "sweeps"
    storage_endpoint: str | None = None  # an S3-compatible store's URL (MinIO: http://minio:9000)
    name: str | None = None  # the sweep's name; default <experiment>-<timestamp>
    top_k: int = 5  # trials whose validation curves are overlaid on the parent run
    register_model: bool = True
    fail_once_at_epoch: int = 0  # failure drill: every trial raises once at this epoch, to exercise retries
    reevaluate: ReevaluateConfig = field(default_factory=ReevaluateConfig)


@dataclass
class ClusterConfig:
    address: str | None = None  # None: start Ray locally; "auto" or host:port joins a running cluster
    num_cpus: int | None = None  # local Ray only; None = all cores


@dataclass
class Config:
    # Any: an option may point at the user's own code with keys of its own (checked against its
    # target's signature: sweeplab.targets); sweeplab's options keep their typed schemas below.
    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    regularizer: Any = MISSING
    lr_schedule: Any = MISSING
    loss: Any = MISSING
    metrics: dict[str, Any] = field(default_factory=dict)  # name -> a metric's target: val/<name>
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    search: SearchConfig = MISSING
    tune: TuneConfig = MISSING
    cluster: ClusterConfig = MISSING
    seed: int = 0


SCHEMAS: dict[str, dict[str, type]] = {
    "data": {c().name: c for c in (FashionMNISTConfig, DigitsConfig, IMDBConfig, NPZConfig)},
    "model": {c().name: c for c in (MLPConfig, CNNConfig, EmbeddingBagConfig)},
    "optimizer": {c().name: c for c in (SGDConfig, RMSpropConfig, AdamConfig, AdamWConfig, AdagradConfig)},
    "regularizer": {"regularizer": RegularizerConfig},
    "lr_schedule": {
        c().name: c
        for c in (ConstantLRConfig, StepLRConfig, ExponentialLRConfig, CosineLRConfig, ReduceOnPlateauConfig)
    },
    "loss": {"loss": LossConfig},
    "trainer": {"trainer": TrainerConfig},
    "tracking": {"tracking": TrackingConfig},
    "search": {"search": SearchConfig},
    "tune": {"tune": TuneConfig},
    "cluster": {"cluster": ClusterConfig},
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=group, name=f"base_{name}", node=node)


# ------------------------------------------------------------------ compose
_initialized: tuple[str, ...] = ()


def _ensure_hydra() -> None:
    """Initialize Hydra on the config directories once per process (a sweep composes many configs).

    Hydra's own ``hydra.searchpath`` appends after the primary directory, so a project could add
    options but not override sweeplab's: the project's folder is put first in the search path."""
    global _initialized
    dirs = tuple(str(d) for d in config_dirs())
    if _initialized == dirs and GlobalHydra.instance().is_initialized():
        return
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path

    register_configs()
    GlobalHydra.instance().clear()
    search_path = create_config_search_path(f"file://{dirs[-1]}")
    for d in dirs[:-1]:
        search_path.prepend(provider="sweeplab project", path=f"file://{d}")
    Hydra.create_main_hydra2(task_name="sweeplab", config_search_path=search_path)
    project.make_importable()
    _initialized = dirs


def compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides and validate it against the schema."""
    _ensure_hydra()
    overrides = list(overrides)
    refuse_misplaced(overrides)
    try:
        cfg = hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        choices = dict(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        name_options(cfg, choices)
        # Touch every value so interpolations and MISSING fields fail here, not mid-run.
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(explain(exc, overrides)) from None
    validate(cfg)
    return cfg


def compose_tracking(overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The tracking section alone (``conf/tracking_only.yaml``), for the commands that only read the
    store: the same group, options and schema as the whole config, in a fraction of its time."""
    _ensure_hydra()
    try:
        cfg = hydra_compose(config_name="tracking_only", overrides=list(overrides))
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)["tracking"]
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(explain(exc, list(overrides))) from None


def name_options(cfg: DictConfig, choices: Mapping[str, Any]) -> None:
    """A project's option needs no ``name:`` of its own: it is called by its file's name (what run
    names, params and the summary show)."""
    for group in (*BUILT, "search"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and node.get("name") is None and choices.get(group):
            with open_dict(node):
                node["name"] = choices[group]


def refuse_misplaced(overrides: list[str]) -> None:
    """Overrides Hydra would read otherwise than meant, refused with what to write instead."""
    for o in overrides:
        key, value = key_of(o), value_text(o)
        if key == "hydra.searchpath":
            for path in re.findall(r"(?:file://)?([^\[\],'\"]+)", value):
                if not path.startswith("pkg://") and not Path(path.strip()).is_dir():
                    raise ConfigError(
                        f"hydra.searchpath: {path.strip()} is not a folder; sweeplab layers your project's "
                        "conf/ over its own without it: run from the folder that holds conf/, or pass "
                        "--config-dir DIR"
                    )
        if "=" in o and key == "search.space" and value.lstrip().startswith("["):
            raise ConfigError(
                "search.space is a mapping of keys to distributions, not a list; write e.g. "
                "'search.space={optimizer.lr: loguniform[1e-4, 1e-2]}' or put it in conf/search/<name>.yaml"
            )


def with_value(cfg: DictConfig, key: str, value: Any) -> DictConfig:
    """``cfg`` with one more value set, checked against the schema and the rules as an override
    would be (a search space's values, without composing the whole config again)."""
    cfg = cfg.copy()
    try:
        OmegaConf.update(cfg, key, list(value) if isinstance(value, tuple) else value, merge=True)
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(explain(exc)) from None
    validate(cfg)
    return cfg


# ------------------------------------------------------------------ validate
# Values no run can work with, whatever the command: refused before anything is created.
# (dotted key, test, what the value must be)
_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("trainer.epochs", lambda v: v >= 1, "at least 1"),
    ("trainer.batch_size", lambda v: v >= 1, "at least 1"),
    ("trainer.eval_batch_size", lambda v: v >= 1, "at least 1"),
    ("trainer.num_threads", lambda v: v >= 0, "0 (torch's default) or more"),
    ("trainer.loader_workers", lambda v: v >= 0, "0 (read in the training process) or more"),
    ("trainer.early_stopping.patience", lambda v: v >= 1, "at least 1"),
    ("trainer.early_stopping.smoothing", lambda v: v >= 1, "at least 1 (1: no smoothing)"),
    ("trainer.early_stopping.min_delta", lambda v: v >= 0, "0 or more"),
    ("optimizer.lr", lambda v: v > 0, "positive"),
    ("regularizer.l1", lambda v: v >= 0, "0 or more"),
    ("regularizer.l2", lambda v: v >= 0, "0 or more"),
    ("regularizer.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("tune.num_samples", lambda v: v >= 1, "at least 1"),
    ("tune.max_concurrent_trials", lambda v: v >= 1, "at least 1"),
    ("tune.cpus_per_trial", lambda v: v > 0, "positive"),
    ("tune.gpus_per_trial", lambda v: v >= 0, "0 or more"),
    ("tune.time_budget_s", lambda v: v is None or v > 0, "positive, or null for no budget"),
    ("tune.grace_period", lambda v: v >= 1, "at least 1"),
    ("tune.reduction_factor", lambda v: v >= 2, "at least 2"),
    ("tune.checkpoint_every", lambda v: v >= 1, "at least 1 (epochs between a trial's checkpoints)"),
    ("tune.perturbation_interval", lambda v: v >= 1, "at least 1"),
    ("tune.reevaluate.top_k", lambda v: v >= 0, "0 (no re-evaluation) or more"),
    ("tune.reevaluate.seeds", lambda v: v >= 2, "at least 2 (a mean needs repeats)"),
)


def validate(cfg: DictConfig) -> None:
    """Refuse settings that cannot work (``trainer.epochs=0``, ``tune.num_samples=-1``, ...)
    with one :class:`ConfigError` line naming the key; the schema has checked the types."""
    for key, ok, must_be in _RULES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not ok(value):
            raise ConfigError(f"{key}={value} cannot work: it must be {must_be}")


def validate_sweep(cfg: Mapping[str, Any], max_epochs: int) -> None:
    """What a sweep needs on top of :func:`validate`; ``max_epochs`` is the most a trial may run
    (``trainer.epochs``, or the largest value the search space gives it)."""
    tune = cfg["tune"]
    if tune["scheduler"] in ("asha", "hyperband") and tune["grace_period"] > max_epochs:
        raise ConfigError(
            f"tune.grace_period={tune['grace_period']} is more than the {max_epochs} epochs a trial runs: "
            f"{tune['scheduler']} judges trials after grace_period epochs; lower tune.grace_period or "
            "raise trainer.epochs"
        )


_ABSENT = object()


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """Plain dicts, lists and strings: what crosses into training, Ray and MLflow."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def explain(exc: BaseException, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """One line from Hydra's/OmegaConf's multi-line errors, with the valid choices."""
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OmegaConfBaseException):  # Hydra wraps the precise error: lead with it
        text = f"{cause}\n{text}"
    full_key = getattr(exc, "full_key", None) or _search(r"full_key: (\S+)", text)

    missing_key = _search(r"Key '([^']+)' not in '", text) or _search(r"Key '([^']+)' is not in struct", text)
    if missing_key and full_key:
        return explain_missing(full_key, overrides)

    m = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if m:
        group, option = m.groups()
        choices = group_options(group)
        hint = _did_you_mean(option, choices)
        return (
            f"unknown option '{option}' for config group '{group}'{hint}; choose one of: {', '.join(choices)}"
        )

    m = re.search(r"Could not override '([^']+)'", text)
    if m and "Key '" in text:
        return explain_missing(m.group(1), overrides)

    m = re.search(r"Could not append to config. An item is already at '([^']+)'", text)
    if m:
        return f"{m.group(1)} is already set; override it without the leading +: {m.group(1)}=..."

    if "Cannot merge DictConfig with ListConfig" in text or "Merge error: ListConfig" in text:
        where = _search(r"In '([^']+)'", text)
        return (
            f"{where or 'a config'}: a list where a mapping belongs (e.g. search.space is key: distribution "
            "lines, not '- ' items); write it as 'key: value' entries"
        )

    m = re.search(r"Value '([^']*)' (?:of type '[^']*' )?is not a ListConfig|(\w+) is not a ListConfig", text)
    if m and full_key:
        value = value_for(overrides, full_key) or m.group(1) or "value"
        return f"{full_key}={value} must be a list: write {full_key}=[{value}]"

    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    if full_key and full_key not in first:
        first = f"{full_key}: {first}"
    if "Invalid value" in first or "could not be converted" in first:
        first += " (see the current values with `sweeplab train --cfg`)"
    return first


def explain_missing(full_key: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    leaf = full_key.rsplit(".", 1)[-1]
    valid = _keys_of(parent, [o for o in overrides if key_of(o) != full_key])
    hint = _did_you_mean(leaf, valid)
    if not hint and not parent:  # `epochs=5`: the key lives in a section
        others = [o for o in overrides if "=" in o and "." in o]
        homes = [k for k in _all_keys(others) if k.endswith(f".{leaf}")]
        hint = f" (did you mean '{homes[0]}'?)" if homes else ""
    return (
        f"unknown config key '{full_key}'{hint}; valid keys under '{parent or '<root>'}': {', '.join(valid)}"
    )


def _keys_of(dotted: str, overrides: list[str]) -> list[str]:
    """Keys under a dotted path of the config the other overrides compose (a project's option has
    keys of its own); the schema's keys when that does not compose either."""
    if not dotted:
        return sorted(f.name for f in Config.__dataclass_fields__.values())
    try:
        node = OmegaConf.select(hydra_compose(config_name="config", overrides=overrides), dotted)
    except (HydraException, OmegaConfBaseException):
        node = None
    if isinstance(node, DictConfig):
        return sorted(str(k) for k in node if not str(k).startswith("_"))
    group, _, rest = dotted.partition(".")
    keys: set[str] = set()
    for schema in SCHEMAS.get(group, {}).values():
        node = OmegaConf.structured(schema)
        for part in filter(None, rest.split(".")):
            node = node.get(part) if isinstance(node, DictConfig) else None
        if isinstance(node, DictConfig):
            keys.update(str(k) for k in node if not str(k).startswith("_"))
    return sorted(keys)


def _all_keys(overrides: list[str]) -> list[str]:
    try:
        cfg = hydra_compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException):
        return []
    return sorted(flatten(OmegaConf.to_container(cfg, resolve=False)))


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _search(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``: how a config becomes MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out
