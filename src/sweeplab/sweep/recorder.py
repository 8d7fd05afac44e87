"""The driver-side recorder: a Ray Tune callback that turns trial events into outbox records.

It never waits for MLflow: each event becomes records appended to the sweep's outbox
together with the recorder's own state of that trial (one transaction), and the outbox's
flusher delivers them. So "epoch 7 of trial 3 is logged" is durable exactly when the
record of epoch 7 is, and a result Tune replays after a restore (an epoch at or below the
last one logged) is never logged twice, whichever driver process sees it.

Tune pickles its callbacks into the sweep's state and un-pickles its own copy on resume.
The recorder therefore pickles to the sweep's name alone and, in :meth:`setup`, attaches to
the live :class:`Session` the driver registered under that name.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from sweeplab.metrics import EPOCH, EPOCH_TIME, best_epoch, epoch_metrics, overfitting
from sweeplab.objective import Objective
from sweeplab.stage import REEVALUATION_POINT, Stage
from sweeplab.status import TrialStatus
from sweeplab.sweep.storage import checkpoint_uri
from sweeplab.tracking import delivery
from sweeplab.tracking.reader import Reader, child_runs
from sweeplab.tracking.records import epoch_rows
from sweeplab.tracking.store import project_tags, with_targets
from sweeplab.tracking.tags import (
    BEST_EPOCH_TAG,
    CONTINUED_AT_EPOCH_TAG,
    EPOCHS_TRAINED_TAG,
    EXPLOITED_FROM_TAG,
    EXPLOITS_TAG,
    LAST_ERROR_TAG,
    NODE_IP_TAG,
    NODE_IPS_TAG,
    NODE_TAG,
    REEVALUATES_TAG,
    RETRIES_TAG,
    STAGE_TAG,
    STATUS_TAG,
    SWEEP_TAG,
    TRAIN_SECONDS_TAG,
    TRIAL_ID_TAG,
    TRIAL_NUMBER_TAG,
)
from sweeplab.trial import (
    CHECKPOINT_BEST,
    EXPLOITED_FROM,
    FATAL,
    FINAL,
    RESTORED_HISTORY,
    trial_number,
)

PARENT = "parent"  # the parent run's key in the outbox


@dataclass
class TrialRecord:
    trial_id: str
    number: int
    sampled: dict[str, Any]
    status: TrialStatus = TrialStatus.pending
    reason: str = ""
    created: bool = False  # its child run's creation is in the outbox
    config_logged: bool = False
    last_logged: int = 0  # the last epoch whose metrics are in the outbox
    retries: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None  # the best epoch by the sweep's metric
    best_uri: str | None = None  # and the checkpoint Tune keeps of it
    latest_uri: str | None = None  # the checkpoint a retry or a resume continues from
    restarting: bool = False  # retried or resumed: its next epoch shows where it continued
    node_ips: list[str] = field(default_factory=list)  # the hosts it ran on, in order
    nodes: list[str] = field(default_factory=list)  # and their Ray node ids
    stage: Stage = Stage.search  # or reevaluate: a repeat of a top trial with a fresh seed
    of: str = ""  # the trial a re-evaluation repeats
    trained: int = 0  # epochs trained, a replay after a restore included (compute accounting)
    train_seconds: float = 0.0
    # PBT: a trial that continues a donor's weights reports the donor's epochs (the weights' age);
    # its run counts its own epochs: run epoch = reported epoch + epoch_offset
    epoch_offset: int = 0
    exploits: list[str] = field(default_factory=list)  # "<run epoch it continued at>:<donor trial id>"

    @property
    def key(self) -> str:
        return f"trial/{self.trial_id}"

    @property
    def title(self) -> str:
        return f"{Stage(self.stage).trial_prefix}-{self.number:03d}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialRecord:
        stage = Stage(data.get("stage", Stage.search))
        return cls(**{**data, "status": TrialStatus(data["status"]), "stage": stage})


@dataclass
class Session:
    """What one driver process holds for a running sweep (never pickled)."""

    state: Any  # SweepState
    outbox: Any  # tracking.outbox.Outbox
    show: Callable[[SweepRecorder], None] | None = None
    abort: TrialStatus | None = None  # set when the sweep must stop: interrupted or failed
    fatal: str | None = None  # a trial's setup error every trial would meet (its code does not import)
    recorder: SweepRecorder | None = None
    expected: int = 0  # trials this sweep runs in all
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.monotonic)

    def clock(self) -> dict[str, float]:
        """This driver run's wall seconds so far, saved with every write: even a killed driver's
        time counts in the sweep's compute accounting."""
        return {f"driver/{self.id}": time.monotonic() - self.started}


SESSIONS: dict[str, Session] = {}


class SweepRecorder(Callback):
    def __init__(self, name: str):
        self.name = name
        self._ready = False
        self.project: dict[str, str] = {}

    def __getstate__(self):
        return {"name": self.name, "_ready": False}

    def setup(self, **info) -> None:
        if self._ready:
            return
        self.session = SESSIONS[self.name]
        self.project = project_tags()  # the code this run of the sweep trains: tagged on each trial
        self.session.recorder = self
        self.outbox = self.session.outbox
        tune_cfg = self.session.state.tune
        self.objective = Objective.of(tune_cfg)
        self.metric, self.mode = self.objective.metric, self.objective.mode
        self.max_epochs = self.session.state.max_epochs
        self.smoothing = self.session.state.smoothing
        self.trials: dict[str, TrialRecord] = {}
        for value in self.outbox.state("trial/").values():
            rec = TrialRecord.from_json(value)
            if rec.status in (TrialStatus.interrupted, TrialStatus.stopped_by_budget) or rec.status.active:
                rec.status = TrialStatus.pending  # this resumed sweep will run it again
                rec.restarting = bool(rec.history)
            self.trials[rec.trial_id] = rec
        self.started = time.monotonic()
        self._ready = True

    # ------------------------------------------------------------ helpers
    def record(self, trial) -> TrialRecord:
        rec = self.trials.get(trial.trial_id)
        if rec is None:
            number = trial_number(trial.trial_id)
            point = trial.config.get(REEVALUATION_POINT)
            if point:
                sampled = {**point["sampled"], "seed": point["seed"]}
                rec = TrialRecord(trial.trial_id, number, sampled, stage=Stage.reevaluate, of=point["of"])
            else:
                rec = TrialRecord(trial.trial_id, number, dict(trial.config))
            self.trials[trial.trial_id] = rec
        return rec

    def _write(self, rec: TrialRecord, *records) -> None:
        self.outbox.write(records, state={rec.key: rec.to_json(), **self.session.clock()})
        if self.session.show is not None:
            self.session.show(self)

    def _create(self, rec: TrialRecord) -> list:
        if rec.created:
            return []
        rec.created = True
        return [
            delivery.create_run(
                rec.key,
                self.session.state.experiment,
                rec.title,
                {f"sampled.{k}": v for k, v in rec.sampled.items()},
                tags={
                    TRIAL_ID_TAG: rec.trial_id,
                    TRIAL_NUMBER_TAG: rec.number,
                    SWEEP_TAG: self.name,
                    STATUS_TAG: TrialStatus.running.value,
                    STAGE_TAG: rec.stage,
                    **self.project,
                    **({REEVALUATES_TAG: rec.of} if rec.of else {}),
                },
                parent=PARENT,
            )
        ]

    # ------------------------------------------------------------ Tune's events
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        rec = self.record(trial)
        records = self._create(rec) or [delivery.reopen(rec.key)]
        rec.status = TrialStatus.running
        self._write(rec, *records)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        rec = self.record(trial)
        records = self._create(rec)
        if result.get("config_json") and not rec.config_logged:  # the trial's resolved config, once
            cfg = json.loads(result["config_json"])
            records += [
                delivery.log(rec.key, params=with_targets(cfg)),
                delivery.text(rec.key, json.dumps(cfg, indent=2), "config.json"),
            ]
            rec.config_logged = True
        if "node_id" in result:  # the first result of each trial process: where it runs now
            rec.node_ips.append(result.get("node_ip", ""))
            rec.nodes.append(result["node_id"])
            node = {NODE_TAG: result["node_id"], NODE_IP_TAG: result.get("node_ip", "")}
            records.append(delivery.log(rec.key, tags={**node, NODE_IPS_TAG: ",".join(rec.node_ips)}))
        donor = result.get(EXPLOITED_FROM)
        if donor:  # PBT: this trial now trains a copy of the donor's weights, with perturbed values
            exploit = f"{rec.last_logged + 1}:{donor}"
            if exploit not in rec.exploits[-1:]:  # a retry restores the same donor checkpoint again
                rec.exploits.append(exploit)
            tags = {EXPLOITED_FROM_TAG: donor, EXPLOITS_TAG: ",".join(rec.exploits)[-5000:]}
            records.append(delivery.log(rec.key, tags=tags))
        if result.get(RESTORED_HISTORY):  # epochs its checkpoint holds that this sweep never logged
            # in the trial's numbering: after an exploit its run's epochs are offset from it
            for h in json.loads(result[RESTORED_HISTORY]):
                epoch = int(h[EPOCH]) + rec.epoch_offset
                if epoch > rec.last_logged and (result.get(FINAL) or h[EPOCH] < result[EPOCH]):
                    metrics = epoch_metrics(h)
                    records.append(delivery.log(rec.key, metrics, step=epoch))
                    rec.history.append({**metrics, EPOCH: epoch})
                    rec.last_logged = epoch
        if result.get(FINAL):
            rec.status, rec.reason = TrialStatus(result["trial_status"]), result.get("trial_reason", "")
            if result.get(FATAL):  # every trial would fail the same way: the sweep stops (SweepStopper)
                self.session.fatal = self.session.fatal or rec.reason
                self._write(rec, *records)
                self._finish(rec)  # closed now: the stopped sweep may never report it complete
                return
        else:
            if donor:  # the donor's history is not this run's: it goes on with its own next epoch
                rec.epoch_offset = rec.last_logged + 1 - int(result[EPOCH])
            epoch = int(result[EPOCH]) + rec.epoch_offset
            rec.trained += 1
            rec.train_seconds += float(result.get(EPOCH_TIME, 0.0))
            if rec.restarting:  # the proof that a retried or resumed trial continued, not restarted
                records.append(delivery.log(rec.key, tags={CONTINUED_AT_EPOCH_TAG: epoch}))
                rec.restarting = False
            if epoch > rec.last_logged:  # a replayed epoch (restored from an older checkpoint) is logged once
                metrics = epoch_metrics(result)
                records.append(delivery.log(rec.key, metrics, step=epoch))
                rec.history.append({**metrics, EPOCH: epoch})
                rec.last_logged = epoch
        self._write(rec, *records)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        rec = self.record(trial)
        result = trial.last_result
        rec.latest_uri = checkpoint_uri(checkpoint)
        # the checkpoint holds the trial's best weights so far: those of this epoch or an earlier one
        held = int(result.get(CHECKPOINT_BEST, result.get(EPOCH, 0))) + rec.epoch_offset
        epoch = next((h for h in reversed(rec.history) if h[EPOCH] == held), None)
        value = epoch.get(self.metric) if epoch else None
        if result.get(FINAL) or value is None or not math.isfinite(value):
            self.outbox.write(state={rec.key: rec.to_json()})
            return
        # after a PBT exploit the trial's own best starts again: an earlier checkpoint may hold a better one
        if rec.best is None or self.objective.at_least_as_good(value, rec.best[self.metric]):
            # a tie goes to the later epoch
            rec.best = dict(epoch)
            rec.best_uri = rec.latest_uri
        self.outbox.write(state={rec.key: rec.to_json()})

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        rec = self.record(trial)
        rec.retries += 1
        rec.status = TrialStatus.retrying
        rec.restarting = True
        tags = {RETRIES_TAG: rec.retries, LAST_ERROR_TAG: error_text(trial)}
        self._write(rec, *self._create(rec), delivery.log(rec.key, tags=tags))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        rec = self.record(trial)
        rec.status, rec.reason = TrialStatus.failed, error_text(trial)
        self._finish(rec)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        # A scheduler that pauses a trial reports it complete: its run is closed as stopped by
        # the scheduler, and reopened (on_trial_start) if the trial goes on.
        rec = self.record(trial)
        if self.session.abort is not None:
            rec.status, rec.reason = self.session.abort, "the sweep stopped before this trial finished"
        elif not trial.last_result.get(FINAL):
            # Schedulers stop trials that reach max_t too; only a trial cut short was stopped by one.
            if rec.last_logged >= self.max_epochs:
                rec.status, rec.reason = TrialStatus.completed, f"ran all {self.max_epochs} epochs"
            else:
                rec.status = TrialStatus.stopped_by_scheduler
                scheduler = self.session.state.tune["scheduler"]
                rec.reason = f"stopped by the {scheduler} scheduler after epoch {rec.last_logged}"
        self._finish(rec)

    def on_experiment_end(self, trials, **info) -> None:
        if self.session.show is not None:
            self.session.show(self)

    # ------------------------------------------------------------ closing a trial's run
    def close(self, rec: TrialRecord, status: TrialStatus, reason: str) -> None:
        """Close an unfinished trial's run from the driver (interrupted, failed, out of time)."""
        rec.status, rec.reason = status, reason
        self._finish(rec)

    def _finish(self, rec: TrialRecord) -> None:
        records = self._create(rec)  # a trial that failed before it started still gets its run
        if rec.history:
            diag = overfitting(rec.history, self.smoothing)
            # the epoch whose weights the run keeps: a trial stopped by the time budget between two
            # checkpoints did not keep its best logged epoch's. Only kept weights get the tag (runs
            # recorded before this rule carry it as the best logged epoch).
            kept = rec.best if rec.best_uri is not None else None
            best = kept or best_epoch(rec.history, self.metric, self.mode)
            records += [
                delivery.log(rec.key, diag, step=int(rec.history[-1][EPOCH])),
                delivery.learning_curve(rec.key, rec.history, rec.title, int(best[EPOCH]) if best else None),
            ]
            if kept is not None:
                records.append(delivery.log(rec.key, tags={BEST_EPOCH_TAG: int(kept[EPOCH])}))
        if rec.best_uri is not None and rec.best is not None:
            records.append(delivery.best_checkpoint(rec.key, rec.best_uri, rec.best))
        compute = {EPOCHS_TRAINED_TAG: rec.trained, TRAIN_SECONDS_TAG: rec.train_seconds}
        records += [delivery.log(rec.key, tags=compute), delivery.end(rec.key, rec.status, rec.reason)]
        if rec.latest_uri and rec.status != TrialStatus.interrupted:  # it will not go on: best and last stay
            keep = [u for u in (rec.best_uri, rec.latest_uri) if u]
            records.append(delivery.prune_checkpoints(rec.key, rec.latest_uri.rsplit("/", 1)[0], keep))
        self._write(rec, *records)


class SweepStopper(Stopper):
    """Stops every trial once the driver decided the sweep must end (a store that refuses writes)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        session = SESSIONS.get(self.name)
        return session is not None and (session.abort is not None or session.fatal is not None)


def error_text(trial) -> str:
    """The last line of a trial's error (its exception), for the console and the run's tags."""
    try:
        text = trial.get_error() or ""
        if not text and trial.error_file and Path(trial.error_file).is_file():  # not yet synced to storage
            text = Path(trial.error_file).read_text()
    except Exception:  # noqa: BLE001 - the error's text is worth less than the sweep going on
        text = ""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1][-2000:] if lines else "trial raised an error (see the trial's error.txt)"


def adopt_runs(outbox, reader: Reader, parent_run_id: str) -> None:
    """A resume on a machine without this sweep's journal (or with an older copy of it): what
    the store already holds is the truth, so no run is created twice and no epoch logged twice."""
    saved = outbox.state("trial/")
    runs, points = child_runs(reader, parent_run_id)
    for run in runs:
        tags = run.tags
        trial_id = tags.get(TRIAL_ID_TAG)
        if not trial_id:
            continue
        key = f"trial/{trial_id}"
        rec = (
            TrialRecord.from_json(saved[key])
            if key in saved
            else TrialRecord(trial_id, int(tags.get(TRIAL_NUMBER_TAG, 0)), run.sampled)
        )
        history = epoch_rows(points[run.run_id])
        if history and history[-1][EPOCH] > rec.last_logged:
            rec.history, rec.last_logged = history, int(history[-1][EPOCH])
        rec.created = True
        rec.config_logged = rec.config_logged or "trainer.epochs" in run.params
        with contextlib.suppress(ValueError):
            rec.status = TrialStatus(tags.get(STATUS_TAG, rec.status))
        outbox.bind(key, run.run_id)
        outbox.write(state={key: rec.to_json()})
