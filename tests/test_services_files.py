"""The deployment files: docker/compose.yaml resolves to the intended services, and
services/tracking-server.sh really serves MLflow on PostgreSQL.

The compose tests need ``docker-compose`` (not a Docker daemon); the service tests need
PostgreSQL at ``$SWEEPLAB_TEST_POSTGRES_URL``. Both fail in CI (``$CI`` set) when their tool
is missing and skip elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from conftest import require_in_ci

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
SCRIPT = ROOT / "services" / "tracking-server.sh"
# Variables that would change what compose resolves: the test supplies its own.
COMPOSE_VARS = ("POSTGRES_", "MLFLOW_PORT", "MLFLOW_ALLOWED_HOSTS", "COMPOSE_")
READY_TIMEOUT_S = 120  # bound on the server's start-up (database migrations, workers)


# ------------------------------------------------------------------ compose
def run_compose_config(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        require_in_ci("docker-compose is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(COMPOSE_VARS)}
    env.update(variables)
    # An empty env file: a developer's docker/.env must not leak into the result.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return subprocess.run(
        [exe, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def compose_config(tmp_path) -> dict:
    proc = run_compose_config(tmp_path, POSTGRES_PASSWORD="test-only-password")
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def is_pinned(image: str) -> bool:
    """``name:tag`` with a real tag (not ``latest``), or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def test_is_pinned():
    assert is_pinned("postgres:15.18-bookworm")
    assert is_pinned("localhost:5000/sweeplab:0.1.0")
    assert is_pinned("python@sha256:" + "0" * 64)
    assert not is_pinned("postgres")
    assert not is_pinned("postgres:latest")
    assert not is_pinned("localhost:5000/sweeplab")


def test_compose_has_its_services(compose_config):
    services = compose_config["services"]
    assert set(services) == {"postgres", "mlflow", "sweeplab", "ray-head", "ray-worker"}
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["sweeplab"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["sweeplab"]["profiles"] == ["train"]  # `up` starts only the servers
    assert set(compose_config["volumes"]) >= {"pgdata", "mlartifacts", "data"}


def test_compose_ray_cluster(compose_config):
    services = compose_config["services"]
    head, worker = services["ray-head"], services["ray-worker"]
    assert head["profiles"] == worker["profiles"] == ["cluster"]  # started only when asked for
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert "--head" in head["command"] and "--address=ray-head:6379" in worker["command"]
    assert head["image"] == worker["image"] == services["sweeplab"]["image"]  # same code on every node
    for node in (head, worker):
        assert node["environment"]["SWEEPLAB_DATA_DIR"] == "/data"
        assert node["environment"]["RAY_AUTH_MODE"] == services["sweeplab"]["environment"]["RAY_AUTH_MODE"]
        assert "ports" not in node


def test_compose_images_are_pinned(compose_config):
    for name, service in compose_config["services"].items():
        assert "image" in service, f"{name}: no image name"
        assert is_pinned(service["image"]), f"{name}: image {service['image']!r} is not pinned"


def test_compose_ports_bound_to_loopback(compose_config):
    services = compose_config["services"]
    assert "ports" not in services["postgres"]  # reachable from the other containers only
    assert "ports" not in services["sweeplab"]
    ports = services["mlflow"]["ports"]
    assert ports
    for port in ports:
        if isinstance(port, dict):  # long syntax
            assert port.get("host_ip") == "127.0.0.1", port
        else:
            assert str(port).startswith("127.0.0.1:"), port


def test_compose_mlflow_server(compose_config):
    mlflow = compose_config["services"]["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    store = command[command.index("--backend-store-uri") + 1]
    # A bare postgresql:// means psycopg 3 under SQLAlchemy 2.1; the image has psycopg2.
    assert store == "postgresql+psycopg2://mlflow@postgres:5432/mlflow"
    assert "test-only-password" not in store  # the password travels as PGPASSWORD
    assert mlflow["environment"]["PGPASSWORD"] == "test-only-password"
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == "/mlartifacts"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    # The trainer sends Host: mlflow:5000, which MLflow's default host check rejects.
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert "mlflow:5000" in allowed
    assert "127.0.0.1:*" in allowed
    assert "/health" in " ".join(mlflow["healthcheck"]["test"])
    assert "pg_isready" in " ".join(compose_config["services"]["postgres"]["healthcheck"]["test"])


def test_compose_sweeplab_service(compose_config):
    sweeplab = compose_config["services"]["sweeplab"]
    assert Path(sweeplab["build"]["context"]) == ROOT
    assert sweeplab["build"]["dockerfile"] == "docker/Dockerfile"
    env = sweeplab["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["SWEEPLAB_DATA_DIR"] == "/data"
    assert any(str(v).startswith("data:/data") for v in sweeplab["volumes"])


def test_compose_requires_a_password(tmp_path):
    proc = run_compose_config(tmp_path)
    assert proc.returncode != 0
    assert "POSTGRES_PASSWORD" in proc.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "mlflow.Dockerfile"])
def test_dockerfile_base_image_pinned_and_user_not_root(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert bases
    for base in bases:
        assert is_pinned(base), base
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), f"{base}: not a patch-pinned slim tag"
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def test_trainer_dockerfile_installs_cpu_torch_first():
    text = (DOCKER / "Dockerfile").read_text()
    torch_cpu = text.index("torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert torch_cpu < text.index("pip install --no-cache-dir .")
    assert "SWEEPLAB_CONFIG_DIR=/app/conf" in text
    assert 'ENTRYPOINT ["sweeplab"]' in text
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "mlruns", "mlflow.db", "mlartifacts"} <= set(ignored)


# ------------------------------------------------------------------ tracking server
def libpq_url(url: str) -> str:
    """psycopg2 takes postgresql:// but not SQLAlchemy's postgresql+driver://."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture
def admin_url() -> str:
    url = os.environ.get("SWEEPLAB_TEST_POSTGRES_URL")
    if not url:
        require_in_ci(
            "SWEEPLAB_TEST_POSTGRES_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)"
        )
    return libpq_url(url)


def drop_database(admin: str, dbname: str) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(admin)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    finally:
        conn.close()


def database_exists(admin: str, dbname: str) -> bool:
    import psycopg2

    conn = psycopg2.connect(admin)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
            return cur.fetchone() is not None
    finally:
        conn.close()


@pytest.fixture
def unique_dbname(admin_url):
    """A database name nobody uses; the database is dropped afterwards if it was created."""
    name = f"sweeplab_test_{uuid.uuid4().hex[:12]}"
    yield name
    drop_database(admin_url, name)


@pytest.fixture
def fresh_database(admin_url, unique_dbname) -> str:
    """URL of a new, empty database."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(unique_dbname)))
    finally:
        conn.close()
    return with_database(admin_url, unique_dbname)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left after a grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def script_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWEEPLAB_", "MLFLOW_"))}
    env.update(variables)
    return env


@pytest.fixture
def tracking_server(fresh_database, tmp_path):
    """services/tracking-server.sh on a fresh database and a free port; yields (url, artifacts dir)."""
    port = free_port()
    artifacts = tmp_path / "artifacts"
    log_path = tmp_path / "server.log"
    env = script_env(
        SWEEPLAB_DB_URL=fresh_database,
        SWEEPLAB_HOST="127.0.0.1",
        SWEEPLAB_PORT=str(port),
        SWEEPLAB_ARTIFACTS=str(artifacts),
        SWEEPLAB_WORKERS="1",
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(SCRIPT)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # Readiness poll, not a timing assertion: the bound only keeps a broken start from hanging.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tracking server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /health within {READY_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield url, artifacts
    finally:
        stop_group(proc)


@pytest.mark.service
def test_tracking_server_serves_runs_and_artifacts(tracking_server, fresh_database, tmp_path):
    from mlflow import MlflowClient

    url, artifacts = tracking_server
    client = MlflowClient(url)
    experiment_id = client.create_experiment(f"services-test-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server

    client.log_param(run_id, "optimizer", "rmsprop")
    client.log_metric(run_id, "val_accuracy", 0.875, step=3)
    note = tmp_path / "note.txt"
    note.write_text("trained on PostgreSQL\n")
    client.log_artifact(run_id, str(note), artifact_path="notes")
    client.set_terminated(run_id)

    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"optimizer": "rmsprop"}
    assert got.data.metrics == {"val_accuracy": 0.875}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_accuracy")] == [(3, 0.875)]
    assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/note.txt"]
    downloaded = client.download_artifacts(run_id, "notes/note.txt", dst_path=str(tmp_path / "download"))
    assert Path(downloaded).read_text() == "trained on PostgreSQL\n"

    # The server stored the artifact under SWEEPLAB_ARTIFACTS and the run in the PostgreSQL database.
    assert [p.read_text() for p in artifacts.rglob("note.txt")] == ["trained on PostgreSQL\n"]
    import psycopg2

    conn = psycopg2.connect(libpq_url(fresh_database))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
            assert cur.fetchone() == ("FINISHED",)
    finally:
        conn.close()


@pytest.mark.service
def test_tracking_server_creates_missing_database(admin_url, unique_dbname, tmp_path):
    """The script creates the database, then execs mlflow with the expected arguments.

    A copy of the script runs beside a stand-in ``.venv/bin/mlflow`` that records its arguments,
    so this checks the command line without starting a server.
    """
    venv_bin = tmp_path / "root" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (tmp_path / "root" / "services").mkdir()
    script = tmp_path / "root" / "services" / SCRIPT.name
    shutil.copy2(SCRIPT, script)
    # A wrapper, not a symlink: a symlinked venv python would look for pyvenv.cfg beside the link.
    python = ROOT / ".venv" / "bin" / "python"
    python = python if python.exists() else Path(shutil.which("python3"))
    (venv_bin / "python").write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
    (venv_bin / "python").chmod(0o755)
    argv_file = tmp_path / "argv"
    fake = venv_bin / "mlflow"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{argv_file}"\n')
    fake.chmod(0o755)

    assert not database_exists(admin_url, unique_dbname)
    env = script_env(
        SWEEPLAB_DB_URL=with_database(admin_url, unique_dbname),
        SWEEPLAB_PORT="5999",
        SWEEPLAB_ARTIFACTS=str(tmp_path / "art"),
        SWEEPLAB_ALLOWED_HOSTS="tracking.lan:5999",
    )
    proc = subprocess.run([str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert database_exists(admin_url, unique_dbname)
    assert f"created database {unique_dbname}" in proc.stderr

    argv = argv_file.read_text().splitlines()
    assert argv[0] == "server"
    store = argv[argv.index("--backend-store-uri") + 1]
    expected = with_database(admin_url, unique_dbname).replace("postgresql://", "postgresql+psycopg2://", 1)
    assert store == expected
    assert "--serve-artifacts" in argv
    assert argv[argv.index("--artifacts-destination") + 1] == str(tmp_path / "art")
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "5999"
    assert argv[argv.index("--allowed-hosts") + 1] == "tracking.lan:5999"
    assert int(argv[argv.index("--workers") + 1]) >= 1

    # Second start: the database exists, nothing is created.
    proc = subprocess.run([str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "created database" not in proc.stderr


@pytest.mark.service
def test_sweeplab_train_against_the_tracking_server(tracking_server, tmp_path):
    """Service mode end to end: the CLI needs only the server's URL; artifacts travel through it."""
    import mlflow
    import torch
    from mlflow import MlflowClient

    url, artifacts = tracking_server
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweeplab.cli",
            "train",
            "data=digits",
            "trainer.epochs=2",
            "tracking.experiment=service-mode",
        ],
        cwd=tmp_path,
        env=script_env(MLFLOW_TRACKING_URI=url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the embedded default

    client = MlflowClient(url)
    exp = client.get_experiment_by_name("service-mode")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["sweeplab.status"] == "completed"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")] == [1, 2]
    assert {"plots", "checkpoints", "config.yaml"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert list(artifacts.rglob("learning_curve.png"))  # stored by the server, not the client
    mlflow.set_tracking_uri(url)
    model = mlflow.pytorch.load_model(f"models:/{run.outputs.model_outputs[0].model_id}")
    probs = model(torch.zeros(3, 1, 8, 8))
    assert probs.shape == (3, 10) and torch.allclose(probs.sum(1), torch.ones(3))
