"""Run one command and count the CPU seconds of its whole process tree (Linux).

    python meter.py --out usage.json -- COMMAND [ARGS...]

Counting a tree's CPU time is harder than it looks. ``getrusage(RUSAGE_CHILDREN)`` holds only
processes whose parents reaped them, and Ray's raylet ignores SIGCHLD, so its trial workers'
CPU time never reaches anyone (seen here: two Ray tasks burning 3 s each, 4 s counted in all).
So the meter starts the command in a new cgroup of its own: the kernel counts there the CPU
time of every process the command starts, however it ends (``cpu.stat`` on cgroup v2,
``cpuacct.usage`` on v1; the same run counted 14.4 s). Where no cgroup can be made (no
permission), it falls back to ``RUSAGE_CHILDREN`` and marks the figure as a lower bound.

It is also a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``): descendants orphaned when
their parent exits are re-parented here, and after the command exits the meter waits for them
(ending them after ``--linger-s``), so nothing the command started outlives the measurement.

Standard library only: the orchestrator runs it with its own Python.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


class CgroupCPU:
    """A new cgroup (v2 ``cpu.stat``, else v1 ``cpuacct``) the command starts in, with all it starts."""

    def __init__(self, path: Path, usage_file: str, scale: float, method: str):
        self.path, self.usage_file, self.scale, self.method = path, usage_file, scale, method

    @classmethod
    def create(cls) -> CgroupCPU | None:
        for mount, rel, usage_file, scale, method in _hierarchies():
            path = mount / rel.lstrip("/") / f"sweeplab-meter-{os.getpid()}"
            try:
                path.mkdir()
            except OSError:
                continue
            if (path / usage_file).exists():
                return cls(path, usage_file, scale, method)
            path.rmdir()
        return None

    def join(self) -> None:
        """Runs in the child between fork and exec: everything it starts is counted here."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float:
        text = (self.path / self.usage_file).read_text()
        if self.usage_file == "cpu.stat":
            text = next(line.split()[1] for line in text.splitlines() if line.startswith("usage_usec "))
        return int(text) / self.scale

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _hierarchies():
    """(mount point, our path in it, usage file, units per second, name): v2 first, then v1 cpuacct."""
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    ours = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
    v2 = next((m[1] for m in mounts if m[2] == "cgroup2"), None)
    rel = next((path for hid, ctrls, path in ours if hid == "0"), None)
    if v2 and rel is not None:
        yield Path(v2), rel, "cpu.stat", 1e6, "cgroup-v2"
    v1 = next((m[1] for m in mounts if m[2] == "cgroup" and "cpuacct" in m[3].split(",")), None)
    rel = next((path for hid, ctrls, path in ours if "cpuacct" in ctrls.split(",")), None)
    if v1 and rel is not None:
        yield Path(v1), rel, "cpuacct.usage", 1e9, "cgroup-v1"


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children() -> list[int]:
    """Our direct children (the orphans re-parented to us), read from /proc."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    # the command name may hold spaces and parentheses: fields start after the last ')'
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == me:
                out.append(int(entry))
    return out


def reap_all(linger_s: float) -> int:
    """Wait for every remaining descendant; after ``linger_s`` terminate, then kill, what is left."""
    deadline, signalled, reaped = time.monotonic() + linger_s, None, 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid:
            reaped += 1
            continue
        now = time.monotonic()
        if now >= deadline:
            sig = signal.SIGTERM if signalled is None else signal.SIGKILL
            if signalled is None or now >= signalled + 10:
                for pid in children():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                signalled = now
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--linger-s", type=float, default=60.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    subreaper = become_subreaper()
    cgroup = CgroupCPU.create()
    t0 = time.time()
    try:
        proc = subprocess.Popen(command, preexec_fn=cgroup.join if cgroup else None)
    except subprocess.SubprocessError:  # the cgroup would not take the process: count what can be counted
        cgroup.remove()
        cgroup, t0 = None, time.time()
        proc = subprocess.Popen(command)
    # A termination (the orchestrator's hard limit, or the benchmark stopped) goes to the command,
    # and what it leaves behind is ended at once instead of lingering.
    stopped = []

    def terminate(*_) -> None:
        stopped.append(True)
        proc.terminate()

    signal.signal(signal.SIGTERM, terminate)
    code = proc.wait()
    wall = time.time() - t0
    orphans = reap_all(0.0 if stopped else args.linger_s)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped_cpu = reaped.ru_utime + reaped.ru_stime
    if cgroup is not None:
        cpu, method, exact = cgroup.seconds(), cgroup.method, True
        cgroup.remove()
    else:
        cpu, method, exact = reaped_cpu, "rusage-children", False
    with open(args.out, "w") as fh:
        json.dump(
            {
                "returncode": code,
                "wall_s": wall,
                "cpu_s": cpu,
                "cpu_method": method,
                "cpu_exact": exact,  # False: a lower bound (processes nobody reaped are missing)
                "reaped_cpu_s": reaped_cpu,
                "orphans_reaped": orphans,
                "subreaper": subreaper,
            },
            fh,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
