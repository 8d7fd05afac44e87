"""Credentials never recorded (issue 10): `sweeplab train` and `sweeplab sweep` run as a user
runs them, holding every kind of secret sweeplab meets, and nothing they leave shows one.

- a password in the store URI: the MLflow store on PostgreSQL (the server trusts local
  connections, so the password is never checked, but it travels like a real one);
- a user's password for a tracking server with MLflow's basic-auth app
  (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``);
- an object-store key (``AWS_SECRET_ACCESS_KEY``), which the first sweep really uses: its storage
  is an S3 server (moto) that checks request signatures;
- a Ray token (``RAY_AUTH_TOKEN``): the first sweep runs on a Ray cluster that requires it, the
  second on the local Ray a sweep starts.

While the commands run, every process's command line is sampled (what ``ps`` shows any user);
afterwards every byte they wrote is searched: the store's tables, the artifacts, the sweep folder
(``sweeplab.json``, ``outbox.db``, ``driver.log``, Tune's files, checkpoints) and its object
storage, Ray's session logs, the tracking server's files, the commands' output, their home and
temp folders. A secret counts as found in any common encoding: raw, URL-encoded, base64 (and
base64 of ``user:password``, HTTP basic auth's header), hex.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

import pytest
from servers import (
    AuthServer,
    free_port,
    libpq_url,
    script_env,
    start_ray_node,
    stop_group,
    wait_for_health,
    wait_for_ray_nodes,
    with_database,
    with_password,
)

SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]
TRAIN = ["train", "data=digits", "trainer.epochs=2"]
SWEEP = [
    "sweep",
    "data=digits",
    "search=lr_batch",
    "tune=fifo",
    "tune.num_samples=2",
    "trainer.epochs=2",
    "trainer.early_stopping.enabled=false",
]
COMMAND_TIMEOUT_S = 600


# ------------------------------------------------------------------ the secrets and their forms
@dataclass
class Secrets:
    """Each secret (name -> value) and, for passwords sent with HTTP basic auth, its user."""

    values: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str, user: str | None = None) -> str:
        self.values[name] = value
        if user:
            self.users[name] = user
        return value

    def forms(self) -> list[tuple[str, bytes]]:
        out = []
        for name, value in self.values.items():
            forms = {
                "raw": value,
                "URL-encoded": quote(value, safe=""),
                "form-encoded": quote_plus(value),
                "base64": base64.b64encode(value.encode()).decode(),
                "hex": value.encode().hex(),
            }
            if name in self.users:
                forms["basic auth"] = base64.b64encode(f"{self.users[name]}:{value}".encode()).decode()
            out += [(f"{name} ({kind})", form.encode()) for kind, form in forms.items()]
        return out


class Search:
    """Every place searched, and every secret found there."""

    def __init__(self, secrets: Secrets):
        self.forms = secrets.forms()
        self.found: list[str] = []
        self.dumps: dict[str, bytes] = {}  # table -> its rows, of the databases searched

    def bytes(self, where: str, data: bytes) -> None:
        self.found += [f"{what} in {where}" for what, form in self.forms if form in data]

    def file(self, path: Path, where: str | None = None) -> None:
        where = where or str(path)
        try:
            data = path.read_bytes()
        except OSError:  # gone meanwhile (a lock file, a socket)
            return
        self.bytes(where, data)
        if zipfile.is_zipfile(path):  # torch checkpoints, MLflow's model pickles: members may be compressed
            with contextlib.suppress(zipfile.BadZipFile), zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    self.bytes(f"{where}!{member}", archive.read(member))

    def tree(self, root: Path, skip: tuple[Path, ...] = ()) -> list[Path]:
        """Every regular file under ``root`` (not the files the test itself put a secret in)."""
        files = [
            p
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and not any(p == s or s in p.parents for s in skip)
        ]
        for path in files:
            self.file(path)
        return files

    def database(self, url: str) -> None:
        """Every row of every table (COPY, as pg_dump writes the data)."""
        import psycopg

        with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            for schema, table in cur.fetchall():
                data = bytearray()
                with cur.copy(f'COPY "{schema}"."{table}" TO STDOUT') as copy:
                    for chunk in copy:
                        data += chunk
                self.bytes(f"{urlsplit(url).path[1:]}.{table}", bytes(data))
                self.dumps[table] = self.dumps.get(table, b"") + bytes(data)

    def rows(self, table: str) -> int:
        return self.dumps.get(table, b"").count(b"\n")

    def assert_nothing_found(self) -> None:
        assert not self.found, "credentials found:\n  " + "\n  ".join(self.found)


class CommandLines:
    """Every process's command line (what ``ps`` shows any user), sampled until stopped."""

    def __init__(self) -> None:
        self.seen: dict[int, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                        self.seen.setdefault(int(entry.name), set()).add(line.decode(errors="replace"))
            if self._stop.wait(0.05):  # a sampling interval, not a timing assertion
                return

    def search(self, search: Search, typed_by_user: tuple[int, ...] = ()) -> str:
        """All command lines but those of the commands the test typed, as one text. A process that a
        typed command forks shows that command's own line until it execs (``git`` run by the command,
        caught between fork and exec): the user's own text, left out by its content, not its pid."""
        typed = {line for pid in typed_by_user for line in self.seen.get(pid, ())}
        lines = [line for pid, seen in self.seen.items() if pid not in typed_by_user for line in seen - typed]
        text = "\n".join(sorted(set(lines)))
        search.bytes("a process's command line", text.encode())
        return text


# ------------------------------------------------------------------ running the commands
@dataclass
class Workspace:
    """A user's machine for the commands: working folder, home, temp folders (Ray's included)."""

    root: Path  # the working directory (./mlartifacts, ./sweeps, the commands' output) and ./home
    scratch: Path  # short (Ray's socket paths have a length limit): TMPDIR and RAY_TMPDIR
    env: dict[str, str]
    pids: list[int] = field(default_factory=list)  # the commands the test started

    def run(self, name: str, args: list[str], expect: int = 0, env: dict[str, str] | None = None) -> str:
        out = self.root / f"{name}.out"
        with open(out, "wb") as fh:
            proc = subprocess.Popen(
                [*SWEEPLAB, *args], cwd=self.root, env={**self.env, **(env or {})},
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            self.pids.append(proc.pid)
            try:
                code = proc.wait(COMMAND_TIMEOUT_S)
            finally:
                stop_group(proc, grace_s=5)
        text = out.read_text(errors="replace")
        assert code == expect, f"sweeplab {name} exited with {code}:\n{text[-4000:]}"
        return text

    def folders(self) -> list[Path]:
        return [self.root, self.scratch]


@contextlib.contextmanager
def workspace(tmp_path: Path, **variables: str) -> Iterator[Workspace]:
    scratch = Path(tempfile.mkdtemp(prefix="slc-", dir="/tmp"))
    (scratch / "tmp").mkdir()
    root = tmp_path / "user"
    (root / "home").mkdir(parents=True)
    env = script_env(
        HOME=str(root / "home"),
        TMPDIR=str(scratch / "tmp"),
        RAY_TMPDIR=str(scratch),
        AWS_EC2_METADATA_DISABLED="true",
        **variables,
    )
    try:
        yield Workspace(root, scratch, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def s3_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], str]]:
    """moto's S3 server on 127.0.0.1, checking signatures: (endpoint, env with its key, bucket)."""
    from hosts import BIN, SETUP_S3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path / "moto.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        for _ in range(600):  # readiness poll: until moto listens
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert proc.poll() is None, log.read_text()[-2000:]
            threading.Event().wait(0.1)
        setup_env = script_env(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1")
        setup = [sys.executable, "-c", SETUP_S3, endpoint, "sweeps"]
        out = subprocess.run(setup, env=setup_env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:] + log.read_text()[-2000:]
        key_id, secret = out.stdout.split()
        env = {
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        yield endpoint, env, "sweeps"
    finally:
        stop_group(proc, grace_s=5)


def bucket_objects(env: dict[str, str], bucket: str) -> dict[str, bytes]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]  # fmt: skip
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def team_config(tmp_path: Path) -> Path:
    """A team's conf/: its tracking option, chosen by default, reads the store URI from the
    environment. Resolved, the URI is in every config sweeplab composes (so in what it records)
    without being on any command line."""
    from sweeplab.project import builtin_conf_dir as config_dir

    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    team = "defaults:\n  - base_tracking\nuri: ${oc.env:SWEEPLAB_TEST_STORE}\n"
    (conf / "tracking" / "team.yaml").write_text(team)
    root = (conf / "config.yaml").read_text()
    assert "  - tracking: default\n" in root
    (conf / "config.yaml").write_text(root.replace("  - tracking: default\n", "  - tracking: team\n"))
    return conf


def ray_temp_dir(proc: subprocess.Popen) -> Path:
    """The ``--temp-dir`` a node started by tests/servers.py's start_ray_node was given."""
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")
    return Path(next(a for a in cmdline if a.startswith("--temp-dir=")).split("=", 1)[1])


@contextlib.contextmanager
def mlflow_ui(ws: Workspace, port: int) -> Iterator[None]:
    """``sweeplab ui`` on the configured store, until its server answers."""
    log = ws.root / "ui.out"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [*SWEEPLAB, "ui", "--port", str(port)], cwd=ws.root, env=ws.env,
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    ws.pids.append(proc.pid)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", proc, log)
        yield
    finally:
        stop_group(proc)


# ------------------------------------------------------------------ the tests
@pytest.mark.slow
@pytest.mark.service
def test_a_password_in_the_store_uri_an_object_store_key_and_a_ray_token_are_never_recorded(
    fresh_database, tmp_path
):
    secrets = Secrets()
    password = secrets.add("store password", f"pg-{uuid.uuid4().hex}!x")  # '!' differs URL-encoded
    token = secrets.add("Ray token", uuid.uuid4().hex + uuid.uuid4().hex)
    store = with_password(fresh_database, password)
    dbname = urlsplit(fresh_database).path[1:]
    conf = team_config(tmp_path)

    with (
        s3_server(tmp_path) as (endpoint, s3_env, bucket),
        workspace(tmp_path, **s3_env, RAY_AUTH_TOKEN=token, SWEEPLAB_TEST_STORE=store,
                  SWEEPLAB_CONFIG_DIR=str(conf)) as ws,
    ):  # fmt: skip
        secrets.add("object-store key", s3_env["AWS_SECRET_ACCESS_KEY"])
        search = Search(secrets)
        # A Ray cluster's head that requires the token, with its own key in ~/.aws/credentials
        # (its trials write their checkpoints to the object store), as an admin sets a machine up.
        head_home = tmp_path / "ray-head"
        aws = head_home / ".aws" / "credentials"
        aws.parent.mkdir(parents=True)
        aws.write_text(f"[default]\naws_access_key_id = {s3_env['AWS_ACCESS_KEY_ID']}\n"
                       f"aws_secret_access_key = {s3_env['AWS_SECRET_ACCESS_KEY']}\n")  # fmt: skip
        port = free_port()
        address = f"127.0.0.1:{port}"
        node_env = {"RAY_AUTH_TOKEN": token, "SWEEPLAB_RAY_PORT": str(port), "AWS_ENDPOINT_URL": endpoint,
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
        with CommandLines() as ps, start_ray_node("head", head_home, **node_env) as head:
            wait_for_ray_nodes(address, 1, script_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token), [head])
            # train: the URI as users write it, on the command line they type (quoted for Hydra: the
            # password has a '!'); first without the quotes, which Hydra refuses with one line
            ws.run("train-typo", [*TRAIN, f"tracking.uri={store}"], expect=2)
            ws.run("train", [*TRAIN, "tracking.experiment=creds", f"tracking.uri='{store}'"])
            # sweep and ui: the team's conf/ gives the store
            ws.run(
                "sweep",
                [*SWEEP, "tracking.experiment=creds-sweep", "tune.name=creds", "cluster=existing",
                 f"cluster.address={address}", f"tune.storage_path=s3://{bucket}/team",
                 f"tune.storage_endpoint={endpoint}"],
            )  # fmt: skip
            ui_port = free_port()
            with mlflow_ui(ws, ui_port):
                pass
            ray_dir = ray_temp_dir(head)
            ray_logs = search.tree(ray_dir)
        commands = ps.search(search, typed_by_user=tuple(ws.pids[:2]))  # the train commands, as typed
        files = [str(p) for folder in ws.folders() for p in search.tree(folder)]
        search.tree(head_home, skip=(aws,))
        search.database(fresh_database)
        objects = bucket_objects(s3_env, bucket)
        for key, data in objects.items():
            search.bytes(f"s3://{bucket}/{key}", data)
        search.file(tmp_path / "moto.log")

    search.assert_nothing_found()
    # What was searched held what the secrets would have been in: the processes, Ray's logs ...
    assert any("raylet" in line and str(ray_dir) in line for line in commands.splitlines())
    assert any("mlflow" in line and f"--port {ui_port}" in line for line in commands.splitlines())
    assert "ray::" in commands
    assert any("/session_" in str(p) and p.suffix in (".log", ".out", ".err") for p in ray_logs)
    # ... the store's records, with the store's URI (masked) among the params,
    assert search.rows("runs") >= 4 and search.rows("logged_model_params") > 0
    assert f"postgres:***@127.0.0.1:5432/{dbname}".encode() in search.dumps["params"]
    # ... the artifacts, the driver's files and the sweep's storage.
    for name in ("config.yaml", "best_config.yaml", "config.json", "best.pt", "driver.log"):
        assert any(f.endswith(name) for f in files), name
    for name in ("creds/sweeplab.json", "result.json", "state.pt", "outbox.db"):
        assert any(k.endswith(name) for k in objects), name


@pytest.mark.slow
@pytest.mark.service
def test_a_tracking_servers_user_password_is_never_recorded(auth_tracking_server: AuthServer, tmp_path):
    server = auth_tracking_server
    alice = server.add_user(f"alice_{uuid.uuid4().hex[:6]}")
    secrets = Secrets()
    secrets.add("tracking password", alice.password, user=alice.name)
    key = secrets.add("object-store key", f"aws-{uuid.uuid4().hex}")
    token = secrets.add("Ray token", uuid.uuid4().hex + uuid.uuid4().hex)
    search = Search(secrets)
    env = {"AWS_ACCESS_KEY_ID": f"AKIA{uuid.uuid4().hex[:16]}", "AWS_SECRET_ACCESS_KEY": key,
           "RAY_AUTH_TOKEN": token}  # fmt: skip
    # The user's credentials in the server's URL (requests sends the URL's user info as basic auth),
    # or as MLflow reads them from the environment.
    in_url = server.url.replace("http://", f"http://{alice.name}:{quote(alice.password, safe='')}@")

    with workspace(tmp_path, **env) as ws:
        with CommandLines() as ps:
            ws.run("train", [*TRAIN, "tracking.experiment=alice-train"], env={"MLFLOW_TRACKING_URI": in_url})
            ws.run(
                "sweep",
                [*SWEEP, "tracking.experiment=alice-sweep", "tune.name=alice"],
                env={"MLFLOW_TRACKING_URI": server.url, **alice.env},
            )
        files = [str(p) for folder in ws.folders() for p in search.tree(folder)]
    commands = ps.search(search)
    dbname = urlsplit(server.env["SWEEPLAB_DB_URL"]).path[1:]
    admin = libpq_url(os.environ["SWEEPLAB_TEST_POSTGRES_URL"])
    search.database(with_database(admin, dbname))
    search.database(with_database(admin, dbname + "_auth"))  # users and their password hashes
    search.tree(server.artifacts.parent, skip=(server.artifacts.parent / "secrets",))  # the server's files

    search.assert_nothing_found()
    assert any("raylet" in line and str(ws.scratch) in line for line in commands.splitlines())
    assert "ray::" in commands
    assert search.rows("runs") >= 4 and search.rows("users") >= 2
    for name in ("sweeplab.json", "outbox.db", "driver.log", "result.json", "state.pt"):
        assert any(f.endswith(name) for f in files), name
    assert any("/session_" in f and f.endswith(".log") for f in files)  # Ray's logs, under RAY_TMPDIR
    assert list(server.artifacts.rglob("config.yaml")) and list(server.artifacts.rglob("best.pt"))


def test_keys_in_the_storage_path_are_refused_before_anything_is_created(workdir, capsys):
    """pyarrow reads ``s3://KEY:SECRET@bucket``, but a storage path is recorded (sweeplab.json,
    Tune's state, the parent run's tags) and shipped to every node: such a sweep never starts."""
    from sweeplab.cli import main

    secret = f"aws-{uuid.uuid4().hex}"
    storage = f"tune.storage_path=s3://AKIAEXAMPLE:{secret}@bucket/team"
    assert main([*SWEEP, storage, "tune.storage_endpoint=http://127.0.0.1:9"]) == 2
    out, err = capsys.readouterr()
    assert secret not in out + err
    assert "tune.storage_path" in err and "AWS_SECRET_ACCESS_KEY" in err
    assert list(workdir.iterdir()) == []  # no store, no sweep folder


def test_the_drivers_own_errors_go_to_driver_log_masked(tmp_path):
    """A sweep's failure is logged with its traceback (``details in driver.log``), and MLflow's
    errors quote the server's URL, user info included: the traceback lands masked in driver.log."""
    import logging

    from sweeplab.sweep.cluster import quiet_ray
    from sweeplab.sweep.driver import log

    secret = f"pw-{uuid.uuid4().hex}"
    quiet_ray(tmp_path / "driver.log")
    try:
        raise RuntimeError(f"API request to http://alice:{secret}@tracking:5000/api/2.0/mlflow/runs/get")
    except RuntimeError:
        log.exception("sweep s failed")
    finally:  # this process's loggers as they were
        for logger in (log, logging.getLogger("ray")):
            for handler in [h for h in logger.handlers if str(tmp_path) in getattr(h, "baseFilename", "")]:
                handler.close()
                logger.removeHandler(handler)
        log.propagate = True
    text = (tmp_path / "driver.log").read_text()
    assert "http://alice:***@tracking:5000" in text and "Traceback" in text
    assert secret not in text
