"""Sweeps on a real local Ray and a real MLflow SQLite store (digits data: offline and quick)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from sweeplab import sweep
from sweeplab.config import ConfigError, compose, to_container
from sweeplab.data import load_data

STATUSES = {"completed", "early_stopped", "stopped_by_scheduler", "diverged", "failed"}
MLFLOW_STATUS = {"completed": "FINISHED", "early_stopped": "FINISHED", "stopped_by_scheduler": "FINISHED",
                 "diverged": "FAILED", "failed": "FAILED"}  # fmt: skip
SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]
pytest_plugins = ["servers"]  # fixtures: tracking_server (a real mlflow server on PostgreSQL)


def write_space(root: Path, name: str, body: str) -> str:
    """A search space of the test's own, found through Hydra's search path."""
    (root / "search").mkdir(parents=True, exist_ok=True)
    (root / "search" / f"{name}.yaml").write_text(
        f"defaults:\n  - base_search\nname: {name}\n" + textwrap.dedent(body)
    )
    return f"hydra.searchpath=[file://{root}]"


def run_sweep(*overrides: str):
    overrides = ["data=digits", "tracking.experiment=sweeps", "tune.max_concurrent_trials=2", *overrides]
    cfg = to_container(compose(overrides))
    return sweep.start(cfg, overrides)


def store(workdir: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def children(client: MlflowClient, parent_run_id: str):
    exp = client.get_run(parent_run_id).info.experiment_id
    return client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")


def steps(client: MlflowClient, run_id: str, key: str = "val/loss") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.service)])
def store_uri(request, workdir) -> str:
    """The embedded SQLite file, and a real `mlflow server` on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{workdir / 'mlflow.db'}"
    return request.getfixturevalue("tracking_server").url


def test_asha_sweep_records_parent_children_best_model(workdir, store_uri):
    outcome = run_sweep(
        "search=lr_batch",
        "tune=asha",
        "tune.num_samples=8",
        "trainer.epochs=6",
        "tune.reduction_factor=2",
        "optimizer=sgd",
        f"tracking.uri={store_uri}",
    )
    client = MlflowClient(store_uri)
    runs = client.search_runs([client.get_experiment_by_name("sweeps").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    kids = children(client, outcome.state.parent_run_id)
    assert len(parents) == 1 and len(kids) == 8 and len(runs) == 9

    statuses = Counter(k.data.tags["sweeplab.status"] for k in kids)
    assert set(statuses) <= STATUSES
    assert statuses["stopped_by_scheduler"] >= 1
    for kid in kids:
        epochs = steps(client, kid.info.run_id)
        assert epochs == list(range(1, len(epochs) + 1))  # one value per epoch, no repeats
        assert steps(client, kid.info.run_id, "train/acc") == epochs
        assert {
            "sampled.optimizer.lr",
            "sampled.trainer.batch_size",
            "optimizer.lr",
        } <= kid.data.params.keys()
        assert float(kid.data.params["sampled.optimizer.lr"]) == float(kid.data.params["optimizer.lr"])
        assert "overfit/best_epoch" in kid.data.metrics and "overfit/gap_acc" in kid.data.metrics
        files = {a.path for a in client.list_artifacts(kid.info.run_id, "plots")}
        assert files == {"plots/learning_curve.png"}
        if kid.data.tags["sweeplab.status"] == "stopped_by_scheduler":
            assert len(epochs) < 6
        assert kid.info.status == MLFLOW_STATUS[kid.data.tags["sweeplab.status"]]  # not FAILED when stopped

    parent = client.get_run(outcome.state.parent_run_id)
    assert parent.info.status == "FINISHED"
    best_run = parent.data.tags["best.run_id"]
    assert best_run in {k.info.run_id for k in kids}
    best_val = min(min(m.value for m in client.get_metric_history(k.info.run_id, "val/loss")) for k in kids)
    assert parent.data.metrics["best/val/loss"] == pytest.approx(best_val)
    assert parent.data.metrics["trials/total"] == 8
    # compute accounting against Tune's own result records, not against what the driver logged
    results = [
        json.loads(line)
        for f in (workdir / "sweeps" / outcome.state.name).glob("trial_*/result.json")
        for line in f.read_text().splitlines()
    ]
    trained = [r for r in results if not r.get("final")]
    assert parent.data.metrics["compute/trial_epochs"] == len(trained)
    seconds = sum(r["epoch_time_s"] for r in trained)
    assert parent.data.metrics["compute/trial_seconds"] == pytest.approx(seconds)
    assert 0 < parent.data.metrics["compute/efficiency"] <= 1
    assert parent.data.metrics["compute/trial_epochs_budget"] == 8 * 6
    assert 0 < parent.data.metrics["test/acc"] <= 1
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/top_trials_val_curves.png", "plots/metric_vs_hyperparameters.png"}
    assert {"config.yaml", "search_space.yaml", "best_config.yaml"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }

    # the registered model with alias `best` loads and predicts like the reported test accuracy
    mlflow.set_tracking_uri(store_uri)
    version = client.get_model_version_by_alias("sweeps-digits", "best")  # named after its data too
    model = mlflow.pytorch.load_model("models:/sweeps-digits@best")
    data = load_data(to_container(compose(["data=digits"]))["data"])
    probs = model(data.x_test)
    accuracy = (probs.argmax(1) == data.y_test).float().mean().item()
    assert accuracy == pytest.approx(parent.data.metrics["test/acc"], abs=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)
    assert version.tags["sweeplab.metric"] == "val/loss"


def test_alias_moves_only_to_a_better_model(workdir):
    good_space = write_space(workdir / "conf", "good", "space:\n  optimizer.lr: choice[0.003]\n")
    bad = write_space(workdir / "conf2", "bad", "space:\n  optimizer.lr: choice[0.00001]\n")
    good = run_sweep(
        good_space,
        "search=good",
        "tune=fifo",
        "tune.num_samples=1",
        "trainer.epochs=3",
        "optimizer=adam",
        "tune.name=good",
    )
    client = store(workdir)
    first = client.get_model_version_by_alias("sweeps-digits", "best").version
    worse = run_sweep(
        bad,
        "search=bad",
        "tune=fifo",
        "tune.num_samples=1",
        "trainer.epochs=1",
        "optimizer=sgd",
        "tune.name=worse",
    )
    assert good.summary.registration.alias_moved and not worse.summary.registration.alias_moved
    assert client.get_model_version_by_alias("sweeps-digits", "best").version == first
    by_accuracy = run_sweep(
        good_space,
        "search=good",
        "tune=fifo",
        "tune.num_samples=1",
        "trainer.epochs=3",
        "optimizer=adam",
        "tune.metric=val/acc",
        "tune.mode=max",
        "tune.name=by-accuracy",
    )
    # a model chosen by another metric is not comparable, however good its number looks
    assert not by_accuracy.summary.registration.alias_moved
    assert client.get_model_version_by_alias("sweeps-digits", "best").version == first
    assert len(client.search_model_versions("name='sweeps-digits'")) == 3


def test_group_switching_space_records_the_chosen_options(workdir):
    searchpath = write_space(
        workdir / "conf",
        "groups",
        """
        space:
          optimizer: grid[sgd, adam]
          regularizer: grid[none, dropout]
    """,
    )
    outcome = run_sweep(searchpath, "search=groups", "tune=fifo", "tune.num_samples=1", "trainer.epochs=2")
    client = store(workdir)
    kids = children(client, outcome.state.parent_run_id)
    chosen = sorted((k.data.params["optimizer.name"], k.data.params["regularizer.name"]) for k in kids)
    assert chosen == [("adam", "dropout"), ("adam", "none"), ("sgd", "dropout"), ("sgd", "none")]
    for kid in kids:
        p = kid.data.params
        assert (
            p["optimizer.name"] == p["sampled.optimizer"]
            and p["regularizer.name"] == p["sampled.regularizer"]
        )
        assert float(p["regularizer.dropout"]) == (0.5 if p["regularizer.name"] == "dropout" else 0.0)
        assert ("optimizer.betas" in p) == (p["optimizer.name"] == "adam")  # the whole group option switched


def test_retried_trial_continues_its_run_and_diverged_trial_ends_the_sweep_fine(workdir):
    searchpath = write_space(
        workdir / "conf",
        "lrs",
        """
        space:
          optimizer.lr: grid[0.05, 1e8]
    """,
    )
    outcome = run_sweep(
        searchpath,
        "search=lrs",
        "tune=fifo",
        "optimizer=sgd",
        "tune.num_samples=1",
        "trainer.epochs=4",
        "trainer.early_stopping.enabled=false",
        "tune.fail_once_at_epoch=3",
        "tune.checkpoint_every=2",
        "tune.max_failures=1",
    )
    client = store(workdir)
    kids = {float(k.data.params["optimizer.lr"]): k for k in children(client, outcome.state.parent_run_id)}
    assert len(kids) == 2
    good, bad = kids[0.05], kids[1e8]
    assert good.data.tags["sweeplab.status"] == "completed" and good.data.tags["sweeplab.retries"] == "1"
    assert "injected failure at epoch 3" in good.data.tags["sweeplab.last_error"]
    assert steps(client, good.info.run_id) == [1, 2, 3, 4]  # no repeated steps
    # from its last checkpoint (epoch 2; none at epoch 1 with checkpoint_every=2), not from scratch
    assert good.data.tags["sweeplab.continued_at_epoch"] == "3"
    assert bad.data.tags["sweeplab.status"] == "diverged"
    assert (
        "nan" in bad.data.tags["sweeplab.status_reason"] or "inf" in bad.data.tags["sweeplab.status_reason"]
    )
    parent = client.get_run(outcome.state.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["best.run_id"] == good.info.run_id
    assert parent.data.metrics["trials/diverged"] == 1 and parent.data.metrics["trials/completed"] == 1


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ("model.hiden: choice[[64], [128]]", ["search.space.model.hiden", "did you mean 'hidden'"]),
        ("optimizer: choice[]", ["search.space.optimizer", "empty"]),
        ("optimizer.lr: loguniform[1e-2, 1e-4]", ["search.space.optimizer.lr", "low < high"]),
        ("optimizer: choice[sgd, adamm]", ["search.space.optimizer", "'adamm'", "adagrad, adam"]),
        ("optimizer.lr: lognormal[1, 2]", ["search.space.optimizer.lr", "unknown distribution"]),
        # a bad value after a good one, of a plain key and of a key under a group the space switches
        ("model.hidden: choice[[64], [abc]]", ["search.space.model.hidden=('abc',)", "'abc'", "Integer"]),
        ("trainer.batch_size: choice[32, 0]", ["search.space.trainer.batch_size=0", "at least 1"]),
        (
            "optimizer: choice[sgd, adam]\n  optimizer.lr: choice[0.1, -1]",
            ["search.space.optimizer.lr=-1", "with optimizer=sgd", "positive"],
        ),
    ],
)
def test_bad_search_space_fails_before_any_trial(workdir, space, expected):
    searchpath = write_space(workdir / "conf", "bad", f"space:\n  {space}\n")
    with pytest.raises(ConfigError) as err:
        run_sweep(searchpath, "search=bad")
    for fragment in expected:
        assert fragment in str(err.value)
    assert not (workdir / "mlflow.db").exists() and not (workdir / "sweeps").exists()  # nothing started


def test_bad_space_on_the_command_line_is_one_line(workdir):
    searchpath = write_space(workdir / "conf", "bad", "space:\n  optimizer.lr: uniform[1, 0]\n")
    out = subprocess.run(
        [*SWEEPLAB, "sweep", "data=digits", searchpath, "search=bad"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "search.space.optimizer.lr" in lines[0]


def test_resume_after_ctrl_c_runs_each_trial_once_under_the_same_parent(workdir):
    args = [
        "data=digits",
        "search=optimizers",
        "tune=fifo",
        "tune.num_samples=5",
        "trainer.epochs=5",
        "tune.max_concurrent_trials=1",
        "tune.name=resumable",
        "tracking.experiment=resume",
    ]
    proc = subprocess.Popen(
        [*SWEEPLAB, "sweep", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir
    )
    seen = []
    for line in proc.stdout:  # bounded by the sweep itself; stop reading at the second finished trial
        seen.append(line)
        if line.startswith("trial") and " after " in line and len([s for s in seen if " after " in s]) >= 2:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "sweeplab sweep resume resumable" in rest

    client = store(workdir)
    parent_id = sweep.find_sweep("resumable", {"storage_path": "sweeps"}, {}).parent_run_id
    before = children(client, parent_id)
    assert 2 <= len(before) < 5
    assert client.get_run(parent_id).info.status == "KILLED"

    # a resume keeps what the sweep searches, and says so in one line
    refused = subprocess.run(
        [*SWEEPLAB, "sweep", "resume", "resum", "trainer.epochs=9"],  # a unique prefix names it
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    assert refused.returncode == 2 and "cannot change trainer.epochs=9" in refused.stderr
    assert "resuming sweep resumable" in refused.stdout
    started = time.time() * 1000
    out = subprocess.run(  # how it runs may change: two trials at a time from now on
        [*SWEEPLAB, "sweep", "resume", "latest", "tune.max_concurrent_trials=2"],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    kids = children(client, parent_id)
    assert len(kids) == 5
    resumed = sorted((k.info.start_time, k.info.end_time) for k in kids if k.info.start_time >= started)
    assert any(a_end > b_start for (_, a_end), (b_start, _) in zip(resumed, resumed[1:], strict=False)), (
        resumed
    )
    assert len({k.data.tags["sweeplab.trial_id"] for k in kids}) == 5
    assert {k.info.run_id for k in before} <= {k.info.run_id for k in kids}
    for kid in kids:
        assert steps(client, kid.info.run_id) == list(range(1, 6))
        assert kid.data.tags["sweeplab.status"] in STATUSES
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials/total"] == 5
    runs = client.search_runs([parent.info.experiment_id])
    assert len(runs) == 6  # one parent, five children: nothing duplicated


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path):
    """A real two-node Ray cluster on loopback: a head and a worker, one CPU each."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
    head = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            *common,
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs = [head]
    try:
        address = f"127.0.0.1:{port}"
        wait_for_nodes(address, 1, env)
        procs.append(
            subprocess.Popen(
                [ray_bin, "start", f"--address={address}", "--node-ip-address=127.0.0.1", *common],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for_nodes(address, 2, env)
        yield address
    finally:
        for p in reversed(procs):  # only our own processes: never `ray stop`, which kills every Ray here
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def wait_for_nodes(address: str, n: int, env: dict, attempts: int = 120) -> None:
    probe = f"import ray; ray.init(address='{address}', logging_level='ERROR'); print(len(ray.nodes()))"
    for _ in range(attempts):
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
        )
        if out.returncode == 0 and int(out.stdout.strip().splitlines()[-1]) >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"the Ray cluster at {address} did not reach {n} nodes")


def test_sweep_runs_on_an_existing_two_node_cluster(workdir, ray_cluster):
    out = subprocess.run(
        [
            *SWEEPLAB,
            "sweep",
            "data=digits",
            "search=optimizers",
            "tune=fifo",
            "tune.num_samples=2",
            "trainer.epochs=2",
            "cluster=existing",
            f"cluster.address={ray_cluster}",
            "tracking.experiment=cluster",
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    client = store(workdir)
    parent = client.search_runs(
        [client.get_experiment_by_name("cluster").experiment_id],
        filter_string="tags.`sweeplab.kind` = 'sweep'",
    )[0]
    assert parent.data.tags["cluster.nodes"] == "2" and parent.data.tags["cluster.address"] == ray_cluster
    assert len(children(client, parent.info.run_id)) == 2
    assert len({k.data.tags["sweeplab.node"] for k in children(client, parent.info.run_id)}) == 2


def test_repeats_of_a_grid_point_get_their_own_seeds(workdir):
    """num_samples repeats each grid point: every repeat draws its own seed (recorded): no replicas."""
    searchpath = write_space(workdir / "conf", "grid2", "space:\n  optimizer.lr: grid[0.01, 0.02]\n")
    outcome = run_sweep(searchpath, "search=grid2", "tune=fifo", "tune.num_samples=2", "trainer.epochs=2")
    client = store(workdir)
    kids = children(client, outcome.state.parent_run_id)
    assert len(kids) == 4 == len(outcome.summary.trials)
    assert len({k.data.params["seed"] for k in kids}) == 4
    for lr in ("0.01", "0.02"):
        pair = [k for k in kids if k.data.params["optimizer.lr"] == lr]
        losses = [tuple(m.value for m in client.get_metric_history(k.info.run_id, "val/loss")) for k in pair]
        assert len(pair) == 2 and losses[0] != losses[1]


def test_best_weights_follow_the_sweeps_metric_and_mode(workdir):
    """tune.metric=val/acc, mode max: checkpoint, child's best epoch, summary and registry agree."""
    outcome = run_sweep(
        "search=lr_batch",
        "tune=fifo",
        "tune.num_samples=2",
        "trainer.epochs=6",
        "trainer.early_stopping.enabled=false",
        "optimizer=adam",
        "tune.metric=val/acc",
        "tune.mode=max",
    )
    client = store(workdir)
    parent = client.get_run(outcome.state.parent_run_id)
    best_run = parent.data.tags["best.run_id"]
    accs = [(m.value, m.step) for m in client.get_metric_history(best_run, "val/acc")]
    top = max(v for v, _ in accs)
    epoch = max(step for v, step in accs if v == top)  # a tie goes to the later epoch
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = torch.load(client.download_artifacts(best_run, "checkpoints/best.pt", tmp), weights_only=False)
        on_parent = torch.load(
            client.download_artifacts(parent.info.run_id, "checkpoints/best.pt", tmp), weights_only=False
        )
    assert ckpt["epoch"] == epoch and ckpt["metrics"]["val/acc"] == pytest.approx(top)
    assert on_parent["epoch"] == epoch
    assert client.get_run(best_run).data.tags["sweeplab.best_epoch"] == str(epoch)
    assert parent.data.metrics["best/epoch"] == epoch and parent.data.metrics[
        "best/val/acc"
    ] == pytest.approx(top)
    version = client.get_model_version_by_alias("sweeps-digits", "best")
    assert version.tags["sweeplab.metric"] == "val/acc" and version.tags["sweeplab.mode"] == "max"
    assert float(version.tags["sweeplab.metric_value"]) == pytest.approx(top)


def test_best_weights_are_the_best_epochs_even_between_checkpoints(workdir):
    """A checkpoint only at the last epoch (tune.checkpoint_every above trainer.epochs): each
    trial's best.pt still holds its best epoch's weights, which the trial kept until then."""
    from sweeplab.training import Evaluator

    searchpath = write_space(workdir / "conf", "lrs", "space:\n  optimizer.lr: grid[0.003, 0.03, 0.1]\n")
    epochs = 8
    outcome = run_sweep(
        searchpath, "search=lrs", "tune=fifo", "optimizer=adam", f"trainer.epochs={epochs}",
        "trainer.early_stopping.enabled=false", "tune.checkpoint_every=100", "tune.register_model=false",
    )  # fmt: skip
    client = store(workdir)
    best_epochs = []
    for kid in children(client, outcome.state.parent_run_id):
        losses = {m.step: m.value for m in client.get_metric_history(kid.info.run_id, "val/loss")}
        best = min(losses, key=lambda e: (losses[e], -e))
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(kid.info.run_id, "checkpoints/best.pt", tmp)
            ckpt = torch.load(path, weights_only=False)
        evaluator = Evaluator(ckpt["config"], load_data(ckpt["config"]["data"]))
        evaluator.model.load_state_dict(ckpt["model_state"])
        assert ckpt["epoch"] == best
        # its weights, not the last epoch's
        assert evaluator.evaluate("val")["val/loss"] == pytest.approx(losses[best], rel=1e-5)
        folder = Path(outcome.state.path) / f"trial_{kid.data.tags['sweeplab.trial_id']}"
        assert len(list(folder.glob("checkpoint_*"))) == 1  # one checkpoint written: the last epoch's
        best_epochs.append(best)
    assert min(best_epochs) < epochs  # a best epoch without a checkpoint of its own was tested


def test_robust_selection_retrains_the_top_configurations_with_fresh_seeds(workdir):
    outcome = run_sweep(
        "search=lr_batch",
        "tune=fifo",
        "tune.num_samples=4",
        "trainer.epochs=3",
        "optimizer=adam",
        "tune.reevaluate.top_k=2",
        "tune.reevaluate.seeds=2",
    )
    client = store(workdir)
    kids = children(client, outcome.state.parent_run_id)
    searched = [k for k in kids if k.data.tags["sweeplab.stage"] == "search"]
    repeats = [k for k in kids if k.data.tags["sweeplab.stage"] == "reevaluate"]
    assert len(searched) == 4 and len(repeats) == 4
    best_of = {
        k.data.tags["sweeplab.trial_id"]: min(
            m.value for m in client.get_metric_history(k.info.run_id, "val/loss")
        )
        for k in searched
    }
    top2 = sorted(best_of, key=best_of.get)[:2]
    assert sorted({k.data.tags["sweeplab.reevaluates"] for k in repeats}) == sorted(top2)
    seeds = {k.data.params["seed"] for k in repeats}
    assert len(seeds) == 2 and not seeds & {k.data.params["seed"] for k in searched}  # fresh, shared per pair
    means = {}
    for of in top2:  # the winner is the best mean of the sweep's metric over its repeats
        runs = [k for k in repeats if k.data.tags["sweeplab.reevaluates"] == of]
        means[of] = (
            sum(min(m.value for m in client.get_metric_history(r.info.run_id, "val/loss")) for r in runs) / 2
        )
    winner = min(means, key=means.get)
    parent = client.get_run(outcome.state.parent_run_id)
    assert outcome.summary.robust.winner == winner
    assert parent.data.metrics["robust/val/loss/mean"] == pytest.approx(means[winner])
    assert parent.data.metrics["robust/differs"] == float(winner != top2[0])
    assert (
        0 < parent.data.metrics["robust/test/acc/mean"] <= 1 and "robust/test/acc/std" in parent.data.metrics
    )
    version = client.get_model_version_by_alias("sweeps-digits", "best")
    assert float(version.tags["robust/test/acc/mean"]) == pytest.approx(
        parent.data.metrics["robust/test/acc/mean"], rel=1e-5
    )
    assert client.get_run(parent.data.tags["best.run_id"]).data.tags["sweeplab.reevaluates"] == winner


def test_a_trial_takes_the_drivers_data_set_instead_of_loading_it(monkeypatch):
    """What the driver hands its trials through Ray's object store: the arrays it loaded, which a
    trial process uses as they are (no loading, no copy)."""
    import numpy as np

    from sweeplab import trial

    data_cfg = to_container(compose(["data=digits"]))["data"]
    shared = trial.shared_data(data_cfg)
    trial._DATA_CACHE.clear()  # this process is now a trial's, which has loaded nothing
    monkeypatch.setattr(trial, "load_data", lambda cfg: pytest.fail("the trial loaded the data itself"))
    bundle = trial.cached_data(data_cfg, shared)
    (arrays,) = shared.values()
    assert np.shares_memory(bundle.x_train.numpy(), arrays["x_train"])
    assert bundle.fingerprint == load_data(data_cfg).fingerprint
