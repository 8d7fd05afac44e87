"""The live table and the per-trial lines say the same thing: each trial's best epoch so far."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from sweeplab.status import TrialStatus
from sweeplab.sweep.recorder import TrialRecord
from sweeplab.sweep.view import LiveView


def curve(*points: tuple[float, float]) -> list[dict[str, float]]:
    return [{"epoch": i, "val/loss": loss, "val/acc": acc} for i, (loss, acc) in enumerate(points, start=1)]


def recorder(*recs: TrialRecord):
    outbox = SimpleNamespace(last_error=None, pending=lambda: 0)
    return SimpleNamespace(
        name="s", trials={r.trial_id: r for r in recs}, session=SimpleNamespace(expected=2), outbox=outbox
    )


def column(table, header: str) -> list[str]:
    col = next(c for c in table.columns if c.header == header)
    return [str(cell) for cell in col._cells]


def test_table_and_lines_show_the_best_epoch_so_far_not_the_last():
    # trial 0 peaked at epoch 2 and got worse; trial 1 is still running, best at its last epoch
    done = TrialRecord("a_00000", 0, {"optimizer.lr": 0.01}, status=TrialStatus.stopped_by_scheduler)
    done.history, done.last_logged = curve((0.5, 0.80), (0.3, 0.91), (0.7, 0.85)), 3
    running = TrialRecord("a_00001", 1, {"optimizer.lr": 0.001}, status=TrialStatus.running)
    running.history, running.last_logged = curve((0.6, 0.8), (0.4, 0.88)), 2
    console = Console(record=True, width=200)
    view = LiveView(console, 2, "val/loss", "min")
    view(recorder(done, running))
    table = view.render(recorder(done, running)).renderables[0]
    assert column(table, "best val/loss") == ["0.3", "0.4"]
    assert column(table, "val/acc at best") == ["0.91", "0.88"]
    assert column(table, "epochs") == ["3", "2"]
    line = next(ln for ln in console.export_text().splitlines() if ln.startswith("trial   0"))
    assert "best val/loss 0.3 " in line  # the finished trial's line: the same value as its row


def test_with_val_acc_as_the_metric_the_best_is_the_highest():
    rec = TrialRecord("a_00000", 0, {}, status=TrialStatus.completed)
    rec.history, rec.last_logged = curve((0.5, 0.80), (0.3, 0.91), (0.2, 0.90)), 3
    view = LiveView(Console(record=True, width=200), 1, "val/acc", "max")
    table = view.render(recorder(rec)).renderables[0]
    assert column(table, "best val/acc") == ["0.91"] and column(table, "val/loss at best") == ["0.3"]


def test_a_summary_ranked_by_val_acc_shows_the_best_epochs_val_loss_beside_it():
    from sweeplab.objective import Objective
    from sweeplab.sweep.results import Compute, SweepSummary, TrialSummary
    from sweeplab.sweep.view import print_summary

    best = TrialSummary("trial-000", "r0", "t0", "completed", {"optimizer.lr": 0.01}, 0.91)
    summary = SweepSummary(
        name="s", parent_run_id="p", objective=Objective("val/acc", "max"), trials=(best,),
        counts={"completed": 1}, best=best, best_epoch={"epoch": 2, "val/acc": 0.91, "val/loss": 0.3},
        test={"test/acc": 0.9, "test/loss": 0.31},
        compute=Compute(epochs_run=3, epochs_budget=3, saved_fraction=0.0, trial_seconds=3.0,
                        wall_seconds=2.0, efficiency=0.75),
    )  # fmt: skip
    console = Console(record=True, width=200)
    print_summary(console, summary, "sweeplab ui")
    best = next(ln for ln in console.export_text().splitlines() if "best trial" in ln)
    assert "val/acc 0.9100, val/loss 0.3000 at epoch 2" in best
