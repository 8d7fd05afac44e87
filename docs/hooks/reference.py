"""MkDocs hook: the reference pages generated from the code at build time.

- ``reference/cli.md`` from ``sweeplab.cli.build_parser()``: every subcommand and nested
  subcommand, its help and arguments.
- ``reference/configuration.md`` from ``sweeplab.config``: the schema dataclasses (``SCHEMAS``:
  every group, option, key, type and default), the limits (``_RULES``) and the options found in
  ``conf/<group>/*.yaml`` (``group_options``), each with its YAML.

Nothing here is typed by hand: a change to the parser, the schema or conf/ changes the pages.
Loaded by ``hooks:`` in mkdocs.yml; needs sweeplab importable (``make docs`` runs MkDocs from .venv).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File

CLI_PAGE = "reference/cli.md"
CONFIG_PAGE = "reference/configuration.md"


# ----------------------------------------------------------------------------- CLI
def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand of ``parser``, in the order they were added."""
    out = []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk of subparsers
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            helps = {a.dest: a.help or "" for a in action._choices_actions}  # noqa: SLF001
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias of a parser already listed
                    continue
                seen.add(id(sub))
                out.append((name, helps.get(name, ""), sub))
    return out


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):  # noqa: SLF001
            continue
        if action.option_strings:
            name = ", ".join(f"`{o}`" for o in action.option_strings)
            if action.nargs != 0:
                metavar = action.metavar or action.dest.upper()
                name += f" `{metavar}`"
        else:
            name = f"`{action.metavar or action.dest}`"
            if action.nargs in ("*", "+"):
                name += " …"
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
        if action.choices and not isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            shown = (shown + " " if shown else "") + "one of " + ", ".join(f"`{c}`" for c in action.choices)
        help_text = (action.help or "").replace("|", "\\|").replace("\n", " ")
        if help_text == argparse.SUPPRESS:
            continue
        rows.append(f"| {name} | {help_text} | {shown} |")
    if not rows:
        return []
    return ["| argument | meaning | default / choices |", "|---|---|---|", *rows, ""]


def _cli_section(path: list[str], help_text: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    lines = [f"{'#' * level} `{' '.join(path)}`", ""]
    if help_text:
        lines += [help_text[0].upper() + help_text[1:] + ("" if help_text.endswith(".") else "."), ""]
    lines += _options_table(parser)
    lines += ["```text", parser.format_help().rstrip(), "```", ""]
    for name, sub_help, sub in _subcommands(parser):
        lines += _cli_section([*path, name], sub_help, sub, min(level + 1, 6))
    return lines


def cli_markdown() -> str:
    from sweeplab.cli import build_parser

    os.environ.setdefault("COLUMNS", "100")  # argparse wraps help to this width
    parser = build_parser()
    lines = [
        "# Command line",
        "",
        "Generated from `sweeplab.cli.build_parser()` when the site is built: every subcommand, "
        "its arguments and its `--help` as the command prints it. Exit codes: "
        "[Exit codes](exit-codes.md).",
        "",
        "Subcommands:",
        "",
    ]
    for name, sub_help, sub in _subcommands(parser):
        lines.append(f"- [`sweeplab {name}`](#sweeplab-{name}): {sub_help}")
        for inner, inner_help, _ in _subcommands(sub):
            lines.append(f"    - `sweeplab {name} {inner}`: {inner_help}")
    lines.append("")
    lines += _cli_section(["sweeplab"], "", parser, 2)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- configuration
def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("|", "\\|")


def _fmt(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is dataclasses.MISSING:
        return "*(required)*"
    text = "null" if value is None else '""' if value == "" else str(value)
    if str(value) == "???":
        return "*(required)*"
    return f"`{text}`".replace("|", "\\|")


def _enum_of(cls: type, name: str) -> str:
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a forward reference typing cannot resolve: no enum listed
        return ""
    tp = hints.get(name)
    for cand in (tp, *getattr(tp, "__args__", ())):
        if isinstance(cand, type) and issubclass(cand, enum.Enum):
            return ", ".join(f"`{m.value}`" for m in cand)
    return ""


def _fields(cls: type, prefix: str) -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, allowed values) of every field, nested dataclasses flattened."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(default):
            rows += _fields(type(default), key)
            continue
        rows.append((key, _type_name(f.type), _fmt(default), _enum_of(cls, f.name)))
    return rows


def _field_table(rows: list[tuple[str, str, str, str]], limits: dict[str, str]) -> list[str]:
    out = ["| key | type | default | allowed |", "|---|---|---|---|"]
    for key, tp, default, allowed in rows:
        allowed = "; ".join(x for x in (allowed, limits.get(key, "")) if x)
        out.append(f"| `{key}` | `{tp}` | {default} | {allowed} |")
    return [*out, ""]


def configuration_markdown() -> str:
    from sweeplab import config, project

    conf = project.builtin_conf_dir()
    limits = {key: f"must be {what}" for key, _test, what in config._RULES}  # noqa: SLF001
    lines = [
        "# Configuration",
        "",
        "Generated from `sweeplab.config` and sweeplab's `conf/` when the site is built. Every config "
        "group, its options (`conf/<group>/<option>.yaml`, chosen with `group=option`), the typed schema "
        "each built-in option starts from (every key, its type and default; set any key with "
        "`group.key=value`), and the limits `config.validate` enforces before anything runs.",
        "",
        "A project's own options (a `conf/` of its own, see "
        "[Your own network](../tutorials/your-own-network.md)) have no schema: their keys are checked "
        "against their `_target_`'s signature. The defaults below are the schema's; an option's YAML "
        "(shown under each group) overrides them.",
        "",
        "## Groups",
        "",
        "| group | options | default |",
        "|---|---|---|",
    ]
    defaults = _top_defaults(conf)
    for group in config.GROUPS:
        opts = config.group_options(group)
        lines.append(
            f"| [`{group}`](#{group.replace('_', '_')}) | "
            + ", ".join(f"`{o}`" for o in opts)
            + f" | {('`' + defaults[group] + '`') if defaults.get(group) not in (None, 'None') else '—'} |"
        )
    lines += ["", "## Limits", "", "Refused before any run, store or sweep folder is created:", ""]
    lines += ["| key | must be |", "|---|---|"]
    lines += [f"| `{key}` | {what} |" for key, _test, what in config._RULES]  # noqa: SLF001
    lines += ["", "## Top-level keys", ""]
    root_rows = [r for r in _fields(config.Config, "") if r[0] in ("seed",)]
    lines += _field_table(root_rows, limits)
    lines += ["`conf/config.yaml`, the defaults list every command composes:", ""]
    lines += ["```yaml", (conf / "config.yaml").read_text().rstrip(), "```", ""]

    for group in config.GROUPS:
        lines += [f"## {group}", ""]
        schemas = config.SCHEMAS.get(group, {})
        if len(schemas) == 1 and group in schemas:
            lines += [f"Schema `{schemas[group].__name__}`:", ""]
            lines += _field_table(_fields(schemas[group], group), limits)
        elif schemas:
            for name, cls in schemas.items():
                lines += [f"### Schema `{name}` ({cls.__name__})", ""]
                lines += _field_table(_fields(cls, group), limits)
        else:
            lines += ["No schema: an option's keys are checked against its `_target_`.", ""]
        lines += [f"### Options of `{group}`", ""]
        for opt in config.group_options(group):
            path = conf / group / f"{opt}.yaml"
            if not path.is_file():
                continue
            lines += [f"`{group}={opt}` (`conf/{group}/{opt}.yaml`):", ""]
            lines += ["```yaml", path.read_text().rstrip(), "```", ""]

    extra = [("nightly", conf / "nightly.yaml")] + [
        (f"benchmark={p.stem}", p) for p in sorted((conf / "benchmark").glob("*.yaml"))
    ]
    lines += [
        "## Nightly benchmarks",
        "",
        "`sweeplab nightly` reads `conf/nightly.yaml` (`nightly.*`) and a suite from "
        "`conf/benchmark/<suite>.yaml` (see [Nightly jobs](../how-to/nightly.md)):",
        "",
    ]
    for title, path in extra:
        if path.is_file():
            lines += [f"### `{title}`", "", "```yaml", path.read_text().rstrip(), "```", ""]
    return "\n".join(lines) + "\n"


def _top_defaults(conf: Path) -> dict[str, str]:
    import yaml

    out: dict[str, str] = {}
    data = yaml.safe_load((conf / "config.yaml").read_text()) or {}
    for entry in data.get("defaults", []):
        if isinstance(entry, dict):
            for k, v in entry.items():
                out[str(k).lstrip("+/").split("@")[0]] = str(v)
    return out


# ------------------------------------------------------------------------ MkDocs
def on_files(files, config):  # noqa: ANN001, ANN201 - MkDocs' hook signature
    for path, make in ((CLI_PAGE, cli_markdown), (CONFIG_PAGE, configuration_markdown)):
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=make()))
    return files
