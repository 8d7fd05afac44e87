"""``sweeplab nightly run|history|report|accept|schedule``: a benchmark suite run every night."""

from __future__ import annotations

import argparse
import signal
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from sweeplab.cli import exits
from sweeplab.cli.output import add_format_argument, console, print_csv, print_json
from sweeplab.groups import ConfigError

if TYPE_CHECKING:
    from sweeplab.nightly.history import HistoryStore
    from sweeplab.nightly.suite import Suite

HELP = """Run a benchmark suite every night and catch regressions: its history, reports and accepted
changes.

    sweeplab nightly run [--suite nightly] [--date YYYY-MM-DD] [--entry E] [overrides...]
    sweeplab nightly history [--suite S] [--entry E] [--metric M] [--last N]
    sweeplab nightly report --date YYYY-MM-DD [--suite S]
    sweeplab nightly accept --entry E --metric M --date YYYY-MM-DD [--suite S] [--note TEXT]
    sweeplab nightly schedule [--suite nightly]

Overrides named nightly.* or benchmark.* change the nightly settings (conf/nightly.yaml);
any other override goes to every entry's sweeplab config (cluster=existing, tracking.uri=...).
`run` exits 1 when anything regressed or failed, 0 otherwise (also when another runner holds
the night); like every sweeplab command, 2 on bad input, 3 when a store cannot be reached.
"""
NAME = "nightly"


def night_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a date; write YYYY-MM-DD, e.g. 2026-01-31"
        ) from None


def add_parser(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    text = "nightly benchmarks: run a suite, see its history and reports, accept changes, schedule it"
    nightly = subparsers.add_parser(NAME, help=text, description=HELP, formatter_class=fmt)
    sub = nightly.add_subparsers(
        dest="nightly_command", required=True, metavar="{run,history,report,accept,schedule}"
    )

    def suite_arg(p, default="nightly"):
        p.add_argument("--suite", default=default, help=f"a suite in conf/benchmark/ (default {default})")

    run = sub.add_parser("run", help="run a suite for one night (only what that night is missing)")
    suite_arg(run)
    run.add_argument(
        "--date", type=night_arg, help="the night, YYYY-MM-DD (default: today in nightly.timezone)"
    )
    run.add_argument("--entry", action="append", default=[], help="run only this entry (repeatable)")
    run.add_argument("overrides", nargs="*", help="nightly.* settings, or overrides for every entry")

    hist = sub.add_parser("history", help="recent nights as a table")
    suite_arg(hist)
    hist.add_argument("--entry", help="only this entry")
    hist.add_argument("--metric", help="only this metric (default: the watched ones)")
    hist.add_argument("--last", type=int, default=7, help="how many nights (default 7)")
    add_format_argument(hist)
    hist.add_argument("overrides", nargs="*", help="e.g. nightly.history_url=sqlite:///other.db")

    rep = sub.add_parser("report", help="rebuild a night's report (HTML + Markdown) from the history store")
    suite_arg(rep)
    rep.add_argument("--date", type=night_arg, required=True)
    rep.add_argument("overrides", nargs="*")

    acc = sub.add_parser(
        "accept", help="record an intended change: later nights compare against the new level"
    )
    suite_arg(acc)
    acc.add_argument("--entry", required=True)
    acc.add_argument("--metric", required=True)
    acc.add_argument("--date", type=night_arg, required=True, help="the first night of the new level")
    acc.add_argument("--note", default="", help="why (kept with the change)")
    acc.add_argument("overrides", nargs="*")

    sch = sub.add_parser(
        "schedule", help="run the suite on nightly.schedule (cron) in nightly.timezone, forever"
    )
    suite_arg(sch)
    sch.add_argument("overrides", nargs="*")
    nightly.set_defaults(run=main)  # no Hydra config of sweeplab's own: main() calls it directly


def main(args: argparse.Namespace) -> int:
    commands = {
        "run": cmd_run,
        "history": cmd_history,
        "report": cmd_report,
        "accept": cmd_accept,
        "schedule": cmd_schedule,
    }
    try:
        return commands[args.nightly_command](args)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            "finished runs are recorded; run the same night again to complete it"
        ) from None


def _load(args) -> tuple[Suite, dict, list[str]]:
    from sweeplab.nightly.suite import load, split_overrides

    mine, entries = split_overrides(list(args.overrides))
    suite, settings = load(args.suite, mine)
    return suite, settings, entries


def _store(settings: dict, must_exist: bool = True, read_only: bool = False) -> HistoryStore:
    """The history store; ``read_only``: as it is, never created or migrated (a reader changes nothing)."""
    from sweeplab.nightly.history import HistoryStore, display_url, resolve_url

    url = resolve_url(settings["history_url"])
    missing = url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()
    if must_exist and missing:
        raise ConfigError(f"no nightly history at {display_url(url)} yet; {FIRST_RUN}")
    store = HistoryStore(url)
    if not read_only:
        store.upgrade()
    elif not store.has_schema():
        raise ConfigError(f"no nightly history in {store.shown} yet; {FIRST_RUN}")
    return store


FIRST_RUN = "`sweeplab nightly run` creates it (or point nightly.history_url / $SWEEPLAB_NIGHTLY_DB at yours)"


# ---------------------------------------------------------------- commands
def cmd_run(args) -> int:
    from sweeplab.nightly.detect import Verdict
    from sweeplab.nightly.runner import NightRunner
    from sweeplab.nightly.schedule import today
    from sweeplab.nightly.status import EntryStatus

    suite, settings, entry_overrides = _load(args)
    night = args.date or today(settings["timezone"])
    runner = NightRunner(suite, settings, entry_overrides, console=console)
    outcome = runner.run(night, args.entry)
    if not outcome.ran:
        console.print(outcome.message, markup=False)
        return exits.OK
    if outcome.message:
        console.print(outcome.message, markup=False)
    for j in outcome.regressed:
        line = f"{j.entry} {j.watch.metric} since {j.judgement.began}: {j.judgement.reason}"
        console.print(Text.assemble((Verdict.regressed, "bold red"), ": ", line))
    for entry, why in outcome.problems.items():
        console.print(Text.assemble((EntryStatus.failed, "bold red"), ": ", f"{entry}: {why}"))
    console.print(
        f"see the runs in the MLflow UI: sweeplab ui  (experiment nightly/{suite.name})", markup=False
    )
    return outcome.exit_code


def cmd_history(args) -> int:
    from sweeplab.nightly.status import EntryStatus

    suite, settings, _ = _load(args)
    store = _store(settings, read_only=True)
    nights = sorted({n for s, n in store.nights(suite.name)})[-max(1, args.last) :]
    if not nights and args.format != "table":
        (print_json([]) if args.format == "json" else print_csv([], HISTORY_COLUMNS))
        return exits.OK
    if not nights:
        console.print(f"no nights of suite '{suite.name}' in {store.shown} yet", markup=False)
        return exits.OK
    verdicts = {(v["night"], v["entry"], v["metric"]): v for v in store.verdicts(suite.name, since=nights[0])}
    watched = {(e.name, w.metric) for e in suite.entries for w in e.watches}
    groups: dict[tuple, list] = {}
    for r in store.rows(suite.name, args.entry, args.metric, since=nights[0]):
        key = (r.night, r.entry, r.metric if r.status == EntryStatus.completed else "")
        if args.metric or (r.entry, r.metric) in watched or r.status != EntryStatus.completed:
            groups.setdefault(key, []).append(r)
    from sweeplab.nightly.report import COLORS, fmt

    lines = []
    for (night, entry, metric), rows in sorted(groups.items()):
        values = [r.value for r in rows if r.value is not None and r.status == EntryStatus.completed]
        mean = sum(values) / len(values) if values else None
        spread = (
            (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else None
        )
        lines.append(
            {
                "night": night.isoformat(),
                "entry": entry,
                "metric": metric,
                "mean": mean,
                "sd": spread,
                "n": len(values),
                "verdict": verdicts.get((night, entry, metric), {}).get("verdict", ""),
                "status": ", ".join(sorted({r.status for r in rows})),
                "reason": rows[0].reason or "",
                "commit": rows[0].git_commit or "",
                "machine": rows[0].machine,
            }
        )
    if args.format == "json":
        print_json(lines)
        return exits.OK
    if args.format == "csv":
        print_csv(lines, HISTORY_COLUMNS)
        return exits.OK
    table = Table(
        title=f"nightly history: suite {suite.name}, last {len(nights)} night(s)", title_justify="left"
    )
    table.add_column("night", no_wrap=True)
    table.add_column("entry", no_wrap=True)
    for c in ("metric", "value (mean ± sd, n)", "verdict", "status", "commit", "machine"):
        table.add_column(c)
    for line in lines:
        status = line["status"]
        if status != EntryStatus.completed and line["reason"]:
            status += f": {line['reason'][:60]}"
        value = fmt(line["mean"], line["sd"], line["n"]) if line["n"] else "–"
        cells = [line["night"], line["entry"], line["metric"], value, line["verdict"], status]
        cells += [line["commit"][:10], line["machine"]]
        table.add_row(*(Text(c, style=COLORS.get(c, "")) for c in cells))  # plain text, never markup
    console.print(table)
    return exits.OK


HISTORY_COLUMNS = (
    "night",
    "entry",
    "metric",
    "mean",
    "sd",
    "n",
    "verdict",
    "status",
    "reason",
    "commit",
    "machine",
)


def cmd_report(args) -> int:
    from sweeplab.nightly.outcome import NightOutcome
    from sweeplab.nightly.report import write
    from sweeplab.nightly.runner import judge_entry, stored_judgements
    from sweeplab.nightly.status import PROBLEMS, EntryStatus

    suite, settings, _ = _load(args)
    store = _store(settings)
    rows = store.rows(suite.name, since=args.date, until=args.date)
    if not rows:
        raise ConfigError(
            f"suite '{suite.name}' has no results for night {args.date} in {store.shown}; "
            "see the nights it has with `sweeplab nightly history`"
        )
    outcome = NightOutcome(suite.name, args.date, ran=False)
    outcome.judged = stored_judgements(store, suite, args.date) or [
        j for e in suite.entries for j in judge_entry(store, suite, e, args.date)
    ]
    for r in rows:
        if r.status == EntryStatus.skipped:
            outcome.skipped[r.entry] = r.reason
        elif r.status in PROBLEMS:
            outcome.problems[r.entry] = f"{r.status}: {r.reason}"
    out_dir = Path(settings["reports_dir"]) / suite.name / args.date.isoformat()
    paths = write(store, suite, args.date, outcome, out_dir)
    console.print(f"report rebuilt: {paths.html} and {paths.markdown}", markup=False)
    return exits.OK


def cmd_accept(args) -> int:
    import getpass

    suite, settings, _ = _load(args)
    entry = suite.entry(args.entry)
    if args.metric not in {w.metric for w in entry.watches}:
        raise ConfigError(
            f"entry '{entry.name}' does not watch '{args.metric}'; it watches: "
            + ", ".join(w.metric for w in entry.watches)
        )
    store = _store(settings)
    series = store.series(suite.name, entry.name, args.metric)
    if args.date not in {n.night for n in series}:
        recent = ", ".join(str(n.night) for n in series[-5:]) or "none yet"
        raise ConfigError(
            f"{entry.name} {args.metric} has no result on {args.date}; accept the night the change "
            f"began (recent nights: {recent})"
        )
    fresh = store.accept(suite.name, entry.name, args.metric, args.date, args.note, getpass.getuser())
    since = sum(n.night >= args.date for n in series)
    state = "accepted" if fresh else "already accepted"
    console.print(
        f"{state}: {entry.name} {args.metric} from {args.date}; later nights compare against the nights "
        f"since then ({since} so far; a verdict needs {suite.settings.min_history} before the night judged)",
        markup=False,
    )
    return exits.OK


def cmd_schedule(args) -> int:
    from sweeplab.nightly.schedule import Heartbeat, NightScheduler, SystemClock, subprocess_launcher
    from sweeplab.nightly.status import ClaimStatus

    suite, settings, _ = _load(args)
    store = _store(settings, must_exist=False)
    beat = Heartbeat()
    clock = SystemClock(beat)
    launch, interrupt = subprocess_launcher(suite.name, list(args.overrides), beat)

    def is_done(night: date) -> bool:
        claim = store.claim_of(suite.name, night)
        return claim is not None and claim.status == ClaimStatus.finished

    def stop(signum, frame) -> None:  # systemd / docker stop: end the night gracefully, then exit
        console.print(f"received signal {signum}: stopping the scheduler", markup=False)
        clock.stop()
        interrupt()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    console.print(
        f"nightly scheduler for suite '{suite.name}' · history {store.shown} · heartbeat {beat.path}",
        markup=False,
    )
    NightScheduler(
        settings["schedule"],
        settings["timezone"],
        launch,
        is_done,
        clock,
        settings["catch_up_hours"],
        say=lambda line: console.print(line, markup=False),
        ran_before=lambda: store.ever_claimed(suite.name),
    ).run()
    return exits.OK
