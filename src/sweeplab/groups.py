"""The config groups: their names, where their options are found, and the error a config gets.

Kept apart from :mod:`sweeplab.config` (which imports Hydra and OmegaConf) so that the command
line's help and listing, which name the groups and their options, import neither.
"""

from __future__ import annotations

from pathlib import Path

from sweeplab import project

GROUPS = (
    "data",
    "model",
    "optimizer",
    "regularizer",
    "lr_schedule",
    "loss",
    "metrics",
    "trainer",
    "tracking",
    "search",
    "tune",
    "cluster",
    "experiment",
)
SWEEP_ONLY_GROUPS = ("search", "tune", "cluster")  # what a single training run never reads
# The groups whose option is built by Hydra's instantiate from its ``_target_`` (sweeplab.build).
BUILT = ("data", "model", "optimizer", "regularizer", "lr_schedule", "loss")


class ConfigError(ValueError):
    """A config cannot be composed; the message names the key and the valid choices."""


def config_dirs() -> list[Path]:
    """Where options are looked up, first match first: the user's project (``--config-dir``,
    ``$SWEEPLAB_CONFIG_DIR`` or ``./conf``), then sweeplab's own ``conf/``."""
    try:
        own = project.conf_dir()
        return [*([own] if own else []), project.builtin_conf_dir()]
    except project.ProjectError as exc:
        raise ConfigError(str(exc)) from None


def group_options(group: str) -> list[str]:
    return sorted({p.stem for d in config_dirs() for p in (d / group).glob("*.yaml")})
