"""The compose stack for real, with podman: images built from a base bootstrapped from Debian's
packages (mmdebstrap), the stack brought up by docker-compose through podman's Docker API, and a
two-trial sweep run on the Ray cluster and recorded by the authenticated tracking server.

This is the run docker/README.md ("Images from Debian packages") describes, with its stand-ins:
PostgreSQL and MinIO images cannot be pulled here, so docker/local/ builds PostgreSQL from
Debian's package and serves S3 with moto; podman runs health checks with systemd timers, which
this machine lacks, so the test runs them (``podman healthcheck run``) itself.

A first run builds ~2.3 GB of images (about 10 minutes on 2 cores); later runs reuse the layers.
It runs when ``SWEEPLAB_TEST_CONTAINERS=1`` (and needs root, podman, mmdebstrap, docker-compose).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.service]
BASE = "localhost/sweeplab-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates,hostname"
HOST_CA = Path(
    "/etc/ssl/certs/ca-certificates.crt"
)  # includes a TLS-intercepting proxy's CA, where there is one
WHEELS = Path("/opt/wheels")  # the local torch wheel, where there is one


@pytest.fixture(scope="module")
def podman(tmp_path_factory) -> Iterator[dict[str, str]]:
    if os.environ.get("SWEEPLAB_TEST_CONTAINERS") != "1":
        pytest.skip("set SWEEPLAB_TEST_CONTAINERS=1 to build the images and start the stack (~10 min)")
    missing = [t for t in ("podman", "mmdebstrap", "docker-compose") if shutil.which(t) is None]
    if missing or os.geteuid() != 0:
        tools = ", ".join(missing) or "podman"
        pytest.fail(f"needs root and {tools} (apt-get install podman mmdebstrap docker-compose)")
    work = tmp_path_factory.mktemp("podman")
    # This machine: cgroups v1 with v2 "hybrid" (crun refuses it: runc), no CAP_SYS_RESOURCE (the
    # default ulimits cannot be raised: keep them at or below the current ones).
    nofile = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip()
    conf = work / "containers.conf"
    limits = f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]'
    conf.write_text(f'[containers]\n{limits}\n[engine]\nruntime = "runc"\n')
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    socket = work / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"], env=env, start_new_session=True
    )
    stop = threading.Event()
    pump = threading.Thread(target=run_health_checks, args=(env, stop), daemon=True)
    pump.start()
    try:
        yield {**env, "DOCKER_HOST": f"unix://{socket}"}
    finally:
        stop.set()
        pump.join(timeout=30)
        service.terminate()
        service.wait(timeout=30)


def run_health_checks(env: dict[str, str], stop: threading.Event) -> None:
    """What podman's systemd timers would do: run each container's health check every few seconds."""
    while not stop.wait(3):
        ids = subprocess.run(["podman", "ps", "-q"], env=env, capture_output=True, text=True).stdout.split()
        for cid in ids:
            subprocess.run(["podman", "healthcheck", "run", cid], env=env, capture_output=True)


def sh(cmd: list[str], env: dict[str, str], timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def build_images(env: dict[str, str], work: Path) -> None:
    if subprocess.run(["podman", "image", "exists", BASE], env=env).returncode != 0:
        tar = work / "base.tar"
        sh(["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(tar)], env)
        sh(["podman", "import", str(tar), BASE], env)
        tar.unlink()
    build = ["podman", "build", "--layers", "--build-arg", f"BASE_IMAGE={BASE}"]
    if HOST_CA.exists():
        build += ["-v", f"{HOST_CA}:{HOST_CA}:ro", "--build-arg", f"PIP_CERT={HOST_CA}"]
    if (WHEELS / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").exists():
        build += [
            "-v",
            f"{WHEELS}:/wheels:ro",
            "--build-arg",
            "PIP_FIND_LINKS=/wheels",
            "--build-arg",
            "TORCH_INDEX_URL=",
        ]
    sh([*build, "-f", "docker/Dockerfile", "-t", "sweeplab:0.1.0", "."], env, cwd=ROOT)
    local = ROOT / "docker" / "local"
    sh(
        [
            *build,
            "-f",
            str(local / "postgres.Dockerfile"),
            "-t",
            "localhost/sweeplab-postgres:15",
            str(local),
        ],
        env,
    )
    sh([*build, "-f", str(local / "s3.Dockerfile"), "-t", "localhost/sweeplab-s3:moto", str(local)], env)


@contextlib.contextmanager
def stack(env: dict[str, str], work: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    values = {
        name: secrets.token_hex(16)
        for name in (
            "POSTGRES_PASSWORD",
            "MINIO_ROOT_PASSWORD",
            "MLFLOW_ADMIN_PASSWORD",
            "MLFLOW_FLASK_SECRET_KEY",
        )
    }
    values |= {
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "SWEEP_MLFLOW_PASSWORD": values["MLFLOW_ADMIN_PASSWORD"],
        "NIGHTLY_MLFLOW_PASSWORD": values["MLFLOW_ADMIN_PASSWORD"],
        "TRACKING_WORKERS": "1",
        "RAY_WORKER_CPUS": "1",
        "MLFLOW_PORT": str(free_port()),
        "RAY_DASHBOARD_PORT": str(free_port()),
        "MINIO_CONSOLE_PORT": str(free_port()),
    }
    env_file = work / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    files = [ROOT / "docker" / "compose.yaml", ROOT / "docker" / "local" / "compose.local.yaml"]
    compose = ["docker-compose", "-p", f"sweeplab{uuid.uuid4().hex[:6]}", "--env-file", str(env_file)]
    compose += [arg for f in files for arg in ("-f", str(f))]
    try:
        sh([*compose, "up", "-d", "tracking", "ray-head", "ray-worker"], env, timeout=900)
        yield compose, values
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, capture_output=True, timeout=300)


def wait_healthy(compose: list[str], service: str, env: dict[str, str], timeout: float = 300) -> str:
    """The container's name once its health check passes (a readiness bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        cid = sh([*compose, "ps", "-q", service], env).stdout.split()[0]
        status = sh(["podman", "inspect", cid, "--format", "{{.State.Health.Status}}"], env).stdout.strip()
        if status == "healthy":
            return cid
        assert time.monotonic() < deadline, f"{service} is {status} after {timeout} s"
        time.sleep(2)


def test_the_stack_starts_and_records_a_two_trial_sweep(podman, tmp_path):
    from mlflow import MlflowClient

    build_images(podman, tmp_path)
    with stack(podman, tmp_path) as (compose, values):
        head = wait_healthy(compose, "ray-head", podman)
        wait_healthy(compose, "ray-worker", podman)
        url = f"http://127.0.0.1:{values['MLFLOW_PORT']}"
        import requests

        assert (
            requests.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30).status_code
            == 401
        )
        nodes = sh(["podman", "exec", head, "ray", "status"], podman).stdout
        assert nodes.split("Active:")[1].split("Pending:")[0].count("node_") == 2  # head + worker, token auth
        sweep = sh(
            ["podman", "exec", head, "sweeplab", "sweep", "data=digits", "search=optimizers", "tune=fifo",
             "tune.num_samples=2", "trainer.epochs=2", "cluster=existing", "tracking.experiment=stack",
             "tune.storage_path=s3://sweeps/stack"],
            podman, timeout=900,
        )  # fmt: skip
        assert "2 completed" in sweep.stdout
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_USERNAME", "admin")
            mp.setenv("MLFLOW_TRACKING_PASSWORD", values["MLFLOW_ADMIN_PASSWORD"])
            client = MlflowClient(url)
            runs = client.search_runs([client.get_experiment_by_name("stack").experiment_id])
            trials = [r for r in runs if r.info.run_name.startswith("trial-")]
            assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
            assert sorted(r.data.tags["sweeplab.status"] for r in trials) == ["completed", "completed"]
            assert {"checkpoints", "plots"} <= {a.path for a in client.list_artifacts(trials[0].info.run_id)}
