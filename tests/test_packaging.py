"""What leaves the repository: the wheel (with conf/ and the services scripts inside, without the
benchmarks), `make clean`, what git ignores."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import require_in_ci
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout}\n{out.stderr}"
    return out


def build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of what the wheel is made of, so the shared checkout gets no build/ folder."""
    src = tmp_path / "source"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    # symlinks=False: src/sweeplab/services/scripts (a link to services/) arrives as the files
    shutil.copytree(REPO / "src", src / "src", ignore=ignore)
    shutil.copytree(REPO / "conf", src / "conf", ignore=ignore)
    # No build isolation and no index: setuptools comes from this environment, nothing is downloaded.
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), "."],
        src,
    )
    (wheel,) = (tmp_path / "dist").glob("sweeplab-*.whl")
    return wheel


def fresh_venv(tmp_path: Path) -> Path:
    """A new virtual environment that sees this one's installed packages (torch, MLflow, ...) through a
    .pth line, so nothing is downloaded; .pth files of that folder (the editable sweeplab) are not run."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    (purelib,) = (venv / "lib").glob("python3.*/site-packages")
    (purelib / "_shared_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


@pytest.mark.slow
def test_the_wheel_works_outside_the_repository(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as whl:
        infos = whl.infolist()
        modules = {i.filename: whl.read(i).decode() for i in infos if i.filename.endswith(".py")}
    names = {i.filename for i in infos}
    shipped_conf = {n.removeprefix("sweeplab/conf/") for n in names if n.startswith("sweeplab/conf/")}
    assert shipped_conf == {str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")}
    code = {str(p.relative_to(REPO / "src")) for p in (REPO / "src" / "sweeplab").rglob("*.py")}
    assert code <= names, f"modules missing from the wheel: {sorted(code - names)}"
    # the benchmarks stay in the repository (bench/, python -m bench)
    assert not [n for n in names if n.startswith(("bench/", "sweeplab/bench/"))]
    # the scripts `sweeplab services` runs, executable, from the repository's one copy in services/
    scripts = {str(p.relative_to(REPO / "services")): p for p in (REPO / "services").glob("**/*.sh")}
    shipped = {
        i.filename.removeprefix("sweeplab/services/scripts/"): i.external_attr >> 16
        for i in infos
        if i.filename.startswith("sweeplab/services/scripts/")
    }
    assert set(shipped) == set(scripts)
    assert all(bool(mode & 0o111) == os.access(scripts[n], os.X_OK) for n, mode in shipped.items())
    # an installed module never climbs out of the package to a checkout's folders; project.py alone
    # looks for the checkout's conf/ beside src/ first (builtin_conf_dir), then its installed copy
    climbing = {n for n, text in modules.items() if re.search(r"\.parents\[|\.parent\.parent\b", text)}
    assert climbing <= {"sweeplab/project.py"}, climbing

    venv = fresh_venv(tmp_path)
    python = venv / "bin" / "python"
    # --ignore-installed: never touch the editable sweeplab this environment also sees.
    run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        tmp_path,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SWEEPLAB_CONFIG_DIR", "SWEEPLAB_SERVICES_DIR", "PYTHONPATH", "MLFLOW_TRACKING_URI")
        and not k.startswith("RAY_")
    }
    where = run(
        [
            str(python),
            "-c",
            "import sweeplab, sweeplab.project as p; print(sweeplab.__file__); print(p.builtin_conf_dir())",
        ],
        outside,
        env,
    ).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the installed copy, not the checkout

    # `sweeplab services` finds the installed scripts; one runs, its lib/ beside it: a worker without
    # the cluster's token stops before it starts Ray
    check = (
        "from sweeplab.services import catalog as c; print(c.services_dir({}));"
        "assert all(s.installed({}) for s in c.SERVICES.values())"
    )
    (scripts_dir,) = run([str(python), "-c", check], outside, env).stdout.split()
    assert Path(scripts_dir).is_relative_to(venv), scripts_dir
    worker = subprocess.run(
        [str(Path(scripts_dir) / "ray-worker.sh")],
        cwd=outside,
        env={**env, "SWEEPLAB_RAY_ADDRESS": "127.0.0.1:1", "RAY_AUTH_TOKEN_PATH": str(outside / "no-token")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 2 and "no token in" in worker.stderr, worker.stderr

    summary = run([str(venv / "bin" / "sweeplab"), "summary"], outside, env)
    assert "Total params: 101,770" in summary.stdout  # the course network on Fashion-MNIST
    run([str(venv / "bin" / "sweeplab"), "train", "data=digits", "trainer.epochs=1"], outside, env)
    client = MlflowClient(f"sqlite:///{outside / 'mlflow.db'}")
    (run_,) = client.search_runs([client.get_experiment_by_name("sweeplab").experiment_id])
    assert run_.info.status == "FINISHED" and run_.data.params["data.name"] == "digits"


def test_the_services_scripts_have_one_copy():
    """The package's scripts folder is a link to services/: the wheel gets the files, the repository
    keeps one copy, and a checkout's `sweeplab services` runs services/ itself (beside its .venv)."""
    from sweeplab.services import catalog

    link = REPO / "src" / "sweeplab" / "services" / "scripts"
    assert link.is_symlink() and link.resolve() == (REPO / "services").resolve()
    assert catalog.services_dir({}) == (REPO / "services").resolve()
    assert catalog.services_dir({"SWEEPLAB_SERVICES_DIR": "/app/services"}) == Path("/app/services")


def test_make_clean_removes_what_the_project_writes_and_keeps_data(tmp_path):
    if shutil.which("make") is None:
        pytest.fail("make is not installed; `make clean` cannot be checked")
    shutil.copy2(REPO / "Makefile", tmp_path / "Makefile")
    written = [
        ".venv/bin/python",
        ".pytest_cache/v/x",
        ".ruff_cache/x",
        "src/sweeplab/__pycache__/x.pyc",
        "tests/__pycache__/x.pyc",
        "bench/__pycache__/x.pyc",
        "bench/peers/__pycache__/x.pyc",
        "src/sweeplab.egg-info/PKG-INFO",
        "build/lib/x",
        "dist/sweeplab.whl",
        "mlflow.db",
        "mlartifacts/1/x",
        "mlruns/0/x",
        "sweeps/s-1/sweeplab.json",
        ".bench/x.json",
        "outputs/x",
        ".test-artifacts/x.png",
    ]
    kept = [
        "data/fashion-mnist/train-images-idx3-ubyte.gz",
        "src/sweeplab/cli/main.py",
        "bench/peers/task.py",
        "conf/config.yaml",
        "my.npz",
    ]
    for rel in written + kept:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    run(["make", "clean"], tmp_path, {**os.environ, "MAKEFLAGS": ""})
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(["Makefile", *kept])


def test_git_ignores_what_the_project_writes():
    if not (REPO / ".git").exists():
        require_in_ci("not a git checkout")
    paths = [
        "sweeps/s-1/sweeplab.json",
        "mlflow.db",
        "mlartifacts/1/x",
        ".bench/x.json",
        "build/x",
        "dist/x.whl",
    ]
    out = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True
    )
    assert sorted(out.stdout.split()) == sorted(paths)
