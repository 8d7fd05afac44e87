"""``sweeplab sweeps list|show|compare|export|prune``: sweeps read back from the tracking store.

The readers (sweeplab.sweep.browse and .prune) load when a command runs; none imports Ray or torch.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime

from rich.filesize import decimal
from rich.table import Table
from rich.text import Text

from sweeplab.cli import exits
from sweeplab.cli.output import (
    Column,
    add_format_argument,
    console,
    err_console,
    print_csv,
    print_json,
    print_table,
)
from sweeplab.groups import ConfigError
from sweeplab.metrics import VAL_ACC, VAL_LOSS

NAME = "sweeps"

HELP = """Browse the sweeps a tracking store holds, and free a finished sweep's storage.

  sweeplab sweeps list [--format table|json|csv]       one row per sweep, newest first
  sweeplab sweeps show <name> [--format table|json|csv] the sweep's summary again (csv: its trials)
  sweeplab sweeps compare <a> <b>                       best configs and figures side by side
  sweeplab sweeps export <name> --format csv|parquet    one row per trial and epoch
  sweeplab sweeps prune <name>                          delete a finished sweep's trial checkpoints

A sweep is named by its name, `latest` (the newest), or any prefix only one sweep's name starts
with. Each command takes tracking.* settings (tracking.uri=sqlite:///other/mlflow.db) to read
another store.
"""

EXPORT_FORMATS = ("csv", "parquet")


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
    sweeps = sub.add_parser(NAME, help=text, description=HELP, formatter_class=fmt)
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

    listing = commands.add_parser(
        "list", help="one row per sweep: started, status, trials, best value, storage"
    )
    add_format_argument(listing)
    common(listing)
    show = commands.add_parser("show", help="a sweep's summary, from the store")
    show.add_argument("name")
    add_format_argument(show)
    common(show)
    compare = commands.add_parser("compare", help="two sweeps' best configs and figures side by side")
    compare.add_argument("a")
    compare.add_argument("b")
    common(compare)
    export = commands.add_parser(
        "export", help="one row per trial and epoch: sampled values, status, every per-epoch metric"
    )
    export.add_argument("name")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="csv", help="csv (default) or parquet")
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
    reader = open_store(args.overrides)
    command = {"list": cmd_list, "show": cmd_show, "compare": cmd_compare, "export": cmd_export}
    return command.get(args.sweeps_command, cmd_prune)(reader, args)


def open_store(overrides: list[str]):
    """The configured tracking store, read-only in spirit: a SQLite file that is not there is
    reported, not created."""
    from sweeplab.config import compose_tracking
    from sweeplab.overrides import outside
    from sweeplab.tracking.reader import open_reader
    from sweeplab.tracking.uri import resolve_uri, sqlite_path

    other = outside(overrides, ("tracking",))
    if other:
        raise ConfigError(
            f"`sweeplab sweeps` takes tracking.* settings only (e.g. tracking.uri=...), not '{other[0]}'"
        )
    tracking = compose_tracking(overrides)
    path = sqlite_path(resolve_uri(tracking.get("uri")))
    if path is not None and not path.exists():
        raise ConfigError(
            f"no tracking store at {path}: sweeps are recorded in the store `sweeplab sweep` used "
            "(./mlflow.db of the folder it ran in, by default); name it with tracking.uri=sqlite:///PATH"
        )
    return open_reader(tracking)


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
def cmd_list(reader, args) -> int:
    from sweeplab.sweep import browse

    sweeps = browse.list_sweeps(reader, args.experiment)
    rows = [_listed(s, browse.trial_counts(reader, s)) for s in sweeps]
    if args.format == "json":
        print_json(rows)
        return exits.OK
    if args.format == "csv":
        print_csv([{**r, "trials": r["trials"]["total"]} for r in rows], LIST_COLUMNS)
        return exits.OK
    where = reader.shown + (f", experiment '{args.experiment}'" if args.experiment else "")
    if not sweeps:
        console.print(f"no sweeps in {where}", markup=False)
        return exits.OK
    columns = [
        Column("sweep"),  # the name every other command takes: never cut
        Column("experiment", shrink_to=10, drop=2),
        Column("started", drop=3),
        Column("status"),
        Column("trials", drop=4),  # whole, or left out
        Column("best", shrink_to=10),
        Column("storage", shrink_to=24, drop=1, fold=True),
    ]
    cells = [
        [Text(s.name), Text(s.experiment), Text(_started(s.started_ms)), _status(s.status),
         Text(browse.describe_counts(r["trials"]["by_status"])), Text(_best(s)), Text(s.path)]
        for s, r in zip(sweeps, rows, strict=True)
    ]  # fmt: skip
    print_table(f"sweeps in {where}", columns, cells)
    return exits.OK


LIST_COLUMNS = (
    "name",
    "experiment",
    "started",
    "status",
    "trials",
    "metric",
    "mode",
    "best",
    "storage",
    "run_id",
)


def _listed(sweep, counts: dict[str, int]) -> dict:
    """One sweep as `sweeps list --format json|csv` writes it."""
    started = datetime.fromtimestamp(sweep.started_ms / 1000).isoformat() if sweep.started_ms else None
    return {
        "name": sweep.name,
        "experiment": sweep.experiment,
        "started": started,
        "status": sweep.status,
        "trials": {"total": sum(counts.values()), "by_status": counts},
        "metric": sweep.metric,
        "mode": sweep.mode,
        "best": sweep.best,
        "storage": sweep.path,
        "run_id": sweep.run_id,
    }


TRIAL_COLUMNS = ("name", "status", "best", "epochs", "run_id")


def cmd_show(reader, args) -> int:
    from sweeplab.cli.ui import ui_hint
    from sweeplab.sweep import browse

    sweep = browse.find(reader, args.name, args.experiment)
    if args.format != "table":
        trial_list = browse.trials(reader, sweep)
        rows = [
            {"name": t.name, "status": t.status, "best": t.best, "epochs": t.epochs, "run_id": t.run_id,
             **{f"sampled.{k}": v for k, v in t.sampled.items()}}
            for t in browse.ranked_first(sweep, trial_list)
        ]  # fmt: skip
        if args.format == "csv":  # one row per trial, best first: a table a spreadsheet opens
            sampled = list(dict.fromkeys(k for r in rows for k in r if k.startswith("sampled.")))
            print_csv(rows, [*TRIAL_COLUMNS, *sampled])
        else:
            counts = browse.trial_counts(reader, sweep)
            shown = {**_listed(sweep, counts), "best_config": sweep.best_config, "trials_ranked": rows}
            if sweep.summarized:
                shown["summary"] = dataclasses.asdict(browse.summary(reader, sweep, trial_list))
                shown["registered"] = [
                    {"model": m.name, "version": m.version, "aliases": list(m.aliases)}
                    for m in browse.registry(reader, sweep)
                ]
            print_json(shown)
        return exits.OK
    hint = ui_hint(reader.cfg, sweep.run_id, args.overrides, url=reader.link(sweep.run))
    if sweep.summarized:
        from sweeplab.sweep.view import print_summary

        print_summary(console, browse.summary(reader, sweep), hint)
        for model in browse.registry(reader, sweep):
            holds = (
                "holds the alias 'best'"
                if "best" in model.aliases
                else "the alias 'best' is on another version"
            )
            console.print(f"registered model {model.name} version {model.version}: {holds}", markup=False)
        return exits.OK
    # not summarized (still running, interrupted, failed before its end): what is known so far
    trial_list = browse.trials(reader, sweep)
    table = Table(title=f"sweep {sweep.name} — not summarized", show_header=False, title_justify="left")
    table.add_row("status", _status(sweep.status))
    table.add_row("started", _started(sweep.started_ms))
    table.add_row("trials", browse.describe_counts(browse.trial_counts(reader, sweep)))
    if top := browse.best_so_far(sweep, trial_list):
        config = " ".join(f"{k}={v}" for k, v in top["sampled"].items())
        table.add_row("best so far", Text(f"{top['name']} — {sweep.metric} {top['value']:.4f}  {config}"))
    table.add_row("storage", Text(sweep.path))
    console.print(table)
    if sweep.status != "running":
        console.print(f"continue it with `sweeplab sweep resume {sweep.name}`", markup=False)
    console.print(f"see it in the MLflow UI: {hint}", markup=False)
    return exits.OK


def cmd_compare(reader, args) -> int:
    from sweeplab.sweep import browse

    a, b = (browse.find(reader, name, args.experiment) for name in (args.a, args.b))
    winner = browse.better(a, b)
    table = Table(title=f"sweeps {a.name} and {b.name}", title_justify="left")
    table.add_column("")
    table.add_column(a.name)
    table.add_column(b.name)
    for what, left, right in browse.comparison(reader, a, b):
        cells = [Text(left), Text(right)]
        if what == "best value" and winner is not None:
            cells[0 if winner is a else 1].append(" (better)", style="bold green")
        style = "bold" if what not in ("experiment", "status") and left != right else ""
        table.add_row(Text(what, style=style), *cells)
    console.print(table)
    if a.objective != b.objective:
        console.print(
            f"the sweeps chose by different metrics ({a.objective}, {b.objective}): "
            f"compare their {VAL_LOSS}, {VAL_ACC} and test figures",
            markup=False,
        )
    return exits.OK


def cmd_export(reader, args) -> int:
    from sweeplab.sweep import browse

    if args.output == "-" and args.format != "csv":
        raise ConfigError("--output - (stdout) is for --format csv; give parquet a file name")
    sweep = browse.find(reader, args.name, args.experiment)
    rows = browse.export_rows(reader, sweep)
    output = args.output or browse.default_output(sweep, args.format)
    browse.write_export(rows, args.format, output)
    trials = len({r["run_id"] for r in rows})
    say = err_console if output == "-" else console  # stdout carries the CSV itself
    where = "stdout" if output == "-" else output
    say.print(f"wrote {len(rows)} rows ({trials} trials, one row per epoch) to {where}", markup=False)
    return exits.OK


def cmd_prune(reader, args) -> int:
    from sweeplab.sweep import browse
    from sweeplab.sweep.prune import load_state, prune

    sweep = browse.find(reader, args.name, args.experiment)
    if not sweep.path:
        raise ConfigError(
            f"sweep {sweep.name}: its parent run does not say where its storage is; nothing pruned"
        )
    endpoint = sweep.params.get("tune.storage_endpoint")
    state = load_state(sweep.path, None if endpoint in (None, "None", "") else endpoint)
    done = prune(state)
    console.print(
        f"sweep {sweep.name}: deleted {done.folders} checkpoint folders of {done.trials} trials "
        f"in {sweep.path}, freed {decimal(done.bytes)} ({done.bytes} bytes); "
        "kept sweeplab.json, the outbox journal, driver.log and the trials' results",
        markup=False,
    )
    return exits.OK
