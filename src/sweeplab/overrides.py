"""Hydra overrides as the command line gives them (``+tune.name=x``, ``~a.b``, ``data=digits``):
their key, the section they set, and selections by section, read with Hydra's own parser.

One reading for every caller (the resume's allowed settings, what the trials inherit, the
nightly split, the sweeps commands), so ``+``, ``++`` and ``~`` mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache


@lru_cache(maxsize=1024)
def key_of(override: str) -> str:
    """The config key or group an override sets (``tune.name`` for ``+tune.name=x``). An override
    Hydra cannot parse keeps the text before its ``=``: composing it says what is wrong."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(override).key_or_group
    except HydraException:
        return override.partition("=")[0].lstrip("+~")


def value_text(override: str) -> str:
    """What follows the ``=``, as typed."""
    return override.partition("=")[2]


def section_of(override: str) -> str:
    """The top-level section (or group) it sets: ``tune`` for ``tune.name=x``, ``data`` for
    ``data=digits``."""
    return key_of(override).split(".", 1)[0]


def in_sections(overrides: Iterable[str], sections: Sequence[str]) -> list[str]:
    """The overrides that set a key under one of ``sections`` (not the section itself: ``tracking=x``
    chooses an option of the group, ``tracking.uri=x`` sets a key in it)."""
    return [o for o in overrides if "." in key_of(o) and section_of(o) in sections]


def outside(overrides: Iterable[str], sections: Sequence[str]) -> list[str]:
    wanted = set(in_sections(overrides, sections))
    return [o for o in overrides if o not in wanted]


def under(overrides: Iterable[str], prefixes: Sequence[str]) -> list[str]:
    """The overrides whose key is one of ``prefixes`` or lies under one (``tune.storage_path``,
    ``tracking.``)."""
    return [o for o in overrides if any(_within(key_of(o), p) for p in prefixes)]


def _within(key: str, prefix: str) -> bool:
    return key == prefix.rstrip(".") or key.startswith(prefix if prefix.endswith(".") else prefix + ".")


def value_for(overrides: Iterable[str], key: str) -> str | None:
    """The text the first override of ``key`` gives it."""
    return next((value_text(o) for o in overrides if key_of(o) == key), None)
