"""``sweeplab completion bash|zsh``: a shell completion script for sweeplab's commands and options.

Generated from the parser by shtab, so it never falls behind the commands.
"""

from __future__ import annotations

import argparse
import sys

from sweeplab.cli import exits

NAME = "completion"
SHELLS = ("bash", "zsh")
HELP = "print a shell completion script (bash or zsh) for sweeplab's commands and options"
INSTALL = """install it once:
  bash:  sweeplab completion bash > ~/.local/share/bash-completion/completions/sweeplab
  zsh:   sweeplab completion zsh > ~/.zfunc/_sweeplab   (with fpath+=~/.zfunc before compinit in ~/.zshrc)
then open a new shell."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description=HELP,
        epilog=INSTALL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from sweeplab.cli.main import build_parser

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return exits.OK
