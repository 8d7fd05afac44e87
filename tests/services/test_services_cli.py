"""``sweeplab services up|down|status`` on real services: a tracking server on PostgreSQL and a Ray head."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from servers import RAY, free_port, group_pids, script_env

pytestmark = pytest.mark.service


def services(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweeplab.cli", "services", *args],
        env={**env, "COLUMNS": "250"},  # one table row per line
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def row_state(table: str, service: str) -> str:
    """The state column of a service's row in the status table."""
    match = re.search(rf"^\W*{re.escape(service)}\s*│\s*([a-z ]+?)\s*│", table, flags=re.MULTILINE)
    assert match, table
    return match.group(1)


def alive(pgid: int) -> bool:
    return bool(group_pids(pgid))


@pytest.fixture
def env(tmp_path, fresh_database) -> dict[str, str]:
    return script_env(
        HOME=str(tmp_path / "home"),  # Ray's token: ~/.ray/auth_token, made by the head
        SWEEPLAB_STATE_DIR=str(tmp_path / "state"),
        SWEEPLAB_DB_URL=fresh_database,
        SWEEPLAB_PORT=str(free_port()),
        SWEEPLAB_WORKERS="1",
        SWEEPLAB_RAY_PORT=str(free_port()),
        SWEEPLAB_RAY_CPUS="1",
    )


def test_up_status_a_killed_process_and_down(env, tmp_path):
    state = Path(env["SWEEPLAB_STATE_DIR"])
    started = services("up", "tracking", "ray-head", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        pids = {name: int((state / f"{name}.pid").read_text()) for name in ("tracking", "ray-head")}
        assert all(alive(pid) for pid in pids.values())
        assert (state / "tracking.log").stat().st_size > 0 and (state / "ray-head.log").stat().st_size > 0
        # Healthy by the services' own measures, checked here independently of sweeplab.
        with urllib.request.urlopen(f"http://127.0.0.1:{env['SWEEPLAB_PORT']}/health", timeout=10) as resp:
            assert resp.status == 200
        ray_env = {**env, "RAY_AUTH_MODE": "token"}
        check = [RAY, "health-check", f"--address=127.0.0.1:{env['SWEEPLAB_RAY_PORT']}"]
        assert subprocess.run(check, env=ray_env, capture_output=True, timeout=120).returncode == 0

        status = services("status", "tracking", "ray-head", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert row_state(status.stdout, "tracking") == "up" and row_state(status.stdout, "ray-head") == "up"

        again = services("up", "tracking", env=env)  # idempotent: nothing new started
        assert again.returncode == 0 and int((state / "tracking.pid").read_text()) == pids["tracking"]

        # The tracking server dies (every process of it): status sees it, the head stays up.
        os.killpg(pids["tracking"], signal.SIGKILL)
        while alive(pids["tracking"]):
            time.sleep(0.1)
        status = services("status", "tracking", "ray-head", env=env)
        assert status.returncode == 1, status.stdout + status.stderr
        assert row_state(status.stdout, "tracking") == "down" and row_state(status.stdout, "ray-head") == "up"
    finally:
        stopped = services("down", "--grace", "10", env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(alive(pid) for pid in pids.values())
    assert not list(state.glob("*.pid"))
    assert services("status", "tracking", "ray-head", env=env).returncode == 1  # stopped is down


def test_up_reports_a_service_that_cannot_start(tmp_path):
    env = script_env(
        SWEEPLAB_STATE_DIR=str(tmp_path / "state"),
        SWEEPLAB_DB_URL="postgresql://postgres@127.0.0.1:1/nowhere",  # nothing listens on port 1
        SWEEPLAB_DB_WAIT_S="1",
        SWEEPLAB_PORT=str(free_port()),
    )
    out = services("up", "tracking", "--timeout", "60", env=env)
    assert out.returncode == 1
    assert "tracking did not become healthy: the process exited" in out.stderr
    assert "cannot reach PostgreSQL" in out.stderr  # the log's last lines say why
    status = services("status", "tracking", env=env)
    assert status.returncode == 1 and row_state(status.stdout, "tracking") == "down"
    services("down", env=env)


def test_nightly_is_judged_by_its_heartbeat_and_may_be_absent(tmp_path):
    """The scheduler (services/nightly-scheduler.sh) touches <state>/nightly.heartbeat while it runs."""
    scripts, state = tmp_path / "services", tmp_path / "state"
    scripts.mkdir()
    state.mkdir()
    env = script_env(SWEEPLAB_STATE_DIR=str(state), SWEEPLAB_SERVICES_DIR=str(scripts))

    absent = services("status", "nightly", env=env)
    assert absent.returncode == 0 and row_state(absent.stdout, "nightly") == "not installed"

    (scripts / "nightly-scheduler.sh").write_text("#!/bin/sh\n")
    (scripts / "nightly-scheduler.sh").chmod(0o755)
    assert services("status", "nightly", env=env).returncode == 1  # installed, no heartbeat: down
    beat = state / "nightly.heartbeat"
    beat.touch()
    fresh = services("status", "nightly", env=env)
    assert fresh.returncode == 0 and row_state(fresh.stdout, "nightly") == "up"
    old = time.time() - 600
    os.utime(beat, (old, old))
    stale = services("status", "nightly", env=env)
    assert stale.returncode == 1 and row_state(stale.stdout, "nightly") == "down"


def test_unknown_service_is_one_line(tmp_path):
    out = services("status", "trackin", env=script_env(SWEEPLAB_STATE_DIR=str(tmp_path)))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: unknown service 'trackin'; choose from tracking, ray-head, ray-worker, nightly"
    ]
