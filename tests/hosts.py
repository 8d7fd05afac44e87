"""Several hosts on one machine, for tests that need separate machines: a head and a worker.

``TestNetwork`` makes two hosts. Each one is
- a network namespace; a veth pair joins the two (head ``10.213.7.1``, worker ``10.213.7.2``).
  Neither end is in the machine's namespace: concurrent test runs cannot collide, and the
  test process itself cannot reach the hosts, so whatever talks to them runs in one
  (``host.popen``, ``host.run``);
- a PID namespace whose init reaps orphans: ``host.kill_all()`` (a power cut) and the
  teardown reach every process the host ever started, daemons included;
- a mount namespace in which the OTHER host's private folder is covered by an empty tmpfs:
  the same path on a different disk, as on two machines with one layout. A host's processes
  get ``HOME``, ``TMPDIR`` and Ray's temp dir inside its private folder (``host.private``).
``net.shared`` is seen by both hosts at the same path (as an NFS mount would be).

``net.start_s3()`` serves S3's protocol (moto's standalone server, checking keys) on the
head's address; ``net.start_ray()`` starts a Ray head and a worker node (1 CPU each) through
services/ray-head.sh and ray-worker.sh, with token auth (one token in each host's
``~/.ray/auth_token``; drivers need ``ray.env``, i.e. RAY_AUTH_MODE=token).

    with TestNetwork() as net:
        s3 = net.start_s3()
        for host in net.hosts:
            s3.write_credentials(host)          # each machine's ~/.aws/credentials
        ray = net.start_ray(env=s3.endpoint_env | FAST_NODE_DEATH)
        driver = net.head.popen([PYTHON, "-m", "sweeplab.cli", "sweep", ...], env=ray.env | s3.endpoint_env)
        killed_at = ray.kill_worker()
        detected_after_s = ray.wait_for_nodes(1, timeout=30) - killed_at

On exit everything goes (processes, mounts, namespaces, folders), also when the test fails
or is interrupted. If the test process is killed, its hosts die with it (parent-death
signals) and the next ``TestNetwork`` removes the namespaces and folders left behind (their
names carry the creating process's id; the parent-death signal follows the creating thread,
so make a network in the thread that outlives it, e.g. pytest's). Needs root, iproute2 and
util-linux.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

PYTHON = sys.executable  # the project's .venv python: every host runs the same installation
BIN = Path(PYTHON).parent
SERVICES = Path(__file__).resolve().parents[1] / "services"
SUBNET = "10.213.7"  # the test hosts' /24; refused if the machine routes it (a stray connection would leave)
PREFIX = "slh"  # namespaces and folders: slh-<pid of the test process>-<random>
RAY_PORT = 6379
S3_PORT = 9000  # MinIO's port; 5000 stays free for an MLflow server on the head
# The test's own settings of these would make a host reach past its own configuration.
NOT_INHERITED = ("AWS_", "RAY_ADDRESS", "RAY_AUTH")
KILL_TIMEOUT_S = 15.0  # bound on killed processes disappearing

# The GCS declares a node dead after `failure_threshold` failed health checks, one every
# `period_ms`, each allowed `timeout_ms`. Ray's defaults take about 15 s here; these about 2 s.
# Read by the GCS, so they matter on the head node.
FAST_NODE_DEATH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}

# pid 1 of a host: covers the other host's private folder, says "ready", then reaps orphans
# until it dies, which kills every process of the host.
INIT = r"""
import os, signal, subprocess, sys
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "other-host", sys.argv[1]], check=True)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
print("ready", flush=True)
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    signal.sigwaitinfo({signal.SIGCHLD})
"""

WAIT_FOR_PORT = r"""
import socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        socket.create_connection((host, port), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"nothing listens at {host}:{port}")
        time.sleep(0.05)
"""

# A user whose key may do anything on S3; then moto's signature checks go on (off by
# default: any key would do); then the bucket, made with that key, which is printed.
SETUP_S3 = r"""
import boto3, json, sys, urllib.request
endpoint, bucket = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="sweeplab-test")
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
iam.put_user_policy(UserName="sweeplab-test", PolicyName="s3", PolicyDocument=json.dumps(policy))
key = iam.create_access_key(UserName="sweeplab-test")["AccessKey"]
plain = {"Content-Type": "text/plain"}  # not a form: moto reads the raw body
urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", b"0", plain, method="POST"))
s3 = boto3.client("s3", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
"""

# Answers each line on stdin with the addresses of the nodes the GCS holds alive.
NODE_PROBE = r"""
import sys
from ray._raylet import GcsClient
from ray.core.generated.gcs_pb2 import GcsNodeInfo
client = GcsClient(address=sys.argv[1])
for _ in sys.stdin:
    try:
        nodes = client.get_all_node_info(timeout=2, state_filter=GcsNodeInfo.GcsNodeState.ALIVE)
        print("alive", *sorted(n.node_manager_address for n in nodes.values()), flush=True)
    except Exception as error:
        print("error", type(error).__name__, flush=True)
"""


class HostsUnavailable(RuntimeError):
    """The machine cannot make test hosts."""


def require_hosts() -> None:
    """Skip the test (fail it in CI) unless this machine can make test hosts."""
    # Imported here: conftest imports torch, which processes using only TestNetwork can do without.
    from conftest import require_in_ci

    missing = [t for t in ("ip", "unshare", "nsenter", "setpriv", "mount") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        require_in_ci(f"test hosts need root and {', '.join(missing) or 'iproute2/util-linux'}")
    probe = f"{PREFIX}-{os.getpid()}-probe{secrets.token_hex(2)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        require_in_ci(f"cannot create a network namespace: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], check=True)


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise HostsUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")


def namespace_of(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:  # gone, or not ours to read
        return None


def pids_in(kind: str, namespace: str) -> list[int]:
    """Processes in a namespace such as ("pid", "pid:[4026532]"), by the machine's ids."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and namespace_of(int(p), kind) == namespace]


def remove_stale() -> None:
    """Namespaces and folders of test processes that died without cleaning up."""
    netns = [p.name for p in Path("/run/netns").glob(f"{PREFIX}-*")]
    folders = [p.name for p in Path("/tmp").glob(f"{PREFIX}-*")]
    for name in netns + folders:
        owner = name.split("-")[1]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            if name in netns:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            else:
                shutil.rmtree(Path("/tmp") / name, ignore_errors=True)


def read_line(popen: subprocess.Popen, timeout: float) -> str:
    """One line from a process's stdout pipe, waiting at most ``timeout`` seconds."""
    ready, _, _ = select.select([popen.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no answer within {timeout} s from {popen.args[-3:]}")
    line = popen.stdout.readline()
    return (line.decode() if isinstance(line, bytes) else line).strip()


class HostProcess:
    """A process started in a host. ``kill`` signals its process group; children that start a
    session of their own escape it (``host.kill_all`` does not miss them)."""

    def __init__(self, popen: subprocess.Popen, argv: list[str], log: Path | None, name: str):
        self.popen, self.argv, self.log, self.name = popen, argv, log, name

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:  # not reaped: the group id is still ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def output(self) -> str:
        """What it wrote to stdout and stderr (when they went to its log)."""
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def __repr__(self) -> str:
        return f"<HostProcess {self.name} pid={self.pid} rc={self.poll()}>"


class Host:
    """One test host: its address, private folder, and the environment its processes get."""

    def __init__(self, net: TestNetwork, name: str, address: str):
        self.net, self.name, self.address = net, name, address
        self.netns = f"{net.id}-{name}"
        self.private = net.base / name
        self.home = self.private / "home"
        self.tmp = self.private / "tmp"
        self.ray_temp_dir = self.private / "ray"
        self.env = {
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "RAY_TMPDIR": str(self.private),  # Ray's default temp dir is $RAY_TMPDIR/ray
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self._init: subprocess.Popen | None = None
        self._init_pidfd: int | None = None
        self._init_pid = 0
        self._pidns = ""
        self._processes: list[HostProcess] = []

    def _start(self, hidden: Path) -> None:
        with open(self.net.log_dir / f"{self.name}-init.log", "wb") as log:
            # setpriv: the host dies with the test process, even on SIGKILL; unshare's
            # --kill-child passes that on to init, and init's death to the whole host.
            self._init = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "--", "ip", "netns", "exec", self.netns,
                 "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private",
                 PYTHON, "-c", INIT, str(hidden)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            )  # fmt: skip
        if (line := read_line(self._init, timeout=30)) != "ready":
            raise HostsUnavailable(f"host {self.name} did not start ({line!r}), see {log.name}")
        init_pid = int(Path(f"/proc/{self._init.pid}/task/{self._init.pid}/children").read_text().split()[0])
        self._init_pidfd = os.pidfd_open(init_pid)  # a handle that cannot point at a reused pid
        self._pidns = namespace_of(init_pid, "pid") or ""
        self._init_pid = init_pid

    def _kill(self) -> None:
        for process in self._processes:
            process.kill()
        if self._init_pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._init_pidfd, signal.SIGKILL)  # the kernel kills the rest
            os.close(self._init_pidfd)
            self._init_pidfd = None

    def _reap(self) -> None:
        for popen in [self._init, *(p.popen for p in self._processes)]:
            if popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(KILL_TIMEOUT_S)
                for pipe in (popen.stdin, popen.stdout):
                    if pipe:
                        pipe.close()

    def popen(
        self,
        cmd: Sequence[str] | str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        name: str | None = None,
        **popen_args,
    ) -> HostProcess:
        """Start ``cmd`` (a list, or a string for ``sh -c``) in this host, in a new session.

        Environment: the test's minus ``AWS_*``, ``RAY_ADDRESS``, ``RAY_AUTH*``; ``host.env``; ``env``.
        Working directory: ``cwd``, else the host's private folder. Output: a log file
        (``.output()``) unless ``stdout`` is given. Other arguments go to ``subprocess.Popen``.
        """
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        name = name or Path(argv[0]).name
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
        full_env.update(self.env)
        full_env.update(env or {})
        log = None
        if "stdout" not in popen_args:
            log = self.net.log_dir / f"{self.name}-{name}-{len(self._processes)}.log"
            popen_args.setdefault("stderr", subprocess.STDOUT)
        popen_args.setdefault("stdin", subprocess.DEVNULL)
        enter = [
            "nsenter",
            f"--target={self._init_pid}",
            "--mount",
            "--net",
            "--pid",
            f"--wd={cwd or self.private}",
        ]
        with open(log or os.devnull, "wb") as out:
            popen_args.setdefault("stdout", out)
            popen = subprocess.Popen(
                [*enter, "--", *argv], env=full_env, start_new_session=True, **popen_args
            )
        process = HostProcess(popen, argv, log, name)
        self._processes.append(process)
        return process

    def run(
        self,
        cmd: Sequence[str] | str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` to its end in this host, output captured as text; raise if it fails and ``check``."""
        process = self.popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = process.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.popen.communicate()
            raise TimeoutError(f"{process.name} ran over {timeout} s on {self.name}: {err[-2000:]}") from None
        done = subprocess.CompletedProcess(process.argv, process.popen.returncode, out, err)
        if check and done.returncode != 0:
            raise AssertionError(f"{process.name} failed on {self.name} ({done.returncode}): {err[-3000:]}")
        return done

    def wait_for_port(self, address: str, port: int, timeout: float = 60) -> None:
        """Until something accepts connections at address:port, as seen from this host."""
        self.run([PYTHON, "-c", WAIT_FOR_PORT, address, str(port), str(timeout)], timeout=timeout + 30)

    def processes(self) -> list[int]:
        """This host's processes but its init, by the machine's ids."""
        return [p for p in pids_in("pid", self._pidns) if p != self._init_pid]

    def kill_all(self) -> None:
        """SIGKILL every process of this host at once, as if it lost power; wait until they are gone.

        The host (address, private folder) stays: processes can be started on it again.
        """
        # kill(-1) from inside the PID namespace reaches exactly the host's processes but init.
        self.run(["sh", "-c", "kill -9 -1"], check=False)
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while left := self.processes():
            if time.monotonic() > deadline:
                raise TimeoutError(f"processes {left} of {self.name} outlived SIGKILL by {KILL_TIMEOUT_S} s")
            time.sleep(0.02)


class S3Server:
    """moto's S3 server on the head: one bucket, one key it checks (a wrong key or none is
    refused, as by a real store). ``env`` gives processes the endpoint and the key through
    AWS's standard variables."""

    def __init__(self, net: TestNetwork, bucket: str, port: int):
        self.bucket = bucket
        self.endpoint = f"http://{net.head.address}:{port}"
        self.region = "us-east-1"
        self.process = net.head.popen([str(BIN / "moto_server"), "-H", net.head.address, "-p", str(port)])
        net.head.wait_for_port(net.head.address, port)
        setup_env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": self.region}
        keys = net.head.run([PYTHON, "-c", SETUP_S3, self.endpoint, bucket], env=setup_env).stdout.split()
        self.access_key, self.secret_key = keys
        self.env = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata look-ups on a test network
        }

    @property
    def endpoint_env(self) -> dict[str, str]:
        """``env`` without the key, for processes that read it from ``~/.aws/credentials``."""
        return {k: v for k, v in self.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}

    def write_credentials(self, host: Host) -> Path:
        """The key in the host's ``~/.aws/credentials``, as an admin configures each machine.

        Why not the variables for Ray: Tune copies a driver's AWS_ACCESS_KEY_ID and
        AWS_SECRET_ACCESS_KEY into every trial's runtime_env, which Ray's runtime_env_agent.log
        prints in full on every node that runs a trial.
        """
        path = host.home / ".aws" / "credentials"
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            f"[default]\naws_access_key_id = {self.access_key}\naws_secret_access_key = {self.secret_key}\n"
        )
        path.chmod(0o600)
        return path

    def uri(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")


class RayCluster:
    """A Ray head on the head host and a worker node on the worker host, each started by the
    deployment's script (services/ray-head.sh, ray-worker.sh) as on a real machine.

    Auth as there: token mode (the scripts' default; set for drivers in ``env``) and one token
    in each host's ``~/.ray/auth_token``, copied as an admin would. Each node's ``--temp-dir``
    is in its host's private folder: without one a worker node uses the head's path.
    ``env`` is what a driver on the head host needs besides the host's environment.
    """

    def __init__(self, net: TestNetwork, node_env: Mapping[str, str], port: int, cpus: int):
        self.net, self.node_env, self.cpus = net, dict(node_env), cpus
        self.address = f"{net.head.address}:{port}"
        self.env = {"RAY_AUTH_MODE": "token"}  # a driver without it is refused (InvalidAuthToken)
        token = secrets.token_hex(32)  # what `ray get-auth-token --generate` makes
        for host in net.hosts:
            path = host.home / ".ray" / "auth_token"
            path.parent.mkdir(exist_ok=True)
            path.write_text(token)
            path.chmod(0o600)
        self.head = self._start(net.head, "ray-head.sh", {"SWEEPLAB_RAY_PORT": str(port)})
        net.head.wait_for_port(net.head.address, port, timeout=90)
        self._probe = net.head.popen(
            [PYTHON, "-u", "-c", NODE_PROBE, self.address],
            env=self.env,
            name="node-probe",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.worker = self.start_worker()

    def _start(self, host: Host, script: str, env: Mapping[str, str]) -> HostProcess:
        """A node started by the deployment's own script, as on a real machine."""
        env = {**self.node_env, **env, "SWEEPLAB_RAY_HOST": host.address, "SWEEPLAB_RAY_CPUS": str(self.cpus)}
        command = [str(SERVICES / script), f"--temp-dir={host.ray_temp_dir}"]
        return host.popen(command, env=env, name=script.removesuffix(".sh"))

    def start_worker(self, timeout: float = 90) -> HostProcess:
        """(Re)start the worker node; returns once both nodes are alive."""
        self.worker = self._start(self.net.worker, "ray-worker.sh", {"SWEEPLAB_RAY_ADDRESS": self.address})
        self.wait_for_nodes(2, timeout)
        return self.worker

    def alive_nodes(self, timeout: float = 10) -> list[str]:
        """Addresses of the nodes the GCS holds alive ([] if it does not answer)."""
        self._probe.popen.stdin.write("?\n")
        self._probe.popen.stdin.flush()
        kind, *addresses = read_line(self._probe.popen, timeout).split()
        return addresses if kind == "alive" else []

    def wait_for_nodes(self, count: int, timeout: float) -> float:
        """Until exactly ``count`` nodes are alive; returns the time.monotonic() it was first seen."""
        deadline = time.monotonic() + timeout
        while len(self.alive_nodes()) != count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.alive_nodes()} alive after {timeout} s, not {count} nodes\n"
                    f"head: {self.head.output()[-2000:]}\nworker: {self.worker.output()[-2000:]}"
                )
            time.sleep(0.05)
        return time.monotonic()

    def kill_worker(self) -> float:
        """SIGKILL every process of the worker host (raylet, workers, agents); returns when (monotonic)."""
        killed_at = time.monotonic()
        self.net.worker.kill_all()
        return killed_at


class TestNetwork:
    """Two test hosts, ``head`` and ``worker``, and a folder both see (``shared``): a context manager.

    ``log_dir``: where processes' logs go (default: inside the network's folder, removed at
    the end; pass pytest's ``tmp_path`` to keep them).
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, log_dir: Path | None = None):
        self.id = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        self.base = Path("/tmp") / self.id  # short: Ray's socket paths must fit in 107 bytes
        self.shared = self.base / "shared"
        self.log_dir = Path(log_dir) if log_dir else self.base / "logs"
        self.head = Host(self, "head", f"{SUBNET}.1")
        self.worker = Host(self, "worker", f"{SUBNET}.2")
        self._netns: list[str] = []

    @property
    def hosts(self) -> tuple[Host, Host]:
        return self.head, self.worker

    def __enter__(self) -> TestNetwork:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        remove_stale()
        routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True)
        if f"{SUBNET}." in routes.stdout:
            raise HostsUnavailable(f"this machine routes {SUBNET}.0/24, the test hosts' subnet")
        for folder in (self.shared, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for host in self.hosts:
            for folder in (host.home, host.tmp, host.ray_temp_dir):
                folder.mkdir(parents=True)
            ip("netns", "add", host.netns)
            self._netns.append(host.netns)
            ip("-n", host.netns, "link", "set", "lo", "up")
        ip("link", "add", "veth0", "netns", self.head.netns, "type", "veth",
           "peer", "name", "veth0", "netns", self.worker.netns)  # fmt: skip
        for host in self.hosts:
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "veth0")
            ip("-n", host.netns, "link", "set", "veth0", "up")
        self.head._start(hidden=self.worker.private)
        self.worker._start(hidden=self.head.private)

    def close(self) -> None:
        """Kill every process of both hosts; remove the namespaces (and with them the veth pair,
        the mounts) and the folders."""
        for host in self.hosts:
            host._kill()
        for host in self.hosts:
            host._reap()
        for name in self._netns:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._netns.clear()
        shutil.rmtree(self.base, ignore_errors=True)

    def start_s3(self, bucket: str = "sweeps", port: int = S3_PORT) -> S3Server:
        return S3Server(self, bucket, port)

    def start_ray(
        self, env: Mapping[str, str] | None = None, port: int = RAY_PORT, cpus: int = 1
    ) -> RayCluster:
        """A head and a worker node, both alive. ``env`` goes to both nodes' processes."""
        return RayCluster(self, env or {}, port, cpus)
