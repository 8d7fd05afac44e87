"""The model registry's policy: every sweep registers a version, and the alias ``best`` moves to it
only when it beats the version holding it, judged the same way (same metric, mode and data).

A version carries what it was judged by as tags (``sweeplab.metric``, ``sweeplab.mode``,
``data.fingerprint``, ``sweeplab.metric_value``), so a later sweep on other data, or judged by
another metric, never takes the alias from a model it cannot be compared with.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweeplab.objective import Objective
from sweeplab.tracking.tags import DATA_FINGERPRINT_TAG, METRIC_TAG, METRIC_VALUE_TAG, MODE_TAG

ALIAS = "best"


def register_best(
    client: MlflowClient,
    model_name: str,
    run_id: str,
    model_id: str,
    objective: Objective,
    value: float,
    data_fingerprint: str,
    tags: Mapping[str, str] | None = None,
) -> tuple[str, bool]:
    """Register ``models:/<model_id>`` as a new version of ``model_name``; move the alias to it if it
    is better than the holder's value (a tie: the holder stays). Returns (version, alias moved)."""
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name, description="best model of each sweep (sweeplab)")
    judged_by = {
        METRIC_TAG: objective.metric,
        MODE_TAG: objective.mode.value,
        DATA_FINGERPRINT_TAG: data_fingerprint,
    }
    version = client.create_model_version(
        model_name,
        f"models:/{model_id}",
        run_id=run_id,
        tags={**judged_by, METRIC_VALUE_TAG: str(value), **(tags or {})},
        model_id=model_id,
    ).version
    try:
        current = client.get_model_version_by_alias(model_name, ALIAS)
    except MlflowException:  # no version holds the alias yet
        better = True
    else:
        held = float(current.tags.get(METRIC_VALUE_TAG, "nan"))
        comparable = all(current.tags.get(k) == v for k, v in judged_by.items())
        better = comparable and objective.better(value, held)
    if better:
        client.set_registered_model_alias(model_name, ALIAS, version)
    return str(version), better
