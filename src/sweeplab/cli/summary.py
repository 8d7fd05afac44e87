"""``sweeplab summary``: the model's layers, output shapes and parameter counts (torchinfo)."""

from __future__ import annotations

import argparse

from sweeplab.cli import exits
from sweeplab.cli.config_args import (
    FORMATTER,
    add_cfg,
    add_config_dir,
    add_overrides,
    compose_for,
    groups_help,
)
from sweeplab.cli.output import console

NAME = "summary"
HELP = "print the model's layers, output shapes and parameter counts"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP, epilog=groups_help(), formatter_class=FORMATTER)
    add_config_dir(p)
    add_cfg(p, "train")
    add_overrides(p, "model=cnn data=digits")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = compose_for(args)
    if cfg is None:
        return exits.OK
    from sweeplab.build import build_model
    from sweeplab.data import load_data
    from sweeplab.summary import model_summary

    data = load_data(cfg["data"])
    model = build_model(cfg["model"], cfg["regularizer"], data)
    console.print(model_summary(model, data.input_shape, data.kind), markup=False)
    return exits.OK
