"""``make bench``: sweeplab's costs measured side by side in one run, printed as ratios.

loop, loop-in-sweep: sweeplab's epoch against a bare PyTorch loop, alone and as trials
of a sweep (bench.loops).

tracking: milliseconds per reported epoch written to the embedded SQLite store.

driver, throughput, recovery: the sweep driver and its tracking path under load
(see bench.service). detector: the nightly regression detector's false
alarms and detection rate on synthetic nights (sweeplab.nightly.bench).

efficiency: a 16-trial sweep; the seconds trials spent training divided by wall
seconds x concurrent slots (Ray's start-up, scheduling and tracking are the rest).

asha: the same 32 configurations of the Fashion-MNIST MLP space (20 epochs max)
under FIFO and under ASHA: trial-epochs run and best validation accuracy.

batched: K trials of one MLP architecture trained as one vmap-ed model against the same K
trained one after another, one thread (bench.batched): seconds per model-epoch.

quality: the 64-trial ASHA sweep of experiment=fashion_mnist_sweep on the full data:
wall time and the best model's test accuracy.

latency: seconds `sweeplab --help`, `sweeplab sweeps list` and `sweeplab sweeps show` take as fresh
processes, the last two on a store of 100 sweeps (bench.latency).

peers (only when asked, --only=peers): the default sweep against Optuna and KerasTuner
(bench.peers.race; its own options, e.g. --budget-s 600 --seeds 0,1, pass through).

Every run is saved to benchmarks/results/<UTC date>-<commit>-<benchmarks>.json (bench.results),
which the documentation's Benchmarks page shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from rich.console import Console
from rich.table import Table

from bench import EPOCH_METRICS
from bench import results as saved
from bench.loops import bench_loop, bench_loop_in_sweep
from bench.sweeps import run_sweep_timed
from sweeplab.metrics import ROBUST_SINGLE_WINNER_TEST_ACC, TEST_ACC, VAL_ACC
from sweeplab.redact import scrub
from sweeplab.sweep.results import SweepSummary

LOOP_BUDGET = 1.15  # sweeplab's epoch may cost at most this many bare-loop epochs
SWEEP_LOOP_BUDGET = 1.1  # and a trial's epoch in a sweep, reports and checkpoints included
TRACKING_BUDGET_MS = 10.0  # per reported epoch
EFFICIENCY_FLOOR = 0.9  # 0.868 while MLflow was written inside Tune's callbacks
ASHA_EPOCHS_CEILING = 0.35  # of FIFO's trial-epochs
ASHA_ACC_TOLERANCE = 0.005  # best val/acc within half a point of FIFO's
QUALITY_MINUTES, QUALITY_ACC = 20.0, 0.89
DRIVER_MEDIAN_MS = 2.0  # per reported result
THROUGHPUT_FLOOR = 500.0  # results/s into a tracking server on PostgreSQL
BENCHES = (
    "loop",
    "loop-in-sweep",
    "tracking",
    "driver",
    "throughput",
    "recovery",
    "detector",
    "efficiency",
    "asha",
    "batched",
    "quality",
    "latency",
    "robust",
    "peers",
)
DEFAULT = tuple(b for b in BENCHES if b not in ("peers", "robust"))  # an hour or more each: ask for them

# a log file or a pipe gets the whole table, not one squeezed into 80 columns
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def machine() -> str:
    """CPU model, cores and memory (what a saved result records), torch and its threads."""
    return f"{saved.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def bench_tracking(epochs: int = 300) -> float:
    """Milliseconds to write one epoch's metrics (one request) to a fresh embedded store."""
    from sweeplab.tracking import Tracker

    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker({"uri": f"sqlite:///{tmp}/bench.db", "artifact_root": f"{tmp}/artifacts"})
        run_id = tracker.start_run("bench", "tracking", {"x": 1})
        metrics = EPOCH_METRICS
        tracker.log_metrics(run_id, metrics, step=0)  # warm-up: the store's first write creates tables
        t0 = time.perf_counter()
        for epoch in range(1, epochs + 1):
            tracker.log_metrics(run_id, metrics, step=epoch)
        return (time.perf_counter() - t0) / epochs * 1000


def bench_efficiency() -> tuple[float, SweepSummary, float]:
    # 16 trials of the size this course's sweeps have: a 512-256 MLP on Fashion-MNIST for 10 epochs
    summary, wall = run_sweep_timed(
        [
            "experiment=fashion_mnist_sweep",
            "search=optimizers",
            "tune=fifo",
            "tune.num_samples=16",
            "trainer.epochs=10",
            "model.hidden=[512,256]",
            "trainer.early_stopping.enabled=false",
            "tune.register_model=false",
        ]
    )
    c = summary.compute
    return c.trial_seconds / (wall * c.slots), summary, wall


def bench_asha(num_samples: int = 32) -> tuple[SweepSummary, SweepSummary]:
    common = [
        "experiment=fashion_mnist_sweep",
        f"tune.num_samples={num_samples}",
        "tune.register_model=false",
    ]
    fifo, _ = run_sweep_timed([*common, "tune=fifo"])
    asha, _ = run_sweep_timed([*common, "tune=asha"])
    return fifo, asha


def bench_quality() -> tuple[SweepSummary, float]:
    return run_sweep_timed(["experiment=fashion_mnist_sweep", "tune.register_model=false"])


def bench_robust(seed: int) -> dict:
    """One sweep with the re-evaluation stage; its parent's robust/* figures and test/acc."""
    summary, _ = run_sweep_timed(
        [
            "experiment=fashion_mnist_sweep",
            "tune.num_samples=16",
            "trainer.epochs=10",
            "tune.reevaluate.top_k=3",
            "tune.reevaluate.seeds=3",
            f"seed={seed}",
            "tune.register_model=false",
        ]
    )
    robust = summary.robust.metrics if summary.robust is not None else {}
    return {**robust, TEST_ACC: summary.test[TEST_ACC]}


def best_val_acc(summary: SweepSummary) -> float:
    return max((h[VAL_ACC] for t in summary.trials for h in t.history), default=float("nan"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=5, help="measured epochs per loop (default 5)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"comma-separated subset of {','.join(BENCHES)} (default: all but peers)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SWEEPLAB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL admin URL for the throughput benchmark's tracking server",
    )
    parser.add_argument("--robust-sweeps", type=int, default=3, help="sweeps for --only=robust (default 3)")
    args, rest = parser.parse_known_args(argv)  # the rest goes to the peers benchmark
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")

    console.print(f"[bold]machine[/] {machine()}")
    table = Table(title="sweeplab benchmarks (measured side by side in this run)", title_justify="left")
    for col in ("benchmark", "measured", "ratio", "budget", "verdict"):
        table.add_column(col)
    ok = True
    rows: list[saved.Row] = []

    def row(
        bench: str, name: str, measured: str, ratio: float | None, budget: str, passed: bool | None, **values
    ) -> None:
        """One row of the table, printed at once and saved at the end; ``values``: its figures."""
        nonlocal ok
        ok &= passed is not False
        rows.append(saved.Row(bench, name, measured, ratio, budget, passed, values))
        shown = "" if ratio is None else f"{ratio:.3f}"
        verdict = {True: "[green]ok[/]", False: "[red]over budget[/]", None: ""}[passed]
        table.add_row(name, measured, shown, budget, verdict)
        console.print(f"{name}: {measured} -> {shown or '-'} ({budget}) {verdict}")

    if "loop" in chosen:
        ours, bare = bench_loop(args.epochs, args.threads)
        row(
            "loop",
            "loop: sweeplab epoch / bare PyTorch epoch",
            f"{ours:.3f}s vs {bare:.3f}s",
            ours / bare,
            f"<= {LOOP_BUDGET}",
            ours / bare <= LOOP_BUDGET,
            sweeplab_s=ours,
            bare_s=bare,
        )
    if "loop-in-sweep" in chosen:
        ours, bare = bench_loop_in_sweep(args.epochs + 3)
        row(
            "loop-in-sweep",
            "loop in a sweep: a trial's epoch (2 side by side, 1 thread each) / a bare loop's (same)",
            f"{ours:.3f}s vs {bare:.3f}s",
            ours / bare,
            f"<= {SWEEP_LOOP_BUDGET}",
            ours / bare <= SWEEP_LOOP_BUDGET,
            sweeplab_s=ours,
            bare_s=bare,
        )
    if "tracking" in chosen:
        ms = bench_tracking()
        row(
            "tracking",
            "tracking: ms per reported epoch / budget",
            f"{ms:.2f} ms (SQLite)",
            ms / TRACKING_BUDGET_MS,
            f"<= 1 ({TRACKING_BUDGET_MS:g} ms)",
            ms <= TRACKING_BUDGET_MS,
            ms_per_epoch=ms,
        )
    if "driver" in chosen:
        from bench import service

        for concurrent in (2, 16):
            cost = service.driver_cost(concurrent)
            row(
                "driver",
                f"driver: ms per reported result, {concurrent} concurrent trials (median; p99)",
                f"{cost['median_ms']:.2f} ms; p99 {cost['p99_ms']:.1f} ms; {cost['results']} results; "
                f"Ray slow-callback warnings: {cost['slow_warnings']}",
                cost["median_ms"] / DRIVER_MEDIAN_MS,
                f"<= 1 ({DRIVER_MEDIAN_MS:g} ms), no warning",
                cost["median_ms"] <= DRIVER_MEDIAN_MS and cost["slow_warnings"] == 0,
                concurrent=concurrent,
                **{k: cost[k] for k in ("median_ms", "p99_ms", "results", "slow_warnings")},
            )
    if "throughput" in chosen:
        from bench import service

        tp = service.throughput(args.postgres)
        row(
            "throughput",
            "throughput: results/s through the outbox into mlflow server on PostgreSQL, 16 reporters",
            f"{tp['results']} results in {tp['seconds']:.1f}s, {tp['lost']} metric points lost, "
            f"append {tp['write_median_ms']:.2f} ms",
            tp["results_per_s"] / THROUGHPUT_FLOOR,
            f">= 1 ({THROUGHPUT_FLOOR:g}/s), 0 lost",
            tp["results_per_s"] >= THROUGHPUT_FLOOR and tp["lost"] == 0,
            **{k: tp[k] for k in ("results", "seconds", "results_per_s", "lost", "write_median_ms")},
        )
    if "recovery" in chosen:
        from bench import service

        rec = service.recovery()
        row(
            "recovery",
            "recovery: worker node killed -> its trial's next epoch on the head (Ray's defaults)",
            f"{rec['seconds']:.1f} s (sweep exit {rec['sweep_exit']})",
            None,
            "measured; the sweep must finish",
            rec["sweep_exit"] == 0,
            seconds=rec["seconds"],
            sweep_exit=rec["sweep_exit"],
        )
    if "detector" in chosen:
        from sweeplab.nightly.bench import measure

        d = measure()
        fa, det = d["false_alarms_per_night"], d["detected_within_2_nights"]
        row(
            "detector",
            f"detector: false alarms per judged night, {d['series']} stationary series",
            f"{fa:.2%} ({d['false_alarms_per_season']:.1%} of seasons)",
            fa / 0.01,
            "<= 1 (1%)",
            fa <= 0.01,
            false_alarms_per_night=fa,
            false_alarms_per_season=d["false_alarms_per_season"],
            series=d["series"],
        )
        row(
            "detector",
            "detector: 3-sigma steps detected within 2 nights",
            f"{det:.1%} of {d['series']} series",
            det / 0.95,
            ">= 1 (95%)",
            det >= 0.95,
            detected_within_2_nights=det,
            series=d["series"],
        )
    if "efficiency" in chosen:
        eff, summary, wall = bench_efficiency()
        row(
            "efficiency",
            "efficiency: trial seconds / (wall x slots), 16 trials",
            f"{summary.compute.trial_seconds:.1f}s / ({wall:.1f}s x {summary.compute.slots})",
            eff,
            f">= {EFFICIENCY_FLOOR}",
            eff >= EFFICIENCY_FLOOR,
            trial_seconds=summary.compute.trial_seconds,
            wall_s=wall,
            slots=summary.compute.slots,
        )
    if "asha" in chosen:
        fifo, asha = bench_asha()
        ratio = asha.compute.epochs_run / fifo.compute.epochs_run
        row(
            "asha",
            "asha: trial-epochs ASHA / FIFO, same 32 configs",
            f"{asha.compute.epochs_run} vs {fifo.compute.epochs_run}",
            ratio,
            f"<= {ASHA_EPOCHS_CEILING}",
            ratio <= ASHA_EPOCHS_CEILING,
            asha_trial_epochs=asha.compute.epochs_run,
            fifo_trial_epochs=fifo.compute.epochs_run,
        )
        a, f = best_val_acc(asha), best_val_acc(fifo)
        row(
            "asha",
            f"asha: best {VAL_ACC} ASHA - FIFO",
            f"{a:.4f} vs {f:.4f}",
            a - f,
            f">= -{ASHA_ACC_TOLERANCE}",
            a - f >= -ASHA_ACC_TOLERANCE,
            asha_best_val_acc=a,
            fifo_best_val_acc=f,
        )
    if "batched" in chosen:
        from bench.batched import bench_batched
        from sweeplab.config import compose, to_container
        from sweeplab.data import load_data

        data = load_data(to_container(compose(["experiment=course_fashion_mnist"]))["data"])
        for r in bench_batched(data):
            row(
                "batched",
                f"batched: {r['k']} trials of {r['hidden']}, batch {r['batch_size']}, as one vmap-ed model "
                "/ one after another (s per model-epoch, 1 thread)",
                f"{r['batched_s']:.3f}s vs {r['sequential_s']:.3f}s",
                r["batched_s"] / r["sequential_s"],
                "measured (< 1: batching pays)",
                None,
                **r,
            )
    if "quality" in chosen:
        summary, wall = bench_quality()
        minutes = wall / 60
        row(
            "quality",
            "quality: 64-trial ASHA sweep minutes / 20",
            f"{minutes:.1f} min",
            minutes / QUALITY_MINUTES,
            f"<= 1 ({QUALITY_MINUTES:g} min)",
            minutes <= QUALITY_MINUTES,
            minutes=minutes,
        )
        acc = summary.test.get(TEST_ACC, float("nan"))
        sampled = summary.best.sampled if summary.best is not None else {}
        row(
            "quality",
            f"quality: best {TEST_ACC} / {QUALITY_ACC} ({' '.join(f'{k}={v}' for k, v in sampled.items())})",
            f"{acc:.4f}",
            acc / QUALITY_ACC,
            f">= 1 ({QUALITY_ACC})",
            acc >= QUALITY_ACC,
            test_acc=acc,
            best_config=sampled,
        )
    if "latency" in chosen:
        from bench import latency

        for m in latency.measure():
            fails = f"; exit {','.join(map(str, m['exit_codes']))}: {m['error']}" if m["error"] else ""
            row(
                "latency",
                f"latency: `{m['command']}`, median of {len(m['runs_s'])} fresh processes / budget",
                f"{m['median_s']:.2f} s (min {m['min_s']:.2f}, max {m['max_s']:.2f}){fails}",
                m["median_s"] / m["budget_s"],
                f"<= 1 ({m['budget_s']:g} s)",
                m["median_s"] <= m["budget_s"] and m["exit_codes"] == [0],
                **m,
            )
    if "robust" in chosen:
        runs = [bench_robust(seed) for seed in range(args.robust_sweeps)]
        differs = sum(r["robust/differs"] for r in runs) / len(runs)
        single = [r[ROBUST_SINGLE_WINNER_TEST_ACC] for r in runs]
        robust = [r[TEST_ACC] for r in runs]
        row(
            "robust",
            f"robust selection: {len(runs)} sweeps (16 trials, top 3 x 3 seeds), Fashion-MNIST",
            f"winner changed in {differs:.0%}; chosen model's {TEST_ACC} "
            f"{statistics.mean(single):.4f} ± {statistics.pstdev(single):.4f} without the stage, "
            f"{statistics.mean(robust):.4f} ± {statistics.pstdev(robust):.4f} with it",
            None,
            "measured",
            None,
            winner_changed=differs,
            single_winner_test_acc=single,
            robust_test_acc=robust,
        )
    if "peers" in chosen:  # saves a result of its own
        from bench.peers import race as peers

        ok &= peers.main(rest) == 0
    console.print(table)
    if rows:
        benches = list(dict.fromkeys(r.bench for r in rows))
        command = ["python", "-m", "bench", *map(scrub, sys.argv[1:] if argv is None else argv)]
        result = saved.new(benches, rows, command)
        path = saved.write(result, label="default" if chosen == list(DEFAULT) else None)
        console.print(f"saved: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
