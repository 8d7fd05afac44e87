"""Run one command and count the CPU seconds of its whole process tree (Linux).

    python meter.py --out usage.json -- COMMAND [ARGS...]

A process's CPU time reaches its parent only when the parent reaps it; Ray's trial workers
are children of the raylet, which may exit before them, and orphans are normally reaped by
init, their CPU time lost to us. This process makes itself a child subreaper
(``prctl(PR_SET_CHILD_SUBREAPER)``), so every orphaned descendant is re-parented here;
after the command exits it waits for them (ending them after ``--linger-s``) and reports
``getrusage(RUSAGE_CHILDREN)``: user + system seconds of every process the command started.

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

PR_SET_CHILD_SUBREAPER = 36


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
    t0 = time.time()
    proc = subprocess.Popen(command)
    # Forward a termination (the orchestrator's hard limit) to the command, then clean up as usual.
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    code = proc.wait()
    wall = time.time() - t0
    orphans = reap_all(args.linger_s)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(args.out, "w") as fh:
        json.dump(
            {
                "returncode": code,
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "user_s": usage.ru_utime,
                "system_s": usage.ru_stime,
                "orphans_reaped": orphans,
                "whole_tree": subreaper,
            },
            fh,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
