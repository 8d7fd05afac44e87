"""The ``sweeplab`` command: one module per command (its parser and handler), one entry point.

Importing this package stays light (argparse, Rich): the help answers at once, and each command
imports Hydra, MLflow, torch or Ray only when it runs and needs them.
"""

from sweeplab.cli.main import build_parser, main  # noqa: F401
