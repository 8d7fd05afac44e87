"""The deployment files, checked as well as can be done without a container engine or a cluster:
docker/compose.yaml resolves (``docker-compose config``) to the intended stack, each container runs
a script the service tests run, the systemd units verify (``systemd-analyze verify``) and the
Kubernetes manifests validate against Kubernetes' schemas (kubernetes-validate) plus the fields
KubeRay needs.

``docker-compose`` and ``systemd-analyze`` are tools, not daemons; their tests fail in CI (``$CI``
set) when the tool is missing and skip elsewhere.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import require_in_ci

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
UNITS = ROOT / "services" / "systemd"
SECRETS = {  # compose variable -> a test value nobody would use
    "POSTGRES_PASSWORD": "test-only-postgres",
    "MINIO_ROOT_PASSWORD": "test-only-minio",
    "MLFLOW_ADMIN_PASSWORD": "test-only-admin",
    "MLFLOW_FLASK_SECRET_KEY": "test-only-flask",
    "RAY_AUTH_TOKEN": "test-only-ray-token",
    "SWEEP_MLFLOW_PASSWORD": "test-only-sweeper",
    "NIGHTLY_MLFLOW_PASSWORD": "test-only-nightly",
}
# Each sweeplab container's command is one of these scripts, which these tests run for real.
SCRIPT_TESTS = {
    "tracking-server.sh": "test_services_tracking.py",
    "ray-head.sh": "test_services_ray.py",
    "ray-worker.sh": "test_services_ray.py",
    "object-store-init.sh": "test_services_objectstore.py",
}
LONG_RUNNING = {"postgres", "minio", "tracking", "ray-head", "ray-worker", "nightly"}


# ------------------------------------------------------------------ compose
def run_compose_config(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        require_in_ci("docker-compose is not installed (make test-tools installs it)")
    names = set(SECRETS) | {
        "COMPOSE_",
        "MLFLOW_",
        "MINIO_",
        "RAY_",
        "POSTGRES_",
        "SWEEPLAB_",
        "NIGHTLY_",
        "SWEEP_",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(names))}
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
    proc = run_compose_config(tmp_path, **SECRETS)
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


def test_compose_has_the_stack_in_dependency_order(compose_config):
    services = compose_config["services"]
    assert set(services) == LONG_RUNNING | {"buckets", "sweeplab"}
    needs = {
        name: {d: c["condition"] for d, c in s.get("depends_on", {}).items()} for name, s in services.items()
    }
    assert needs["buckets"] == {"minio": "service_healthy"}
    assert needs["tracking"] == {"postgres": "service_healthy", "buckets": "service_completed_successfully"}
    assert needs["ray-head"] == {"tracking": "service_healthy"}
    assert needs["ray-worker"] == {"ray-head": "service_healthy"}
    assert needs["nightly"] == {"tracking": "service_healthy"}
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped", name
    assert services["sweeplab"]["profiles"] == ["cli"]  # `up` starts only the services


def test_compose_images_are_pinned_and_one_sweeplab_image(compose_config):
    services = compose_config["services"]
    for name, service in services.items():
        assert is_pinned(service["image"]), f"{name}: image {service['image']!r} is not pinned"
    ours = {n for n, s in services.items() if s["image"] == "sweeplab:0.1.0"}
    assert ours == {"buckets", "tracking", "ray-head", "ray-worker", "nightly", "sweeplab"}
    built = [n for n, s in services.items() if "build" in s]
    assert built == ["buckets"]  # built once, used by name everywhere else
    build = services["buckets"]["build"]
    assert Path(build["context"]) == ROOT and build["dockerfile"] == "docker/Dockerfile"
    assert build["args"]["BASE_IMAGE"] == "python:3.11.15-slim-bookworm"


def test_each_container_runs_a_script_the_service_tests_run(compose_config):
    services = compose_config["services"]
    for name in ("buckets", "tracking", "ray-head", "ray-worker"):
        command = services[name]["command"]
        assert command[0].startswith("/app/services/"), (name, command)
        script = ROOT / "services" / Path(command[0]).name
        assert os.access(script, os.X_OK), script
        test_file = ROOT / "tests" / "services" / SCRIPT_TESTS[script.name]
        assert (
            script.name in test_file.read_text() or script.name.removesuffix(".sh") in test_file.read_text()
        )
    # The nightly scheduler is the CLI's `nightly schedule` (built and tested with the nightly feature).
    assert services["nightly"]["command"] == ["sweeplab", "nightly", "schedule"]
    from sweeplab.cli import build_parser

    with pytest.raises(SystemExit) as shown:
        build_parser().parse_args(["nightly", "schedule", "--help"])  # the CLI has that command
    assert shown.value.code == 0


def test_compose_publishes_only_on_loopback(compose_config):
    services = compose_config["services"]
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"tracking", "minio", "ray-head"}  # UI/API, MinIO console, Ray's job API
    for name in published:
        for port in services[name]["ports"]:
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", (name, port)


def test_compose_tracking_server_has_auth_and_the_object_store(compose_config):
    env = compose_config["services"]["tracking"]["environment"]
    assert env["SWEEPLAB_AUTH"] == "basic"
    assert env["SWEEPLAB_DB_URL"] == "postgresql://sweeplab@postgres:5432/mlflow"  # plain scheme, no password
    assert env["PGPASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == SECRETS["MLFLOW_ADMIN_PASSWORD"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == SECRETS["MLFLOW_FLASK_SECRET_KEY"]
    assert env["SWEEPLAB_ARTIFACTS"] == "s3://mlflow/artifacts"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "tracking:5000" in env["SWEEPLAB_ALLOWED_HOSTS"].split(",")  # Host header of other containers
    assert compose_config["services"]["buckets"]["command"][1:] == ["mlflow", "sweeps"]


def test_compose_ray_cluster_uses_token_authentication(compose_config):
    services = compose_config["services"]
    for name in ("ray-head", "ray-worker"):
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == SECRETS["RAY_AUTH_TOKEN"]
        assert env["SWEEPLAB_RAY_HOST"] == "auto"  # the container's own address, reachable by the others
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"  # trials checkpoint to the object store
        assert "container_name" not in services[name]
    assert services["ray-worker"]["environment"]["SWEEPLAB_RAY_ADDRESS"] == "ray-head:6379"
    head = services["ray-head"]["environment"]
    assert head["MLFLOW_TRACKING_URI"] == "http://tracking:5000"  # sweep drivers run on the head
    assert head["MLFLOW_TRACKING_PASSWORD"] == SECRETS["SWEEP_MLFLOW_PASSWORD"]


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(tmp_path, secret):
    proc = run_compose_config(tmp_path, **{k: v for k, v in SECRETS.items() if k != secret})
    assert proc.returncode != 0
    assert secret in proc.stderr


def test_no_secret_is_committed():
    example = (DOCKER / ".env.example").read_text()
    values = dict(line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    assert set(values) == set(SECRETS) and not any(values.values())
    assert (DOCKER / ".gitignore").read_text().split() == [".env"]
    k8s_secrets = [d for d in load_manifests() if d["kind"] == "Secret"]
    assert k8s_secrets and all(v == "" for d in k8s_secrets for v in d["stringData"].values())


# ------------------------------------------------------------------ the image
def test_dockerfile_takes_the_base_image_as_an_argument():
    text = (DOCKER / "Dockerfile").read_text()
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)", text, flags=re.MULTILINE)
    assert is_pinned(default) and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", default)
    assert re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE) == ["${BASE_IMAGE}"]
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def test_dockerfile_installs_cpu_torch_first_and_ships_the_scripts():
    text = (DOCKER / "Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert text.index("torch==2.13.0") < text.index('pip install --no-cache-dir ".[cluster]"')
    assert "COPY services ./services" in text and "SWEEPLAB_SERVICES_DIR=/app/services" in text
    # the packaged configs serve; $SWEEPLAB_CONFIG_DIR would make /app a project shipped to workers
    assert "SWEEPLAB_CONFIG_DIR=" not in text
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "mlruns", "mlflow.db", "mlartifacts", "docker/.env"} <= set(ignored)
    assert not {"src", "conf", "services"} & set(ignored)


# ------------------------------------------------------------------ systemd
@pytest.mark.parametrize("unit", ["sweeplab-tracking", "sweeplab-ray-head", "sweeplab-ray-worker"])
def test_systemd_units_verify_and_run_the_scripts(unit, tmp_path):
    text = (UNITS / f"{unit}.service").read_text()
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read_string(text)
    service = parsed["Service"]
    script = ROOT / "services" / Path(service["ExecStart"]).name
    assert service["ExecStart"] == f"/opt/sweeplab/services/{script.name}"
    assert script.name in SCRIPT_TESTS and os.access(script, os.X_OK)
    assert service["User"] == "sweeplab" and service["KillMode"] == "control-group"
    assert "PASSWORD=" not in text and "TOKEN=" not in text  # secrets come as credential files
    exe = shutil.which("systemd-analyze")
    if exe is None:
        require_in_ci("systemd-analyze is not installed")
    # The unit as installed in this checkout: verify checks every directive and that ExecStart runs.
    local = tmp_path / f"{unit}.service"
    local.write_text(text.replace("/opt/sweeplab", str(ROOT)))
    proc = subprocess.run([exe, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


# ------------------------------------------------------------------ Kubernetes
def load_manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [dict(d, _file=path.name) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in load_manifests() if d["kind"] == kind]


def test_k8s_builtin_kinds_validate_against_kubernetes_schemas():
    import kubernetes_validate

    builtin = [d for d in load_manifests() if not d["apiVersion"].startswith("ray.io/")]
    assert {d["kind"] for d in builtin} >= {"Namespace", "ConfigMap", "Secret", "Deployment", "Service"}
    for doc in builtin:
        resource = {k: v for k, v in doc.items() if k != "_file"}
        kubernetes_validate.validate(resource, "1.30", strict=True)  # raises on an unknown or missing field


def test_k8s_kustomization_lists_every_long_running_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).exists(), resource
    assert {"tracking.yaml", "raycluster.yaml", "config.yaml"} <= set(kustomization["resources"])
    assert "secret.example.yaml" not in kustomization["resources"]  # secrets are made by hand, never applied


def test_k8s_tracking_deployment_and_service():
    (deployment,) = by_kind("Deployment")
    (service,) = [s for s in by_kind("Service") if s["metadata"]["name"] == "tracking"]
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["/app/services/tracking-server.sh"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SWEEPLAB_AUTH"] == "basic"
    # Secrets as files (the script's VAR_FILE convention), from the mounted Secret.
    mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")["mountPath"]
    secret_keys = set(by_kind("Secret")[0]["stringData"])
    for name in ("PGPASSWORD_FILE", "MLFLOW_AUTH_ADMIN_PASSWORD_FILE", "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE"):
        directory, key = env[name].rsplit("/", 1)
        assert directory == mount and key in secret_keys, name
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def ray_cluster_specs() -> list[tuple[str, dict]]:
    specs = [("RayCluster", d["spec"]) for d in by_kind("RayCluster")]
    specs += [("RayJob", d["spec"]["rayClusterSpec"]) for d in by_kind("RayJob")]
    return specs


def test_kuberay_clusters_use_token_auth_and_the_sweeplab_image():
    import ray

    specs = ray_cluster_specs()
    assert [kind for kind, _ in specs] == ["RayCluster", "RayJob"]
    token_secret = next(d for d in by_kind("Secret") if "auth_token" in d["stringData"])
    for kind, spec in specs:
        assert spec["rayVersion"] == ray.__version__, kind  # the Ray the image installs
        assert spec["authOptions"] == {"mode": "token", "secretName": token_secret["metadata"]["name"]}
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for group in groups:
            (container,) = group["template"]["spec"]["containers"]
            assert container["image"] == "sweeplab:0.1.0"
            assert group["template"]["spec"]["securityContext"]["runAsUser"] == 10001
        for worker in spec["workerGroupSpecs"]:
            assert (
                worker["groupName"] and worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]
            )
        head_env = {e["name"] for e in spec["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
        assert {"MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY"} <= head_env  # the sweep driver's


def test_kuberay_rayjob_submits_a_sweep_that_the_cli_accepts():
    from sweeplab.config import compose

    (job,) = by_kind("RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["submissionMode"] == "K8sJobMode"
    argv = spec["entrypoint"].split()
    assert argv[:2] == ["sweeplab", "sweep"]
    cfg = compose(argv[2:])  # the overrides compose: a typo here would fail the job at start
    assert cfg.cluster.address == "auto" and cfg.tune.storage_path.startswith("s3://")
