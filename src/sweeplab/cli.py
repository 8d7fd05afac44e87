"""sweeplab: hyperparameter sweeps of PyTorch networks (Hydra configs, Ray Tune, MLflow).

  sweeplab sweep [overrides...]                   tune hyperparameters on Ray Tune, tracked in MLflow
  sweeplab sweep resume <name|dir|parent run id>  continue an interrupted sweep
  sweeplab sweep sync <name|dir|parent run id>    deliver tracking records a sweep still holds
  sweeplab train [overrides...]                   one tracked training run
  sweeplab train --cfg [all] [overrides...]       print the composed config (training sections, or all)
  sweeplab sweep --check [overrides...]           build every model of the space on the data, train nothing
  sweeplab summary [overrides...]                 the model's Keras-style summary
  sweeplab init DIR                               a project of your own: model, data, conf/, README
  sweeplab ui                                     the MLflow UI on the configured store
  sweeplab sweeps list|show|compare|export|prune  browse the sweeps a store holds, free their storage
  sweeplab nightly run|history|report|accept|schedule   nightly benchmark suites
  sweeplab services up|down|status                the long-running parts on this machine

Overrides use Hydra's grammar: model.hidden=[256,128] optimizer=adam optimizer.lr=3e-4
Your own options live in a conf/ in the current folder (or --config-dir DIR), layered over sweeplab's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sweeplab.groups import GROUPS, SWEEP_ONLY_GROUPS, ConfigError, group_options

# about the command's start (the imports above take a fraction of a second): a sweep's budget counts from it
STARTED = time.time()


class _Console(Console):
    def on_broken_pipe(self) -> None:  # Rich would exit 1 itself: main() ends quietly with 0 instead
        raise BrokenPipeError


console = _Console(highlight=False, soft_wrap=True)  # long URIs and paths stay copyable
err_console = _Console(stderr=True, highlight=False, soft_wrap=True)
# Off a terminal (a file, a pipe) Rich would lay everything out for 80 columns and cut table
# cells and live lines with "…"; there, nothing has to fit, so nothing is cut.
WIDTH_OFF_TERMINAL = 4096
# What `train --cfg` shows: the sections a training run reads (`--cfg all` adds search, tune, cluster).
TRAINING_SECTIONS = (*(g for g in GROUPS if g not in (*SWEEP_ONLY_GROUPS, "experiment")), "seed")
CFG_SCOPES = ("train", "all")


def fit_consoles_to_output() -> None:
    for c in (console, err_console):
        c.width = None if c.is_terminal or os.environ.get("COLUMNS") else WIDTH_OFF_TERMINAL


def print_error(label: str, style: str, message: object) -> None:
    """``label: message`` on stderr; the message is printed as it is (a hint like ``choice[a, b]``
    is not Rich markup), credentials masked (Hydra quotes a bad override whole, store URI included)."""
    from sweeplab.redact import scrub

    err_console.print(Text.assemble((label, style), ": ", scrub(str(message))))


def groups_help() -> str:
    lines = ["config groups (choose with group=option; any key with group.key=value):"]
    try:
        for group in GROUPS:
            lines.append(f"  {group:<12} {', '.join(group_options(group))}")
    except ConfigError as exc:
        lines.append(f"  ({exc})")
    lines.append("examples:")
    lines.append("  sweeplab sweep experiment=fashion_mnist_sweep tune.num_samples=16")
    lines.append("  sweeplab sweep data=digits search=optimizers tune=optuna trainer.epochs=10")
    lines.append("  sweeplab train experiment=course_fashion_mnist")
    lines.append(
        "  sweeplab train data=digits model.hidden=[256,128] optimizer=adam optimizer.lr=3e-4 regularizer=l2"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="sweeplab", description=__doc__, formatter_class=fmt, epilog=groups_help()
    )
    config_dir = argparse.ArgumentParser(add_help=False)
    config_dir.add_argument(
        "--config-dir",
        metavar="DIR",
        help="your project's conf/ (default: ./conf), layered over sweeplab's own configs",
    )
    commands = "{train,sweep,summary,ui,init,sweeps,nightly,services}"
    from sweeplab import __version__

    parser.add_argument("--version", action="version", version=f"sweeplab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar=commands)  # none: the help
    for name, text in (
        ("train", "train one model and record it as an MLflow run"),
        ("summary", "print the model's layers, output shapes and parameter counts"),
    ):
        p = sub.add_parser(
            name, help=text, description=text, epilog=groups_help(), formatter_class=fmt, parents=[config_dir]
        )
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. optimizer=adam trainer.epochs=10")
        p.add_argument(
            "--cfg",
            nargs="?",
            const="train",
            metavar="all",
            help="print the composed config and exit: the sections training reads, or with `all` every one",
        )
    text = "tune hyperparameters on Ray Tune; MLflow gets a parent run with one child run per trial"
    sw = sub.add_parser(
        "sweep",
        help=text,
        description=text + ".\n\n  sweeplab sweep [overrides]\n"
        "  sweeplab sweep resume <name|path|parent run id>\n"
        "  sweeplab sweep sync <name|path|parent run id>",
        epilog=groups_help(),
        formatter_class=fmt,
        parents=[config_dir],
    )
    sw.add_argument(
        "--check",
        action="store_true",
        help="compose every choice of the search space, build each model on the data and run one "
        "batch through it, then exit without training",
    )
    sw.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. search=fashion_mlp tune=asha tune.num_samples=64"
    )
    sw.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    ui = sub.add_parser(
        "ui",
        help="open the MLflow UI on the configured tracking store (bound to 127.0.0.1)",
        parents=[config_dir],
    )
    ui.add_argument("overrides", nargs="*", help="e.g. tracking.uri=sqlite:///other.db")
    ui.add_argument("--port", type=int, default=None, help="port (default tracking.ui_port, 5000)")
    text = "write a small project of your own that runs as it is: a model, a data factory, conf/, README"
    init = sub.add_parser("init", help=text, description=text)
    init.add_argument("dir", help="the folder to create (must not exist, or be empty)")
    init.set_defaults(run=cmd_init)
    from sweeplab.services.command import add_parser as add_services_parser

    add_services_parser(sub)  # no Hydra config: its parser sets `run`, which main() calls directly
    from sweeplab.nightly.cli import add_parser as add_nightly_parser

    add_nightly_parser(sub)  # `sweeplab nightly ...`: sets `run` too
    from sweeplab.sweeps_cli import add_parser as add_sweeps_parser

    add_sweeps_parser(sub)  # `sweeplab sweeps list|show|compare|export|prune`: sets `run` too
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    fit_consoles_to_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `sweeplab`: what it can do, not an error
        parser.print_help()
        return 0
    if getattr(args, "cfg", None) not in (None, True, False, *CFG_SCOPES):
        args.overrides.insert(0, args.cfg)  # `--cfg a=b ...`: argparse took the first override for a scope
        args.cfg = "train"
    if getattr(args, "config_dir", None):  # every process of this command reads it: Ray's trials too
        os.environ["SWEEPLAB_CONFIG_DIR"] = os.path.abspath(args.config_dir)
    try:
        if hasattr(args, "run"):  # subcommands without a Hydra config (services)
            return args.run(args)
        if args.command == "sweep" and args.overrides[:1] and args.overrides[0] in SWEEP_ACTIONS:
            return cmd_sweep_action(args)
        from sweeplab.config import compose, to_container  # Hydra: only for commands that compose

        cfg_node = compose(args.overrides)
        if getattr(args, "cfg", False):
            console.print(
                config_yaml(cfg_node, "all" if args.cfg is True else args.cfg), end="", markup=False
            )
            return 0
        cfg = to_container(cfg_node)
        commands = {"train": cmd_train, "sweep": cmd_sweep, "summary": cmd_summary, "ui": cmd_ui}
        return commands[args.command](cfg, args)
    except BrokenPipeError:  # `sweeplab ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 0
    except KeyboardInterrupt as exc:  # a sweep says how to resume; a train run was closed as KILLED
        print_error(
            "interrupted", "yellow", str(exc) or "the run was closed as KILLED with the epochs already logged"
        )
        return 130
    except (ConfigError, ValueError, RuntimeError, OSError) as exc:  # DataError is a RuntimeError
        print_error("error", "bold red", exc)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug of ours or a library's: one line, the rest in a log
        log = unexpected_error_log()
        print_error("error", "bold red", f"{type(exc).__name__}: {exc} (the traceback is in {log})")
        return 1


def unexpected_error_log() -> str:
    """Write the current exception's traceback, masked, to a file the user can send us."""
    import tempfile
    import traceback

    from sweeplab.redact import scrub

    with tempfile.NamedTemporaryFile("w", prefix="sweeplab-error-", suffix=".log", delete=False) as fh:
        fh.write(scrub(traceback.format_exc()))
    return fh.name


def config_yaml(cfg_node, scope: str) -> str:
    from omegaconf import OmegaConf

    if scope == "train":
        cfg_node = OmegaConf.masked_copy(cfg_node, [k for k in TRAINING_SECTIONS if k in cfg_node])
    return OmegaConf.to_yaml(cfg_node)


# ------------------------------------------------------------------ train
def fmt_metrics(m: dict[str, float], keys: Sequence[str]) -> str:
    return "  ".join(f"{k} {m[k]:.4f}" for k in keys if k in m)


def cmd_train(cfg: dict, args: argparse.Namespace) -> int:
    from sweeplab.data import load_data
    from sweeplab.run import train_and_track

    with console.status(f"loading {cfg['data']['name']} ..."):
        data = load_data(cfg["data"])
    console.print(Text.assemble(("data", "bold"), f" {cfg['data']['name']}: {data.describe()}"))
    epochs = cfg["trainer"]["epochs"]

    def progress(m: dict[str, float]) -> None:
        line = fmt_metrics(m, [k for k in m if k.startswith(("train/", "val/")) and k != "train/penalty"])
        console.print(
            f"epoch {int(m['epoch']):>3}/{epochs}  {line}  lr {m['lr']:.2g}  {m['epoch_time_s']:.1f}s"
        )

    outcome = train_and_track(cfg, data, progress)
    result = outcome.result
    table = Table(title="run summary", show_header=False, title_justify="left")
    style = {"completed": "green", "early_stopped": "cyan", "diverged": "red"}[result.status]
    table.add_row("status", Text.assemble((result.status, style), f" — {result.reason}"))
    if result.best_epoch is not None:
        table.add_row(
            "best epoch",
            f"{result.best_epoch}  ({fmt_metrics(result.best, [k for k in result.best if k[:4] == 'val/'])})",
        )
    if result.test:
        table.add_row("test", fmt_metrics(result.test, list(result.test)))
    see_it = None
    if outcome.run_id:
        from sweeplab.redact import scrub
        from sweeplab.tracking import resolve_uri

        table.add_row("mlflow run", Text(f"{outcome.run_id} in experiment '{cfg['tracking']['experiment']}'"))
        table.add_row("store", Text(scrub(resolve_uri(cfg["tracking"]["uri"]))))
        see_it = ui_hint(cfg["tracking"], outcome.run_id, args.overrides)
    console.print(table)
    if see_it:
        console.print(f"see it in the MLflow UI: {see_it}", markup=False)
    return 0 if result.status != "diverged" else 1


def ui_hint(tracking_cfg: dict, run_id: str, overrides) -> str:
    from sweeplab.redact import scrub
    from sweeplab.tracking import Tracker, ui_command

    cmd, _ = ui_command(tracking_cfg)
    uri_override = scrub(" ".join(a for a in overrides if a.startswith("tracking.")))
    start = f"sweeplab ui {uri_override}".strip() if cmd else "open"
    return f"{start}  then  {Tracker(tracking_cfg).run_url(run_id)}"


def _sweep(cfg: dict, run) -> int:
    from sweeplab.space import parse_space
    from sweeplab.sweep.tuner import expected_trials
    from sweeplab.sweep.view import LiveView, print_summary

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
    print_summary(console, outcome.summary, ui_hint(outcome.state.tracking, outcome.state.parent_run_id, []))
    return 0 if "best" in outcome.summary else 1


def cmd_sweep(cfg: dict, args: argparse.Namespace) -> int:
    from sweeplab import sweep

    if args.check:
        return cmd_sweep_check(cfg, args)
    return _sweep(cfg, lambda view: sweep.start(cfg, args.overrides, view, STARTED))


def cmd_sweep_check(cfg: dict, args: argparse.Namespace) -> int:
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
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sweeplab.scaffold import init_project

    written = init_project(Path(args.dir))
    console.print(Text.assemble(("project", "bold"), f" {args.dir}: {len(written)} files"))
    for path in written:
        console.print(f"  {path}", markup=False)
    console.print(f"next: cd {args.dir} and follow its README.md", markup=False)
    return 0


SWEEP_ACTIONS = ("resume", "sync")


def cmd_sweep_action(args: argparse.Namespace) -> int:
    """``sweep resume <ref>`` continues a sweep; ``sweep sync <ref>`` delivers what its outbox holds."""
    from sweeplab import sweep

    action = args.overrides[0]
    if len(args.overrides) < 2:
        raise ConfigError(f"usage: sweeplab sweep {action} <sweep name | sweep folder | parent run id>")
    ref, rest = args.overrides[1], args.overrides[2:]
    if action == "sync":
        outcome = sweep.sync(ref, rest)
        if outcome is None:
            console.print(f"sweep {ref}: every tracking record is delivered")
            return 0
        from sweeplab.sweep.view import print_summary

        hint = ui_hint(outcome.state.tracking, outcome.state.parent_run_id, [])
        print_summary(console, outcome.summary, hint)
        return 0 if "best" in outcome.summary else 1  # as the sweep itself: no model chosen is a failure
    try:
        state = sweep.find_sweep(ref, *_tune_and_tracking(rest))
        console.print(Text.assemble("resuming sweep ", (state.name, "bold"), f" from {state.path}"))
        from sweeplab.config import compose, to_container

        cfg = to_container(compose(state.base_overrides))
        return _sweep(cfg, lambda view: sweep.resume(ref, rest, view, STARTED))
    except sweep.SweepFinished as done:
        console.print(str(done))
        return 0


def _tune_and_tracking(overrides: Sequence[str]) -> tuple[dict, dict]:
    from sweeplab.config import compose, to_container

    cfg = to_container(compose([o for o in overrides if o.startswith(("tune.", "tracking."))]))
    return cfg["tune"], cfg["tracking"]


def cmd_summary(cfg: dict, args: argparse.Namespace) -> int:
    from sweeplab.build import build_model
    from sweeplab.data import load_data
    from sweeplab.summary import model_summary

    data = load_data(cfg["data"])
    model = build_model(cfg["model"], cfg["regularizer"], data)
    console.print(model_summary(model, data.input_shape, data.kind), markup=False)
    return 0


def cmd_ui(cfg: dict, args: argparse.Namespace) -> int:
    from sweeplab.tracking.ui import serve

    return serve(cfg["tracking"], args.port, console)


if __name__ == "__main__":
    sys.exit(main())
