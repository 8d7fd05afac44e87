"""The ``sweeplab sweeps`` command: sweeps browsed from the tracking store.

This module stays light (argparse, Rich): every `sweeplab` command builds its parser. The
readers in sweeplab.sweep.browse and .prune load when a `sweeps` command runs; none imports Ray.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from rich.filesize import decimal
from rich.table import Table
from rich.text import Text

HELP = """Browse the sweeps a tracking store holds, and free a finished sweep's storage.

  sweeplab sweeps list [--experiment E]                 one row per sweep, newest first
  sweeplab sweeps show <name>                           the sweep's summary again
  sweeplab sweeps compare <a> <b>                       best configs and figures side by side
  sweeplab sweeps export <name> --format csv|parquet    one row per trial and epoch
  sweeplab sweeps prune <name>                          delete a finished sweep's trial checkpoints

A sweep is named by its name, `latest` (the newest), or any prefix only one sweep's name starts
with. Each command takes tracking.* settings (tracking.uri=sqlite:///other/mlflow.db) to read
another store.
"""

FORMATS = ("csv", "parquet")


class _AnyOrder(argparse.ArgumentParser):
    """Options and positionals in any order: `export NAME --format csv tracking.uri=...` (plain
    argparse takes the overrides with NAME, empty, and then refuses the ones after the options)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:  # parse_known_intermixed_args calls back here
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def add_parser(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    text = "browse sweeps in the tracking store (list, show, compare, export) and prune finished ones"
    sweeps = sub.add_parser("sweeps", help=text, description=HELP, formatter_class=fmt)
    commands = sweeps.add_subparsers(
        dest="sweeps_command",
        required=True,
        metavar="{list,show,compare,export,prune}",
        parser_class=_AnyOrder,
    )

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--experiment", help="only this MLflow experiment (default: every one)")
        p.add_argument(
            "overrides",
            nargs="*",
            default=[],
            help="tracking.* settings, e.g. tracking.uri=sqlite:///x/mlflow.db",
        )

    common(
        commands.add_parser("list", help="one row per sweep: started, status, trials, best value, storage")
    )
    show = commands.add_parser("show", help="a sweep's summary, from the store")
    show.add_argument("name")
    common(show)
    compare = commands.add_parser("compare", help="two sweeps' best configs and figures side by side")
    compare.add_argument("a")
    compare.add_argument("b")
    common(compare)
    export = commands.add_parser(
        "export", help="one row per trial and epoch: sampled values, status, every per-epoch metric"
    )
    export.add_argument("name")
    export.add_argument("--format", choices=FORMATS, default="csv", help="csv (default) or parquet")
    export.add_argument(
        "--output", "-o", help="the file to write (default ./<name>.<format>; - is stdout, csv)"
    )
    common(export)
    prune = commands.add_parser(
        "prune",
        help="free a finished sweep's storage: delete its trials' checkpoint folders "
        "(the best weights and the registered model are in MLflow)",
    )
    prune.add_argument("name")
    common(prune)
    sweeps.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sweeplab import cli  # its consoles: as wide as the terminal, unbounded off one

    cli.fit_consoles_to_output()  # again: under `python -m sweeplab.cli` this is a second copy of cli
    tracker = open_store(args.overrides)
    command = {"list": cmd_list, "show": cmd_show, "compare": cmd_compare, "export": cmd_export}
    return command.get(args.sweeps_command, cmd_prune)(tracker, args, cli)


def open_store(overrides: list[str]):
    """The configured tracking store, read-only in spirit: a SQLite file that is not there is
    reported, not created."""
    from sweeplab.config import ConfigError, compose, to_container
    from sweeplab.tracking import Tracker, resolve_uri
    from sweeplab.tracking.store import sqlite_path

    other = [o for o in overrides if not o.lstrip("+").startswith("tracking.")]
    if other:
        raise ConfigError(
            f"`sweeplab sweeps` takes tracking.* settings only (e.g. tracking.uri=...), not '{other[0]}'"
        )
    tracking = to_container(compose(overrides))["tracking"]
    path = sqlite_path(resolve_uri(tracking.get("uri")))
    if path is not None and not path.exists():
        raise ConfigError(
            f"no tracking store at {path}: sweeps are recorded in the store `sweeplab sweep` used "
            "(./mlflow.db of the folder it ran in, by default); name it with tracking.uri=sqlite:///PATH"
        )
    return Tracker(tracking)


def _started(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M") if ms else ""


def _status(value: str) -> Text:
    from sweeplab.status import TrialStatus

    try:
        return Text(value, style=TrialStatus(value).style)
    except ValueError:
        return Text(value)


def _best(sweep) -> str:
    return "" if sweep.best is None else f"{sweep.metric} {sweep.best:.4f}"


# ------------------------------------------------------------------ the commands
def cmd_list(tracker, args, cli) -> int:
    from sweeplab.redact import scrub
    from sweeplab.sweep import browse

    sweeps = browse.list_sweeps(tracker, args.experiment)
    where = scrub(tracker.uri) + (f", experiment '{args.experiment}'" if args.experiment else "")
    if not sweeps:
        cli.console.print(f"no sweeps in {where}", markup=False)
        return 0
    table = Table(title=f"sweeps in {where}", title_justify="left")
    for col in ("sweep", "experiment", "started", "status", "trials", "best", "storage"):
        table.add_column(col)
    for s in sweeps:
        counts = browse.describe_counts(browse.trial_counts(tracker, s))
        table.add_row(
            Text(s.name), Text(s.experiment), _started(s.started_ms), _status(s.status), counts, _best(s),
            Text(s.path),
        )  # fmt: skip
    cli.console.print(table)
    return 0


def cmd_show(tracker, args, cli) -> int:
    from sweeplab.sweep import browse

    sweep = browse.find(tracker, args.name, args.experiment)
    hint = cli.ui_hint(tracker.cfg, sweep.run_id, args.overrides)
    if sweep.summarized:
        from sweeplab.sweep.view import print_summary

        print_summary(cli.console, browse.summary(tracker, sweep), hint)
        for name, version, aliases in browse.registry(tracker, sweep):
            holds = (
                "holds the alias 'best'" if "best" in aliases else "the alias 'best' is on another version"
            )
            cli.console.print(f"registered model {name} version {version}: {holds}", markup=False)
        return 0
    # not summarized (still running, interrupted, failed before its end): what is known so far
    trial_list = browse.trials(tracker, sweep)
    table = Table(title=f"sweep {sweep.name} — not summarized", show_header=False, title_justify="left")
    table.add_row("status", _status(sweep.status))
    table.add_row("started", _started(sweep.started_ms))
    table.add_row("trials", browse.describe_counts(browse.trial_counts(tracker, sweep)))
    if top := browse.best_so_far(sweep, trial_list):
        config = " ".join(f"{k}={v}" for k, v in top["sampled"].items())
        table.add_row("best so far", Text(f"{top['name']} — {sweep.metric} {top['value']:.4f}  {config}"))
    table.add_row("storage", Text(sweep.path))
    cli.console.print(table)
    if sweep.status != "running":
        cli.console.print(f"continue it with `sweeplab sweep resume {sweep.name}`", markup=False)
    cli.console.print(f"see it in the MLflow UI: {hint}", markup=False)
    return 0


def cmd_compare(tracker, args, cli) -> int:
    from sweeplab.sweep import browse

    a, b = (browse.find(tracker, name, args.experiment) for name in (args.a, args.b))
    winner = browse.better(a, b)
    table = Table(title=f"sweeps {a.name} and {b.name}", title_justify="left")
    table.add_column("")
    table.add_column(a.name)
    table.add_column(b.name)
    for what, left, right in browse.comparison(tracker, a, b):
        cells = [Text(left), Text(right)]
        if what == "best value" and winner is not None:
            cells[0 if winner is a else 1].append(" (better)", style="bold green")
        style = "bold" if what not in ("experiment", "status") and left != right else ""
        table.add_row(Text(what, style=style), *cells)
    cli.console.print(table)
    if (a.metric, a.mode) != (b.metric, b.mode):
        cli.console.print(
            f"the sweeps chose by different metrics ({a.metric} {a.mode}, {b.metric} {b.mode}): "
            "compare their val/loss, val/acc and test figures",
            markup=False,
        )
    return 0


def cmd_export(tracker, args, cli) -> int:
    from sweeplab.config import ConfigError
    from sweeplab.sweep import browse

    if args.output == "-" and args.format != "csv":
        raise ConfigError("--output - (stdout) is for --format csv; give parquet a file name")
    sweep = browse.find(tracker, args.name, args.experiment)
    rows = browse.export_rows(tracker, sweep)
    output = args.output or browse.default_output(sweep, args.format)
    browse.write_export(rows, args.format, output)
    trials = len({r["run_id"] for r in rows})
    say = cli.err_console if output == "-" else cli.console  # stdout carries the CSV itself
    where = "stdout" if output == "-" else output
    say.print(f"wrote {len(rows)} rows ({trials} trials, one row per epoch) to {where}", markup=False)
    return 0


def cmd_prune(tracker, args, cli) -> int:
    from sweeplab.config import ConfigError
    from sweeplab.sweep import browse
    from sweeplab.sweep.prune import load_state, prune

    sweep = browse.find(tracker, args.name, args.experiment)
    if not sweep.path:
        raise ConfigError(
            f"sweep {sweep.name}: its parent run does not say where its storage is; nothing pruned"
        )
    endpoint = sweep.params.get("tune.storage_endpoint")
    state = load_state(sweep.path, None if endpoint in (None, "None", "") else endpoint)
    done = prune(state)
    cli.console.print(
        f"sweep {sweep.name}: deleted {done.folders} checkpoint folders of {done.trials} trials "
        f"in {sweep.path}, freed {decimal(done.bytes)} ({done.bytes} bytes); "
        "kept sweeplab.json, the outbox journal, driver.log and the trials' results",
        markup=False,
    )
    return 0
