"""Everything MLflow: the only package that imports it.

- :mod:`~sweeplab.tracking.store`: opening the store (one line when it cannot be used) and
  writing runs by id (:class:`Tracker`);
- :mod:`~sweeplab.tracking.outbox`: the durable journal of a sweep's writes and its flusher;
- :mod:`~sweeplab.tracking.delivery`: what each journal record does in the store;
- :mod:`~sweeplab.redact`: credentials masked in everything written.
"""

from sweeplab.tracking.store import (  # noqa: F401
    StoreError,
    Tracker,
    git_commit,
    is_transient,
    load_logged_model,
    resolve_uri,
    sampled_values,
    ui_command,
)
