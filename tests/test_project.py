"""A project of one's own, in a folder outside the repository: its model, data, metric, search
space and experiment are trained, checked and swept with no change to sweeplab; each mistake a
user makes in it is one line naming the option and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeplab.cli import main

FILES = {
    "tinynet/__init__.py": "",
    "tinynet/model.py": """
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self, input_shape, num_outputs, width: int = 16, dropout: float = 0.0):
                super().__init__()
                self.layers = nn.Sequential(
                    nn.Flatten(), nn.Linear(input_shape[0], width), nn.ReLU(), nn.Dropout(dropout),
                    nn.Linear(width, num_outputs),
                )

            def forward(self, x):
                return self.layers(x)


        class NoDropout(nn.Module):
            def __init__(self, input_shape, num_outputs):
                super().__init__()
                self.linear = nn.Linear(input_shape[0], num_outputs)

            def forward(self, x):
                return self.linear(x)


        def ten_outputs(input_shape):
            return nn.Linear(input_shape[0], 10)


        def not_a_module(input_shape):
            return {"layers": 2}
    """,
    "tinynet/data.py": """
        import torch

        from sweeplab.data import DataBundle


        def load(n: int = 300, seed: int = 0):
            g = torch.Generator().manual_seed(seed)
            centers = torch.randn(3, 6, generator=g) * 3
            y = torch.randint(0, 3, (n,), generator=g)
            x = centers[y] + torch.randn(n, 6, generator=g)
            a, b = int(n * 0.6), int(n * 0.8)
            return DataBundle.of((x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]), name="blobs")
    """,
    "tinynet/metrics.py": """
        def error_rate(outputs, targets):
            return float((outputs.argmax(1) != targets).float().mean())
    """,
    "tinynet/files.py": """
        import os
        from pathlib import Path

        import numpy as np
        import torch
        from torch.utils.data import Dataset

        from sweeplab.data import DataBundle


        class Samples(Dataset):
            \"\"\"One .npy file per sample under root/<split>/<label>/: read when a batch needs it.\"\"\"

            def __init__(self, folder: Path):
                self.split, self.files = folder.name, sorted(folder.glob("*/*.npy"))

            def __len__(self):
                return len(self.files)

            def __getitem__(self, i):
                with open(os.environ["READS_LOG"], "a") as log:  # who read what: the test's proof
                    log.write(f"{os.getpid()} {self.split}\\n")
                return torch.from_numpy(np.load(self.files[i])), int(self.files[i].parent.name)


        def load(root: str):
            splits = [Samples(Path(root) / split) for split in ("train", "val", "test")]
            return DataBundle.streamed(*splits, num_classes=3, name="files")
    """,
    "conf/model/tinynet.yaml": "_target_: tinynet.model.Net\nwidth: 16\n",
    "conf/model/typo.yaml": "_target_: tinynet.model.Net\nwidht: 16\n",
    "conf/model/nodrop.yaml": "_target_: tinynet.model.NoDropout\n",
    "conf/model/tenout.yaml": "_target_: tinynet.model.ten_outputs\n",
    "conf/model/notmodule.yaml": "_target_: tinynet.model.not_a_module\n",
    "conf/model/missing.yaml": "_target_: nosuchpkg.nets.Net\n",
    "conf/data/blobs.yaml": "_target_: tinynet.data.load\nn: 300\n",
    "conf/metrics/error.yaml": "error:\n  _target_: tinynet.metrics.error_rate\n",
    "conf/search/tiny_space.yaml": """
        space:
          model.width: choice[8, 16]
          optimizer.lr: loguniform[1e-3, 1e-1]
    """,
    "conf/search/listy.yaml": "space:\n  - optimizer.lr: loguniform[1e-3, 1e-1]\n",
    "conf/experiment/tiny.yaml": """
        # @package _global_
        defaults:
          - override /model: tinynet
          - override /data: blobs
          - override /search: tiny_space
          - override /tune: fifo
          - override /metrics: error
          - override /optimizer: adam
        trainer:
          epochs: 3
          batch_size: 32
        tune:
          num_samples: 2
          max_concurrent_trials: 2
          metric: val/error
          mode: min
        tracking:
          experiment: tiny
    """,
}


def write_project(root: Path) -> Path:
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_project(tmp_path_factory.mktemp("myproject"))


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # set, then removed: monkeypatch then undoes what a command's --config-dir writes there
    monkeypatch.setenv("SWEEPLAB_CONFIG_DIR", "")
    monkeypatch.delenv("SWEEPLAB_CONFIG_DIR")
    return project


def error_line(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def sweeplab(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The command as a user runs it, in the project's folder (the repository is nowhere on its path)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SWEEPLAB_CONFIG_DIR")}
    env["PYTHONPATH"] = ""
    return subprocess.run(
        [sys.executable, "-m", "sweeplab.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


# ------------------------------------------------------------------ what works
def test_the_projects_options_sit_beside_the_built_in_ones(in_project, capsys):
    assert main(["train", "--cfg", "experiment=tiny"]) == 0
    shown = capsys.readouterr().out
    assert "_target_: tinynet.model.Net" in shown and "_target_: tinynet.data.load" in shown
    assert "name: tinynet" in shown  # named by its file: no `name:` needed
    assert main(["train", "--cfg", "model=mlp"]) == 0  # the built-in options are still there
    assert "sweeplab.models.MLP" in capsys.readouterr().out


def test_a_projects_own_options_override_a_built_in_one_of_the_same_name(in_project, capsys):
    own = in_project / "conf/optimizer/adam.yaml"
    own.parent.mkdir()
    own.write_text("_target_: torch.optim.Adam\n_partial_: true\nlr: 0.05\n")
    try:
        assert main(["train", "--cfg", "optimizer=adam"]) == 0
        assert "lr: 0.05" in capsys.readouterr().out
    finally:
        own.unlink()
        own.parent.rmdir()


@pytest.mark.slow
def test_train_check_and_sweep_a_project_of_ones_own(project):
    trained = sweeplab(project, "train", "experiment=tiny")
    assert trained.returncode == 0, trained.stderr
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])[0]
    assert run.data.params["model.target"] == "tinynet.model:Net"
    assert run.data.params["data.target"] == "tinynet.data:load"
    assert run.data.params["metrics.error.target"] == "tinynet.metrics:error_rate"
    assert len(run.data.tags["sweeplab.project.hash"]) == 16
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/error")] == [1, 2, 3]

    checked = sweeplab(project, "sweep", "--check", "experiment=tiny")
    assert checked.returncode == 0, checked.stderr
    assert (
        "model tinynet: 2 distinct" in checked.stdout
        and "tune.metric=val/error is reported" in checked.stdout
    )
    assert not (project / "sweeps").exists()  # nothing was trained or recorded

    swept = sweeplab(project, "sweep", "experiment=tiny", "tune.name=tiny-1")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    parent = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.`sweeplab.kind` = 'sweep'"
    )[0]
    kids = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(kids) == 2 and {k.info.status for k in kids} == {"FINISHED"}
    for kid in kids:
        assert kid.data.params["model.target"] == "tinynet.model:Net"
        assert kid.data.tags["sweeplab.project.hash"] == run.data.tags["sweeplab.project.hash"]
        assert len(client.get_metric_history(kid.info.run_id, "val/error")) == 3

    # The registered model loads in a fresh process that has neither the project nor sweeplab's
    # checkout on its path: its code was logged with it.
    elsewhere = project.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    load = textwrap.dedent(f"""
        import sys, mlflow, torch
        assert not any("myproject" in p for p in sys.path), sys.path
        mlflow.set_tracking_uri("sqlite:///{project}/mlflow.db")
        model = mlflow.pytorch.load_model("models:/tiny-blobs@best")
        print(type(model.model).__module__, tuple(model(torch.randn(4, 6)).shape))
    """)
    loaded = subprocess.run(
        [sys.executable, "-c", load], cwd=elsewhere, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["tinynet.model", "(4,", "3)"]


# ------------------------------------------------------------------ one line for each mistake
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=typo"], ["model.widht", "tinynet.model:Net takes no argument", "did you mean 'width'"]),
        (["model=tinynet", "model.widht=8"], ["unknown config key 'model.widht'", "did you mean 'width'"]),
        (
            ["model=missing"],
            ["cannot import nosuchpkg", "looked for in the project folder", "ModuleNotFound"],
        ),
        (["model=notmodule"], ["tinynet.model:not_a_module returned dict, not a torch.nn.Module"]),
        (["model=tenout"], ["outputs shape (10,)", "3 classes", "needs (3,)"]),
        (["model=nodrop", "regularizer=dropout"], ["regularizer.dropout=0.5", "takes no 'dropout'"]),
        (["model=tinynet", "model.width=12a"], ["model.width='12a': tinynet.model:Net takes int"]),
        (
            ["model=tinynet", "model._target_=tinynet.modl.Net"],
            ["tinynet has no 'modl' (did you mean 'model'?)"],
        ),
        (["model.hidden=256"], ["model.hidden=256 must be a list", "model.hidden=[256]"]),
        (["search=listy"], ["a list where a mapping belongs"]),
        (["hydra.searchpath=[file:///no/such/folder]"], ["/no/such/folder is not a folder", "--config-dir"]),
    ],
)
def test_each_mistake_is_one_line_naming_the_option(in_project, capsys, args, expected):
    command = ["sweep", "--check"] if args == ["search=listy"] else ["train"]
    line = error_line(capsys, *command, "data=blobs", "trainer.epochs=1", "tracking.enabled=false", *args)
    for part in expected:
        assert part in line, line


def test_a_root_key_that_lives_in_a_section_is_named(in_project, capsys):
    line = error_line(capsys, "train", "--cfg", "epochs=5")
    assert "unknown config key 'epochs'" in line and "did you mean 'trainer.epochs'" in line


def test_a_metric_no_trial_reports_is_refused_before_the_sweep_starts(in_project, capsys):
    line = error_line(capsys, "sweep", "experiment=tiny", "tune.metric=val/accuracy", "tune.name=never")
    assert "tune.metric=val/accuracy is reported by no trial" in line and "val/error" in line
    assert not (in_project / "sweeps" / "never").exists()


def test_a_config_dir_that_is_no_folder_is_named(in_project, capsys, tmp_path):
    line = error_line(capsys, "train", "--config-dir", str(tmp_path / "nope"), "--cfg")
    assert "is not a folder" in line and "--config-dir" in line


def test_init_writes_a_project_that_trains_as_it_is(tmp_path, capsys):
    assert main(["init", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "README.md").is_file()
    line = error_line(capsys, "init", str(tmp_path / "mine"))  # never over a project
    assert "mine" in line
    trained = sweeplab(tmp_path / "mine", "train", "experiment=mynet_sweep", "trainer.epochs=1")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "run summary" in trained.stdout


# ------------------------------------------------------------------ what travels to a cluster
def test_the_project_travels_to_workers_without_data_outputs_or_environments(project, monkeypatch):
    from sweeplab import project as proj

    monkeypatch.chdir(project)
    monkeypatch.delenv("SWEEPLAB_CONFIG_DIR", raising=False)
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / "big.bin").write_bytes(b"\0" * (2 << 20))
    (project / "requirements.txt").write_text("scikit-learn\n")
    (project / ".aws").mkdir(exist_ok=True)  # a key beside the project: never sent to the workers
    (project / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = s3cr3t\n")
    (project / ".env").write_text("MLFLOW_TRACKING_PASSWORD=s3cr3t\n")
    try:
        env = proj.runtime_env(remote=True)
        assert env["working_dir"] == str(project) and env["pip"] == str(project / "requirements.txt")
        assert env["env_vars"] == {"SWEEPLAB_CONFIG_DIR": "conf"}  # relative: the worker's copy
        assert "/data" in env["excludes"] and ".?*" in env["excludes"]
        assert proj.upload_size(project) < 1 << 20  # the excluded data does not count
        from ray._private.thirdparty.pathspec import PathSpec  # the matcher Ray applies to them

        assert not PathSpec.from_lines("gitwildmatch", env["excludes"]).match_file(".")  # not all of it
        sent = proj.travelling(project)
        assert "conf/data/blobs.yaml" in sent and "tinynet/model.py" in sent  # conf/data/ is not ./data
        assert not [f for f in sent if f.startswith(("data/", ".aws/", ".env"))], sent  # no data, no secrets
        local = proj.runtime_env(remote=False)
        assert local["env_vars"]["SWEEPLAB_CONFIG_DIR"] == str(project / "conf")
        assert local["env_vars"]["PYTHONPATH"].split(os.pathsep)[0] == str(project)
        monkeypatch.setattr(proj, "MAX_UPLOAD_BYTES", 1 << 20)
        (project / "weights.bin").write_bytes(b"\0" * (2 << 20))
        with pytest.raises(proj.ProjectError, match=r"\.rayignore.*largest: weights.bin \(2 MiB\)\)$"):
            proj.runtime_env(remote=True)
        (project / ".rayignore").write_text("weights.bin\n")
        assert proj.runtime_env(remote=True)["working_dir"] == str(project)
    finally:
        for name in (
            "data/big.bin",
            "requirements.txt",
            "weights.bin",
            ".rayignore",
            ".aws/credentials",
            ".env",
        ):
            (project / name).unlink(missing_ok=True)
        (project / "data").rmdir()
        (project / ".aws").rmdir()


# ------------------------------------------------------------------ data that does not fit in memory
@pytest.mark.slow
def test_streamed_data_is_read_by_each_trial_not_held_by_the_driver(project, tmp_path):
    """A Dataset reading one file per sample from a folder every trial can reach: trained in
    batches by each trial; the driver opens it and reads a few samples to check the model."""
    import numpy as np

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 6)) * 3
    sizes = {"train": 90, "val": 30, "test": 30}
    for split, n in sizes.items():
        for i in range(n):
            label = i % 3
            folder = tmp_path / "shared" / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{i}.npy", (centers[label] + rng.normal(size=6)).astype(np.float32))
    (project / "conf/data/files.yaml").write_text(
        f"_target_: tinynet.files.load\nroot: {tmp_path / 'shared'}\n"
    )
    reads_log = tmp_path / "reads.log"
    env = {**os.environ, "READS_LOG": str(reads_log)}
    try:
        args = ["sweep", "experiment=tiny", "data=files", "tune.name=streamed", "trainer.epochs=2"]
        args.append("trainer.eval_batch_size=8")  # the driver's check reads one batch of it
        swept = subprocess.Popen(
            [sys.executable, "-m", "sweeplab.cli", *args], cwd=project, text=True,
            env={**{k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}, "PYTHONPATH": ""},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = swept.communicate(timeout=300)
        assert swept.returncode == 0, out
    finally:
        (project / "conf/data/files.yaml").unlink()
    reads: dict[tuple[int, str], int] = {}
    for line in reads_log.read_text().splitlines():
        pid, split = line.split()
        reads[int(pid), split] = reads.get((int(pid), split), 0) + 1
    driver = {split: n for (pid, split), n in reads.items() if pid == swept.pid}
    # the driver checks the model on a few samples and tests the chosen one; it never trains
    # (val: the check's one batch, the logged model's example, a few samples for shapes: < 30)
    assert driver.get("train", 0) <= 5 and driver.get("val", 0) < sizes["val"], driver
    assert sizes["test"] <= driver["test"] <= sizes["test"] + 2, driver
    trials = {pid for pid, _ in reads} - {swept.pid}
    assert len(trials) >= 1
    trained = sum(n for (pid, split), n in reads.items() if pid in trials and split == "train")
    assert trained >= 2 * 2 * sizes["train"], reads  # two trials, two epochs, every sample
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    parent = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.`sweeplab.sweep` = 'streamed'"
    )
    kids = [r for r in parent if "mlflow.parentRunId" in r.data.tags]
    assert len(kids) == 2
    for kid in kids:
        assert [m.step for m in client.get_metric_history(kid.info.run_id, "val/acc")] == [1, 2]


# ------------------------------------------------------------------ the examples
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_the_regression_example_sweeps_and_registers_a_regressor(tmp_path):
    import shutil

    example = shutil.copytree(EXAMPLES / "diabetes_regression", tmp_path / "diabetes_regression")
    args = ["experiment=diabetes_sweep", "tune.num_samples=4", "trainer.epochs=6", "tune.grace_period=2"]
    swept = sweeplab(example, "sweep", *args, "tune.name=diabetes-1")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "test/mae" in swept.stdout and "test/acc" not in swept.stdout
    client = MlflowClient(f"sqlite:///{example}/mlflow.db")
    experiment = client.get_experiment_by_name("diabetes")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`sweeplab.kind` = 'sweep'")
    assert parent.info.status == "FINISHED"
    assert {"test/mse", "test/mae", "test/r2"} <= set(parent.data.metrics)
    kids = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(kids) == 4
    assert all(client.get_metric_history(k.info.run_id, "val/r2") for k in kids)
    version = client.get_model_version_by_alias("diabetes-diabetes", "best")
    assert version.run_id == parent.info.run_id


def test_the_keras_tuner_example_checks_on_the_course_data():
    checked = sweeplab(EXAMPLES / "keras_tuner_course", "sweep", "--check", "experiment=keras_tuner_course")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "model course_net: 2 distinct, 25,450 to 407,050 parameters" in checked.stdout
