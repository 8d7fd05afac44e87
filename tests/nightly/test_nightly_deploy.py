"""How nightly runs are started: the systemd timer, cron, the Kubernetes CronJob and the scheduler
process all end in `sweeplab nightly run --suite nightly`, checked against the real CLI."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import require_in_ci

from sweeplab.cli import build_parser
from sweeplab.nightly.history import HistoryStore

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "services" / "nightly-scheduler.sh"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(ROOT / "services" / "systemd" / name)
    return parser


@pytest.mark.parametrize("unit_name", ["sweeplab-nightly.service", "sweeplab-nightly.timer"])
def test_systemd_units_verify(unit_name, tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        require_in_ci("systemd-analyze is not installed")
    for name in ("sweeplab-nightly.service", "sweeplab-nightly.timer"):  # the timer needs its service
        text = (ROOT / "services" / "systemd" / name).read_text()
        (tmp_path / name).write_text(
            text.replace("/opt/sweeplab", str(ROOT))
        )  # as installed in this checkout
    proc = subprocess.run(
        [exe, "verify", str(tmp_path / unit_name)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_systemd_timer_catches_up_once_and_starts_the_script():
    timer = unit("sweeplab-nightly.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert (
        timer["Timer"]["OnCalendar"].endswith("UTC") and timer["Timer"]["Unit"] == "sweeplab-nightly.service"
    )
    service = unit("sweeplab-nightly.service")["Service"]
    assert service["Type"] == "oneshot" and service["KillSignal"] == "SIGINT"
    assert service["ExecStart"].endswith("services/nightly-scheduler.sh --once")


def test_crontab_line_starts_the_same_script():
    lines = [
        line
        for line in (ROOT / "services" / "crontab.example").read_text().splitlines()
        if line[:1].isdigit()
    ]
    assert len(lines) == 1
    assert "services/nightly-scheduler.sh --once" in lines[0]
    assert lines[0].split()[:5] == ["0", "2", "*", "*", "*"]


def test_the_cronjob_forbids_overlap_has_a_deadline_and_a_time_zone():
    job = yaml.safe_load((ROOT / "deploy" / "k8s" / "nightly-cronjob.yaml").read_text())
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0 and spec["timeZone"] == "Etc/UTC"
    container = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])  # the image's entrypoint is `sweeplab`
    assert (args.command, args.nightly_command, args.suite) == ("nightly", "run", "nightly")
    env = {e["name"]: e for e in container["env"]}
    assert urlsplit(env["SWEEPLAB_NIGHTLY_DB"]["value"]).password is None
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]  # the password comes from a Secret, not the URL


def test_the_script_runs_the_real_command():
    for mode, usage in (
        (["--once"], "usage: sweeplab nightly run"),
        ([], "usage: sweeplab nightly schedule"),
    ):
        done = subprocess.run([str(SCRIPT), *mode, "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and usage in done.stdout, done.stderr


@pytest.mark.slow
def test_the_scheduler_process_runs_a_due_night_once_and_stops_on_sigterm(tmp_path):
    """`sweeplab nightly schedule` as the compose service runs it: a real clock, a real child run."""
    conf = tmp_path / "conf" / "benchmark"
    conf.mkdir(parents=True)
    (conf / "tiny.yaml").write_text(
        "defaults:\n  - base_suite\nname: tiny\nmin_history: 2\nentries:\n  mlp:\n"
        "    overrides: [data=digits, 'model.hidden=[16]', trainer.num_threads=1]\n"
        "    budget: {epochs: 1}\n    seeds: [0, 1]\n"
        "    watch: {test/acc: {direction: higher, min_change: 0.01}}\n"
    )
    store = HistoryStore(f"sqlite:///{tmp_path / 'nightly.db'}")
    store.upgrade()
    now = datetime.now(UTC)
    cmd = [sys.executable, "-m", "sweeplab.cli", "nightly", "schedule", "--suite", "tiny"]
    cmd += [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "nightly.schedule='* * * * *'"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SWEEPLAB_NIGHTLY_DB")}
    env["SWEEPLAB_STATE_DIR"] = str(tmp_path / "state")  # where `sweeplab services` looks for the heartbeat
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    try:
        for line in proc.stdout:  # every minute fires: this minute's night is due at once
            lines.append(line)
            if "ended with exit code" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + rest
    heartbeat = tmp_path / "state" / "nightly.heartbeat"
    assert heartbeat.stat().st_mtime >= now.timestamp() - 1  # touched while it ran
    assert proc.returncode == 0, out  # SIGTERM ends the scheduler cleanly (the default action would be -15)
    night = next(d for d in (now.date(), (now + timedelta(minutes=2)).date()) if store.claim_of("tiny", d))
    assert store.claim_of("tiny", night).status == "finished"
    assert sorted(r.seed for r in store.rows("tiny", metric="test/acc")) == [0, 1]  # launched once
