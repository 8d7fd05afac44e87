"""Everything MLflow: the only package that imports it."""

from sweeplab.tracking.store import (  # noqa: F401
    Tracker,
    git_commit,
    load_logged_model,
    overfitting,
    resolve_uri,
    sampled_values,
    ui_command,
)
