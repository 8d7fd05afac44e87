"""Driving a sweep: checks before anything is created, the run, and every way it can end.

    start   validate the space, reach the store and the cluster, open the parent run, run
    resume  continue a sweep from its storage (finished trials stay finished)
    sync    deliver what the outbox still holds and finish a sweep whose trials all ended

Whatever happens (Ctrl-C, Tune or Ray raising, the store refusing a write, the store away),
the sweep ends with one line, its parent and unfinished child runs closed (KILLED or
FAILED, with the reason and the command that continues), and nothing already recorded lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from typing import Any

from sweeplab.config import ConfigError, compose, flatten, to_container, validate_sweep
from sweeplab.objective import Objective
from sweeplab.overrides import key_of, under
from sweeplab.redact import scrub, without_password
from sweeplab.space import Param, parse_space, validate_space
from sweeplab.stage import Stage
from sweeplab.status import TrialStatus
from sweeplab.sweep import cluster  # noqa: I001  (sets Ray's environment before Ray is imported)
from sweeplab.sweep import state as sweep_state
from sweeplab.sweep import tuner as tuning
from sweeplab.sweep.check import check_trials
from sweeplab.sweep.recorder import PARENT, SESSIONS, Session, SweepRecorder, SweepStopper, adopt_runs
from sweeplab.sweep.results import SweepSummary
from sweeplab.sweep.state import SweepState
from sweeplab.sweep.storage import Storage, fetch, hide_credentials, prune_checkpoints
from sweeplab.tracking import delivery
from sweeplab.tracking.outbox import FILE as OUTBOX_FILE
from sweeplab.tracking.outbox import Outbox
from sweeplab.tracking.reader import open_reader
from sweeplab.tracking.store import Tracker, resolve_uri

DRAIN_S = float(os.environ.get("SWEEPLAB_DRAIN_S", "60"))  # how long a sweep's end waits for the store
LOG_FILE = "driver.log"
# Overrides a resume may change: how the sweep runs, not what it searches.
OPERATIONAL = (
    "tune.max_concurrent_trials",
    "tune.time_budget_s",
    "tune.max_failures",
    "tune.storage_path",  # where to find it
    "tune.storage_endpoint",
    "tracking.uri",  # the same store, e.g. with its password again
)
log = logging.getLogger("sweeplab.sweep")


class SweepError(RuntimeError):
    """The sweep could not go on; the message is one line, its runs are closed."""


class SweepInterrupted(KeyboardInterrupt):
    def __init__(self, state: SweepState, pending: int = 0):
        super().__init__(f"sweep {state.name} interrupted; {continue_hint(state, pending)}")
        self.state = state


class SweepFinished(Exception):
    def __init__(self, state: SweepState):
        super().__init__(
            f"sweep {state.name} has finished; nothing to resume (see `sweeplab sweeps show {state.name}`)"
        )
        self.state = state


@dataclass
class SweepOutcome:
    state: SweepState
    summary: SweepSummary


Show = Callable[[SweepRecorder], None]


def continue_hint(state: SweepState, pending: int = 0) -> str:
    hint = f"continue it with `sweeplab sweep resume {state.name}{_where(state)}`"
    if pending:
        hint += f" ({pending} tracking records are still waiting for the store; the resume delivers them)"
    return hint


def _where(state: SweepState) -> str:
    default = Storage.from_config({"storage_path": "sweeps"})
    return "" if state.storage == default.uri else f" tune.storage_path={state.storage}"


# ------------------------------------------------------------------ start / resume / sync
def start(
    cfg: dict[str, Any], base_overrides: Sequence[str], show: Show | None = None, started: float | None = None
) -> SweepOutcome:
    """Refuse what cannot work before anything is created; then open the parent run and run.
    ``started`` (a ``time.time()``; now by default) is when the sweep's time budget began: the
    command line passes its own start, so that its checks and Ray's start-up count too."""
    started = time.time() if started is None else started
    hide_credentials()  # before anything could copy them into Ray's runtime environments
    tune_cfg = cfg["tune"]
    validate_sweep(cfg, cfg["trainer"]["epochs"])  # the schedulers' max_t is trainer.epochs
    params = parse_space(cfg["search"]["space"])
    validate_space(params, base_overrides, tune_cfg["search_alg"])
    tuning.scheduler(tune_cfg, cfg["trainer"]["epochs"], params)  # a bad scheduler/space pairing fails now
    storage = Storage.from_config(tune_cfg)
    name = tune_cfg["name"] or f"{cfg['tracking']['experiment']}-{datetime.now():%Y%m%d-%H%M%S}"
    if sweep_state.exists(storage, name):
        raise ConfigError(
            f"a sweep named '{name}' exists in {storage.join(name)}; resume it with "
            f"`sweeplab sweep resume {name}` or choose another tune.name"
        )
    tracking = {**cfg["tracking"], "uri": without_password(resolve_uri(cfg["tracking"]["uri"]))}
    state = SweepState(
        name=name,
        storage=storage.uri,
        parent_run_id="",
        experiment=cfg["tracking"]["experiment"],
        base_overrides=[scrub(o) for o in base_overrides],
        tracking=tracking,
        tune=tune_cfg,
        max_epochs=cfg["trainer"]["epochs"],
        smoothing=max(3, cfg["trainer"]["early_stopping"]["smoothing"]),
        config_hash=config_hash(cfg),
    )
    # the first folder this sweep creates on the way to its own (e.g. ./sweeps): a refusal removes it
    created = next((d for d in reversed([state.local_dir, *state.local_dir.parents]) if not d.exists()), None)
    ray_started = cluster.start_ray(cfg["cluster"], state.local_dir / LOG_FILE)  # while the checks go on
    try:
        check_trials(cfg, base_overrides, params)
        tracker = Tracker(cfg["tracking"])  # an unreachable store is one line, within seconds
        ray_started.wait()
        tags = cluster.check_cluster(tune_cfg, storage)  # e.g. node-local storage on several nodes
    except BaseException:
        cluster.shutdown()  # Ray may still be starting: it is stopped once it has
        if created is not None:  # refused: leave nothing behind, not even Ray's log
            shutil.rmtree(created, ignore_errors=True)
        raise
    state.parent_run_id = tracker.start_sweep_run(
        state.experiment, name, cfg, params, state.path, environment()
    )
    state.save()
    return _run(cfg, state, params, tracker, tags, show, restore=False, started=started)


def resume(
    ref: str, overrides: Sequence[str] = (), show: Show | None = None, started: float | None = None
) -> SweepOutcome:
    """Continue a sweep; its time budget (``started`` as for :func:`start`) begins again."""
    started = time.time() if started is None else started
    state, cfg, tracker = _reopen(ref, overrides)
    if state.summarized:
        raise SweepFinished(state)
    params = parse_space(cfg["search"]["space"])
    cluster.init_ray(cfg["cluster"], state.local_dir / LOG_FILE)
    tags = cluster.check_cluster(cfg["tune"], state.store)
    return _run(cfg, state, params, tracker, tags, show, restore=True, started=started)


def sync(ref: str, overrides: Sequence[str] = ()) -> SweepOutcome | None:
    """Deliver the outbox; summarize a sweep whose trials have all ended (None if some have not)."""
    state, cfg, tracker = _reopen(ref, overrides)
    outbox = _outbox(state, tracker)
    if not outbox.drain(DRAIN_S):
        raise SweepError(_behind(state, outbox, "the tracking store is still unreachable"))
    trials = outbox.state("trial/").values()
    if state.summarized or any(TrialStatus(t["status"]).active for t in trials) or not trials:
        return None
    return SweepOutcome(state, _summarize(cfg, state, tracker, outbox))


def _reopen(ref: str, overrides: Sequence[str]) -> tuple[SweepState, dict[str, Any], Tracker]:
    hide_credentials()
    allowed = under(overrides, OPERATIONAL)
    refused = [o for o in overrides if o not in allowed]
    if refused:
        raise ConfigError(
            f"a resumed sweep keeps its search and settings; cannot change {', '.join(refused)} "
            f"(allowed: {', '.join(OPERATIONAL)}); start a new sweep instead"
        )
    given = to_container(compose(list(overrides)))
    state = sweep_state.find_sweep(ref, given["tune"], given["tracking"])
    cfg = to_container(compose(state.base_overrides))
    if config_hash(cfg) != state.config_hash and state.config_hash:
        now = flatten(cfg)
        saved = flatten({k: v for k, v in state.tune.items()})
        changed = sorted(k for k in now if k.startswith("tune.") and saved.get(k[5:]) != now[k])
        raise ConfigError(
            f"conf/ changed since sweep {state.name} started (its composed config differs"
            + (f": {', '.join(changed[:5])}" if changed else "")
            + "); restore conf/ as it was, or start a new sweep"
        )
    for o in overrides:  # operational overrides apply to this run
        section, field_name = key_of(o).split(".", 1)
        cfg[section][field_name] = given[section][field_name]
        if section == "tune":
            state.tune[field_name] = given[section][field_name]
    uri = given["tracking"]["uri"] if under(overrides, ("tracking.uri",)) else None
    tracker = Tracker({**state.tracking, "uri": uri or state.tracking["uri"]})
    return state, cfg, tracker


def config_hash(cfg: dict[str, Any]) -> str:
    what = {k: v for k, v in cfg.items() if k not in ("tracking", "cluster")}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ the run
def _outbox(state: SweepState, tracker: Tracker) -> Outbox:
    local = state.local_dir / OUTBOX_FILE
    elsewhere = not local.exists()
    if elsewhere and not state.store.is_local:  # resumed on another machine: its last copy
        state.store.download(f"{state.name}/{OUTBOX_FILE}", local)
    outbox = Outbox(local, delivery.Delivery(tracker, fetch, prune_checkpoints))
    outbox.bind(PARENT, state.parent_run_id)
    if elsewhere:
        adopt_runs(outbox, open_reader(tracker.cfg), state.parent_run_id)
    return outbox.start()


def _run(
    cfg: dict[str, Any],
    state: SweepState,
    params: Sequence[Param],
    tracker: Tracker,
    cluster_tags: dict[str, Any],
    show: Show | None,
    restore: bool,
    started: float,
) -> SweepOutcome:
    outbox = _outbox(state, tracker)
    session = SESSIONS[state.name] = Session(
        state, outbox, show, expected=tuning.expected_trials(cfg["tune"], params)
    )
    address = scrub(cfg["cluster"].get("address") or "local")
    outbox.write(
        [delivery.reopen(PARENT), delivery.log(PARENT, tags={**cluster_tags, "cluster.address": address})]
    )
    top_k = cfg["tune"]["reevaluate"]["top_k"]
    try:
        if state.stage == Stage.search:
            # the budget bounds the command's wall time: Tune's own clock gets what is left of it
            left = _budget_left(cfg["tune"]["time_budget_s"], started)
            timed = {**cfg, "tune": {**cfg["tune"], "time_budget_s": left}}
            _fit(session, lambda cbs, stop: tuning.build(timed, state, params, cbs, stop, restore), left)
            if top_k:
                state.stage, restore = Stage.reevaluate, False
                state.save()
        if state.stage == Stage.reevaluate:
            points = reevaluation_points(session, cfg)
            session.expected += len(points)
            _fit(session, lambda cbs, stop: tuning.build(cfg, state, params, cbs, stop, restore, points), 0)
    except BaseException:
        cluster.shutdown()
        raise
    stopping = cluster.shutdown_soon()  # Ray is no longer needed: it stops while the summary is written
    try:
        if not outbox.drain(DRAIN_S):
            raise SweepError(_behind(state, outbox, "the tracking store cannot be reached"))
        return SweepOutcome(state, _summarize(cfg, state, tracker, outbox))
    finally:
        stopping.join()


def _budget_left(budget: float | None, started: float) -> float | None:
    """What is left of a time budget begun at ``started``: at least a moment (Tune takes no zero),
    so a budget the start-up used up ends the search at once and the sweep says it has no model."""
    return None if budget is None else max(budget - (time.time() - started), 0.001)


def _fit(session: Session, make_tuner: Callable[[list, SweepStopper], Any], budget: float | None) -> None:
    """One Tune run of the sweep, ended one way or another; unfinished trials out of time are closed.
    ``budget``: the seconds Tune was given (None or 0: no budget)."""
    from ray.tune.logger import JsonLoggerCallback

    state, outbox = session.state, session.outbox
    recorder, stopper = SweepRecorder(state.name), SweepStopper(state.name)
    fit_started = time.monotonic()  # before Tune's own budget clock starts
    try:
        make_tuner([recorder, JsonLoggerCallback()], stopper).fit()
    except KeyboardInterrupt:  # a second Ctrl-C: Tune gives up saving and re-raises
        _stop(session, TrialStatus.interrupted, "the sweep was interrupted")
        raise SweepInterrupted(state, outbox.pending()) from None
    except Exception as exc:  # noqa: BLE001 - any failure of the sweep itself ends in one line
        reason = _one_line(exc)
        log.error("sweep %s failed:\n%s", state.name, traceback.format_exc())
        _stop(session, TrialStatus.failed, f"the sweep failed: {reason}")
        raise SweepError(
            f"sweep {state.name} failed: {reason}; {continue_hint(state)} "
            f"(details in {state.local_dir / LOG_FILE})"
        ) from None
    recorder = session.recorder or recorder
    if session.fatal:  # a trial's code does not import where it ran: one line, before any retry
        _stop(session, TrialStatus.failed, session.fatal)
        raise SweepError(f"sweep {state.name} stopped: {session.fatal}")
    if outbox.rejection:
        _stop(session, TrialStatus.failed, outbox.rejection)
        raise SweepError(f"sweep {state.name} stopped: {outbox.rejection}")
    trials = getattr(recorder, "trials", {})
    outbox.write(state=session.clock())
    unfinished = [r for r in trials.values() if r.status.active]
    out_of_time = bool(budget) and time.monotonic() - fit_started >= budget
    if (unfinished or len(trials) < session.expected) and not out_of_time:
        # Tune's Ctrl-C handler saves the sweep and returns normally.
        _stop(session, TrialStatus.interrupted, "the sweep was interrupted")
        raise SweepInterrupted(state, outbox.pending())
    for rec in unfinished:
        recorder.close(rec, TrialStatus.stopped_by_budget, "the sweep's time budget ran out")


def reevaluation_points(session: Session, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The top_k configurations of the search, each with the same fresh seeds (paired repeats:
    the configurations differ in their values, not in their luck)."""
    from sweeplab.sweep.recorder import TrialRecord

    objective = Objective.of(cfg["tune"])
    searched = [TrialRecord.from_json(v) for v in session.outbox.state("trial/").values()]
    ranked = objective.ranked(
        (r for r in searched if r.stage == Stage.search and r.status.rankable and r.best),
        key=lambda r: r.best[objective.metric],
    )
    reeval = cfg["tune"]["reevaluate"]
    seeds = [cfg["seed"] + FRESH_SEEDS + j for j in range(reeval["seeds"])]
    return [
        {"sampled": r.sampled, "seed": seed, "of": r.trial_id}
        for r in ranked[: reeval["top_k"]]
        for seed in seeds
    ]


FRESH_SEEDS = 1_000_000  # above any seed a search trial draws (base seed + trial number)


def _summarize(cfg: dict[str, Any], state: SweepState, tracker: Tracker, outbox: Outbox) -> SweepSummary:
    from sweeplab.sweep.summary import summarize

    wall = sum(outbox.state("driver/").values())
    try:
        summary = summarize(cfg, state, tracker, wall)
    except Exception as exc:  # noqa: BLE001 - e.g. the store went away after the drain
        log.error("summary of %s failed:\n%s", state.name, traceback.format_exc())
        raise SweepError(
            f"sweep {state.name}: its trials are recorded but the summary failed ({_one_line(exc)}); "
            f"`sweeplab sweep sync {state.name}{_where(state)}` writes it"
        ) from None
    state.summarized = True
    state.save()
    _keep_journal(state, outbox)
    return summary


def _stop(session: Session, status: TrialStatus, reason: str) -> None:
    """Close the parent and every unfinished child run, and deliver what the store will take."""
    state, outbox = session.state, session.outbox
    session.abort = status
    recorder = session.recorder
    hint = continue_hint(state)
    for rec in list(getattr(recorder, "trials", {}).values()):
        if rec.status.active:
            recorder.close(rec, status, f"{reason}; {hint}")
    outbox.write([delivery.end(PARENT, status, f"{reason}; {hint}")])
    outbox.drain(min(DRAIN_S, 15))
    _keep_journal(state, outbox)


def _keep_journal(state: SweepState, outbox: Outbox) -> None:
    """A sweep in an object store keeps a copy of its journal there, for a resume elsewhere."""
    if not state.store.is_local:
        copy = outbox.snapshot(state.local_dir / f"{OUTBOX_FILE}.copy")
        state.store.upload(copy, f"{state.name}/{OUTBOX_FILE}")


def _behind(state: SweepState, outbox: Outbox, why: str) -> str:
    if outbox.last_error:  # what the store answered last, so a store that is up but failing shows
        why += f" (last error: {outbox.last_error})"
    return (
        f"sweep {state.name}: {why}; {outbox.pending()} tracking records are waiting in "
        f"{state.local_dir / OUTBOX_FILE}: `sweeplab sweep sync {state.name}{_where(state)}` delivers them "
        "once the store is back"
    )


def _one_line(exc: BaseException) -> str:
    lines = [s.strip() for s in str(exc).strip().splitlines() if s.strip()]
    return scrub(f"{type(exc).__name__}: {lines[-1] if lines else ''}")[:400]


def environment() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": version("torch"),
        "ray": version("ray"),
        "mlflow": version("mlflow"),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }
