"""MLflow tag names: the one home of every ``sweeplab.*`` tag (and the few others sweeplab reads or writes).

A tag's value is text in the store; what the values mean lives with their concept (a trial's
``STATUS_TAG`` holds a :class:`~sweeplab.status.TrialStatus`, its ``STAGE_TAG`` a
:class:`~sweeplab.stage.Stage`). These names are in every store a sweep ever wrote to: renaming
one orphans the runs that carry the old name.
"""

from __future__ import annotations

# ---------------------------------------------------------------- every run
VERSION_TAG = "sweeplab.version"  # the sweeplab that wrote the run
STATUS_TAG = "sweeplab.status"  # how it ended (TrialStatus), or `running`
STATUS_REASON_TAG = "sweeplab.status_reason"  # why, in one line
RUN_KEY_TAG = "sweeplab.run_key"  # the outbox's key of a run it created (found again before creating)

# ---------------------------------------------------------------- a sweep's parent run
KIND_TAG = "sweeplab.kind"
SWEEP_KIND = "sweep"  # KIND_TAG's value on a sweep's parent run
SWEEP_TAG = "sweeplab.sweep"  # the sweep's name (on its parent and on every trial)
SWEEP_PATH_TAG = "sweeplab.sweep_path"  # its folder or URI on the sweep storage
BEST_RUN_ID_TAG = "best.run_id"  # the chosen trial: its run, name, Tune id and status
BEST_TRIAL_TAG = "best.trial"
BEST_TRIAL_ID_TAG = "best.trial_id"
BEST_STATUS_TAG = "best.status"

# ---------------------------------------------------------------- a trial's child run
TRIAL_ID_TAG = "sweeplab.trial_id"  # Tune's trial id
TRIAL_NUMBER_TAG = "sweeplab.trial_number"
STAGE_TAG = "sweeplab.stage"  # a Stage; a run without it is of the search
REEVALUATES_TAG = "sweeplab.reevaluates"  # a re-evaluation: the trial id it repeats
BEST_EPOCH_TAG = "sweeplab.best_epoch"  # its best epoch by the sweep's metric, the one whose weights it keeps
NODE_TAG = "sweeplab.node"  # the Ray node it ran on (last), that node's address, and every address in order
NODE_IP_TAG = "sweeplab.node_ip"
NODE_IPS_TAG = "sweeplab.node_ips"
EXPLOITED_FROM_TAG = "sweeplab.exploited_from"  # PBT: the donor trial it continues, and every exploit
EXPLOITS_TAG = "sweeplab.exploits"
CONTINUED_AT_EPOCH_TAG = "sweeplab.continued_at_epoch"  # a retry or a resume: where it went on
RETRIES_TAG = "sweeplab.retries"
LAST_ERROR_TAG = "sweeplab.last_error"
EPOCHS_TRAINED_TAG = "sweeplab.epochs_trained"  # compute accounting: replays after a restore included
TRAIN_SECONDS_TAG = "sweeplab.train_seconds"

# ---------------------------------------------------------------- a registered model version
METRIC_TAG = "sweeplab.metric"  # what it was judged by: the objective's metric and mode, and the value
MODE_TAG = "sweeplab.mode"
METRIC_VALUE_TAG = "sweeplab.metric_value"
DATA_FINGERPRINT_TAG = "data.fingerprint"  # the data it was judged on (a run's tag too)

# ---------------------------------------------------------------- MLflow's own
PARENT_RUN_ID_TAG = "mlflow.parentRunId"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
