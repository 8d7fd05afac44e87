"""``sweeplab ui``: the MLflow UI on the configured store, and the links every command prints."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from sweeplab.cli import exits
from sweeplab.cli.config_args import add_config_dir, compose_for
from sweeplab.cli.output import console

NAME = "ui"
HELP = "open the MLflow UI on the configured tracking store (bound to 127.0.0.1)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP)
    add_config_dir(p)
    p.add_argument("overrides", nargs="*", default=[], help="e.g. tracking.uri=sqlite:///other.db")
    p.add_argument("--port", type=int, default=None, help="port (default tracking.ui_port, 5000)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sweeplab.tracking.ui import serve

    cfg = compose_for(args)
    return exits.OK if cfg is None else serve(cfg["tracking"], args.port, console)


def ui_hint(tracking_cfg: Mapping, run_id: str, overrides: Sequence[str], url: str | None = None) -> str:
    """How to see a run: the command that starts the UI on its store (credentials masked), then
    the run's page (a sweep's parent: the sweep's saved view)."""
    from sweeplab.overrides import in_sections
    from sweeplab.redact import scrub
    from sweeplab.tracking import ui_command

    if url is None:
        from sweeplab.tracking import Tracker

        url = Tracker(tracking_cfg).run_url(run_id)
    cmd, _ = ui_command(tracking_cfg)
    uri_override = scrub(" ".join(in_sections(overrides, ("tracking",))))
    start = f"sweeplab ui {uri_override}".strip() if cmd else "open"
    return f"{start}  then  {url}"
