"""The long-running parts ``sweeplab services`` knows: how each starts and how it is checked.

Each one is a script under ``services/`` (the same one its systemd unit in
``services/systemd/`` runs) configured by environment variables; its endpoint is worked out
from the same variables, with the same defaults as the script. The scripts are installed with
the package (``sweeplab/services/scripts``): in the repository that folder is a link to its
``services/``, the one copy of them; a wheel carries the files themselves.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from sweeplab.services import health
from sweeplab.services.health import Health

# The nightly scheduler touches this file in the state folder at least once a minute
# (services/README.md, "Heartbeat"); older than this many seconds means it is stuck or gone.
HEARTBEAT_FILE = "nightly.heartbeat"
HEARTBEAT_MAX_AGE_S = 180.0


def installed_dir() -> Path:
    """The scripts installed with the package. Resolved: in a checkout, the link's target, so that a
    script's parent folder is the checkout and it finds the checkout's ``.venv`` as when run by hand."""
    return Path(str(files("sweeplab.services") / "scripts")).resolve()


def services_dir(env: dict[str, str]) -> Path:
    """``$SWEEPLAB_SERVICES_DIR`` (an image's own copy), else the scripts installed with the package."""
    given = env.get("SWEEPLAB_SERVICES_DIR")
    return Path(given) if given else installed_dir()


def ray_bin() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else "ray"


def ray_env(env: dict[str, str]) -> dict[str, str]:
    """What the Ray scripts set (services/lib/ray-auth.sh): token mode unless disabled."""
    return {**env, "RAY_AUTH_MODE": env.get("RAY_AUTH_MODE") or "token", "RAY_USAGE_STATS_ENABLED": "0"}


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


@dataclass(frozen=True)
class Service:
    name: str
    script: str  # file name under services/
    unit: str | None  # the systemd unit shipped for it
    what: str
    # endpoint(env, state_dir) -> where it answers; check(endpoint, env) -> Health
    endpoint: Callable[[dict[str, str], Path], str]
    check: Callable[[str, dict[str, str]], Health]

    def script_path(self, env: dict[str, str]) -> Path:
        return services_dir(env) / self.script

    def installed(self, env: dict[str, str]) -> bool:
        return os.access(self.script_path(env), os.X_OK)


def _tracking_endpoint(env: dict[str, str], _: Path) -> str:
    host = _connect_host(env.get("SWEEPLAB_HOST", "127.0.0.1"))
    return f"http://{host}:{env.get('SWEEPLAB_PORT', '5000')}"


def _head_endpoint(env: dict[str, str], _: Path) -> str:
    host = _connect_host(env.get("SWEEPLAB_RAY_HOST", "127.0.0.1"))
    return f"{host}:{env.get('SWEEPLAB_RAY_PORT', '6379')}"


def _worker_endpoint(env: dict[str, str], state: Path) -> str:
    # The head it joins: SWEEPLAB_RAY_ADDRESS, else the head `services up` started on this machine.
    return env.get("SWEEPLAB_RAY_ADDRESS") or _head_endpoint(env, state)


def _heartbeat_endpoint(env: dict[str, str], state: Path) -> str:
    return str(state / HEARTBEAT_FILE)


def _heartbeat_check(endpoint: str, env: dict[str, str]) -> Health:
    max_age = float(env.get("SWEEPLAB_NIGHTLY_HEARTBEAT_MAX_AGE_S") or HEARTBEAT_MAX_AGE_S)
    return health.heartbeat(Path(endpoint), max_age)


SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        Service(
            "tracking",
            "tracking-server.sh",
            "sweeplab-tracking.service",
            "MLflow tracking server on PostgreSQL",
            _tracking_endpoint,
            lambda endpoint, env: health.http_health(f"{endpoint}/health"),
        ),
        Service(
            "ray-head",
            "ray-head.sh",
            "sweeplab-ray-head.service",
            "Ray cluster head",
            _head_endpoint,
            lambda endpoint, env: health.ray_health(endpoint, ray_bin(), ray_env(env)),
        ),
        Service(
            "ray-worker",
            "ray-worker.sh",
            "sweeplab-ray-worker.service",
            "Ray worker joined to the head",
            _worker_endpoint,
            lambda endpoint, env: health.ray_health(endpoint, ray_bin(), ray_env(env)),
        ),
        Service(
            "nightly",
            "nightly-scheduler.sh",
            "sweeplab-nightly.service",
            "nightly benchmark scheduler",
            _heartbeat_endpoint,
            _heartbeat_check,
        ),
    )
}


def default_names() -> list[str]:
    """What a bare ``up`` starts. A worker joins a head elsewhere: name it (``up ray-worker``)."""
    return ["tracking", "ray-head", "nightly"]
