"""``sweeplab init DIR``: a small project of one's own that runs as it is."""

from __future__ import annotations

import argparse

from rich.text import Text

from sweeplab.cli import exits
from sweeplab.cli.output import console

NAME = "init"
HELP = "write a small project of your own that runs as it is: a model, a data factory, conf/, README"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP)
    p.add_argument("dir", help="the folder to create (must not exist, or be empty)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sweeplab.scaffold import init_project

    written = init_project(Path(args.dir))
    console.print(Text.assemble(("project", "bold"), f" {args.dir}: {len(written)} files"))
    for path in written:
        console.print(f"  {path}", markup=False)
    console.print(f"next: cd {args.dir} and follow its README.md", markup=False)
    return exits.OK
