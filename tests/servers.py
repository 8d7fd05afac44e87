"""Real servers for tests, shared by every test module that needs one.

- PostgreSQL: ``admin_url`` (from ``$SWEEPLAB_TEST_POSTGRES_URL``; fails in CI when unset),
  ``fresh_database`` (a new database per test, dropped afterwards, with its ``_auth`` twin).
- The MLflow tracking server, started by ``services/tracking-server.sh`` as a team runs it:
  ``tracking_server`` (no authentication) and ``auth_tracking_server`` (MLflow's basic-auth
  app; ``AuthServer.add_user`` makes users and grants them permissions).
- Ray: ``start_ray_node`` runs ``services/ray-head.sh`` / ``ray-worker.sh``.
- What a process exposes: ``listening_addresses`` (from /proc/net/tcp*), ``group_cmdlines``.

tests/conftest.py registers the fixtures (``pytest_plugins``); import the helpers with
``from servers import ...``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import require_in_ci

from sweeplab.processes import stop

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "services"
TRACKING_SCRIPT = SERVICES / "tracking-server.sh"
READY_TIMEOUT_S = 180  # bound on a server's start-up (migrations, workers) on a loaded 2-core machine
# A password in the store URL: PostgreSQL here trusts local connections, so it is never checked, but
# it travels like a real one and must not show on any command line.
DB_PASSWORD = "db-Pa55word-never-on-argv"


# ------------------------------------------------------------------ PostgreSQL
def libpq_url(url: str) -> str:
    """psycopg takes postgresql:// but not SQLAlchemy's postgresql+driver://."""
    return "postgresql://" + url.split("://", 1)[1]


def with_database(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture
def admin_url() -> str:
    url = os.environ.get("SWEEPLAB_TEST_POSTGRES_URL")
    if not url:
        require_in_ci(
            "SWEEPLAB_TEST_POSTGRES_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)"
        )
    return libpq_url(url)


def _admin_execute(admin: str, statement, params=()) -> list[tuple]:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


def drop_database(admin: str, dbname: str) -> None:
    from psycopg import sql

    _admin_execute(admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def database_exists(admin: str, dbname: str) -> bool:
    return bool(_admin_execute(admin, "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)))


@contextlib.contextmanager
def unique_database_name(admin: str) -> Iterator[str]:
    """A database name nobody uses; it and its ``_auth`` twin are dropped afterwards if created."""
    name = f"sweeplab_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        drop_database(admin, name)
        drop_database(admin, name + "_auth")


@pytest.fixture
def unique_dbname(admin_url) -> Iterator[str]:
    with unique_database_name(admin_url) as name:
        yield name


@pytest.fixture
def fresh_database(admin_url, unique_dbname) -> str:
    """URL of a new, empty database."""
    from psycopg import sql

    _admin_execute(admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(unique_dbname)))
    return with_database(admin_url, unique_dbname)


# ------------------------------------------------------------------ processes and sockets
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
    return pids


def group_cmdlines(pgid: int) -> list[str]:
    """The command lines of every process in a group, as `ps` shows them to any user."""
    lines = []
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines


def _hex_address(text: str) -> str:
    """/proc/net/tcp's little-endian hex address (IPv4, or IPv6 in 32-bit words) to text."""
    import ipaddress

    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    addr = ipaddress.IPv6Address(words)
    return str(addr.ipv4_mapped or addr)


def listening_addresses(pgid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by a process of the group.

    Read from the kernel (/proc/net/tcp and tcp6, matched by socket inode against the
    processes' open files), not from anything the server prints.
    """
    inodes = set()
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:  # 0A: TCP_LISTEN
                host, port = local.split(":")
                found.add((_hex_address(host), int(port, 16)))
    return found


def stop_group(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group, SIGKILL whatever is left after a grace period."""
    stop(proc, grace_s)


def script_env(**variables: str) -> dict[str, str]:
    """The test's environment without any sweeplab/MLflow/Ray setting of the developer's, plus these."""
    prefixes = ("SWEEPLAB_", "MLFLOW_", "RAY_", "PG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(variables)
    return env


def wait_for_health(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Readiness poll, not a timing assertion: the bound only keeps a broken start from hanging."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"no {url}/health within {timeout_s} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)


# ------------------------------------------------------------------ the tracking server
@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    artifacts: Path
    log: Path
    env: dict[str, str]


@contextlib.contextmanager
def run_tracking_server(database_url: str, workdir: Path, **variables: str) -> Iterator[Server]:
    """``services/tracking-server.sh`` on ``database_url``, a free port, one worker; stopped after."""
    port = free_port()
    artifacts = workdir / "artifacts"
    log = workdir / f"tracking-{port}.log"
    defaults = {
        "SWEEPLAB_DB_URL": database_url,
        "SWEEPLAB_PORT": str(port),
        "SWEEPLAB_ARTIFACTS": str(artifacts),
        "SWEEPLAB_WORKERS": "1",
        "SWEEPLAB_STATE_DIR": str(workdir / "state"),
    }
    env = script_env(**(defaults | variables))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(TRACKING_SCRIPT)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host = variables.get("SWEEPLAB_HOST", "127.0.0.1")
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    try:
        wait_for_health(url, proc, log)
        yield Server(url, proc, artifacts, log, env)
    finally:
        stop_group(proc)


@pytest.fixture
def tracking_server(fresh_database, tmp_path) -> Iterator[Server]:
    """The tracking server without authentication (its default on 127.0.0.1)."""
    with run_tracking_server(fresh_database, tmp_path) as server:
        yield server


@dataclass
class User:
    name: str
    password: str

    @property
    def env(self) -> dict[str, str]:
        """How a client is given these credentials: MLflow reads them from the environment."""
        return {"MLFLOW_TRACKING_USERNAME": self.name, "MLFLOW_TRACKING_PASSWORD": self.password}


@dataclass
class AuthServer(Server):
    admin: User = field(default_factory=lambda: User("", ""))
    secrets: dict[str, str] = field(default_factory=dict)  # name -> value, for leak checks

    def request(self, method: str, path: str, user: User | None = None, json: dict | None = None):
        import requests

        auth = (user.name, user.password) if user else None
        return requests.request(method, f"{self.url}{path}", auth=auth, json=json, timeout=30)

    def add_user(self, name: str, permissions: dict[str, str] | None = None) -> User:
        """A user (made by the admin), with ``{experiment_id: READ|EDIT|MANAGE}`` permissions."""
        user = User(name, f"{name}-{uuid.uuid4().hex}")
        resp = self.request(
            "POST", "/api/2.0/mlflow/users/create", self.admin, {"username": name, "password": user.password}
        )
        assert resp.status_code == 200, resp.text
        for experiment_id, permission in (permissions or {}).items():
            self.grant(user, experiment_id, permission)
        return user

    def grant(self, user: User, experiment_id: str, permission: str) -> None:
        """MLflow 3.17's per-user grant (the 2.x ``experiments/permissions/create`` is gone)."""
        body = {"username": user.name, "resource_type": "experiment", "resource_id": experiment_id}
        resp = self.request(
            "POST", "/api/3.0/mlflow/users/permissions/grant", self.admin, body | {"permission": permission}
        )
        assert resp.status_code == 200, resp.text

    def permission(self, user: User, experiment_id: str) -> str:
        """The user's effective permission on the experiment, as the server resolves it."""
        query = f"username={user.name}&resource_type=experiment&resource_id={experiment_id}"
        resp = self.request("GET", f"/api/3.0/mlflow/users/permissions/get?{query}", self.admin)
        assert resp.status_code == 200, resp.text
        return resp.json()["permission"]


@contextlib.contextmanager
def run_auth_tracking_server(database_url: str, workdir: Path, **variables: str) -> Iterator[AuthServer]:
    """The tracking server with MLflow's basic-auth app, its secrets given as files (as from a secret
    store), the store URL carrying a password; users and permissions in ``<database>_auth``."""
    secrets_dir = workdir / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    admin = User("admin", f"admin-{uuid.uuid4().hex}")
    (secrets_dir / "admin-password").write_text(admin.password + "\n")
    secret_key = f"flask-{uuid.uuid4().hex}"
    (secrets_dir / "flask-secret-key").write_text(secret_key)
    variables = {
        "SWEEPLAB_AUTH": "basic",
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(secrets_dir / "admin-password"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE": str(secrets_dir / "flask-secret-key"),
        **variables,
    }
    url = with_password(database_url, DB_PASSWORD)
    with run_tracking_server(url, workdir, **variables) as server:
        yield AuthServer(
            **vars(server),
            admin=admin,
            secrets={"admin password": admin.password, "flask key": secret_key, "db password": DB_PASSWORD},
        )


@pytest.fixture(scope="module")
def auth_tracking_server(tmp_path_factory) -> Iterator[AuthServer]:
    """One authenticated server per test module (a start costs ~15 s on 2 cores) on its own
    databases, dropped afterwards. Tests make their own users and experiments on it."""
    url = os.environ.get("SWEEPLAB_TEST_POSTGRES_URL")
    if not url:
        require_in_ci("SWEEPLAB_TEST_POSTGRES_URL is not set")
    admin = libpq_url(url)
    from psycopg import sql

    with unique_database_name(admin) as name:
        _admin_execute(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with run_auth_tracking_server(with_database(admin, name), tmp_path_factory.mktemp("auth")) as server:
            yield server


# ------------------------------------------------------------------ Ray
RAY = str(Path(sys.executable).parent / "ray")


@contextlib.contextmanager
def start_ray_node(role: str, home: Path, **variables: str) -> Iterator[subprocess.Popen]:
    """``services/ray-<role>.sh`` with ``HOME`` (so ``~/.ray/auth_token``) and Ray's temp dir in
    ``home``; extra ``ray start`` arguments keep it clear of other clusters on the machine."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"ray-{role}.log"
    env = script_env(HOME=str(home), SWEEPLAB_RAY_CPUS="1", **variables)
    temp_dir = Path("/tmp") / f"slray-{uuid.uuid4().hex[:8]}"  # short: Ray's socket paths have a length limit
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(SERVICES / f"ray-{role}.sh"), f"--temp-dir={temp_dir}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_group(proc, grace_s=5)  # a node drains for up to 30 s on SIGTERM: no need to wait here
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


def ray_nodes(address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A client joining the cluster the way a sweep driver does, printing the count of live nodes."""
    probe = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)


def wait_for_ray_nodes(address: str, n: int, env: dict[str, str], procs, timeout_s: float = 150) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{p.args[0]} exited with {p.returncode}")
        out = ray_nodes(address, env)
        if out.returncode == 0 and int(out.stdout.strip().splitlines()[-1]) >= n:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the Ray cluster at {address} did not reach {n} nodes: {out.stderr[-2000:]}")
        time.sleep(1)
