"""The MLflow UI's view of a sweep: a saved view on its experiment, and the link that opens it.

MLflow 3.18 opens an experiment in its GenAI view unless the URL says ``workflowType=
machine_learning`` (the ``mlflow.experimentKind`` tag is not read for that), folds child runs under
their parent unless the table is sorted by a metric, and shows only run-level columns. It does
read *saved views*: an experiment tag ``mlflow.sharedViewState.<key>`` holding the runs page's
state (search, sort, columns, charts), applied when the URL names the key. So every sweep gets one:
its trials filtered by the sweep's name, sorted by its metric, with columns for the metric, the
status, the epochs trained and each sampled value, and a chart section of the trials'
validation curves beside a parallel-coordinates chart of the sampled values against the metric.
(The UI's JavaScript is the only reader of this format: checked in a browser by the tests.)
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from sweeplab.objective import Mode
from sweeplab.tracking.tags import EPOCHS_TRAINED_TAG, KIND_TAG, STATUS_TAG, SWEEP_KIND, SWEEP_TAG

TAG_PREFIX = "mlflow.sharedViewState."
MAX_TAG_CHARS = 20_000  # what the UI accepts for one view
SECTION = "sweeplab-sweep"


def view_key(sweep: str) -> str:
    """The view's key: the sweep's name in the characters a URL and a tag key keep as they are."""
    return "sweep-" + re.sub(r"[^A-Za-z0-9_.-]", "_", sweep)[:200]


def sweep_view(
    sweep: str, metric: str, mode: str | Mode, sampled: Sequence[str], curve: str
) -> tuple[str, str]:
    """(tag key, tag value) of the saved view of one sweep: ``sampled`` are the searched keys (the
    trials' ``sampled.<key>`` params), ``curve`` the validation metric drawn per epoch."""
    columns = [
        f"metrics.`{metric}`",
        f"tags.`{STATUS_TAG}`",
        f"tags.`{EPOCHS_TRAINED_TAG}`",
        *(f"params.`sampled.{k}`" for k in sampled),
    ]
    chart = {"runsCountToCompare": 20, "metricSectionId": SECTION, "deleted": False, "isGenerated": False}
    charts = [
        {
            **chart,
            "uuid": f"{SECTION}-curves",
            "type": "LINE",
            "displayName": f"{curve} per epoch",
            "metricKey": curve,
            "selectedMetricKeys": [curve],
            "lineSmoothness": 0,
            "xAxisScaleType": "linear",
            "scaleType": "linear",
            "range": {},
            "xAxisKey": "step",
            "selectedXAxisMetricKey": "",
            "yAxisKey": "metric",
            "yAxisExpressions": [],
            "ignoreOutliers": False,
            "useGlobalXaxisKey": True,
            "useGlobalLineSmoothing": True,
        },
        {
            **chart,
            "uuid": f"{SECTION}-parallel",
            "type": "PARALLEL",
            "selectedParams": [f"sampled.{k}" for k in sampled],
            "selectedMetrics": [metric],
            "showAllRuns": True,
        },
    ]
    state = {
        "searchFilter": f"tags.`{SWEEP_TAG}` = '{sweep}'" if "'" not in sweep else "",
        "orderByKey": f"metrics.`{metric}`",
        "orderByAsc": not Mode(mode).higher_is_better,  # the best trial on top
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": charts,
        "compareRunSections": [
            {
                "uuid": SECTION,
                "name": f"sweep {sweep}",
                "display": True,
                "isReordered": False,
                "deleted": False,
            }
        ],
        "isAccordionReordered": True,
        "hideEmptyCharts": True,
        "useGroupedValuesInCharts": True,
        "viewMaximized": False,
        "runListHidden": False,
        "groupBy": None,
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }
    now = int(time.time() * 1000)
    value = json.dumps(
        {"name": f"sweep {sweep}", "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    )
    if len(value) > MAX_TAG_CHARS:  # a space of very many keys: the columns and charts that fit
        return sweep_view(sweep, metric, mode, sampled[: len(sampled) // 2], curve)
    return TAG_PREFIX + view_key(sweep), value


def sweep_url(base: str, experiment_id: str, sweep: str, charts: bool = False) -> str:
    """The runs page of the sweep's experiment in the Model training view, through its saved view."""
    mode = "CHART" if charts else "TABLE"
    return (
        f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={quote(view_key(sweep))}&compareRunsMode={mode}"
    )


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def link(base: str, experiment_id: str, run_id: str, tags: Mapping[str, str]) -> str:
    """Where the MLflow UI shows a run: a sweep's parent opens the sweep's saved view (its trials,
    in the Model training view), any other run its own page."""
    if tags.get(KIND_TAG) == SWEEP_KIND:
        return sweep_url(base, experiment_id, tags[SWEEP_TAG])
    return run_url(base, experiment_id, run_id)
