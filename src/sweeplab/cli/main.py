"""sweeplab: hyperparameter sweeps of PyTorch networks (Hydra configs, Ray Tune, MLflow).

  sweeplab sweep [overrides...]                   tune hyperparameters on Ray Tune, tracked in MLflow
  sweeplab sweep resume <sweep>                   continue an interrupted sweep
  sweeplab sweep sync <sweep>                     deliver tracking records a sweep still holds
  sweeplab sweep --check [overrides...]           build every model of the space on the data, train nothing
  sweeplab train [overrides...]                   one tracked training run
  sweeplab train --cfg [all] [overrides...]       print the composed config (training sections, or all)
  sweeplab summary [overrides...]                 the model's Keras-style summary
  sweeplab init DIR                               a project of your own: model, data, conf/, README
  sweeplab ui                                     the MLflow UI on the configured store
  sweeplab sweeps list|show|compare|export|prune  browse the sweeps a store holds, free their storage
  sweeplab nightly run|history|report|accept|schedule   nightly benchmark suites
  sweeplab services up|down|status                the long-running parts on this machine
  sweeplab completion bash|zsh                    shell completion

Overrides use Hydra's grammar: model.hidden=[256,128] optimizer=adam optimizer.lr=3e-4
Your own options live in a conf/ in the current folder (or --config-dir DIR), layered over sweeplab's.
A sweep is named by its name, `latest`, or any prefix of its name that no other sweep shares.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sweeplab.cli import completion, exits, init, nightly, services, summary, sweep, sweeps, train, ui
from sweeplab.cli.config_args import FORMATTER, groups_help
from sweeplab.cli.output import fit_consoles_to_output, print_error

# One module per command, each with add_parser(subparsers), which sets `run`: its handler.
COMMANDS = (sweep, train, summary, init, ui, sweeps, nightly, services, completion)


def build_parser() -> argparse.ArgumentParser:
    from sweeplab import __version__

    parser = argparse.ArgumentParser(
        prog="sweeplab", description=__doc__, formatter_class=FORMATTER, epilog=groups_help()
    )
    parser.add_argument("--version", action="version", version=f"sweeplab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(m.NAME for m in COMMANDS) + "}")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    fit_consoles_to_output()
    parser = build_parser()
    args = parser.parse_args(sweep.with_subcommand(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:  # bare `sweeplab`: what it can do, not an error
        parser.print_help()
        return exits.OK
    if getattr(args, "config_dir", None):  # every process of this command reads it: Ray's trials too
        os.environ["SWEEPLAB_CONFIG_DIR"] = os.path.abspath(args.config_dir)
    try:
        return args.run(args)
    except BrokenPipeError:  # `sweeplab ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return exits.OK
    except KeyboardInterrupt as exc:  # the command's handler says what was kept and how to go on
        print_error("interrupted", "yellow", str(exc) or "stopped; what was recorded is kept")
        return exits.INTERRUPTED
    except ValueError as exc:  # ConfigError, an unknown sweep, a bad value: the input is wrong
        print_error("error", "bold red", exc)
        return exits.USAGE
    except (RuntimeError, OSError) as exc:  # a store or cluster out of reach, a broken sweep, I/O
        print_error("error", "bold red", exc)
        return exits.RUNTIME
    except Exception as exc:  # noqa: BLE001 - a bug of ours or a library's: one line, the rest in a log
        log = unexpected_error_log()
        print_error("error", "bold red", f"{type(exc).__name__}: {exc} (the traceback is in {log})")
        return exits.INTERNAL


def unexpected_error_log() -> str:
    """Write the current exception's traceback, masked, to a file the user can send us."""
    import tempfile
    import traceback

    from sweeplab.redact import scrub

    with tempfile.NamedTemporaryFile("w", prefix="sweeplab-error-", suffix=".log", delete=False) as fh:
        fh.write(scrub(traceback.format_exc()))
    return fh.name
