"""Process groups: a command started in a session of its own, so that it and everything it starts
(a server's workers, Ray's processes) are one group, stopped as one: SIGTERM, then SIGKILL for
whatever is left after a grace period.

Used by ``sweeplab services``, ``sweeplab ui``, the benchmarks and the tests' servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

KILL_WAIT_S = 10  # how long SIGKILL's effect is waited for; the kernel is quick


def start_group(args: Sequence[str], **popen: Any) -> subprocess.Popen:
    """``args`` as the leader of a new process group (its PID is the group's id)."""
    return subprocess.Popen(list(args), start_new_session=True, **popen)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a group of another user's processes: alive, but not ours
        return True
    return True


def stop_group(pgid: int, grace_s: float, reap: Callable[[], object] = lambda: None) -> bool:
    """SIGTERM the group, SIGKILL what is left after ``grace_s``; True if it had to kill.

    ``reap`` collects the leader if it is this process's child (a zombie would keep the group
    "alive" until the grace period is over)."""
    if not group_alive(pgid):
        reap()
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while True:
        reap()
        if not group_alive(pgid):
            return False
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while group_alive(pgid) and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)
    return True


def stop(proc: subprocess.Popen, grace_s: float) -> bool:
    """Stop the group ``proc`` leads (see :func:`stop_group`) and collect ``proc``."""
    killed = stop_group(proc.pid, grace_s, proc.poll)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(KILL_WAIT_S)
    return killed
