"""The deployment files: docker/compose.yaml resolves to the intended services, and
services/tracking-server.sh really serves MLflow on PostgreSQL.

The compose tests need ``docker-compose`` (not a Docker daemon); the service tests need
PostgreSQL at ``$SWEEPLAB_TEST_POSTGRES_URL``. Both fail in CI (``$CI`` set) when their tool
is missing and skip elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

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
