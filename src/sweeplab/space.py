"""Search spaces: dotted config keys -> distributions, parsed and validated before any trial starts.

A space is declared in ``conf/search/*.yaml``::

    space:
      model.hidden: choice[[128], [256, 128], [512, 256]]
      optimizer: choice[sgd, rmsprop, adam]        # a config *group*: whole options compete
      optimizer.lr: loguniform[1e-4, 1e-2]
      trainer.batch_size: grid[64, 128, 256]
      model.activation: {choice: [relu, tanh]}     # the mapping form works too

Distributions: ``choice``, ``grid``, ``uniform``, ``loguniform``, ``randint``, ``qrandint``.
A sampled point becomes Hydra overrides (``optimizer=adam optimizer.lr=0.003``), group
choices first, and each trial composes and validates its config exactly as
``sweeplab train`` does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from omegaconf import DictConfig

from sweeplab.config import GROUPS, ConfigError, compose, with_value

KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "qrandint")
_COMPACT = re.compile(r"^\s*(\w+)\s*[\[(](.*)[\])]\s*$", re.S)


@dataclass(frozen=True)
class Param:
    key: str  # dotted config key, or a group name
    kind: str
    args: tuple

    @property
    def is_group(self) -> bool:
        return self.key in GROUPS

    @property
    def discrete(self) -> bool:
        return self.kind in ("choice", "grid")

    def describe(self) -> str:
        return f"{self.kind}{list(self.args)}"


def _number(key: str, kind: str, value: Any, integer: bool = False) -> float | int:
    try:
        number = float(value)  # YAML reads 1e-4 as a string; accept it as the number it is
    except (TypeError, ValueError):
        raise ConfigError(f"search.space.{key}: {kind} needs numbers, got {value!r}") from None
    if integer:
        if number != int(number):
            raise ConfigError(f"search.space.{key}: {kind} needs integers, got {value!r}")
        return int(number)
    return number


def parse_param(key: str, spec: Any) -> Param:
    """One entry of a space: compact (``loguniform[1e-4, 1e-2]``) or mapping (``{loguniform: [..]}``) form."""
    if isinstance(spec, Mapping) and len(spec) == 1:
        kind, args = next(iter(spec.items()))
    elif isinstance(spec, str) and (m := _COMPACT.match(spec)):
        kind, inner = m.groups()
        try:
            args = yaml.safe_load(f"[{inner}]")
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"search.space.{key}: cannot read the values of {spec!r} ({exc.problem})"
            ) from None
    else:
        raise ConfigError(
            f"search.space.{key}: {spec!r} is not a distribution; write e.g. choice[a, b], "
            "loguniform[1e-4, 1e-1], randint[1, 4] or {choice: [a, b]}"
        )
    if kind not in KINDS:
        raise ConfigError(
            f"search.space.{key}: unknown distribution {kind!r}; choose one of: {', '.join(KINDS)}"
        )
    args = list(args) if isinstance(args, Sequence) and not isinstance(args, str) else [args]

    if kind in ("choice", "grid"):
        if not args:
            raise ConfigError(f"search.space.{key}: {kind}[] is empty; give at least one value")
        return Param(key, kind, tuple(_freeze(a) for a in args))

    expected = 3 if kind == "qrandint" else 2
    if len(args) != expected and not (kind == "qrandint" and len(args) == 2):
        shape = "[low, high, q]" if kind == "qrandint" else "[low, high]"
        raise ConfigError(f"search.space.{key}: {kind} takes {shape}, got {args}")
    integer = kind in ("randint", "qrandint")
    nums = [_number(key, kind, a, integer) for a in args]
    low, high = nums[0], nums[1]
    if not low < high:
        raise ConfigError(f"search.space.{key}: {kind}[{low}, {high}] needs low < high")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"search.space.{key}: loguniform needs low > 0, got {low}")
    if kind == "qrandint" and len(nums) == 2:
        nums.append(1)
    return Param(key, kind, tuple(nums))


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _freeze(value: Any) -> Any:
    """Lists inside choices (layer widths) must be hashable for Tune's bookkeeping and Optuna.

    YAML reads ``1e-3`` as text; in a choice it is the number it looks like.
    """
    if isinstance(value, str) and _FLOAT.match(value):
        return float(value)
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def parse_space(space: Mapping[str, Any]) -> list[Param]:
    """All entries, with nested mappings (``{optimizer: {lr: ...}}``) read as dotted keys."""
    params = []
    for key, spec in _flatten_space(space):
        params.append(parse_param(key, spec))
    # group choices first: `optimizer=adam` must come before `optimizer.lr=...` in the overrides
    return sorted(params, key=lambda p: (not p.is_group, p.key))


def _flatten_space(space: Mapping[str, Any], prefix: str = ""):
    for key, spec in space.items():
        full = f"{prefix}{key}"
        if isinstance(spec, Mapping) and not (len(spec) == 1 and next(iter(spec)) in KINDS):
            yield from _flatten_space(spec, f"{full}.")
        else:
            yield full, spec


def to_override(key: str, value: Any) -> str:
    """A Hydra override for one sampled value (lists in Hydra's own list syntax)."""
    if isinstance(value, (list, tuple)):
        return f"{key}=[{','.join(str(v) for v in value)}]"
    if isinstance(value, float):
        return f"{key}={value!r}"
    return f"{key}={value}"


def override_value(override: str) -> Any:
    """The value of a ``key=value`` override as Hydra reads it (``[512,256]`` is a list)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(override).value()


def validate_space(params: Sequence[Param], base_overrides: Sequence[str], search_alg: str) -> None:
    """Fail before any trial starts: every key must exist and every choice must compose.

    Each group option is composed once; every other value (all of a discrete key's, the lowest
    of a distribution) is set on the composed config, under every option of a group the space
    also switches (composing costs ~0.1 s; setting a value, a copy of the config).
    """
    if not params:
        raise ConfigError(
            "search.space is empty; choose a space with search=<name> or add search.space entries"
        )
    composed: dict[tuple[str, ...], DictConfig] = {}

    def composed_with(extra: list[str]) -> DictConfig:
        if tuple(extra) not in composed:
            composed[tuple(extra)] = compose([*base_overrides, *extra])
        return composed[tuple(extra)]

    for p in params:
        if search_alg == "grid" and not p.discrete:
            raise ConfigError(
                f"search.space.{p.key}: tune.search_alg=grid needs discrete values, not {p.describe()}; "
                "use choice[...]/grid[...] or tune.search_alg=random"
            )
        if search_alg == "optuna" and p.kind == "grid":
            raise ConfigError(
                f"search.space.{p.key}: tune.search_alg=optuna cannot take grid[...]; use choice[...]"
            )
        # a key under a group the space also switches must be valid with every option of that group
        group = next((g for g in params if g.is_group and p.key.startswith(f"{g.key}.")), None)
        contexts = [[to_override(group.key, option)] for option in group.args] if group else [[]]
        values = p.args if p.discrete else p.args[:1]
        for context in contexts:
            for value in values:
                try:
                    if p.is_group:  # an option is a file of its own
                        composed_with([*context, to_override(p.key, value)])
                    else:
                        try:
                            with_value(composed_with(context), p.key, value)
                        except ConfigError:  # composing it says what is wrong as the command line would
                            compose([*base_overrides, *context, to_override(p.key, value)])
                            raise
                except ConfigError as exc:
                    where = f" with {context[0]}" if context else ""
                    raise ConfigError(f"search.space.{p.key}={value!r}{where}: {exc}") from None


def grid_size(params: Sequence[Param]) -> int:
    return math.prod(len(p.args) for p in params if p.kind == "grid") or 1
