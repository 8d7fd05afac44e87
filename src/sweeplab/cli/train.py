"""``sweeplab train``: one model trained and recorded as an MLflow run."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from sweeplab.cli import exits
from sweeplab.cli.config_args import add_config_command, compose_for
from sweeplab.cli.output import console
from sweeplab.metrics import TRAIN_PENALTY
from sweeplab.status import TrialStatus

NAME = "train"
HELP = "train one model and record it as an MLflow run"


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_config_command(sub, NAME, HELP, "train", "optimizer=adam trainer.epochs=10").set_defaults(run=run)


def fmt_metrics(m: dict[str, float], keys: Sequence[str]) -> str:
    return "  ".join(f"{k} {m[k]:.4f}" for k in keys if k in m)


def run(args: argparse.Namespace) -> int:
    cfg = compose_for(args)
    if cfg is None:
        return exits.OK
    from sweeplab.data import load_data
    from sweeplab.run import train_and_track

    with console.status(f"loading {cfg['data']['name']} ..."):
        data = load_data(cfg["data"])
    console.print(Text.assemble(("data", "bold"), f" {cfg['data']['name']}: {data.describe()}"))
    epochs = cfg["trainer"]["epochs"]

    def progress(m: dict[str, float]) -> None:
        line = fmt_metrics(m, [k for k in m if k.startswith(("train/", "val/")) and k != TRAIN_PENALTY])
        console.print(
            f"epoch {int(m['epoch']):>3}/{epochs}  {line}  lr {m['lr']:.2g}  {m['epoch_time_s']:.1f}s"
        )

    try:
        outcome = train_and_track(cfg, data, progress)
    except KeyboardInterrupt:
        raise KeyboardInterrupt("the run was closed as KILLED with the epochs already logged") from None
    result = outcome.result
    table = Table(title="run summary", show_header=False, title_justify="left")
    style = TrialStatus(result.status).style
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
        from sweeplab.cli.ui import ui_hint
        from sweeplab.redact import scrub
        from sweeplab.tracking import resolve_uri

        table.add_row("mlflow run", Text(f"{outcome.run_id} in experiment '{cfg['tracking']['experiment']}'"))
        table.add_row("store", Text(scrub(resolve_uri(cfg["tracking"]["uri"]))))
        see_it = ui_hint(cfg["tracking"], outcome.run_id, args.overrides)
    console.print(table)
    if see_it:
        console.print(f"see it in the MLflow UI: {see_it}", markup=False)
    return exits.FAILED if result.status == TrialStatus.diverged else exits.OK
