"""The sweep driver and its tracking path under load (part of ``make bench``).

driver: milliseconds the driver spends per reported result (the recorder's callback: the
outbox append and the live view), median and p99, in a real sweep with 2 and with 16
concurrent trials; and whether Ray's slow-callback warning ever appeared.

throughput: results per second that concurrent reporters push through sweeplab's tracking
path (outbox -> flusher -> a real `mlflow server` on PostgreSQL), from the first write until
the store holds everything, and how many metric points were lost.

recovery: seconds from a worker node's death (its Ray processes killed) to the next epoch of
its trial on the other node, on a two-node Ray cluster on this machine (Ray's default health
checks: about 15 s of it is Ray noticing the death).
"""

from __future__ import annotations

import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from bench import EPOCH_METRICS, ROOT
from sweeplab.config import compose, to_container
from sweeplab.processes import start_group, stop

SERVICES = ROOT / "services"


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ------------------------------------------------------------------ driver cost
def driver_cost(concurrent: int, trials: int = 32, epochs: int = 8) -> dict:
    """A real sweep (digits, FIFO) with the recorder's result callback timed, the live view on."""
    from sweeplab import sweep
    from sweeplab.sweep.recorder import SweepRecorder
    from sweeplab.sweep.view import LiveView

    timings: list[float] = []
    original = SweepRecorder.on_trial_result

    def timed(self, *args, **kwargs):
        t0 = time.perf_counter()
        original(self, *args, **kwargs)
        timings.append((time.perf_counter() - t0) * 1000)

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            "data=digits",
            "search=lr_batch",
            "tune=fifo",
            f"tune.num_samples={trials}",
            f"trainer.epochs={epochs}",
            "trainer.early_stopping.enabled=false",
            f"tune.max_concurrent_trials={concurrent}",
            f"cluster.num_cpus={concurrent}",  # that many trials at once, sharing the machine's cores
            "tune.register_model=false",
            f"tracking.uri=sqlite:///{tmp}/bench.db",
            f"tune.storage_path={tmp}/sweeps",
            "tune.name=driver",
        ]
        cfg = to_container(compose(overrides))
        console = Console(file=io.StringIO(), force_terminal=True, width=160)
        SweepRecorder.on_trial_result = timed
        try:
            with LiveView(console, trials, cfg["tune"]["metric"], cfg["tune"]["mode"]) as view:
                sweep.start(cfg, overrides, view)
        finally:
            SweepRecorder.on_trial_result = original
        log = Path(tmp, "sweeps", "driver", "driver.log").read_text()
    return {
        "results": len(timings),
        "median_ms": statistics.median(timings),
        "p99_ms": _percentile(timings, 0.99),
        "slow_warnings": log.count("operation took"),
    }


# ------------------------------------------------------------------ throughput
@contextmanager
def tracking_server(admin_url: str):
    """services/tracking-server.sh on a fresh PostgreSQL database; stopped and dropped after."""
    import psycopg
    from psycopg import sql

    from sweeplab.tracking.store import check_store

    dbname = f"sweeplab_bench_{uuid.uuid4().hex[:8]}"
    db_url = admin_url.rsplit("/", 1)[0] + f"/{dbname}"
    with socket_port() as port, tempfile.TemporaryDirectory() as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SWEEPLAB_", "MLFLOW_"))},
            "SWEEPLAB_DB_URL": db_url,
            "SWEEPLAB_PORT": str(port),
            "SWEEPLAB_ARTIFACTS": f"{tmp}/artifacts",
            "SWEEPLAB_WORKERS": "2",
        }
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        proc = start_group([str(SERVICES / "tracking-server.sh")], env=env, cwd=tmp, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    check_store(url)
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    if proc.poll() is not None or time.monotonic() > deadline:
                        tail = Path(tmp, "server.log").read_text()[-2000:]
                        raise RuntimeError(f"the tracking server did not start: {tail}") from None
                    time.sleep(0.5)
            yield url
        finally:
            stop(proc, 30)
            log.close()
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
                )


@contextmanager
def socket_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


def throughput(admin_url: str, reporters: int = 16, results_each: int = 250) -> dict:
    from sweeplab.tracking import delivery
    from sweeplab.tracking.outbox import Outbox
    from sweeplab.tracking.reader import open_reader
    from sweeplab.tracking.store import Tracker

    metrics = EPOCH_METRICS
    with tracking_server(admin_url) as url, tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker({"uri": url})
        box = Outbox(Path(tmp) / "outbox.db", delivery.Delivery(tracker, lambda *a: None)).start()
        keys = [f"trial/{i}" for i in range(reporters)]
        box.write([delivery.create_run(k, "bench-throughput", k, {}, {}) for k in keys])
        while any(box.run_id(k) is None for k in keys):  # runs exist before the clock starts
            time.sleep(0.05)
        write_ms: list[float] = []

        def report(key: str) -> None:
            for step in range(1, results_each + 1):
                t0 = time.perf_counter()
                box.write([delivery.log(key, metrics, step=step)], state={key: {"last": step}})
                write_ms.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=report, args=(k,)) for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        delivered = box.drain(600)
        seconds = time.perf_counter() - t0
        histories = open_reader({"uri": url}).histories([box.run_id(k) for k in keys], metrics)
        points = sum(len(points) for history in histories.values() for points in history.values())
        total = reporters * results_each
    return {
        "results": total,
        "seconds": seconds,
        "results_per_s": total / seconds,
        "lost": total * len(metrics) - points,
        "delivered": delivered,
        "write_median_ms": statistics.median(write_ms),
    }


# ------------------------------------------------------------------ recovery
def recovery() -> dict:
    """Two Ray nodes on loopback (head 2 CPUs, worker 1); the worker's processes are killed
    while its trial trains; seconds until that trial's next epoch arrives from the head."""
    import json
    import sqlite3

    ray_bin = str(Path(sys.executable).parent / "ray")
    with tempfile.TemporaryDirectory() as tmp, socket_port() as port:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        common = ["--disable-usage-stats", "--block", "--node-ip-address=127.0.0.1"]
        head = start_group(
            [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
             *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        address = f"127.0.0.1:{port}"
        _wait_nodes(address, 1, env)
        worker = start_group(
            [ray_bin, "start", f"--address={address}", "--num-cpus=1", '--resources={"worker": 1}',
             *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_nodes(address, 2, env)
            worker_id = _worker_node_id(address, env)
            cmd = [
                sys.executable, "-m", "sweeplab.cli", "sweep", "data=digits", "search=lr_batch", "tune=fifo",
                "tune.num_samples=3", "tune.max_concurrent_trials=3", "trainer.epochs=40",
                "trainer.batch_size=16", "trainer.early_stopping.enabled=false", "tune.max_failures=2",
                "cluster=existing", f"cluster.address={address}", "tune.name=recovery",
                f"tracking.uri=sqlite:///{tmp}/bench.db", f"tune.storage_path={tmp}/sweeps",
                "tune.register_model=false",
            ]  # fmt: skip
            sweep = subprocess.Popen(
                cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            journal = Path(tmp, "sweeps", "recovery", "outbox.db")

            def trials() -> list[dict]:
                if not journal.exists():
                    return []
                with sqlite3.connect(journal, timeout=10) as db:
                    try:
                        rows = db.execute("SELECT value FROM state WHERE key LIKE 'trial/%'").fetchall()
                    except sqlite3.OperationalError:
                        return []
                return [json.loads(v) for (v,) in rows]

            def on_worker() -> dict | None:
                return next(
                    (t for t in trials() if t["nodes"] == [worker_id] and t["last_logged"] >= 3), None
                )

            victim = _poll(on_worker, 300)
            killed_at = time.monotonic()
            os.killpg(worker.pid, signal.SIGKILL)
            epoch = victim["last_logged"]

            def moved() -> bool:
                now = next(t for t in trials() if t["trial_id"] == victim["trial_id"])
                return now["last_logged"] > epoch and len(now["nodes"]) > 1

            _poll(moved, 300)
            seconds = time.monotonic() - killed_at
            sweep.wait(600)
            return {"seconds": seconds, "sweep_exit": sweep.returncode}
        finally:
            for proc in (worker, head):
                stop(proc, 0)


def _worker_node_id(address: str, env: dict) -> str:
    probe = (
        f"import ray; ray.init(address='{address}', logging_level='ERROR'); "
        "print(next(n['NodeID'] for n in ray.nodes() if n['Alive'] and 'worker' in n['Resources']))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    return out.stdout.strip().splitlines()[-1]


def _poll(condition, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("the recovery benchmark waited too long")


def _wait_nodes(address: str, n: int, env: dict) -> None:
    probe = f"import ray; ray.init(address='{address}', logging_level='ERROR'); print(len(ray.nodes()))"
    for _ in range(120):
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
        )
        if out.returncode == 0 and int(out.stdout.strip().splitlines()[-1]) >= n:
            return
        time.sleep(0.5)
    raise RuntimeError(f"Ray at {address} did not reach {n} nodes")
