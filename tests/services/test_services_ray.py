"""services/ray-head.sh and ray-worker.sh: token authentication on both sides, the token from a file."""

from __future__ import annotations

import stat
import subprocess

import pytest
from servers import RAY, SERVICES, free_port, ray_nodes, script_env, start_ray_node, wait_for_ray_nodes

pytestmark = pytest.mark.service


def test_a_worker_joins_a_head_on_a_machine_where_a_local_sweep_made_the_token(tmp_path):
    """A local sweep leaves ~/.ray/auth_token; Ray then starts a head in token mode on its own but
    not a worker, which failed with InvalidAuthToken until the scripts set the mode on both."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("0123456789abcdef" * 4)  # what ray.init() writes there
    port = free_port()
    address = f"127.0.0.1:{port}"
    client_env = script_env(HOME=str(home), RAY_AUTH_MODE="token")
    with start_ray_node("head", home, SWEEPLAB_RAY_PORT=str(port)) as head:
        wait_for_ray_nodes(address, 1, client_env, [head])
        with start_ray_node("worker", home, SWEEPLAB_RAY_ADDRESS=address) as worker:
            wait_for_ray_nodes(address, 2, client_env, [head, worker])
        # A client without the token is turned away.
        stranger = ray_nodes(address, script_env(HOME=str(tmp_path / "stranger"), RAY_AUTH_MODE="token"))
        assert stranger.returncode != 0


def test_the_head_makes_a_private_token_file_and_checks_it(tmp_path):
    secret = tmp_path / "secrets" / "ray-token"
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = script_env(HOME=str(tmp_path / "home"), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(secret))
    with start_ray_node(
        "head", tmp_path / "home", SWEEPLAB_RAY_PORT=str(port), RAY_AUTH_TOKEN_PATH=str(secret)
    ) as head:
        wait_for_ray_nodes(address, 1, env, [head])
        assert len(secret.read_text()) == 64 and stat.S_IMODE(secret.stat().st_mode) == 0o600
        health = [RAY, "health-check", f"--address={address}"]
        assert subprocess.run(health, env=env, capture_output=True, timeout=120).returncode == 0
        wrong = tmp_path / "wrong-token"
        wrong.write_text("f" * 64)
        refused = subprocess.run(
            health, env={**env, "RAY_AUTH_TOKEN_PATH": str(wrong)}, capture_output=True, timeout=120
        )
        assert refused.returncode != 0


def test_a_worker_without_the_token_says_where_to_put_it(tmp_path):
    missing = tmp_path / "no-such-token"
    out = subprocess.run(
        [str(SERVICES / "ray-worker.sh")],
        env=script_env(
            HOME=str(tmp_path), SWEEPLAB_RAY_ADDRESS="127.0.0.1:1", RAY_AUTH_TOKEN_PATH=str(missing)
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert str(missing) in out.stderr and "copy the head's token file" in out.stderr
