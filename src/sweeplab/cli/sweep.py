"""``sweeplab sweep start|resume|sync``: a sweep on Ray Tune, tracked in MLflow.

``sweeplab sweep overrides...`` is ``sweeplab sweep start overrides...``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from rich.text import Text

from sweeplab.cli import exits
from sweeplab.cli.config_args import FORMATTER, add_config_command, add_config_dir, compose_for
from sweeplab.cli.output import console

# About the command's start (the imports before this line take a fraction of a second): a sweep's
# time budget counts from it, so Ray's start-up and the driver's checks are inside the budget.
STARTED = time.time()

NAME = "sweep"
HELP = "tune hyperparameters on Ray Tune; MLflow gets a parent run with one child run per trial"
SUBCOMMANDS = ("start", "resume", "sync")
REF = "the sweep: its name, `latest`, a unique prefix of its name, its folder, or its parent run id"


def add_parser(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser(
        NAME,
        help=HELP,
        description=HELP + ".\n\n"
        "  sweeplab sweep [start] [overrides...]   a new sweep (`start` may be left out)\n"
        "  sweeplab sweep resume <sweep>           continue an interrupted sweep where it stopped\n"
        "  sweeplab sweep sync <sweep>             deliver the tracking records a sweep still holds",
        formatter_class=FORMATTER,
    )
    actions = sweep.add_subparsers(dest="sweep_command", metavar="{start,resume,sync}", required=True)
    text = "start a new sweep of the composed search space"
    start = add_config_command(
        actions, "start", text, "all", "search=fashion_mlp tune=asha tune.num_samples=64"
    )
    start.add_argument(
        "--check",
        action="store_true",
        help="compose every choice of the search space, build each model on the data and run one "
        "batch through it, then exit without training",
    )
    start.set_defaults(run=run_start)
    text = "continue an interrupted sweep: finished trials are kept, the others go on from their checkpoints"
    resume = actions.add_parser("resume", help=text, description=text)
    text = "deliver the tracking records a sweep still holds (its store was out of reach), then summarize it"
    sync = actions.add_parser("sync", help=text, description=text)
    for p, handler in ((resume, run_resume), (sync, run_sync)):
        add_config_dir(p)
        p.add_argument("sweep", help=REF)
        p.add_argument(
            "overrides",
            nargs="*",
            default=[],
            help="tune.* and tracking.* settings, e.g. tune.time_budget_s=600",
        )
        p.set_defaults(run=handler)


def with_subcommand(argv: list[str]) -> list[str]:
    """``sweep a=b`` is ``sweep start a=b``; ``sweep --config-dir D resume x`` is ``sweep resume
    --config-dir D x`` (argparse wants a subcommand before its options)."""
    if argv[:1] != [NAME]:
        return argv
    rest, i = argv[1:], 0
    while i < len(rest) and rest[i].startswith("-"):
        if rest[i] in ("-h", "--help"):
            return argv
        i += 2 if rest[i] == "--config-dir" else 1
    if i < len(rest) and rest[i] in SUBCOMMANDS:
        return [NAME, rest[i], *rest[:i], *rest[i + 1 :]]
    return [NAME, "start", *rest]


def run_start(args: argparse.Namespace) -> int:
    cfg = compose_for(args)
    if cfg is None:
        return exits.OK
    if args.check:
        return check(cfg, args)
    from sweeplab import sweep

    return _run(cfg, lambda view: sweep.start(cfg, args.overrides, view, STARTED))


def run_resume(args: argparse.Namespace) -> int:
    from sweeplab import sweep

    try:
        state = sweep.find_sweep(args.sweep, *_tune_and_tracking(args.overrides))
        console.print(Text.assemble("resuming sweep ", (state.name, "bold"), f" from {state.path}"))
        from sweeplab.config import compose, to_container

        cfg = to_container(compose(state.base_overrides))
        return _run(cfg, lambda view: sweep.resume(args.sweep, args.overrides, view, STARTED))
    except sweep.SweepFinished as done:
        console.print(str(done))
        return exits.OK


def run_sync(args: argparse.Namespace) -> int:
    from sweeplab import sweep

    outcome = sweep.sync(args.sweep, args.overrides)
    if outcome is None:
        console.print(f"sweep {args.sweep}: every tracking record is delivered")
        return exits.OK
    return _summary(outcome)


def _run(cfg: dict, run: Callable) -> int:
    from sweeplab.space import parse_space
    from sweeplab.sweep.tuner import expected_trials
    from sweeplab.sweep.view import LiveView

    tune_cfg = cfg["tune"]
    trials = expected_trials(tune_cfg, parse_space(cfg["search"]["space"]))
    console.print(
        Text.assemble(
            ("sweep", "bold"),
            f" search={cfg['search']['name']} scheduler={tune_cfg['scheduler']} "
            f"search_alg={tune_cfg['search_alg']} trials={trials} "
            f"concurrent={tune_cfg['max_concurrent_trials']} "
            f"metric={tune_cfg['metric']} ({tune_cfg['mode']})",
        )
    )
    with LiveView(console, trials, tune_cfg["metric"], tune_cfg["mode"]) as view:
        outcome = run(view)
    return _summary(outcome)


def _summary(outcome) -> int:
    """The sweep's summary table and its link; a sweep that chose no model failed."""
    from sweeplab.cli.ui import ui_hint
    from sweeplab.sweep.view import print_summary

    print_summary(console, outcome.summary, ui_hint(outcome.state.tracking, outcome.state.parent_run_id, []))
    return exits.OK if outcome.summary.best is not None else exits.FAILED


def check(cfg: dict, args: argparse.Namespace) -> int:
    """Every choice of the space composed, each distinct model built and run on one batch: a broken
    option is found in seconds, not when a trial draws it."""
    from sweeplab.config import validate_sweep
    from sweeplab.space import parse_space, validate_space
    from sweeplab.sweep.check import check_trials

    with console.status("checking the search space ..."):
        validate_sweep(cfg, cfg["trainer"]["epochs"])
        params = parse_space(cfg["search"]["space"])
        validate_space(params, args.overrides, cfg["tune"]["search_alg"])
        report = check_trials(cfg, args.overrides, params, thorough=True)
    for line in report.lines():
        console.print(f"  {line}", markup=False)
    console.print(
        Text.assemble(
            ("ok", "bold green"),
            f": {report.compositions} choices of search={cfg['search']['name']} compose and build, "
            f"{len(report.models)} distinct models run a batch, tune.metric={cfg['tune']['metric']} is "
            "reported; nothing was trained or recorded",
        )
    )
    return exits.OK


def _tune_and_tracking(overrides: Sequence[str]) -> tuple[dict, dict]:
    """Where to look for the sweep (the driver refuses any other override, naming it)."""
    from sweeplab.config import compose, to_container
    from sweeplab.overrides import in_sections

    cfg = to_container(compose(in_sections(overrides, ("tune", "tracking"))))
    return cfg["tune"], cfg["tracking"]
