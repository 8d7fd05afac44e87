"""Nothing of a local Ray instance outlives its sweep driver, even one killed with SIGKILL.

Ray's GCS and raylet die with the driver that started them, but its per-node agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) are left running. After ``ray.init``
the driver starts this watcher in a session of its own with the processes it started;
when the driver exits, however it exits, the watcher kills those still running.

    python -m sweeplab.sweep.reaper <driver pid> <pid>:<start time> ...
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The kernel's start time of a process: a pid reused by another process has another."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _is_ray(pid: int) -> bool:
    try:
        return b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def watch() -> subprocess.Popen | None:
    """Start the watcher over everything this process started so far (Linux only)."""
    if not Path("/proc/self/stat").exists():
        return None
    me = os.getpid()
    procs = [f"{p}:{t}" for p in descendants(me) if _is_ray(p) and (t := start_time(p))]
    return subprocess.Popen(
        [sys.executable, "-m", "sweeplab.sweep.reaper", str(me), *procs],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(argv: list[str]) -> None:
    driver, procs = int(argv[0]), [p.split(":") for p in argv[1:]]
    try:
        fd = os.pidfd_open(driver)
    except ProcessLookupError:
        fd = None
    if fd is not None:
        select.select([fd], [], [])  # readable once the driver has exited
    for pid, started in procs:
        if start_time(int(pid)) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1:])
