"""End to end on real runs: dated `smoke` nights (digits MLP over 3 seeds, a 2-trial sweep on a real
local Ray), a real MLflow SQLite store and the real history store.

The module runs three unchanged nights once (a fixture), then the tests add nights to the same
store in file order: a night with a learning rate ten times too low (through the CLI, as a
scheduler starts it), the same night again, an interrupted night, an accepted change.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from sweeplab.cli import main
from sweeplab.nightly.history import HistoryStore
from sweeplab.nightly.runner import NightRunner, judge_entry
from sweeplab.nightly.suite import load

pytestmark = pytest.mark.slow
# fresh_database comes from tests/servers.py (needs $SWEEPLAB_TEST_POSTGRES_URL; fails in CI without it)

D = {i: date(2026, 2, i) for i in range(1, 10)}
TOO_LOW_LR = "optimizer.lr=0.0003"  # smoke's digits_mlp trains at 0.003


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    home = tmp_path_factory.mktemp("nightly-e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)  # ./nightly.db, ./mlflow.db, ./reports, ./sweeps
        for var in ("MLFLOW_TRACKING_URI", "SWEEPLAB_NIGHTLY_DB"):
            mp.delenv(var, raising=False)
        suite, settings = load("smoke")
        runner = NightRunner(suite, settings, console=Console(quiet=True))
        outcomes = {i: runner.run(D[i]) for i in range(1, 4)}
        yield SimpleNamespace(
            home=home, suite=suite, settings=settings, outcomes=outcomes, store=runner.store
        )
        runner.store.engine.dispose()


def mlflow_runs(home: Path, night: date | None = None) -> list:
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("nightly/smoke")
    query = f"tags.`nightly.night` = '{night}'" if night else ""
    return client.search_runs([exp.experiment_id], filter_string=query, max_results=1000)


def test_unchanged_nights_give_no_regression(smoke):
    for i, outcome in smoke.outcomes.items():
        assert outcome.ran and outcome.exit_code == 0 and not outcome.problems, i
        assert not outcome.regressed
    judged = {(j.entry, j.watch.metric): j.judgement.verdict for j in smoke.outcomes[3].judged}
    assert judged == {  # night 3 has 2 nights of history (smoke's min_history): real verdicts
        ("digits_mlp", "test/acc"): "ok",
        ("digits_mlp", "epoch_time_s"): "ok",
        ("digits_sweep", "test/acc"): "ok",
        ("digits_sweep", "wall_seconds"): "ok",
    }
    assert {j.judgement.verdict for j in smoke.outcomes[2].judged} == {"insufficient_history"}


def test_one_row_per_key_and_one_tagged_mlflow_run_per_entry_and_seed(smoke):
    rows = smoke.store.rows("smoke")
    keys = Counter((r.night, r.entry, r.seed, r.metric) for r in rows)
    assert max(keys.values()) == 1
    assert {(n, e, s) for n, e, s, _ in keys} == {
        (D[i], "digits_mlp", s) for i in range(1, 4) for s in (0, 1, 2)
    } | {(D[i], "digits_sweep", 0) for i in range(1, 4)}
    for r in rows:
        assert r.status == "completed" and r.machine and r.mlflow_run_id and r.wall_seconds > 0
    runs = mlflow_runs(smoke.home, D[3])
    trained = [r for r in runs if r.data.tags.get("nightly.entry")]
    assert Counter((r.data.tags["nightly.entry"], r.data.tags["nightly.seed"]) for r in trained) == {
        ("digits_mlp", "0"): 1,
        ("digits_mlp", "1"): 1,
        ("digits_mlp", "2"): 1,
        ("digits_sweep", "0"): 1,
    }
    for r in trained:
        assert r.data.tags["nightly.suite"] == "smoke" and r.data.tags["nightly.night"] == str(D[3])
        assert r.data.tags["nightly.git_commit"] == (r.data.tags.get("mlflow.source.git.commit") or "unknown")
    by_run = {r.info.run_id: r for r in trained}
    for row in smoke.store.rows("smoke", since=D[3], until=D[3]):
        if row.metric == "test/acc":
            assert by_run[row.mlflow_run_id].data.metrics["test/acc"] == pytest.approx(row.value)
    (report,) = [r for r in runs if r.data.tags.get("nightly.kind") == "report"]
    client = MlflowClient(f"sqlite:///{smoke.home / 'mlflow.db'}")
    files = {a.path for a in client.list_artifacts(report.info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/plots"} <= files


def test_a_learning_rate_ten_times_too_low_is_flagged_on_accuracy(smoke):
    hook = smoke.home / "hook.py"
    hook.write_text(
        "import os, sys\n"
        "open('hook.txt', 'w').write(sys.argv[1] + '\\n' + os.environ['SWEEPLAB_NIGHTLY_STATUS'])\n"
    )
    cmd = [sys.executable, "-m", "sweeplab.cli", "nightly", "run", "--suite", "smoke", "--date", str(D[4])]
    cmd += ["--entry", "digits_mlp", TOO_LOW_LR, f"nightly.on_regression='{sys.executable} {hook}'"]
    done = subprocess.run(cmd, cwd=smoke.home, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr  # a scheduler or CI sees the regression

    verdicts = {v["metric"]: v for v in smoke.store.verdicts("smoke", D[4])}
    assert verdicts["test/acc"]["verdict"] == "regressed"
    assert verdicts["test/acc"]["began"] == str(D[4])
    assert verdicts["epoch_time_s"]["verdict"] != "regressed"  # the right metric, not every metric
    assert "the rerun confirmed it" in verdicts["test/acc"]["note"]
    tonight = smoke.store.rows("smoke", "digits_mlp", "test/acc", since=D[4], until=D[4])
    assert [r.attempts for r in tonight] == [2, 2, 2]  # run again once before the verdict was final
    assert all(
        r.value < 0.8 and r.first_value == pytest.approx(r.value) for r in tonight
    )  # deterministic seeds

    path, status = (smoke.home / "hook.txt").read_text().splitlines()
    assert status == "regressed" and Path(path) == smoke.home / f"reports/nightly/smoke/{D[4]}/report.md"


def test_the_report_table_matches_the_history_rows(smoke):
    report = smoke.home / f"reports/nightly/smoke/{D[4]}/report.md"
    table = [line.split(" | ") for line in report.read_text().splitlines() if line.startswith("| digits")]
    assert len(table) == 2  # digits_mlp ran tonight: its two watched metrics
    for cells in table:
        entry, metric = cells[0].removeprefix("| "), cells[1]
        rows = smoke.store.rows("smoke", entry, metric, since=D[4], until=D[4])
        mean, n = re.match(r"([0-9.e+-]+) ± [0-9.e+-]+ \(n=(\d+)\)", cells[2]).groups()
        assert float(mean) == pytest.approx(sum(r.value for r in rows) / len(rows), rel=1e-3)
        assert int(n) == len(rows)
        base_mean, since, until = re.match(r"([0-9.e+-]+) ± \S+ \((\S+)\.\.(\S+)\)", cells[3]).groups()
        base = smoke.store.rows(
            "smoke", entry, metric, since=date.fromisoformat(since), until=date.fromisoformat(until)
        )
        assert (since, until) == (str(D[1]), str(D[3]))
        assert float(base_mean) == pytest.approx(sum(r.value for r in base) / len(base), rel=1e-3)
        stored = next(v for v in smoke.store.verdicts("smoke", D[4]) if v["metric"] == metric)
        assert cells[6] == stored["verdict"]
    page = report.with_suffix(".html").read_text()
    assert page.count('<td class="regressed">regressed</td>') == 1
    assert page.count("data:image/png;base64,") == 4  # a plot per watched metric, embedded

    saved = report.read_text()
    shutil.rmtree(report.parent)
    assert main(["nightly", "report", "--suite", "smoke", "--date", str(D[4])]) == 0
    assert report.read_text() == saved  # rebuilt from the store, the same report


def test_history_shows_recent_nights_and_their_verdicts(smoke, capsys):
    assert main(["nightly", "history", "--suite", "smoke", "--last", "2", "--entry", "digits_mlp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if re.search(r"20\d\d-\d\d-\d\d", line)]
    assert {re.search(r"20\d\d-\d\d-\d\d", line).group() for line in rows} == {str(D[3]), str(D[4])}
    acc5 = next(line for line in rows if str(D[4]) in line and "test/acc" in line)
    assert "regressed" in acc5 and "(n=3)" in acc5
    assert not any("digits_sweep" in line for line in rows)

    argv = [
        "nightly",
        "history",
        "--suite",
        "smoke",
        "--last",
        "2",
        "--entry",
        "digits_mlp",
        "--metric",
        "test/acc",
    ]
    assert main([*argv, "--format", "json"]) == 0
    nights = json.loads(capsys.readouterr().out)
    stored = [r.value for r in smoke.store.rows("smoke", "digits_mlp", "test/acc", since=D[4], until=D[4])]
    [night5] = [n for n in nights if n["night"] == str(D[4])]
    assert night5["verdict"] == "regressed" and night5["n"] == len(stored) == 3
    assert night5["mean"] == pytest.approx(sum(stored) / len(stored))
    assert main([*argv, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["night"], float(r["mean"])) for r in rows] == [(n["night"], n["mean"]) for n in nights]


def test_the_same_night_again_runs_nothing(smoke):
    before = {r.info.run_id for r in mlflow_runs(smoke.home)}
    rows_before = smoke.store.rows("smoke")
    outcome = NightRunner(smoke.suite, smoke.settings, console=Console(quiet=True)).run(D[3])
    assert outcome.ran and "nothing missing" in outcome.message and outcome.exit_code == 0
    assert {r.info.run_id for r in mlflow_runs(smoke.home)} == before
    assert smoke.store.rows("smoke") == rows_before


def test_an_interrupted_night_completes_on_rerun(smoke):
    class Crash(KeyboardInterrupt):
        pass

    def crash_after_first_seed(entry: str, seed: int) -> None:
        raise Crash

    runner = NightRunner(
        smoke.suite, smoke.settings, console=Console(quiet=True), after_seed=crash_after_first_seed
    )
    with pytest.raises(Crash):
        runner.run(D[5], ["digits_mlp"])
    assert smoke.store.claim_of("smoke", D[5]).status == "failed"
    assert smoke.store.done_seeds("smoke", D[5], "digits_mlp") == {0}

    outcome = NightRunner(smoke.suite, smoke.settings, console=Console(quiet=True)).run(D[5], ["digits_mlp"])
    assert (
        outcome.ran and smoke.store.claim_of("smoke", D[5]).status == "partial"
    )  # digits_sweep still to run
    assert smoke.store.done_seeds("smoke", D[5], "digits_mlp") == {0, 1, 2}
    seeds = Counter(
        r.data.tags["nightly.seed"] for r in mlflow_runs(smoke.home, D[5]) if r.data.tags.get("nightly.entry")
    )
    assert seeds == {"0": 1, "1": 1, "2": 1}  # seed 0 was not run twice


def test_accepting_the_change_makes_it_the_baseline(smoke, capsys):
    entry = smoke.suite.entry("digits_mlp")
    assert (
        main(
            [
                "nightly",
                "accept",
                "--suite",
                "smoke",
                "--entry",
                "digits_mlp",
                "--metric",
                "test/acc",
                "--date",
                str(D[6]),
            ]
        )
        == 2
    )
    assert "has no result on 2026-02-06" in capsys.readouterr().err
    args = [
        "nightly",
        "accept",
        "--suite",
        "smoke",
        "--entry",
        "digits_mlp",
        "--metric",
        "test/acc",
        "--date",
        str(D[4]),
    ]
    assert main([*args, "--note", "lower learning rate on purpose"]) == 0
    assert smoke.store.accepted("smoke") == {("digits_mlp", "test/acc"): [D[4]]}
    (acc,) = [j for j in judge_entry(smoke.store, smoke.suite, entry, D[4]) if j.watch.metric == "test/acc"]
    assert acc.judgement.verdict == "insufficient_history"  # the new level has no history yet
    (acc6,) = [j for j in judge_entry(smoke.store, smoke.suite, entry, D[5]) if j.watch.metric == "test/acc"]
    assert (
        acc6.judgement.verdict == "insufficient_history"
        and "since the accepted change" in acc6.judgement.reason
    )


@pytest.mark.service
def test_two_schedulers_racing_for_a_night_on_postgresql_run_it_once(fresh_database, tmp_path):
    """Two `sweeplab nightly run` processes start the same night against one PostgreSQL history store."""
    night = "2026-03-01"
    cmd = [sys.executable, "-m", "sweeplab.cli", "nightly", "run", "--suite", "smoke", "--date", night]
    cmd += ["--entry", "digits_mlp", f"nightly.history_url={fresh_database}", "trainer.epochs=2"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SWEEPLAB_NIGHTLY_DB")}
    procs = [
        subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs  # the one that did not run is not an error
    assert any("is being run by" in o or "nothing missing" in o for o in outputs), outputs  # it says so

    store = HistoryStore(fresh_database)
    rows = store.rows("smoke")
    assert Counter((r.seed, r.metric) for r in rows if r.metric == "test/acc") == {
        (0, "test/acc"): 1,
        (1, "test/acc"): 1,
        (2, "test/acc"): 1,
    }
    assert store.claim_of("smoke", date.fromisoformat(night)).status == "partial"  # one entry of two ran
    store.engine.dispose()
    runs = mlflow_runs(tmp_path, date.fromisoformat(night))
    assert Counter(r.data.tags.get("nightly.seed", "report") for r in runs) == {
        "0": 1,
        "1": 1,
        "2": 1,
        "report": 1,
    }
