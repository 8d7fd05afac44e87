"""Importing sweeplab's tracking sets MLflow's defaults it needs, and never overrides a user's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sweeplab.tracking import MLFLOW_DEFAULTS

PROBE = "import json, os, sweeplab.tracking.store; print(json.dumps({k: os.environ.get(k) for k in KEYS}))"


def environment_after_import(**preset: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MLFLOW_DEFAULTS} | preset
    code = f"KEYS = {sorted(MLFLOW_DEFAULTS)!r}\n{PROBE}"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_defaults_when_unset_and_the_users_own_settings_kept():
    assert environment_after_import() == MLFLOW_DEFAULTS
    mine = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "false", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3"}
    assert environment_after_import(**mine) == MLFLOW_DEFAULTS | mine
