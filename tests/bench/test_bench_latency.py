"""The latency benchmark's store is shaped like real sweeps, and saved results read back as written.

No timing is asserted: the benchmark measures, `make bench` judges.
"""

from __future__ import annotations

import re

import pytest

from bench import latency
from bench import results as saved
from bench.peers import race as peers


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("latency-store")
    return root, latency.build_store(root, sweeps=3, trials=4, epochs=3)


def test_the_cli_lists_and_shows_the_built_sweeps(store):
    root, uri = store
    listed = latency.run(["sweeps", "list", f"tracking.uri={uri}"], root)
    assert listed.returncode == 0, listed.stderr
    names = {latency.sweep_name(i) for i in range(3)}
    assert set(re.findall(r"latency-\d{3}", listed.stdout)) == names
    assert "4 (" in listed.stdout  # each sweep's trials, counted from its summary

    shown = latency.run(["sweeps", "show", "latency-001", f"tracking.uri={uri}"], root)
    assert shown.returncode == 0, shown.stderr
    assert "latency-001" in shown.stdout and "best trial" in shown.stdout and "trial-00" in shown.stdout


def test_a_cached_store_is_reused_and_rebuilt_for_another_shape(tmp_path, monkeypatch):
    built = []

    def build(root, *shape):
        root.mkdir(parents=True)
        built.append(shape)

    monkeypatch.setattr(latency, "build_store", build)
    latency.cached_store(tmp_path, 2, 2, 2)
    latency.cached_store(tmp_path, 2, 2, 2)
    latency.cached_store(tmp_path, 3, 2, 2)
    assert built == [(2, 2, 2), (3, 2, 2)]


def test_a_saved_result_reads_back_and_renders_its_figures(tmp_path):
    rows = [
        saved.Row("latency", "latency: `sweeplab --help`", "0.21 s (min 0.20, max 0.23)", 0.7, "<= 1 (0.3 s)",
                  True, {"median_s": 0.21}),
        saved.Row("latency", "latency: `sweeplab sweeps list`", "2.46 s", 2.46, "<= 1 (1 s)", False,
                  {"median_s": 2.46}),
        saved.Row("batched", "batched: 8 trials", "0.1s vs 0.4s", 0.25, "measured", None),
    ]  # fmt: skip
    path = saved.write(saved.new(["latency", "batched"], rows, ["python", "-m", "bench"]), tmp_path)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}Z-\w+-latency\+batched\.json", path.name)
    back = saved.read(path)
    assert back.rows == rows and not back.passed
    assert back.commit["full"] and back.commit["short"] == back.commit["full"][:7]
    assert " cores, " in back.machine and back.torch

    text = saved.markdown(back, "latency")
    assert "| latency: `sweeplab sweeps list` | 2.46 s | 2.460 | <= 1 (1 s) | **over budget** |" in text
    assert "0.21 s (min 0.20, max 0.23) | 0.700" in text and "batched" not in text
    assert f"commit `{back.commit['short']}`" in text and back.machine in text

    page = saved.latest_markdown(["latency", "batched", "quality"], tmp_path)
    assert "### `latency`" in page and "0.25" in page
    assert "No saved result yet for `quality`: `make bench" in page and "### `quality`" not in page


def test_the_committed_results_render(tmp_path):
    """benchmarks/results/ holds only files the docs' hook can render; the peers run is among them."""
    results = saved.read_all()
    assert any(r.benches == ["peers"] and "Transcribed" in r.extra.get("source", "") for r in results)
    for r in results:
        assert r.rows and saved.markdown(r)
    page = saved.latest_markdown(["peers"])
    assert "| **sweeplab** | **median** | 408 | 773 | 16 | 320 | 0.9034 | 0.9030 |" in page


def test_the_peers_summary_is_saved_with_its_verdict(tmp_path):
    reach = {"0.89": {"t": 50.0, "trial_epochs": 40}, "0.90": {"t": 150.0, "trial_epochs": 120}}
    runs = [
        {"tool": tool, "seed": s, "wall_s": wall, "cpu_s": 2 * wall, "cpu_exact": True, "first_epoch_s": 5.0,
         "trial_epochs": 100, "trials": 10, "best_val_acc": 0.9, "test_acc": acc, "error": None,
         "reach": reach if tool == "sweeplab" else {"0.89": None, "0.90": None}, "epochs": [{"t": 1.0}]}
        for tool, wall, acc in (("sweeplab", 300.0, 0.903), ("optuna", 450.0, 0.899))
        for s in (0, 1)
    ]  # fmt: skip
    results = {
        "budget_s": 450.0, "max_trials": 64, "max_epochs": 20, "seeds": [0, 1], "thresholds": [0.89, 0.90],
        "run_dir": str(tmp_path), "runs": runs,
        "medians": {t: peers.medians([r for r in runs if r["tool"] == t]) for t in ("sweeplab", "optuna")},
    }  # fmt: skip
    back = saved.read(peers.save_summary(results, ["python", "-m", "bench.peers"], tmp_path))
    assert back.benches == ["peers"] and back.passed
    assert [r.passed for r in back.rows] == [None, None, True, True, True]
    assert "epochs" not in back.extra["peers"]["runs"][0]  # the trial-epochs stay in results.json
    assert "| Optuna | 1 | 450 | 900 |" in saved.markdown(back)
