"""The object store of the deployment: services/object-store-init.sh makes the buckets, and the
tracking server keeps artifacts in S3 (compose: SWEEPLAB_ARTIFACTS=s3://mlflow/artifacts).

MinIO's server is not installable here (no registry of this machine has it), so S3's protocol is
served by moto's standalone server: a real HTTP server that boto3 and MLflow talk to unchanged.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from servers import SERVICES, free_port, run_auth_tracking_server, script_env, stop_group

pytestmark = pytest.mark.service

ACCESS_KEY, SECRET_KEY = "sweeplab", "s3-secret-never-on-argv"


@pytest.fixture
def object_store(tmp_path) -> dict[str, str]:
    """moto's S3 server on a free loopback port; yields the AWS environment clients use."""
    port = free_port()
    log = tmp_path / "s3.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a readiness bound, not a timing assertion
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto's S3 server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "MLFLOW_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        stop_group(proc, grace_s=5)


def buckets(env: dict[str, str]) -> set[str]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    return {b["Name"] for b in s3.list_buckets()["Buckets"]}


def init_buckets(env: dict[str, str], tmp_path: Path, *names: str) -> subprocess.CompletedProcess:
    secret = tmp_path / "s3-secret"
    secret.write_text(SECRET_KEY)
    run_env = script_env(**{k: v for k, v in env.items() if k != "AWS_SECRET_ACCESS_KEY"})
    run_env["AWS_SECRET_ACCESS_KEY_FILE"] = str(secret)  # as a mounted secret
    return subprocess.run(
        [str(SERVICES / "object-store-init.sh"), *names],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_object_store_init_makes_the_buckets_once(object_store, tmp_path):
    assert buckets(object_store) == set()
    first = init_buckets(object_store, tmp_path, "mlflow", "sweeps")
    assert first.returncode == 0, first.stderr
    assert buckets(object_store) == {"mlflow", "sweeps"}
    again = init_buckets(object_store, tmp_path, "mlflow", "sweeps")  # compose runs it at every `up`
    assert again.returncode == 0 and "created" not in again.stderr


def test_the_tracking_server_keeps_artifacts_in_the_object_store(object_store, fresh_database, tmp_path):
    import boto3
    from mlflow import MlflowClient

    assert init_buckets(object_store, tmp_path, "mlflow").returncode == 0
    with run_auth_tracking_server(
        fresh_database, tmp_path, SWEEPLAB_ARTIFACTS="s3://mlflow/artifacts", **object_store
    ) as server:
        user = server.add_user(f"u_{uuid.uuid4().hex[:6]}")
        note = tmp_path / "note.txt"
        note.write_text("kept in S3\n")
        with pytest.MonkeyPatch.context() as mp:
            for key, value in user.env.items():
                mp.setenv(key, value)
            client = MlflowClient(server.url)
            run = client.create_run(client.create_experiment(f"s3-{uuid.uuid4().hex[:6]}"))
            client.log_artifact(run.info.run_id, str(note), artifact_path="notes")
        cmdlines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert SECRET_KEY not in cmdlines
    s3 = boto3.client(
        "s3", endpoint_url=object_store["AWS_ENDPOINT_URL"], aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
    )  # fmt: skip
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow").get("Contents", [])]
    assert [k for k in keys if k.startswith("artifacts/") and k.endswith("/notes/note.txt")], keys
