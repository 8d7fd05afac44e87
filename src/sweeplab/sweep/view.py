"""What a sweep shows in the terminal: a live table while it runs, a summary when it ends."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sweeplab.metrics import TEST_ACC, TEST_LOSS, VAL_ACC, VAL_LOSS, best_epoch, quality_key
from sweeplab.objective import Objective
from sweeplab.status import TrialStatus
from sweeplab.sweep.results import SweepSummary

MAX_ROWS = 14


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _short(key: str) -> str:
    return key.split(".")[-1] if "." in key else key


class LiveView:
    """Called by the sweep's recorder after every event; redraws at most a few times a second."""

    def __init__(self, console: Console, total: int, metric: str, mode: str):
        self.console, self.total, self.metric, self.mode = console, total, metric, mode
        self.objective = Objective(metric, mode)
        self.live = Live(console=console, auto_refresh=False, transient=False)
        self.started = time.monotonic()
        self.reported: set[str] = set()
        self.recorder = None
        self.last_draw = 0.0

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.recorder is not None:  # the last frame shows how the sweep ended, not a throttled one
            self.live.update(self.render(self.recorder), refresh=True)
        self.live.__exit__(*exc)
        if not self.console.is_terminal:
            self.console.print()  # Live leaves its last frame without a newline off a terminal

    def __call__(self, recorder) -> None:
        self.recorder = recorder
        for rec in recorder.trials.values():  # one permanent line per finished trial, for logs and scrollback
            if not rec.status.active and rec.trial_id not in self.reported:
                self.reported.add(rec.trial_id)
                line = Text(f"trial {rec.number:>3} ")
                line.append(rec.status.value, style=rec.status.style)
                line.append(f" after {rec.last_logged} epochs, {self.best_label} {_fmt(self._best(rec))}")
                line.append(f"  {self._params(rec)}")
                if rec.status in (TrialStatus.failed, TrialStatus.diverged) and rec.reason:
                    line.append(f"  ({rec.reason})", style=rec.status.style)
                self.live.console.print(line, soft_wrap=True)
        now = time.monotonic()
        if now - self.last_draw > 0.25:
            self.last_draw = now
            self.live.update(self.render(recorder), refresh=True)

    @property
    def best_label(self) -> str:
        return f"best {self.metric}"

    other = VAL_ACC  # the figure beside the metric; render() sets it from what trials report

    def _best_epoch(self, rec) -> dict[str, float]:
        return dict(best_epoch(rec.history, self.metric, self.mode) or {})

    def _best(self, rec) -> float:
        return self._best_epoch(rec).get(self.metric, math.nan)

    @staticmethod
    def _params(rec) -> str:
        return " ".join(f"{_short(k)}={_fmt(v)}" for k, v in rec.sampled.items())

    def render(self, recorder) -> Group:
        recs = list(recorder.trials.values())
        reported = next((r.history[-1] for r in recs if r.history), None)
        if reported:
            self.other = second_metric(self.metric, reported)
        keys = list(dict.fromkeys(k for r in recs for k in r.sampled))
        table = Table(title=f"sweep {recorder.name}", title_justify="left", expand=False)
        table.add_column("trial", justify="right")
        for k in keys:
            table.add_column(_short(k))
        # one meaning per column, the same as the per-trial lines: a trial's best epoch so far
        for col in ("epochs", self.best_label, f"{self.other} at best", "status"):
            table.add_column(col, justify="right" if col != "status" else "left")
        done = [r for r in recs if not r.status.active]
        active = [r for r in recs if r not in done]
        ranked = self.objective.ranked(done, key=self._best)
        shown = sorted(active + ranked[: max(3, MAX_ROWS - len(active))], key=lambda r: r.number)
        for r in shown:
            best = self._best_epoch(r)
            table.add_row(
                str(r.number),
                *[_fmt(r.sampled.get(k, "")) for k in keys],
                str(r.last_logged),
                _fmt(best.get(self.metric, "")),
                _fmt(best.get(self.other, "")),
                Text(r.status.value, style=r.status.style),
            )
        best = ranked[0] if ranked else None
        elapsed = time.monotonic() - self.started
        total = recorder.session.expected or self.total
        footer = f"{len(done)}/{total} trials done · {len(active)} running · {elapsed:.0f}s elapsed"
        if best is not None:
            footer += f" · best so far: trial {best.number}, {self.best_label} {_fmt(self._best(best))}"
        outbox = recorder.outbox
        if outbox.last_error:  # the store is away: training goes on, records wait on disk
            pending = outbox.pending()
            footer += f" · tracking store unreachable: {pending} records pending ({outbox.last_error})"
        return Group(table, Text(footer))


def second_metric(metric: str, reported: Iterable[str] = (VAL_ACC,)) -> str:
    """The metric shown beside the sweep's own, at a trial's best epoch: accuracy (a regression's
    val/mae), or val/loss when that is the sweep's metric."""
    quality = quality_key(reported)
    return quality if metric != quality else VAL_LOSS


def _pm(mean_std) -> str:
    return f"{mean_std[0]:.4f} ± {mean_std[1]:.4f}"


def _robust_keys(summary: SweepSummary) -> list[str]:
    """The re-evaluation's figures: the sweep's metric, val/acc (once) and test/acc."""
    return list(dict.fromkeys([summary.metric, VAL_ACC, TEST_ACC]))


def print_summary(console: Console, summary: SweepSummary, ui_hint: str) -> None:
    table = Table(title=f"sweep {summary.name} — summary", show_header=False, title_justify="left")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items()))
    table.add_row("trials", f"{len(summary.trials)} ({counts})")
    compute = summary.compute
    if (best := summary.best) is not None:
        be, metric = summary.best_epoch or {}, summary.metric
        other = second_metric(metric, be)
        table.add_row(
            "best trial",
            f"{best.name} — {metric} {be[metric]:.4f}, "
            f"{other} {be.get(other, float('nan')):.4f} at epoch {int(be['epoch'])}",
        )
        config = summary.best_config if summary.best_config is not None else best.sampled  # as trained
        table.add_row("best config", " ".join(f"{k}={v}" for k, v in config.items()))
        test = summary.test
        tested = [k for k in (quality_key(test, "test"), TEST_LOSS) if k in test]
        table.add_row("test", "  ".join(f"{k} {test[k]:.4f}" for k in dict.fromkeys(tested)))
        if robust := summary.robust:
            w = robust.rows[0]
            figures = ", ".join(f"{k} {_pm(w.figures[k])}" for k in _robust_keys(summary))
            table.add_row(
                "robust winner",
                f"{figures} over {w.runs} fresh seeds; "
                + ("a different configuration than the best single run" if robust.differs else
                   "the same configuration as the best single run"),
            )  # fmt: skip
        if (reg := summary.registration) is not None:
            moved = "moved alias 'best' to it" if reg.alias_moved else "alias 'best' stays (not better)"
            table.add_row("registry", f"{reg.name} version {reg.version}: {moved}")
    if summary.no_model is not None:
        table.add_row("model", f"[red]none[/red]: {summary.no_model}")
    table.add_row(
        "early stopping",
        f"{compute.epochs_run} of {compute.epochs_budget} trial-epochs run "
        f"(saved {compute.saved_fraction:.0%})",
    )
    table.add_row(
        "compute",
        f"{compute.trial_seconds:.0f}s of training in {compute.wall_seconds:.0f}s wall "
        f"(efficiency {compute.efficiency:.2f})",
    )
    console.print(table)
    if robust := summary.robust:
        rerun = Table(title="re-evaluated with fresh seeds (best mean wins)", title_justify="left")
        keys = _robust_keys(summary)
        for col in ("trial", *keys, "config"):
            rerun.add_column(col)
        for r in robust.rows:
            values = " ".join(f"{k}={v}" for k, v in r.sampled.items())
            rerun.add_row(r.of, *(_pm(r.figures[k]) for k in keys), values)
        console.print(rerun)
    diag = Table(
        title=f"overfitting diagnosis (best epoch by smoothed {VAL_LOSS}; final train-val accuracy gap, or"
        " val-train loss gap for regression)",
        title_justify="left",
    )
    for col in ("trial", "status", "best epoch", "gap"):
        diag.add_column(col)
    rows = summary.objective.ranked(summary.trials, key=lambda t: t.best)
    for t in rows[:10]:
        d = summary.diagnosis.get(t.name, {})
        be, gap = d.get("overfit/best_epoch"), d.get("overfit/gap_acc", d.get("overfit/gap_loss"))
        diag.add_row(
            t.name,
            t.status or "",
            "" if be is None else str(int(be)),
            "" if gap is None else f"{gap:+.3f}",
        )
    console.print(diag)
    console.print(f"see it in the MLflow UI: {ui_hint}", soft_wrap=True)
