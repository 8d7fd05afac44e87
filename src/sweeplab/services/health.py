"""How each long-running part says it is healthy. Every check returns a :class:`Health`."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def http_health(url: str, timeout_s: float = 3.0) -> Health:
    """MLflow's ``/health``: 200 once the server takes requests (no credentials needed)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return Health(resp.status == 200, f"{url} answered {resp.status}")
    except urllib.error.HTTPError as err:
        return Health(False, f"{url} answered {err.code}")
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return Health(False, f"{url}: {reason}")


def ray_health(address: str, ray_bin: str, env: dict[str, str], timeout_s: float = 15.0) -> Health:
    """``ray health-check``: the GCS at ``address`` answers (with the cluster's token when auth is on).

    The same check KubeRay and the compose file use; run as a child process so that the
    ``sweeplab`` process never connects to (or starts) Ray itself.
    """
    # A closed port answers at once; `ray health-check` alone would wait ~40 s for a GCS that is gone.
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError) as err:
        return Health(False, f"nothing answers at {address}: {getattr(err, 'strerror', None) or err}")
    try:
        proc = subprocess.run(
            [ray_bin, "health-check", f"--address={address}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return Health(False, f"Ray GCS at {address}: no answer within {timeout_s:.0f} s")
    except FileNotFoundError:
        return Health(False, f"no ray executable at {ray_bin}")
    if proc.returncode == 0:
        return Health(True, f"Ray GCS at {address} healthy")
    last = (proc.stderr.strip().splitlines() or ["unreachable"])[-1]
    return Health(False, f"Ray GCS at {address}: {last[:160]}")


def heartbeat(path: Path, max_age_s: float) -> Health:
    """A file the service touches while it runs: healthy while its mtime is recent enough."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return Health(False, f"no heartbeat yet ({path})")
    if age <= max_age_s:
        return Health(True, f"heartbeat {age:.0f} s ago")
    return Health(False, f"heartbeat {age:.0f} s ago, older than {max_age_s:.0f} s ({path})")
