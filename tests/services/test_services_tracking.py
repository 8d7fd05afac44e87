"""services/tracking-server.sh as a team runs it: MLflow on PostgreSQL, with or without MLflow's
basic-auth app, bound to loopback unless told otherwise, secrets never on a command line."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from servers import (
    DB_PASSWORD,
    TRACKING_SCRIPT,
    AuthServer,
    User,
    database_exists,
    group_cmdlines,
    libpq_url,
    listening_addresses,
    run_auth_tracking_server,
    script_env,
    with_database,
    with_password,
)

pytestmark = pytest.mark.service


def stored_run_status(database_url: str, run_id: str) -> str | None:
    import psycopg

    with psycopg.connect(libpq_url(database_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
        row = cur.fetchone()
    return row[0] if row else None


# ------------------------------------------------------------------ without authentication
def test_tracking_server_serves_runs_and_artifacts_on_loopback(tracking_server, fresh_database, tmp_path):
    from mlflow import MlflowClient

    server = tracking_server
    # Bound to loopback by default: what the kernel says the server's processes listen on.
    port = int(server.url.rsplit(":", 1)[1])
    assert listening_addresses(server.proc.pid) == {("127.0.0.1", port)}

    client = MlflowClient(server.url)
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
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_accuracy")] == [(3, 0.875)]
    downloaded = client.download_artifacts(run_id, "notes/note.txt", dst_path=str(tmp_path / "download"))
    assert Path(downloaded).read_text() == "trained on PostgreSQL\n"
    # The server stored the artifact under SWEEPLAB_ARTIFACTS and the run in the PostgreSQL database.
    assert [p.read_text() for p in server.artifacts.rglob("note.txt")] == ["trained on PostgreSQL\n"]
    assert stored_run_status(fresh_database, run_id) == "FINISHED"


def fake_mlflow_root(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the script beside a stand-in ``.venv/bin/mlflow`` that records its arguments and
    environment instead of serving: the script's preparation runs for real, the server does not."""
    root = tmp_path / "root"
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (root / "services").mkdir()
    script = root / "services" / TRACKING_SCRIPT.name
    shutil.copy2(TRACKING_SCRIPT, script)
    # A wrapper, not a symlink: a symlinked venv python would look for pyvenv.cfg beside the link.
    (venv_bin / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv_bin / "python").chmod(0o755)
    record = tmp_path / "record"
    (venv_bin / "mlflow").write_text(
        f'#!/usr/bin/env bash\n{{ printf "%s\\n" "$@"; echo ---; env; }} > "{record}"\n'
    )
    (venv_bin / "mlflow").chmod(0o755)
    return script, record


def test_the_script_creates_both_databases_and_keeps_secrets_off_the_command_line(
    admin_url, unique_dbname, tmp_path
):
    script, record = fake_mlflow_root(tmp_path)
    state = tmp_path / "state"
    password_file = tmp_path / "admin-password"
    password_file.write_text("admin-password-from-a-file\n")
    assert not database_exists(admin_url, unique_dbname)
    env = script_env(
        # As users write it: a plain postgresql:// URL with a password (psycopg 3 under SQLAlchemy 2.1).
        SWEEPLAB_DB_URL=with_password(with_database(admin_url, unique_dbname), "p@ss:w/rd"),
        SWEEPLAB_PORT="5999",
        SWEEPLAB_ARTIFACTS=str(tmp_path / "art"),
        SWEEPLAB_ALLOWED_HOSTS="tracking.lan:5999",
        SWEEPLAB_STATE_DIR=str(state),
        SWEEPLAB_AUTH="basic",
        MLFLOW_AUTH_ADMIN_PASSWORD_FILE=str(password_file),
    )
    env["SWEEPLAB_DB_URL"] = env["SWEEPLAB_DB_URL"].replace("p@ss:w/rd", "p%40ss%3Aw%2Frd")
    proc = subprocess.run([str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert database_exists(admin_url, unique_dbname)
    assert database_exists(admin_url, unique_dbname + "_auth")

    argv, _, environ = record.read_text().partition("---\n")
    argv = argv.splitlines()
    child_env = dict(line.split("=", 1) for line in environ.splitlines() if "=" in line)
    assert argv[0] == "server"
    store = argv[argv.index("--backend-store-uri") + 1]
    assert store == with_database(admin_url, unique_dbname)  # plain scheme, no password
    assert "p@ss" not in " ".join(argv) and "admin-password-from-a-file" not in " ".join(argv)
    assert child_env["PGPASSWORD"] == "p@ss:w/rd"  # the password travels to libpq, unescaped
    assert child_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "admin-password-from-a-file"
    assert "MLFLOW_AUTH_ADMIN_PASSWORD_FILE" not in child_env
    assert argv[argv.index("--app-name") + 1] == "basic-auth"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--allowed-hosts") + 1] == "tracking.lan:5999"
    assert child_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"

    # Auth's own database, named in a generated config file with no password in it.
    ini = Path(child_env["MLFLOW_AUTH_CONFIG_PATH"])
    assert f"database_uri = {with_database(admin_url, unique_dbname + '_auth')}\n" in ini.read_text()
    assert "p@ss" not in ini.read_text()
    # A Flask secret key made once, private, and the same at the next start.
    key = child_env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert len(key) == 64
    assert stat.S_IMODE((state / "tracking-secret-key").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700

    proc = subprocess.run([str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "created database" not in proc.stderr
    _, _, environ = record.read_text().partition("---\n")
    assert f"MLFLOW_FLASK_SERVER_SECRET_KEY={key}\n" in environ


def test_a_store_uri_as_users_write_it_works_in_sweeplab(fresh_database, tmp_path):
    """``postgresql://user:password@host/db``, no +driver: sweeplab's own client path (psycopg 3)."""
    out = subprocess.run(
        [
            sys.executable, "-m", "sweeplab.cli", "train", "data=digits", "trainer.epochs=1",
            "tracking.experiment=plain-uri", "tracking.log_model=false",
            f"tracking.uri={with_password(fresh_database, DB_PASSWORD)}",
        ],
        cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    import psycopg

    with psycopg.connect(libpq_url(fresh_database)) as conn, conn.cursor() as cur:
        cur.execute("SELECT r.status FROM runs r JOIN experiments e USING (experiment_id) WHERE e.name = %s",
                    ("plain-uri",))  # fmt: skip
        assert cur.fetchall() == [("FINISHED",)]


# ------------------------------------------------------------------ MLflow's basic-auth app
def test_requests_without_valid_credentials_get_401(auth_tracking_server: AuthServer):
    server = auth_tracking_server
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert server.request("GET", search).status_code == 401
    assert server.request("GET", search, User(server.admin.name, "wrong-password-123")).status_code == 401
    # The admin was created at the first start with the password from the secret file; the
    # default password older MLflow versions shipped does not open it.
    assert server.request("GET", search, server.admin).status_code == 200
    assert server.request("GET", search, User("admin", "password1234")).status_code == 401
    assert server.request("GET", "/health").status_code == 200  # health checks need no credentials

    port = int(server.url.rsplit(":", 1)[1])
    assert listening_addresses(server.proc.pid) == {("127.0.0.1", port)}
    cmdlines = "\n".join(group_cmdlines(server.proc.pid))
    assert "mlflow" in cmdlines and "basic-auth" in cmdlines  # we are looking at the server's processes
    for name, secret in server.secrets.items():
        assert secret not in cmdlines, f"the {name} shows on a command line"


def test_a_users_credentials_record_a_train_run(auth_tracking_server: AuthServer, tmp_path):
    import mlflow
    import torch
    from mlflow import MlflowClient

    server = auth_tracking_server
    alice = server.add_user(f"alice_{uuid.uuid4().hex[:6]}")
    experiment = f"alice-{uuid.uuid4().hex[:6]}"
    out = subprocess.run(
        [sys.executable, "-m", "sweeplab.cli", "train", "data=digits", "trainer.epochs=1",
         f"tracking.experiment={experiment}"],
        cwd=tmp_path, env=script_env(MLFLOW_TRACKING_URI=server.url, **alice.env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the embedded default
    assert alice.password not in out.stdout + out.stderr

    os.environ.update(alice.env)  # how MlflowClient is given credentials; undone below
    try:
        client = MlflowClient(server.url)
        exp = client.get_experiment_by_name(experiment)
        (run,) = client.search_runs([exp.experiment_id])
        assert run.info.status == "FINISHED"
        assert run.data.tags["sweeplab.status"] == "completed"
        assert run.data.params["trainer.epochs"] == "1"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")] == [1]
        assert "test/acc" in run.data.metrics
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"plots", "checkpoints", "config.yaml"} <= names
        mlflow.set_tracking_uri(server.url)
        model = mlflow.pytorch.load_model(f"models:/{run.outputs.model_outputs[0].model_id}")
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    finally:
        for key in alice.env:
            os.environ.pop(key, None)
    assert list(server.artifacts.rglob("learning_curve.png"))  # stored by the server, not the client
    # Alice's experiment is hers: the server resolves MANAGE for her on it.
    assert server.permission(alice, exp.experiment_id) == "MANAGE"


def test_a_read_only_user_cannot_write(auth_tracking_server: AuthServer):
    server = auth_tracking_server
    owner = server.add_user(f"owner_{uuid.uuid4().hex[:6]}")
    created = server.request(
        "POST", "/api/2.0/mlflow/experiments/create", owner, {"name": f"x-{uuid.uuid4()}"}
    )
    experiment_id = created.json()["experiment_id"]
    run = server.request("POST", "/api/2.0/mlflow/runs/create", owner, {"experiment_id": experiment_id})
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    reader = server.add_user(f"reader_{uuid.uuid4().hex[:6]}", {experiment_id: "READ"})
    assert server.permission(reader, experiment_id) == "READ"

    # Reading works ...
    got = server.request("GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}", reader)
    assert got.status_code == 200 and got.json()["run"]["info"]["run_id"] == run_id
    # ... writing does not.
    writes = [
        ("/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id}),
        (
            "/api/2.0/mlflow/runs/log-metric",
            {"run_id": run_id, "key": "val/acc", "value": 1.0, "timestamp": 0},
        ),
        ("/api/2.0/mlflow/runs/set-tag", {"run_id": run_id, "key": "sweeplab.status", "value": "forged"}),
        ("/api/2.0/mlflow/experiments/delete", {"experiment_id": experiment_id}),
    ]
    for path, body in writes:
        resp = server.request("POST", path, reader, body)
        assert resp.status_code == 403, (path, resp.status_code, resp.text)
    # The owner's run is untouched.
    data = server.request("GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}", owner).json()["run"]["data"]
    assert "metrics" not in data and "sweeplab.status" not in {t["key"] for t in data.get("tags", [])}


def test_binding_beyond_loopback_turns_authentication_on(fresh_database, tmp_path):
    """SWEEPLAB_HOST=0.0.0.0 without SWEEPLAB_AUTH: the server listens on every interface, with auth."""
    with run_auth_tracking_server(
        fresh_database, tmp_path, SWEEPLAB_HOST="0.0.0.0", SWEEPLAB_AUTH=""
    ) as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert listening_addresses(server.proc.pid) == {("0.0.0.0", port)}
        assert server.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1").status_code == 401
