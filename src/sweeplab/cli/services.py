"""``sweeplab services up|down|status [service...]``: the long-running parts on this machine
(the tracking server, a Ray head or worker, the nightly scheduler), outside Docker."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from sweeplab.cli import exits
from sweeplab.cli.output import console, err_console
from sweeplab.services.catalog import SERVICES, Service, default_names
from sweeplab.services.health import Health
from sweeplab.services.supervisor import Record, Supervisor, state_dir

NAME = "services"
HELP = "start, stop and check the tracking server, Ray head/worker and nightly scheduler"
WHERE = (
    "The scripts installed with sweeplab (its repository's services/; $SWEEPLAB_SERVICES_DIR: another "
    "folder) run them; PID and log files are kept in $SWEEPLAB_STATE_DIR (default ~/.local/state/sweeplab)."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=f"{HELP}. {WHERE}")
    actions = p.add_subparsers(dest="action", metavar="{up,down,status}", required=True)
    names_help = f"any of {', '.join(SERVICES)} (default: {', '.join(default_names())}, and whatever runs)"
    for action, text in (
        ("up", "start services and wait until each answers its health check; exits 1 if one does not"),
        ("down", "stop services started here: SIGTERM, then SIGKILL after the grace period"),
        ("status", "each service's state, PID, endpoint and health; exits 1 when one is down"),
    ):
        a = actions.add_parser(action, help=text, description=f"{text}. {WHERE}")
        a.add_argument("names", nargs="*", metavar="service", help=names_help)
        if action == "up":
            a.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health [180]")
        if action in ("up", "down"):  # up stops what a dead start left behind
            a.add_argument("--grace", type=float, default=40.0, help="seconds to wait before SIGKILL [40]")
    p.set_defaults(run=run)


@dataclass
class Row:
    service: Service
    state: str  # up | down | not installed
    pid: int | None
    endpoint: str
    detail: str

    @property
    def down(self) -> bool:
        return self.state == "down"


def run(args: argparse.Namespace) -> int:
    unknown = [n for n in args.names if n not in SERVICES]
    if unknown:
        raise ValueError(f"unknown service {unknown[0]!r}; choose from {', '.join(SERVICES)}")
    env = dict(os.environ)
    sup = Supervisor(state_dir(env))
    names = list(dict.fromkeys(args.names)) or _known(sup)
    return {"up": up, "down": down, "status": status}[args.action](names, env, sup, args)


def _known(sup: Supervisor) -> list[str]:
    """The defaults plus anything with a PID file (a worker started here, say), in catalog order."""
    names = set(default_names()) | {n for n in SERVICES if sup.record(n)}
    return [n for n in SERVICES if n in names]


def inspect(service: Service, env: dict[str, str], sup: Supervisor) -> Row:
    record = sup.record(service.name)
    if record is None:
        if not service.installed(env):
            return Row(service, "not installed", None, "", f"no {service.script_path(env)}")
        endpoint = service.endpoint(env, sup.dir)
        check = service.check(endpoint, env)
        if check.ok:  # running, but not started here: systemd, another shell
            return Row(service, "up", None, endpoint, f"{check.detail} (not started by sweeplab services)")
        return Row(service, "down", None, endpoint, f"{check.detail} (not started)")
    if sup.exited(record):
        gone = f"process {record.pid} is gone; log {record.log}"
        return Row(service, "down", record.pid, record.endpoint, gone)
    check = service.check(record.endpoint, env)
    return Row(service, "up" if check.ok else "down", record.pid, record.endpoint, check.detail)


def table(rows: list[Row]) -> Table:
    t = Table(title="sweeplab services", title_justify="left")
    for col in ("service", "state", "pid", "endpoint", "detail"):
        t.add_column(col, overflow="fold")
    styles = {"up": "green", "down": "bold red", "not installed": "dim"}
    for r in rows:
        state = f"[{styles[r.state]}]{r.state}[/]"
        t.add_row(r.service.name, state, str(r.pid or "-"), r.endpoint or "-", r.detail)
    return t


def status(names: list[str], env: dict[str, str], sup: Supervisor, args: argparse.Namespace) -> int:
    rows = [inspect(SERVICES[n], env, sup) for n in names]
    console.print(table(rows))
    return exits.FAILED if any(r.down for r in rows) else exits.OK


def up(names: list[str], env: dict[str, str], sup: Supervisor, args: argparse.Namespace) -> int:
    failed = False
    for name in names:
        service = SERVICES[name]
        if not service.installed(env):
            if name in args.names:
                missing = service.script_path(env)
                err_console.print(f"[bold red]error:[/] {name}: not installed (no {missing})")
                failed = True
            continue
        row = inspect(service, env, sup)
        if row.state == "up":
            console.print(f"{name}: already up ({row.detail})")
            continue
        if row.pid is not None:  # a dead record: its leftovers go before a new start
            sup.stop(sup.record(name), args.grace)
        failed |= not _start(service, env, sup, args.timeout)
    return exits.FAILED if failed else exits.OK


def _start(service: Service, env: dict[str, str], sup: Supervisor, timeout_s: float) -> bool:
    endpoint = service.endpoint(env, sup.dir)
    # This Python's folder first on PATH: the scripts find its mlflow, ray and sweeplab where there is
    # no checkout .venv beside them (an installed sweeplab, its venv not activated).
    path = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH")) if p)
    child_env = {**env, "PATH": path, "SWEEPLAB_STATE_DIR": str(sup.dir)}
    if service.name == "ray-worker":
        child_env["SWEEPLAB_RAY_ADDRESS"] = endpoint
    if service.name == "nightly":
        child_env["SWEEPLAB_NIGHTLY_HEARTBEAT"] = endpoint
    record = sup.start(service.name, [str(service.script_path(env))], endpoint, child_env)
    check = _wait_healthy(service, record, env, sup, timeout_s)
    if check.ok:
        console.print(f"{service.name}: [green]up[/] (pid {record.pid}) {endpoint} — {check.detail}")
        return True
    err_console.print(f"[bold red]error:[/] {service.name} did not become healthy: {check.detail}")
    err_console.print(f"  last lines of {record.log}:", markup=False)
    err_console.print(_tail(record.log), markup=False)
    return False


def _wait_healthy(service: Service, record: Record, env: dict[str, str], sup: Supervisor, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        if sup.exited(record):
            return Health(False, "the process exited")
        check = service.check(record.endpoint, env)
        if check.ok:
            return check
        if time.monotonic() >= deadline:
            return Health(False, f"{check.detail} after {timeout_s:.0f} s")
        time.sleep(0.5)


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except FileNotFoundError:
        return "(no log)"


def down(names: list[str], env: dict[str, str], sup: Supervisor, args: argparse.Namespace) -> int:
    # Workers before the head, the scheduler and tracking after: the reverse of the start order.
    for name in reversed(names):
        record = sup.record(name)
        if record is None:
            continue
        killed = sup.stop(record, args.grace)
        how = ", killed after the grace period" if killed else ""
        console.print(f"{name}: stopped (pid {record.pid}{how})")
    return exits.OK
