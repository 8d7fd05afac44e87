"""Processes of ``sweeplab services``: started as process groups, remembered in a state folder.

For each service the state folder holds ``<name>.pid`` (the process group leader's PID, as
any tool expects it), ``<name>.json`` (what was started: command, endpoint, the PID's start
time so a recycled PID is never mistaken for the service) and ``<name>.log`` (its output).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sweeplab.processes import group_alive, start_group, stop_group


def state_dir(env: dict[str, str]) -> Path:
    """``$SWEEPLAB_STATE_DIR``, else ``$XDG_STATE_HOME/sweeplab``, else ``~/.local/state/sweeplab``.

    The same default as ``services/tracking-server.sh`` (its secret key and auth config live here)
    and the place the nightly scheduler writes its heartbeat.
    """
    if env.get("SWEEPLAB_STATE_DIR"):
        return Path(env["SWEEPLAB_STATE_DIR"]).expanduser()
    xdg = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg).expanduser() / "sweeplab"


@dataclass
class Record:
    name: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat start time: tells the service from a later process with its PID
    endpoint: str
    command: list[str]
    started_at: float
    log: str


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Field 22 (starttime); the command name in field 2 may hold spaces, so count after its ')'.
    return int(stat.rpartition(")")[2].split()[19])


class Supervisor:
    def __init__(self, directory: Path):
        self.dir = directory

    def pid_file(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def _record_file(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def record(self, name: str) -> Record | None:
        try:
            return Record(**json.loads(self._record_file(name).read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def running(self, record: Record) -> bool:
        """The recorded leader still runs (same PID *and* start time)."""
        return _start_ticks(record.pid) == record.start_ticks

    def start(self, name: str, command: list[str], endpoint: str, env: dict[str, str]) -> Record:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)  # generated secrets (e.g. the tracking server's key) live here too
        log = self.log_file(name)
        with open(log, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} sweeplab services up {name}\n".encode())
            out.flush()
            proc = start_group(  # its own process group: `down` stops the script and its children
                command,
                cwd=self.dir,  # relative defaults (./mlartifacts) land here, not in the caller's cwd
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        record = Record(name, proc.pid, _start_ticks(proc.pid) or 0, endpoint, command, time.time(), str(log))
        self._record_file(name).write_text(json.dumps(asdict(record), indent=2) + "\n")
        self.pid_file(name).write_text(f"{proc.pid}\n")
        return record

    def exited(self, record: Record) -> bool:
        """The leader is gone (reaped here if it was our child)."""
        with contextlib.suppress(ChildProcessError):
            pid, _ = os.waitpid(record.pid, os.WNOHANG)
            if pid == record.pid:
                return True
        return not self.running(record)

    def stop(self, record: Record, grace_s: float) -> bool:
        """SIGTERM the process group, SIGKILL what is left after ``grace_s``; True if it had to kill."""
        killed = False
        # The group outlives a killed leader (an orphaned server worker, say), and Linux reuses no
        # PID while it names a live group, so a live group with the leader's PID is still ours.
        if self.running(record) or group_alive(record.pid):
            killed = stop_group(record.pid, grace_s, lambda: self.exited(record))
        self.forget(record.name)
        return killed

    def forget(self, name: str) -> None:
        for path in (self.pid_file(name), self._record_file(name)):
            path.unlink(missing_ok=True)
