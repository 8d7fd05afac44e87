"""Ray for a sweep: a fresh local instance by default, or a running cluster; and the checks
that refuse a sweep that could never finish there, before anything is created.

Ray's own console output is routed to the sweep's ``driver.log``: the user sees sweeplab's.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeplab import project
from sweeplab.config import ConfigError
from sweeplab.errors import one_line
from sweeplab.redact import scrub
from sweeplab.sweep import reaper

if TYPE_CHECKING:
    from sweeplab.sweep.storage import Storage

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",  # Ray's default, said explicitly (before Ray is imported): no warning per start
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0: Tune prints nothing; sweeplab shows progress itself
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",  # a trial's error goes to its MLflow run, not the console
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/TensorBoard files; JSON results are kept explicitly
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_GLOBAL_CHECKPOINT_S": "0",  # sweep state saved at every step: a killed driver resumes where it was
    "RAY_CHDIR_TO_TRIAL_DIR": "0",  # trials keep the user's working directory (relative data.root works)
    "RAY_LOG_TO_STDERR": "0",
    # A local Ray prestarts one idle worker per CPU, but Tune places its trials in placement groups,
    # which get workers of their own: the idle ones only took ~0.5 s of CPU while trials start.
    "RAY_enable_worker_prestart": "0",
    "RAY_prestart_worker_first_driver": "0",
}
for _key, _value in RAY_ENV.items():  # read by Ray at import time: set before anything imports it
    os.environ.setdefault(_key, _value)

# What a trial on another node needs from the driver's environment. Never credentials: every
# node brings its own (object-store keys, Ray's token), as a cluster's nodes do.
TRIAL_ENV = (
    "SWEEPLAB_DATA_DIR",
    "SWEEPLAB_CONFIG_DIR",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)
PROBE_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 5


class ClusterError(RuntimeError):
    """Ray cannot be started or reached; the message is one line saying why and where to look."""


def trial_env() -> dict[str, str]:
    keys = (*RAY_ENV, *TRIAL_ENV)
    return {k: os.environ[k] for k in keys if k in os.environ}


def quiet_ray(log_file: Path) -> None:
    """Every Ray logger writes to the sweep's driver.log instead of the terminal; so does the
    driver's own (its failures' tracebacks)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(_Masked("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    own = logging.getLogger("sweeplab.sweep")
    for h in [h for h in own.handlers if isinstance(h.formatter, _Masked)]:  # a previous sweep's
        own.removeHandler(h)
    own.addHandler(handler)
    own.propagate = False
    root = logging.getLogger("ray")
    for name in [n for n in logging.root.manager.loggerDict if n == "ray" or n.startswith("ray.")]:
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.propagate = logger is not root
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    _cluster_messages_to(root)


def _cluster_messages_to(logger: logging.Logger) -> None:
    """Ray prints the cluster's messages to a driver (``(raylet) The node ... has been marked
    dead``) straight to stdout from a thread of its own; they belong in driver.log too.
    (Ray's private function: if a Ray version renames it, the messages reach the terminal again.)"""
    import ray._private.worker as ray_worker

    def to_log(data, ignore_prefix: bool) -> None:
        for line in data.get("lines", []):
            logger.warning("(%s) %s", data.get("pid", "ray"), line)

    if hasattr(ray_worker, "print_to_stdstream"):
        ray_worker.print_to_stdstream = to_log


class _Masked(logging.Formatter):
    """Lines with credentials masked, tracebacks included (MLflow's errors quote the server's URL)."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def init_ray(cluster: Mapping[str, Any], log_file: Path) -> None:
    """Local Ray by default (a fresh instance, never a stray cluster); ``cluster.address`` joins one."""
    import ray

    if ray.is_initialized():
        return
    quiet_ray(log_file)
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    address = cluster.get("address")
    try:  # the user's project: its code and conf/ reach every trial, installed nowhere
        own = project.runtime_env(remote=bool(address))
    except project.ProjectError as exc:
        raise ConfigError(str(exc)) from None
    runtime_env = {**own, "env_vars": {**trial_env(), **own.get("env_vars", {})}}
    try:
        if address:
            _reachable(address)  # Ray itself would keep retrying for minutes
            ray.init(address=address, runtime_env=runtime_env, **kwargs)
        else:
            ray.init(
                address="local",
                # workers inherit this process's environment; a project adds its folder and conf/
                runtime_env=runtime_env if own else None,
                num_cpus=cluster.get("num_cpus"),
                include_dashboard=False,
                object_store_memory=1 << 30,
                **kwargs,
            )
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; each becomes one line
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = (
            "check cluster.address, that the head runs (services/ray-head.sh) and that this machine "
            "has the cluster's auth token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
            if address
            else "see the log"
        )
        raise ClusterError(f"cannot start {where}: {one_line(exc)}; {hint} ({log_file})") from None
    quiet_ray(log_file)  # ray.init installs handlers of its own
    if not address:
        global _reaper
        _reaper = reaper.watch()


_reaper = None  # the watcher that cleans up after a local Ray if this process is killed


class RayThread:
    """A local Ray started, and later stopped, on a thread that lives as long as it does.

    Ray's processes take about 3 s to start, mostly waiting for them: the driver does its other
    checks meanwhile. The thread must outlive Ray: Ray's GCS and raylet are killed when the
    thread that started them exits (PR_SET_PDEATHSIG names a thread, not a process)."""

    def __init__(self, cluster: Mapping[str, Any], log_file: Path):
        self._started: Future = Future()
        self._stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            # what ray.init installs when called on the main thread: SIGTERM ends the driver
            # through its ``finally`` blocks, which stop Ray
            signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(signum))
        self._thread = threading.Thread(target=self._own, args=(cluster, log_file), name="ray", daemon=True)
        self._thread.start()

    def _own(self, cluster: Mapping[str, Any], log_file: Path) -> None:
        try:
            init_ray(cluster, log_file)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that waits for it
            _stop_ray()
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        self._stop.wait()
        _stop_ray()

    def wait(self) -> None:
        """Until Ray runs; raises what :func:`init_ray` raised."""
        self._started.result()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        if wait:
            self._thread.join()


_ray_thread: RayThread | None = None


def start_ray(cluster: Mapping[str, Any], log_file: Path) -> RayThread:
    """:func:`init_ray` on a :class:`RayThread`; :func:`shutdown` stops it."""
    global _ray_thread
    _ray_thread = RayThread(cluster, log_file)
    return _ray_thread


def _reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray finds the cluster itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(exc.strerror or str(exc)) from None


def shutdown() -> None:
    """Stop Ray (a local instance's processes and their reaper), on whichever thread started it."""
    _hold_collector()
    _shutdown()


def shutdown_soon() -> threading.Thread:
    """:func:`shutdown` on a thread (about 1.3 s, mostly waiting for Ray's processes to exit) while
    the driver summarizes; join it before Ray may start again."""
    _hold_collector()  # here, before Ray begins to stop
    thread = threading.Thread(target=_shutdown, name="ray-shutdown")
    thread.start()
    return thread


def _hold_collector() -> None:
    """Ray ends the whole process (exit 1, "The core worker has already been shutdown") when its
    core worker is used while it shuts down, and the cyclic collector frees the ObjectRefs that
    Tune's trainables hold (``tune.with_parameters``) on whichever thread happens to allocate:
    the summary's, the outbox's. Free them now, while Ray is up; no collection until it is down."""
    gc.collect()
    gc.disable()


def _shutdown() -> None:
    global _ray_thread
    try:
        if _ray_thread is not None:
            _ray_thread.stop()
            _ray_thread = None
        else:
            _stop_ray()
    finally:
        gc.enable()


def _stop_ray() -> None:
    import ray

    global _reaper
    if ray.is_initialized():
        ray.shutdown()
    if _reaper is not None:
        _reaper.kill()
        _reaper.wait()
        _reaper = None


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def check_cluster(tune_cfg: Mapping[str, Any], storage: Storage) -> dict[str, Any]:
    """Refuse a sweep the cluster can never run; returns what to tag the parent run with."""
    nodes = alive_nodes()
    for resource, key in (("CPU", "cpus_per_trial"), ("GPU", "gpus_per_trial")):
        need = float(tune_cfg[key])
        most = max((n["Resources"].get(resource, 0.0) for n in nodes), default=0.0)
        if need > most:
            raise ConfigError(
                f"tune.{key}={need:g} but no node of the Ray cluster has that many {resource}s "
                f"(the largest has {most:g}); lower tune.{key} or add a bigger node"
            )
    if storage.is_local and len(nodes) > 1:
        blind = nodes_not_seeing(storage, nodes, skip_this_node=True)
        if blind:
            raise ConfigError(
                f"tune.storage_path={storage.uri} is not shared: the cluster's node(s) "
                f"{', '.join(ip for ip, _ in blind)} cannot see it. Use a folder every node mounts at the "
                "same path (e.g. NFS) or an object store: tune.storage_path=s3://bucket/prefix"
            )
    elif not storage.is_local:  # every node writes its trials' checkpoints there with its own keys
        blind = nodes_not_seeing(storage, nodes, skip_this_node=False)
        if blind:
            ip, why = blind[0]
            raise ConfigError(
                f"node(s) {', '.join(ip for ip, _ in blind)} of the Ray cluster cannot use "
                f"tune.storage_path={storage.uri} ({why}); give every node the object store's "
                "credentials (~/.aws/credentials, or AWS_* variables where its Ray starts)"
            )
    return {
        "cluster.nodes": len(nodes),
        "cluster.cpus": int(sum(n["Resources"].get("CPU", 0) for n in nodes)),
    }


def nodes_not_seeing(
    storage: Storage, nodes: list[dict[str, Any]], skip_this_node: bool
) -> list[tuple[str, str]]:
    """The nodes (address, why) that cannot read a marker this driver writes into the storage."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = f".sweeplab-probe-{uuid.uuid4().hex}"
    storage.write_text(marker, "probe")

    @ray.remote(num_cpus=0)
    def sees(root: str, name: str) -> str:
        try:
            if "://" not in root:
                return "" if os.path.exists(os.path.join(root, name)) else "not found"
            import pyarrow.fs as pafs

            fs, path = pafs.FileSystem.from_uri(root)
            found = fs.get_file_info(f"{path}/{name}").type != pafs.FileType.NotFound
            return "" if found else "not found"
        except Exception as exc:  # noqa: BLE001 - the reason, not a crash, goes back
            return one_line(exc, limit=200)

    try:
        here = ray.get_runtime_context().get_node_id()
        probed = [n for n in nodes if not (skip_this_node and n["NodeID"] == here)]
        refs = [
            sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                storage.uri, marker
            )
            for n in probed
        ]
        answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
    finally:
        storage.delete(marker)
    return [(n["NodeManagerAddress"], scrub(why)) for n, why in zip(probed, answers, strict=True) if why]
