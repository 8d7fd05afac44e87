"""`sweeplab sweeps list|show|compare|export|prune` on real sweeps (digits, local Ray, SQLite store).

Two sweeps run once for the module (about 15 s each) and every test reads them back; each
expected value is read from the store directly (MlflowClient), not from what the command prints.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from sweeplab import sweep
from sweeplab.cli import main
from sweeplab.config import compose, to_container
from sweeplab.metrics import is_epoch_metric
from sweeplab.sweep.state import SweepState
from sweeplab.sweep.storage import Storage
from sweeplab.sweep.view import print_summary
from sweeplab.tracking import Tracker
from sweeplab.tracking.outbox import Outbox, Record

TINY = ["data=digits", "tune=fifo", "tune.num_samples=2", "trainer.epochs=2", "tune.max_concurrent_trials=2"]


@dataclass
class Store:
    root: Path
    uri: str
    a: sweep.SweepOutcome  # lr_batch, val/loss (min), re-evaluated with fresh seeds, experiment browse-a
    b: sweep.SweepOutcome  # optimizers, val/acc (max), experiment browse-b

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    @property
    def arg(self) -> str:
        return f"tracking.uri={self.uri}"

    def parent(self, outcome):
        return self.client.get_run(outcome.state.parent_run_id)

    def children(self, outcome):
        parent = self.parent(outcome)
        return self.client.search_runs(
            [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )

    def best_of_children(self, outcome, metric: str, mode: str) -> float:
        values = [
            m.value
            for kid in self.children(outcome)
            for m in self.client.get_metric_history(kid.info.run_id, metric)
            if math.isfinite(m.value)
        ]
        return min(values) if mode == "min" else max(values)


def run_sweep(*overrides: str):
    overrides = [*TINY, *overrides]
    return sweep.start(to_container(compose(overrides)), overrides)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # a long folder name: the list's storage column must not be cut to fit 80 columns
    root = tmp_path_factory.mktemp("browse-sweeps-with-a-folder-name-long-enough-to-overflow-80-columns")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        a = run_sweep(
            "search=lr_batch",
            "tracking.experiment=browse-a",
            "tune.name=sweep-a",
            "tune.reevaluate.top_k=1",
            "tune.reevaluate.seeds=2",
        )
        b = run_sweep(
            "search=optimizers",
            "tracking.experiment=browse-b",
            "tune.name=sweep-b",
            "tune.metric=val/acc",
            "tune.mode=max",
        )
        yield Store(root, f"sqlite:///{root / 'mlflow.db'}", a, b)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["sweeps", *args])
    out, err = capsys.readouterr()
    return code, out, err


def line_with(text: str, needle: str) -> str:
    lines = [line for line in text.splitlines() if needle in line]
    assert len(lines) == 1, f"{needle!r} in {len(lines)} lines of:\n{text}"
    return lines[0]


def cells(text: str) -> dict[str, list[str]]:
    """A Rich table's body rows by their first cell."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]
    return {r[0]: r[1:] for r in rows}


def checkpoint_files(sweep_dir: Path) -> dict[Path, int]:
    found = [*sweep_dir.glob("trial_*/checkpoint_*/**/*"), *sweep_dir.glob("*/trial_*/checkpoint_*/**/*")]
    return {p: p.stat().st_size for p in found if p.is_file()}


# ------------------------------------------------------------------ list
def test_list_shows_each_sweep_with_its_own_metric(store, capsys):
    code, out, _ = run_cli(capsys, "list", store.arg)
    assert code == 0
    for outcome, metric, mode in ((store.a, "val/loss", "min"), (store.b, "val/acc", "max")):
        parent = store.parent(outcome)
        row = line_with(out, outcome.state.name)
        assert f"{metric} {parent.data.metrics[f'best/{metric}']:.4f}" in row
        if outcome is store.b:  # no re-evaluation: the best single run of all
            assert f"{metric} {store.best_of_children(outcome, metric, mode):.4f}" in row
        statuses = Counter(k.data.tags["sweeplab.status"] for k in store.children(outcome))
        assert f"{sum(statuses.values())} (" in row
        assert all(f"{n} {status}" in row for status, n in statuses.items())
        assert parent.data.tags["sweeplab.status"] in row
        assert datetime.fromtimestamp(parent.info.start_time / 1000).strftime("%Y-%m-%d %H:%M") in row
        assert outcome.state.path in row  # whole, although the line is far wider than 80 columns
        assert parent.data.tags["sweeplab.sweep_path"] == outcome.state.path
    assert out.index("sweep-b") < out.index("sweep-a")  # newest first

    code, out, _ = run_cli(capsys, "list", "--experiment", "browse-a", store.arg)
    assert code == 0 and "sweep-a" in out and "sweep-b" not in out


# ------------------------------------------------------------------ show
def test_show_prints_the_summary_the_sweep_ended_with(store, capsys):
    for outcome in (store.a, store.b):
        at_the_end = io.StringIO()
        print_summary(Console(file=at_the_end, width=4096), outcome.summary, "")
        code, out, _ = run_cli(capsys, "show", outcome.state.name, store.arg)
        assert code == 0
        then, now = cells(at_the_end.getvalue()), cells(out)
        for row in ("trials", "best trial", "best config", "test", "early stopping", "compute"):
            assert now[row] == then[row], row
        if outcome is store.a:  # the re-evaluation's winner: mean ± std over its fresh seeds
            winner = outcome.summary.robust.winner
            assert now["robust winner"] == then["robust winner"]
            assert now[winner] == then[winner]
        for kid in store.children(outcome):  # the diagnosis table, one row per trial
            assert now[kid.info.run_name][0] == kid.data.tags["sweeplab.status"]
        # the registered version and where the alias is now, from the registry
        versions = store.client.search_model_versions(f"run_id = '{outcome.state.parent_run_id}'")
        assert len(versions) == 1
        version = store.client.get_model_version(versions[0].name, versions[0].version)
        holds = "holds the alias 'best'" if "best" in version.aliases else "is on another version"
        assert holds in line_with(out, f"registered model {version.name} version {version.version}")
    # and the values themselves, from the store (not only "the same as before")
    parent = store.parent(store.b)
    best = line_with(out, "best trial")
    assert parent.data.tags["best.trial"] in best
    assert f"val/acc {store.best_of_children(store.b, 'val/acc', 'max'):.4f}" in best
    assert f"test/acc {parent.data.metrics['test/acc']:.4f}" in line_with(out, "test/loss")


def test_latest_and_a_unique_prefix_name_a_sweep(store, capsys):
    tracker = Tracker({"uri": store.uri})
    cfg = to_container(compose(["data=digits"]))
    tracker.start_sweep_run(
        "browse-d", "nightly-7f3a", cfg, [], str(store.root / "sweeps" / "nightly-7f3a"), {}
    )
    for ref in ("latest", "night", "nightly-7f3a"):
        code, out, err = run_cli(capsys, "show", ref, store.arg)
        assert code == 0, err
        assert "nightly-7f3a" in out.splitlines()[0], out
    code, _, err = run_cli(capsys, "show", "sweep", store.arg)  # sweep-a, sweep-b: which one?
    assert code == 2 and "'sweep' begins the names of several sweeps" in err and "sweep-a, sweep-b" in err


def test_show_a_sweep_that_was_not_summarized(store, capsys):
    """A sweep whose driver stopped before its end: what the store knows so far, and how to go on."""
    tracker = Tracker({"uri": store.uri})
    cfg = to_container(compose(["data=digits"]))
    parent = tracker.start_sweep_run(
        "browse-c", "sweep-c", cfg, [], str(store.root / "sweeps" / "sweep-c"), {}
    )
    curves = {"trial-000": [0.9, 0.5, 0.6], "trial-001": [1.2, 0.8]}
    for (name, losses), status in zip(curves.items(), ("completed", "interrupted"), strict=True):
        kid = tracker.start_run(
            "browse-c", name, {"sampled": {"optimizer": {"lr": 0.01}}}, parent_run_id=parent
        )
        tracker.log_batch(kid, [("val/loss", v, 0, epoch) for epoch, v in enumerate(losses, 1)])
        tracker.end_run(kid, status)
    tracker.mark_interrupted(parent, "sweep-c")

    code, out, _ = run_cli(capsys, "show", "sweep-c", store.arg)
    assert code == 0
    table = cells(out)
    assert table["status"] == ["interrupted"]
    assert table["trials"] == ["2 (1 completed, 1 interrupted)"]
    assert table["best so far"][0].startswith("trial-000 — val/loss 0.5000")
    assert "sweeplab sweep resume sweep-c" in out
    code, out, _ = run_cli(capsys, "list", "--experiment", "browse-c", store.arg)
    assert "2 (1 completed, 1 interrupted)" in line_with(out, "sweep-c")


# ------------------------------------------------------------------ compare
def test_compare_puts_best_configs_and_figures_side_by_side(store, capsys):
    code, out, _ = run_cli(capsys, "compare", "sweep-a", "sweep-b", store.arg)
    assert code == 0
    table = cells(out)
    pa, pb = store.parent(store.a), store.parent(store.b)
    assert table["metric"] == ["val/loss (min)", "val/acc (max)"]
    for key in ("test/acc", "best/val/loss", "best/val/acc"):
        assert table[key] == [f"{pa.data.metrics[key]:.4f}", f"{pb.data.metrics[key]:.4f}"]
    # every key of either best config, a dash where a sweep did not search it
    assert table["optimizer.lr"] == [pa.data.params["best.optimizer.lr"], pb.data.params["best.optimizer.lr"]]
    assert table["trainer.batch_size"] == [pa.data.params["best.trainer.batch_size"], "—"]
    assert table["optimizer"] == ["—", pb.data.params["best.optimizer"]]
    assert table["best trial"] == [pa.data.tags["best.trial"], pb.data.tags["best.trial"]]
    mean, std = pa.data.metrics["robust/val/loss/mean"], pa.data.metrics["robust/val/loss/std"]
    assert table["robust value"] == [f"{mean:.4f} ± {std:.4f}", "—"]  # only A was re-evaluated
    assert "different metrics" in out


# ------------------------------------------------------------------ export
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_has_one_row_per_trial_and_epoch_with_every_value(store, capsys, tmp_path, fmt):
    path = tmp_path / f"b.{fmt}"
    code, _, _ = run_cli(capsys, "export", "sweep-b", "--format", fmt, "--output", str(path), store.arg)
    assert code == 0
    if fmt == "csv":
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        rows = pq.read_table(path).to_pylist()
    by_key = {(r["trial"], int(r["epoch"])): r for r in rows}
    assert len(by_key) == len(rows)

    expected = 0
    for kid in store.children(store.b):
        name = kid.info.run_name
        keys = [k for k in kid.data.metrics if is_epoch_metric(k)]
        assert {"val/loss", "val/acc", "train/loss", "lr"} <= set(keys)
        epochs = {m.step for m in store.client.get_metric_history(kid.info.run_id, "val/loss")}
        expected += len(epochs)
        for key in keys:
            for m in store.client.get_metric_history(kid.info.run_id, key):
                assert float(by_key[(name, m.step)][key]) == m.value, (name, m.step, key)
        for epoch in epochs:
            row = by_key[(name, epoch)]
            assert row["status"] == kid.data.tags["sweeplab.status"]
            assert str(row["seed"]) == kid.data.params["seed"]
            for param, text in kid.data.params.items():
                if param.startswith("sampled."):
                    value = row[param.removeprefix("sampled.")]
                    assert value == text if isinstance(value, str) else float(text) == value
    assert len(rows) == expected


# ------------------------------------------------------------------ unknown names, no Ray
def test_an_unknown_name_is_one_line_and_no_command_imports_ray(store, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sweeplab.cli", "sweeps", "show", "sweep-x", store.arg],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no sweep 'sweep-x'" in lines[0], done.stderr
    assert "'sweep-a'" in lines[0]  # the names close to it

    commands = [
        ["sweeps", "list", store.arg],
        ["sweeps", "show", "sweep-a", store.arg],
        ["sweeps", "compare", "sweep-a", "sweep-b", store.arg],
        ["sweeps", "export", "sweep-a", "--output", str(tmp_path / "a.csv"), store.arg],
        ["sweeps", "show", "nosuch", store.arg],
        ["sweeps", "prune", "nosuch", store.arg],
        ["sweeps", "export", "nosuch", store.arg],
    ]
    probe = textwrap.dedent(f"""
        import sys
        from sweeplab.cli import main
        codes = [main(args) for args in {commands!r}]
        ray = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
        print("RESULT", codes, ray, "sweeplab.sweep.browse" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert line_with(done.stdout, "RESULT") == "RESULT [0, 0, 0, 0, 2, 2, 2] [] True", done.stderr


# ------------------------------------------------------------------ prune
def test_prune_frees_the_checkpoints_of_a_finished_sweep(store, capsys):
    folder = Path(store.a.state.path)
    before = checkpoint_files(folder)
    # the two searched trials and the re-evaluation's two (one level down, in reevaluate/)
    assert len({p.relative_to(folder).parts[0] for p in before}) == 3
    folders = len([*folder.glob("trial_*/checkpoint_*"), *folder.glob("*/trial_*/checkpoint_*")])
    kept = [
        folder / "sweeplab.json",
        folder / "outbox.db",
        folder / "driver.log",
        *folder.glob("trial_*/result.json"),
        *folder.glob("reevaluate/trial_*/result.json"),
    ]
    assert all(p.is_file() for p in kept) and len(kept) == 7

    code, out, _ = run_cli(capsys, "prune", "sweep-a", store.arg)
    assert code == 0
    assert f"({sum(before.values())} bytes)" in out
    assert f"deleted {folders} checkpoint folders of 4 trials" in out
    assert not list(folder.glob("trial_*/checkpoint_*")) and not list(folder.glob("*/trial_*/checkpoint_*"))
    assert all(p.is_file() for p in kept)
    with pytest.raises(sweep.SweepFinished):  # what resume reads is still there
        sweep.resume(str(folder))

    code, out, _ = run_cli(capsys, "prune", "sweep-a", store.arg)
    assert code == 0 and "(0 bytes)" in out


def test_prune_refuses_an_unfinished_sweep_and_undelivered_records(store, capsys):
    folder = Path(store.b.state.path)
    before = checkpoint_files(folder)
    assert before
    storage = Storage(str(folder.parent))
    state = SweepState.load(storage, "sweep-b")
    state.summarized = False
    state.save()
    try:
        code, _, err = run_cli(capsys, "prune", "sweep-b", store.arg)
    finally:
        state.summarized = True
        state.save()
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "has not finished" in err
    assert checkpoint_files(folder) == before

    journal = Outbox(folder / "outbox.db", deliver=None)
    journal.write([Record("log", "trial/x", {"metrics": [], "params": {}, "tags": {"a": "b"}})])
    journal.close()
    try:
        code, _, err = run_cli(capsys, "prune", "sweep-b", store.arg)
    finally:
        with sqlite3.connect(folder / "outbox.db") as db:
            db.execute("DELETE FROM records")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "1 tracking records" in err
    assert checkpoint_files(folder) == before


# ------------------------------------------------------------------ for scripts: json and csv
def test_list_and_show_as_json_and_csv_carry_the_stores_values(store, capsys):
    import json

    code, out, _ = run_cli(capsys, "list", "--format", "json", store.arg)
    assert code == 0
    listed = {s["name"]: s for s in json.loads(out)}
    for outcome, metric in ((store.a, "val/loss"), (store.b, "val/acc")):
        parent = store.parent(outcome)
        row = listed[outcome.state.name]
        assert row["run_id"] == parent.info.run_id and row["metric"] == metric
        assert row["best"] == parent.data.metrics[f"best/{metric}"]
        assert row["trials"]["total"] == len(store.children(outcome)) and row["storage"] == outcome.state.path
    code, out, _ = run_cli(capsys, "list", "--format", "csv", store.arg)
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(out))}
    assert code == 0 and set(rows) == set(listed)
    assert float(rows["sweep-b"]["best"]) == listed["sweep-b"]["best"]

    code, out, _ = run_cli(capsys, "show", "sweep-b", "--format", "json", store.arg)
    shown = json.loads(out)
    kids = {k.info.run_name: k for k in store.children(store.b)}
    assert code == 0 and shown["name"] == "sweep-b" and shown["summary"]["best"]["name"] in kids
    assert {t["name"] for t in shown["trials_ranked"]} == set(kids)
    best = shown["trials_ranked"][0]
    assert best["best"] == store.best_of_children(store.b, "val/acc", "max")  # best first, by its mode
    assert shown["registered"][0]["version"] and "best" in shown["registered"][0]["aliases"]
    code, out, _ = run_cli(capsys, "show", "sweep-b", "--format", "csv", store.arg)
    trials = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [t["name"] for t in trials] == [t["name"] for t in shown["trials_ranked"]]
    assert all(kids[t["name"]].data.tags["sweeplab.status"] == t["status"] for t in trials)


def test_a_long_name_is_never_cut_at_80_columns(store, tmp_path):
    name = "fashion-mnist-course-mlp-sweep-with-a-long-name-0042"
    tracker = Tracker({"uri": store.uri})
    cfg = to_container(compose(["data=digits"]))
    tracker.start_sweep_run("browse-long", name, cfg, [], str(tmp_path / name), {})
    done = subprocess.run(
        [sys.executable, "-m", "sweeplab.cli", "sweeps", "list", store.arg],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    title, *table = done.stdout.splitlines()  # the title is the store's URI, whole to be copied
    assert max(len(line) for line in table) <= 80  # the table fits the terminal
    assert {name, "sweep-a", "sweep-b"} <= {line.split()[0] for line in table if line.strip()}
    assert "not shown, to fit 80 columns:" in done.stdout and "storage" in table[-2]  # says what gave way
