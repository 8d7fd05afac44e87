"""The code a config option's ``_target_`` names: imported, its signature checked, its name recorded.

Hydra's ``instantiate`` builds every option (:mod:`sweeplab.build`); this module is what runs
before it, so that a misspelled key, a module that does not import or a callable of the wrong
kind is one line naming the option, not a traceback from inside a trial.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any

from sweeplab import project
from sweeplab.errors import one_line

# Keys of an option that are instructions to Hydra (or sweeplab's name of the option), not arguments.
RESERVED = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_", "name"})


class TargetError(ValueError):
    """An option's ``_target_`` cannot be used; the message names the option and the fix."""


class TargetImportError(TargetError):
    """The target's module does not import here: on a worker, every trial would fail the same way."""


def arguments(node: Mapping[str, Any], skip: Collection[str] = ()) -> dict[str, Any]:
    """The option's own arguments: every key but Hydra's and sweeplab's."""
    return {k: v for k, v in node.items() if k not in RESERVED and k not in skip}


def locate(group: str, path: str) -> Any:
    """The object ``path`` names (``package.module.name``), or one line saying why it cannot be had."""
    if not isinstance(path, str) or not path.strip():
        raise TargetError(f"{group}._target_ must name a Python callable as module.name, got {path!r}")
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
                continue  # this prefix is no module; a shorter one may be, with the rest attributes
            raise TargetImportError(_import_failed(group, path, module_name, exc)) from None
        except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
            raise TargetImportError(_import_failed(group, path, module_name, exc)) from None
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                names = [n for n in dir(obj) if not n.startswith("_")]
                names += [m.name for m in pkgutil.iter_modules(getattr(obj, "__path__", []))]
                hint = _did_you_mean(attr, names)
                raise TargetError(f"{group}._target_={path}: {module_name} has no '{attr}'{hint}")
            obj = getattr(obj, attr)
        return obj
    raise TargetImportError(
        _import_failed(group, path, parts[0], ModuleNotFoundError(f"No module named '{parts[0]}'"))
    )


def _import_failed(group: str, path: str, module_name: str, exc: BaseException) -> str:
    top = project.root()
    where = f"the project folder {top} and the installed packages" if top else "the installed packages"
    return (
        f"{group}._target_={path}: cannot import {module_name} (looked for in {where}): "
        f"{one_line(exc, with_type=True)}"
    )


def accepted(fn: Callable) -> tuple[set[str], bool]:
    """The keyword arguments ``fn`` takes, and whether it takes any (``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: take its word for anything
        return set(), True
    names = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def check_arguments(
    group: str, node: Mapping[str, Any], injected: Collection[str] = (), skip: Collection[str] = ()
) -> Callable:
    """Every key of the option is an argument its target takes, and none is one sweeplab passes
    itself (``injected``: the data's shape for a model, the parameters for an optimizer...)."""
    fn = locate(group, node.get("_target_"))
    if not callable(fn):
        raise TargetError(f"{group}._target_={node['_target_']} is a {type(fn).__name__}, not a callable")
    names, any_kw = accepted(fn)
    given = arguments(node, skip)
    for key in given:
        if key in injected:
            raise TargetError(
                f"{group}.{key} is given by sweeplab ({', '.join(sorted(injected))} come from the data and "
                f"the other options); remove it from the {group} config"
            )
        if key not in names and not any_kw:
            takes = sorted(n for n in names if n not in injected) or ["nothing"]
            raise TargetError(
                f"{group}.{key}: {qualified(fn)} takes no argument '{key}'{_did_you_mean(key, takes)}; "
                f"it takes: {', '.join(takes)}"
            )
    check_types(group, fn, given)
    return fn


# What a config value may be for a parameter annotated with one of these (ints pass as floats).
_SCALARS: dict[type, tuple[type, ...]] = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}


def check_types(group: str, fn: Callable, given: Mapping[str, Any]) -> None:
    """A value of the wrong type for a parameter annotated ``int``, ``float``, ``bool`` or ``str``
    (or one of those or None) is refused here, not deep inside torch with a traceback."""
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check against
        return
    for key, value in given.items():
        allowed = _allowed(hints.get(key))
        if allowed is None or value is None and type(None) in allowed:
            continue
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            want = " or ".join(t.__name__ for t in allowed if t is not type(None))
            raise TargetError(f"{group}.{key}={value!r}: {qualified(fn)} takes {want} for '{key}'")


def _allowed(hint: Any) -> tuple[type, ...] | None:
    parts = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if not all(p in _SCALARS or p is type(None) for p in parts):
        return None  # lists, tensors, unions of other things: Hydra or the target itself judges them
    return tuple(dict.fromkeys(t for p in parts for t in _SCALARS.get(p, (type(None),))))


def qualified(obj: Any) -> str:
    """``module:name``: how params record what an option built."""
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{name}"


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
