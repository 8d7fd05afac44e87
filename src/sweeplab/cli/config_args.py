"""The arguments of the commands that compose a config (train, summary, sweep start, ui): Hydra
overrides, ``--config-dir`` and ``--cfg [all]``, and the config groups listed in their help."""

from __future__ import annotations

import argparse

from sweeplab.cli.output import console
from sweeplab.groups import GROUPS, SWEEP_ONLY_GROUPS, ConfigError, group_options

# What `train --cfg` shows: the sections a training run reads (`--cfg all` adds search, tune, cluster).
TRAINING_SECTIONS = (*(g for g in GROUPS if g not in (*SWEEP_ONLY_GROUPS, "experiment")), "seed")
CFG_SCOPES = ("train", "all")
FORMATTER = argparse.RawDescriptionHelpFormatter


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


def add_config_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        metavar="DIR",
        help="your project's conf/ (default: ./conf), layered over sweeplab's own configs",
    )


def add_overrides(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("overrides", nargs="*", default=[], help=f"Hydra overrides, e.g. {example}")


def add_cfg(parser: argparse.ArgumentParser, scope: str) -> None:
    parser.add_argument(
        "--cfg",
        nargs="?",
        const=scope,
        metavar="all",
        help="print the composed config and exit: "
        + ("the sections training reads, or with `all` every one" if scope == "train" else "every section"),
    )
    parser.set_defaults(cfg_scope=scope)


def add_config_command(
    sub: argparse._SubParsersAction, name: str, text: str, scope: str, example: str
) -> argparse.ArgumentParser:
    """A command that composes a config: its help lists the groups; ``--config-dir``, ``--cfg``
    and the overrides."""
    parser = sub.add_parser(
        name, help=text, description=text, epilog=groups_help(), formatter_class=FORMATTER
    )
    add_config_dir(parser)
    add_cfg(parser, scope)
    add_overrides(parser, example)
    return parser


def compose_for(args: argparse.Namespace) -> dict | None:
    """The command's config as plain data; None when ``--cfg`` asked for it to be printed instead."""
    from sweeplab.config import compose, to_container

    scope = getattr(args, "cfg", None)
    if scope not in (None, *CFG_SCOPES):  # `--cfg a=b ...`: argparse took the first override for a scope
        args.overrides.insert(0, scope)
        scope = args.cfg = args.cfg_scope
    node = compose(args.overrides)
    if scope is None:
        return to_container(node)
    console.print(config_yaml(node, scope), end="", markup=False)
    return None


def config_yaml(cfg_node, scope: str) -> str:
    from omegaconf import OmegaConf

    if scope == "train":
        cfg_node = OmegaConf.masked_copy(cfg_node, [k for k in TRAINING_SECTIONS if k in cfg_node])
    return OmegaConf.to_yaml(cfg_node)
