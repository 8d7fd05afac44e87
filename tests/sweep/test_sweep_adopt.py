"""A resume on a machine without the sweep's journal adopts what the store holds: each trial's run,
its epochs and its status, so that no run is created twice and no epoch logged twice."""

from __future__ import annotations

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from sweeplab.status import TrialStatus
from sweeplab.sweep.recorder import TrialRecord, adopt_runs
from sweeplab.tracking.outbox import Outbox
from sweeplab.tracking.reader import open_reader
from sweeplab.tracking.tags import PARENT_RUN_ID_TAG, STATUS_TAG, TRIAL_ID_TAG, TRIAL_NUMBER_TAG


def test_a_journal_less_resume_adopts_every_trials_run_and_epochs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("adopt")
    parent = client.create_run(exp, run_name="s").info.run_id
    runs = {}
    for number, (status, curve) in enumerate([("completed", [0.5, 0.6, 0.7]), ("running", [0.4])]):
        tags = {PARENT_RUN_ID_TAG: parent, TRIAL_ID_TAG: f"t{number}", TRIAL_NUMBER_TAG: str(number),
                STATUS_TAG: status}  # fmt: skip
        run = client.create_run(exp, run_name=f"trial-{number:03d}", tags=tags).info.run_id
        client.log_param(run, "sampled.optimizer.lr", "0.01")
        if number == 0:
            client.log_param(run, "trainer.epochs", "3")
        client.log_batch(run, metrics=[Metric("val/acc", v, 1000 + e, e) for e, v in enumerate(curve, 1)])
        runs[f"trial/t{number}"] = run
    client.create_run(exp, run_name="not a trial", tags={PARENT_RUN_ID_TAG: parent})  # no trial id

    # the journal an older copy left: trial 1's record knows fewer epochs than the store holds
    older = TrialRecord("t1", 1, {"optimizer.lr": 0.01}, status=TrialStatus.running, node_ips=["10.0.0.2"])
    outbox = Outbox(tmp_path / "outbox.db", deliver=None)
    outbox.write(state={older.key: older.to_json()})
    adopt_runs(outbox, open_reader({"uri": uri}), parent)

    saved = {k: TrialRecord.from_json(v) for k, v in outbox.state("trial/").items()}
    assert set(saved) == set(runs) and all(outbox.run_id(k) == runs[k] for k in runs)
    done, going = saved["trial/t0"], saved["trial/t1"]
    assert [h["val/acc"] for h in done.history] == [0.5, 0.6, 0.7] and done.last_logged == 3
    assert done.status is TrialStatus.completed and done.created and done.config_logged
    assert (done.number, done.sampled) == (0, {"optimizer.lr": 0.01})
    assert going.last_logged == 1 and going.node_ips == ["10.0.0.2"]  # the journal's own fields stay
    assert going.status is TrialStatus.running and not going.config_logged
    outbox.close()
