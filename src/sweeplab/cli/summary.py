"""``sweeplab summary``: the model's layers, output shapes and parameter counts (torchinfo)."""

from __future__ import annotations

import argparse

from sweeplab.cli import exits
from sweeplab.cli.config_args import add_config_command, compose_for
from sweeplab.cli.output import console

NAME = "summary"
HELP = "print the model's layers, output shapes and parameter counts"


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_config_command(sub, NAME, HELP, "train", "model=cnn data=digits").set_defaults(run=run)


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
