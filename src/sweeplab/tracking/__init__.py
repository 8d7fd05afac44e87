"""Everything MLflow: the only package that talks to it.

- :mod:`~sweeplab.tracking.store`: opening the store (one line when it cannot be used) and
  writing runs by id (:class:`Tracker`);
- :mod:`~sweeplab.tracking.outbox`: the durable journal of a sweep's writes and its flusher;
- :mod:`~sweeplab.tracking.delivery`: what each journal record does in the store;
- :mod:`~sweeplab.tracking.reader` and :mod:`~sweeplab.tracking.records`: the read model, runs read
  back as typed records without importing MLflow where the store allows;
- :mod:`~sweeplab.tracking.uri` and :mod:`~sweeplab.tracking.views`: where the store and its UI are;
- :mod:`~sweeplab.redact`: credentials masked in everything written.

The writer's names load on first use: MLflow and torch take seconds to import, and the commands
that only read the store never need them.
"""

import importlib
import os

from sweeplab.tracking.records import RunRecord, sampled_values  # noqa: F401
from sweeplab.tracking.uri import StoreError, resolve_uri, ui_command  # noqa: F401

# MLflow's settings sweeplab needs, as defaults: a user's own setting wins. Set when this package
# loads, before any of its modules imports MLflow (telemetry is decided when MLflow loads); the two
# modules above import nothing of MLflow's.
MLFLOW_DEFAULTS = {
    # MLflow's HTTP client retries a failed request for about four minutes, which would stall a
    # training run; sweeplab retries itself (the outbox, ``store.retrying``).
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_DISABLE_TELEMETRY": "true",  # no usage telemetry leaves a user's machine unasked
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # sweeplab prints its own progress
    # MLflow prints "View run ... at: <tracking URI>" when a run on a server ends, the URI's user
    # info (http://user:password@host) included; sweeplab prints its own links, credentials masked.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
for _key, _value in MLFLOW_DEFAULTS.items():
    os.environ.setdefault(_key, _value)


_FROM_STORE = ("Tracker", "git_commit", "is_transient", "load_logged_model")


def __getattr__(name: str):
    if name in _FROM_STORE:
        return getattr(importlib.import_module("sweeplab.tracking.store"), name)
    raise AttributeError(f"module 'sweeplab.tracking' has no attribute {name!r}")
