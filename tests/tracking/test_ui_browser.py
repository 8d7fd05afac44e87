"""The MLflow UI as a user meets it: the link a sweep prints, opened in a real browser (Playwright
driving Debian's Chromium) on `sweeplab ui`, shows the sweep's trials with their metric and sampled
values, its charts, the parent run's children and registered model, and a trial's curves.

Screenshots are kept in $SWEEPLAB_TEST_ARTIFACTS (default .test-artifacts/ in the checkout)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_in_ci
from mlflow.tracking import MlflowClient
from servers import free_port, wait_for_health

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright cannot download its own browsers here
ARTIFACTS = Path(
    os.environ.get("SWEEPLAB_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / ".test-artifacts")
)
LOAD_S = 120  # the UI's first load on a busy 2-core machine


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A real small sweep in a store of its own, and `sweeplab ui` serving it."""
    if not Path(CHROMIUM).exists():
        require_in_ci(f"{CHROMIUM} is missing (apt-get install chromium; `make test` installs it)")
    root = tmp_path_factory.mktemp("ui-sweep")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = ["data=digits", "search=lr_batch", "tune=fifo", "tune.num_samples=3", "trainer.epochs=3"]
    args += ["tune.name=ui-sweep", "tracking.experiment=ui", f"tracking.ui_port={port}"]
    done = subprocess.run(
        [sys.executable, "-m", "sweeplab.cli", "sweep", *args], cwd=root, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    link = re.search(r"then\s+(http://\S+)", done.stdout).group(1)  # the link the sweep printed
    log = open(root / "ui.log", "w")  # noqa: SIM115 - kept open while the UI runs
    ui = subprocess.Popen(
        [sys.executable, "-m", "sweeplab.cli", "ui", f"tracking.ui_port={port}"], cwd=root, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_health(f"http://127.0.0.1:{port}", ui, root / "ui.log")
        yield root, link, MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()


def runs(client) -> tuple:
    exp = client.get_experiment_by_name("ui")
    found = client.search_runs([exp.experiment_id])
    parent = next(r for r in found if r.data.tags.get("sweeplab.kind") == "sweep")
    return parent, sorted((r for r in found if r is not parent), key=lambda r: r.info.run_name)


def test_the_printed_link_opens_the_trials_table_sorted_by_the_metric(swept, page):
    _, link, client = swept
    assert "workflowType=machine_learning" in link and "compareRunsMode=TABLE" in link
    page.goto(link)
    page.get_by_text("trial-000").first.wait_for(timeout=LOAD_S * 1000)
    text = page.inner_text("body")
    assert "Send your first trace" not in text  # the Model training view, not the GenAI one
    for header in ("val/loss", "sampled.optimizer.lr", "sampled.trainer.batch_size", "sweeplab.status"):
        assert header in text, header
    _, kids = runs(client)
    # the grid draws the pinned name column and the other columns as separate rows: join by index
    cells: dict[str, list[str]] = {}
    for row in page.locator("[row-index]").all():
        cells.setdefault(row.get_attribute("row-index"), []).append(row.inner_text())
    lines = [" ".join(parts) for _, parts in sorted(cells.items(), key=lambda kv: int(kv[0]))]
    lines = [line for line in lines if "trial-" in line]
    assert len(lines) == 3, lines
    # each trial's row shows its own last val/loss and sampled lr; best (lowest) first
    by_name = {k.info.run_name: k for k in kids}
    order = [re.search(r"trial-\d+", line).group(0) for line in lines]
    assert order == sorted(order, key=lambda n: by_name[n].data.metrics["val/loss"])
    for line in lines:
        kid = by_name[re.search(r"trial-\d+", line).group(0)]
        assert f"{kid.data.metrics['val/loss']:.6f}"[:6] in line, line
        assert kid.data.params["sampled.optimizer.lr"][:6] in line, line
        assert "completed" in line


def test_the_chart_view_draws_the_trials_curves_and_a_parallel_coordinates_chart(swept, page):
    _, link, _ = swept
    page.goto(link.replace("compareRunsMode=TABLE", "compareRunsMode=CHART"))
    page.get_by_text("sweep ui-sweep").first.wait_for(timeout=LOAD_S * 1000)
    page.get_by_text("trial-000 (val/loss)").first.wait_for(timeout=LOAD_S * 1000)  # a curve's legend
    page.locator("path.js-line").first.wait_for(timeout=LOAD_S * 1000)
    assert page.get_by_text("Parallel Coordinates").count() >= 1 or "Parallel Co" in page.inner_text("body")


def test_the_parent_run_links_its_trials_and_its_registered_model(swept, page):
    _, link, client = swept
    parent, kids = runs(client)
    base = link.split("/#/")[0]
    page.goto(f"{base}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}")
    page.get_by_text("Child runs").first.wait_for(timeout=LOAD_S * 1000)
    for kid in kids:  # each trial, linked from its parent
        page.get_by_role("link", name=kid.info.run_name).first.wait_for(timeout=LOAD_S * 1000)
    page.get_by_text("Registered models").first.wait_for(timeout=LOAD_S * 1000)
    page.get_by_role("link", name="ui-digits").first.wait_for(timeout=LOAD_S * 1000)


def test_a_trial_shows_its_per_epoch_curves(swept, page):
    _, link, client = swept
    _, kids = runs(client)
    kid = kids[0]
    base = link.split("/#/")[0]
    page.goto(
        f"{base}/#/experiments/{kid.info.experiment_id}/runs/{kid.info.run_id}?workflowType=machine_learning"
    )
    tab = page.get_by_role("tab", name="Model metrics")
    tab.wait_for(timeout=LOAD_S * 1000)
    tab.click()
    page.get_by_placeholder("Search metric charts").fill("val/loss")
    page.get_by_text(f"{kid.info.run_name} (val/loss)").first.wait_for(timeout=LOAD_S * 1000)
    page.locator("path.js-line").first.wait_for(timeout=LOAD_S * 1000)  # the curve drawn, not a spinner
    steps = [m.step for m in client.get_metric_history(kid.info.run_id, "val/loss")]
    assert steps == [1, 2, 3]
