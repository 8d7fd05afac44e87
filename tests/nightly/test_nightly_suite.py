"""The shipped suites compose and validate; bad suites and settings fail with one line; skipped entries."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest
from rich.console import Console

from sweeplab.cli import main
from sweeplab.config import ConfigError
from sweeplab.nightly.runner import NightRunner
from sweeplab.nightly.suite import compose_entry, load, split_overrides


def test_the_nightly_suite_has_what_a_team_runs_every_night():
    suite, settings = load("nightly")
    entries = {e.name: e for e in suite.entries}
    course = entries["course_fashion_mnist"]
    assert course.seeds == (0, 1, 2) and course.kind == "train"
    assert {w.metric: (w.higher_is_better, w.min_change, w.relative) for w in course.watches} == {
        "test/acc": (True, 0.005, False),  # half a point of accuracy
        "epoch_time_s": (False, 0.10, True),  # 10% slower
    }
    sweep = compose_entry("fashion_mnist_asha", [*entries["fashion_mnist_asha"].overrides, "seed=0"])
    assert entries["fashion_mnist_asha"].kind == "sweep"
    assert (sweep["tune"]["scheduler"], sweep["tune"]["num_samples"], sweep["trainer"]["epochs"]) == (
        "asha",
        16,
        10,
    )
    assert sweep["tune"]["time_budget_s"] == 1800 and sweep["data"]["name"] == "fashion_mnist"
    cnn = compose_entry("digits_cnn", [*entries["digits_cnn"].overrides, "seed=0"])
    assert (cnn["model"]["name"], cnn["data"]["name"]) == ("cnn", "digits")
    imdb = [e for e in suite.entries if e.name.startswith("course_imdb")]
    assert len(imdb) == 3 and all(e.skip_if_missing for e in imdb)
    assert settings["reruns"] == 1 and suite.settings.p_max == 0.001


@pytest.mark.parametrize("name", ["nightly", "smoke"])
def test_every_entry_composes(name):
    suite, _ = load(name)
    for entry in suite.entries:  # the seed is one plain value: the last seed stands for all
        cfg = compose_entry(entry.name, [*entry.overrides, f"seed={entry.seeds[-1]}"])
        assert cfg["seed"] == entry.seeds[-1]


def test_overrides_split_between_the_settings_and_every_entry():
    mine, entries = split_overrides(
        ["nightly.reruns=0", "benchmark.min_history=2", "cluster=existing", "optimizer.lr=0.1"]
    )
    assert mine == ["nightly.reruns=0", "benchmark.min_history=2"]
    assert entries == ["cluster=existing", "optimizer.lr=0.1"]
    suite, settings = load("smoke", mine)
    assert settings["reruns"] == 0 and suite.settings.min_history == 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["benchmark=nighty"],
            "unknown option 'nighty' for config group 'benchmark' (did you mean 'nightly'?)",
        ),
        (
            ["nightly.rerunz=2"],
            "unknown config key 'nightly.rerunz'; valid keys under 'nightly': history_url",
        ),
        (["nightly.detection.pmax=0.01"], "valid keys under 'nightly.detection': p_max"),
    ],
)
def test_bad_settings_are_one_clear_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        load("smoke", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


BAD_SUITES = {
    "min_change": (
        "watch: {test/acc: {direction: higher, min_change: lots}}",
        "min_change 'lots' is not a number",
    ),
    "metric": ("watch: {val/acc: {direction: higher, min_change: 0.01}}", "watches 'val/acc', which a sweep"),
    "direction": ("watch: {test/acc: {direction: up, min_change: 0.01}}", "direction"),
    "seeds": ("seeds: []\n    watch: {test/acc: {direction: higher, min_change: 0.01}}", "has no seeds"),
    "watch": ("watch: {}", "watches no metric"),
}


@pytest.mark.parametrize("case", sorted(BAD_SUITES))
def test_bad_suites_are_one_clear_line(case, tmp_path):
    body, message = BAD_SUITES[case]
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "bad.yaml").write_text(
        f"defaults:\n  - base_suite\nname: bad\nentries:\n  one:\n    kind: sweep\n    {body}\n"
    )
    with pytest.raises(ConfigError) as err:
        load("bad", [f"hydra.searchpath=[file://{tmp_path}]"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_errors_are_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["nightly", "run", "--suite", "smoke", "--date", "2026-01-01", "model.hiden=[3]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "error: entry 'digits_mlp': unknown config key 'model.hiden' (did you mean 'hidden'?)"
    )
    assert not (tmp_path / "nightly.db").exists()  # nothing claimed or recorded before the config is valid
    assert main(["nightly", "history", "--suite", "smoke"]) == 2
    assert "no nightly history at sqlite:///" in capsys.readouterr().err
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert main(["nightly", "history", "--suite", "smoke", f"nightly.history_url=sqlite:///{empty}"]) == 2
    assert "no nightly history in sqlite:///" in capsys.readouterr().err
    with sqlite3.connect(empty) as conn:  # a reader made no tables
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    with pytest.raises(SystemExit):
        main(["nightly", "run", "--date", "yesterday"])
    assert "is not a date; write YYYY-MM-DD" in capsys.readouterr().err


def test_imdb_entries_are_skipped_with_the_reason_when_aclimdb_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWEEPLAB_DATA_DIR", str(tmp_path / "data"))  # empty: no aclImdb anywhere
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    suite, settings = load("nightly")
    night = date(2026, 1, 1)
    outcome = NightRunner(suite, settings, console=Console(quiet=True)).run(
        night, ["course_imdb", "course_imdb_l2"]
    )
    assert outcome.exit_code == 0 and not outcome.problems  # skipped is not failed
    assert set(outcome.skipped) == {"course_imdb", "course_imdb_l2"}
    assert "IMDB reviews not found" in outcome.skipped["course_imdb"]
    assert str(tmp_path / "data" / "aclImdb") in outcome.skipped["course_imdb"]  # where it looked
    assert not (tmp_path / "cache" / "sweeplab" / "aclImdb_v1.tar.gz").exists()  # nothing downloaded
    report = outcome.report.read_text()
    assert "| course_imdb | skipped | IMDB reviews not found" in report
    rows = NightRunner(suite, settings).store.rows("nightly", until=night)
    assert {(r.entry, r.status) for r in rows} == {("course_imdb", "skipped"), ("course_imdb_l2", "skipped")}


def test_failed_and_diverged_entries_exit_1_and_are_tried_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "conf" / "benchmark").mkdir(parents=True)
    (tmp_path / "conf" / "benchmark" / "broken.yaml").write_text(
        "defaults:\n  - base_suite\nname: broken\nentries:\n"
        "  missing_data:\n    overrides: [data=npz, data.path=/nonexistent/arrays.npz]\n"
        "    watch: {test/acc: {direction: higher, min_change: 0.01}}\n"
        "  exploding:\n    overrides: [data=digits, optimizer=sgd, optimizer.lr=1e12, trainer.epochs=2]\n"
        "    watch: {test/acc: {direction: higher, min_change: 0.01}}\n"
    )
    suite, settings = load("broken", [f"hydra.searchpath=[file://{tmp_path / 'conf'}]"])
    night = date(2026, 1, 1)
    outcome = NightRunner(suite, settings, console=Console(quiet=True)).run(night)
    assert outcome.exit_code == 1 and not outcome.regressed
    assert outcome.problems["missing_data"].startswith("failed: DataError")
    assert outcome.problems["exploding"].startswith("diverged")
    store = NightRunner(suite, settings).store
    assert {(r.entry, r.status) for r in store.rows("broken", metric="test/acc")} == {
        ("missing_data", "failed"),
        ("exploding", "diverged"),
    }
    assert store.done_seeds("broken", night, "missing_data") == set()  # a rerun of the night tries it again
    assert store.done_seeds("broken", night, "exploding") == {0}  # diverging is a result: not run again
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("nightly/broken").experiment_id])
    assert {r.info.status for r in runs} <= {"FINISHED", "FAILED"}  # nothing left RUNNING
