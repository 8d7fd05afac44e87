"""``sweeplab ui``: the MLflow UI on the configured store, for as long as the command runs.

The store reaches ``mlflow ui`` through its environment, never its command line (``ps``
would show a password). The server runs in a process group of its own and dies with the
command: on Ctrl-C or SIGTERM the whole group is stopped, and if the command is killed
outright the kernel signals the server (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from rich.console import Console

from sweeplab.processes import start_group, stop
from sweeplab.redact import scrub
from sweeplab.tracking.store import check_store, resolve_uri, ui_command

READY_TIMEOUT_S = 120
STOP_GRACE_S = 10
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):  # not Linux: Ctrl-C and SIGTERM still stop the group
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def serve(tracking_cfg: Mapping[str, Any], port: int | None, console: Console) -> int:
    cmd, url = ui_command(tracking_cfg, port)
    if not cmd:
        console.print(f"the tracking store is a server: open {url}")
        return 0
    uri = resolve_uri(tracking_cfg.get("uri"))
    check_store(uri)
    mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
    cmd[0] = mlflow_bin if os.path.exists(mlflow_bin) else cmd[0]
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": uri}
    log = tempfile.NamedTemporaryFile(prefix="sweeplab-ui-", suffix=".log", delete=False)  # noqa: SIM115
    proc = start_group(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM ends it like Ctrl-C
    try:
        with console.status(f"starting the MLflow UI on {url} ..."):
            ready = _wait_ready(proc, url)
        if not ready:
            tail = Path(log.name).read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the MLflow UI did not start on {url}: {scrub(tail[0])} (log: {log.name})")
        console.print(f"MLflow UI at {url}  (Ctrl-C stops it; its log: {log.name})")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop(proc, STOP_GRACE_S)
        log.close()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _wait_ready(proc: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False
