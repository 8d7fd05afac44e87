"""Where a command writes: the consoles, the one-line error, and rows as a table, JSON or CSV.

Every command prints through these two consoles, so a pipe, a file and a terminal get the same
treatment: sized to a terminal, never cut off one.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "csv")
# Off a terminal (a file, a pipe) Rich would lay everything out for 80 columns and cut table
# cells and live lines with "…"; there, nothing has to fit, so nothing is cut.
WIDTH_OFF_TERMINAL = 4096


class _Console(Console):
    def on_broken_pipe(self) -> None:  # Rich would exit 1 itself: main() ends quietly with 0 instead
        raise BrokenPipeError


console = _Console(highlight=False, soft_wrap=True)  # long URIs and paths stay copyable
err_console = _Console(stderr=True, highlight=False, soft_wrap=True)


def fit_consoles_to_output() -> None:
    for c in (console, err_console):
        c.width = None if c.is_terminal or os.environ.get("COLUMNS") else WIDTH_OFF_TERMINAL


def print_error(label: str, style: str, message: object) -> None:
    """``label: message`` on stderr; the message is printed as it is (a hint like ``choice[a, b]``
    is not Rich markup), credentials masked (Hydra quotes a bad override whole, store URI included)."""
    from sweeplab.redact import scrub

    err_console.print(Text.assemble((label, style), ": ", scrub(str(message))))


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default, for people), json or csv (for scripts: every value, nothing cut)",
    )


def plain(value: Any) -> Any:
    """A value JSON can carry: NaN and infinities become null, anything else unknown its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(plain(value), indent=2) + "\n")
    sys.stdout.flush()


def print_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if (v := plain(row.get(c))) is None else v for c in columns])
    sys.stdout.flush()


@dataclass(frozen=True)
class Column:
    """A column of a table printed for people. ``shrink_to``: the width it may wrap or fold down to
    (None: never cut, e.g. a name other commands take); ``drop``: the order in which columns
    give way when the terminal is too narrow (1 first; 0 never)."""

    name: str
    shrink_to: int | None = None
    drop: int = 0
    fold: bool = False  # break anywhere (a path), not only between words


def print_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Text]]) -> None:
    """Rows under a header, every cell whole: when the terminal is too narrow for all the columns,
    the least needed give way (named below the table) instead of every cell being cut to "…"."""
    shown = list(range(len(columns)))
    natural = [max([len(c.name), *(r[i].cell_len for r in rows)]) for i, c in enumerate(columns)]

    def needed(keep: list[int]) -> int:  # between two columns: a space of padding each side and the rule
        return sum(min(natural[i], columns[i].shrink_to or natural[i]) for i in keep) + 3 * (len(keep) - 1)

    while needed(shown) > console.width and any(columns[i].drop for i in shown):
        shown.remove(min((i for i in shown if columns[i].drop), key=lambda i: columns[i].drop))
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
    )
    for i in shown:
        c = columns[i]
        uncut = c.shrink_to is None
        table.add_column(c.name, no_wrap=uncut, min_width=natural[i] if uncut else c.shrink_to,
                         overflow="fold" if c.fold else "ellipsis")  # fmt: skip
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    console.print(table)
    if hidden := [columns[i].name for i in range(len(columns)) if i not in shown]:
        console.print(
            f"(not shown, to fit {console.width} columns: {', '.join(hidden)}; "
            "--format json shows every field)",
            style="dim",
            markup=False,
            soft_wrap=False,
        )
