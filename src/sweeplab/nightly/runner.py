"""One night of a suite: claim it, run what is missing, judge, rerun a regression once, report.

    claim (suite, night) ──► every (entry, seed) without a finished row: train or sweep,
       │                     logged to MLflow experiment nightly/<suite>, rows in the store
       ▼
    judge each watched metric ──► regressed? run the entry again (nightly.reruns), judge again
       ▼
    verdicts saved ──► report (HTML + Markdown + plots) in reports_dir and MLflow ──► hook

Running the same suite and night again runs only what is missing; a second runner finding the
night claimed by a live one says so and stops (exit 0).
"""

from __future__ import annotations

import copy
import os
import shlex
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import date
from importlib import import_module
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from sweeplab.config import compose, to_container
from sweeplab.metrics import EPOCH_TIME, TEST_ACC, TEST_LOSS, VAL_ACC, VAL_LOSS, best_key
from sweeplab.nightly import report as reports
from sweeplab.nightly.detect import Judgement, Verdict, judge
from sweeplab.nightly.history import HistoryStore, Row, machine, now_utc, owner_id
from sweeplab.nightly.outcome import Judged, Measurement, NightOutcome
from sweeplab.nightly.status import PROBLEMS, ClaimStatus, EntryStatus
from sweeplab.nightly.suite import Entry, Suite, compose_entry
from sweeplab.overrides import in_sections
from sweeplab.status import TrialStatus

# Defaults an entry may change; then what every nightly run is (its MLflow home and names).
ENTRY_DEFAULTS = ("tracking.log_model=false", "tune.register_model=false")


def git_commit() -> str | None:
    """``$SWEEPLAB_GIT_COMMIT`` (images built without .git set it), else the checkout's HEAD."""
    from sweeplab.tracking import git_commit as head

    return os.environ.get("SWEEPLAB_GIT_COMMIT") or head()


class NightRunner:
    def __init__(
        self,
        suite: Suite,
        settings: Mapping[str, Any],
        entry_overrides: Sequence[str] = (),
        store: HistoryStore | None = None,
        console: Console | None = None,
        after_seed: Callable[[str, int], None] | None = None,
    ):
        self.suite = suite
        self.settings = settings
        self.entry_overrides = list(entry_overrides)
        self.store = store or HistoryStore(settings["history_url"])
        self.console = console or Console(quiet=True)
        self.after_seed = after_seed  # called after each recorded (entry, seed): progress, tests
        self.commit = git_commit()
        self._composed: dict[tuple[str, ...], dict[str, Any]] = {}
        self._data_key: str | None = None
        self._data = None

    def _say(self, line: str) -> None:
        self.console.print(line, markup=False)  # names, paths and reasons are not Rich markup

    def _warn(self, line: str) -> None:
        self.console.print(Text.assemble(("warning", "yellow"), ": ", line))

    # ------------------------------------------------------------------ run
    def run(self, night: date, only: Sequence[str] = ()) -> NightOutcome:
        entries = [self.suite.entry(n) for n in only] if only else list(self.suite.entries)
        for e in entries:  # a bad override fails here, before the night is claimed
            self._config(e, e.seeds[0], night, 1)
        self.store.upgrade()
        owner = owner_id()
        claim = self.store.claim(self.suite.name, night, owner, self.settings["claim_timeout_s"], now_utc())
        outcome = NightOutcome(self.suite.name, night, claim.acquired)
        if not claim.acquired:
            outcome.message = (
                f"night {night} of suite '{self.suite.name}' is being run by {claim.owner}; "
                "nothing to do here"
            )
            return outcome
        if claim.taken_over_from:
            self._say(f"took over night {night} from {claim.taken_over_from}, which stopped")
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(night, owner, stop), daemon=True)
        beat.start()
        try:
            ran = self._run_entries(entries, night, outcome)
            if ran or not self.store.verdicts(self.suite.name, night):
                self._judge_and_rerun(night, outcome)
                self._report(night, outcome, log=True)
                self._hook(outcome)
            else:
                self._report(night, outcome, log=False)
                outcome.message = f"nothing missing for night {night} of suite '{self.suite.name}'"
        except BaseException:
            stop.set()
            beat.join(timeout=10)  # no heartbeat write in flight while the claim is released
            self.store.release(self.suite.name, night, owner, ClaimStatus.failed)
            raise
        stop.set()
        beat.join(timeout=10)
        # a run of some entries only leaves the night open: the scheduler still runs the rest
        self.store.release(
            self.suite.name, night, owner, ClaimStatus.partial if only else ClaimStatus.finished
        )
        return outcome

    def _heartbeat(self, night: date, owner: str, stop: threading.Event) -> None:
        interval = max(1.0, min(60.0, self.settings["claim_timeout_s"] / 3))
        while not stop.wait(interval):
            try:
                self.store.heartbeat(self.suite.name, night, owner)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the run goes on
                continue

    def _run_entries(self, entries: Sequence[Entry], night: date, outcome: NightOutcome) -> bool:
        todo = [
            (e, s)
            for e in entries
            for s in e.seeds
            if s not in self.store.done_seeds(self.suite.name, night, e.name)
        ]
        done = sum(len(e.seeds) for e in entries) - len(todo)
        self._say(
            f"nightly suite {self.suite.name}, night {night}: {len(todo)} run(s) to do"
            + (f", {done} already recorded" if done else "")
            + f" · history {self.store.shown} · MLflow experiment nightly/{self.suite.name}"
        )
        for i, (entry, seed) in enumerate(todo, 1):
            label = f"[{i}/{len(todo)}] {entry.name} seed {seed}"
            m = self._measure(entry, seed, night, attempt=1)
            self._record(entry, seed, night, m)
            self._say(f"{label}: {_describe(m, entry)}")
            if self.after_seed is not None:
                self.after_seed(entry.name, seed)
        for entry in entries:  # tonight's failures and skips, from the store: a rerun sees earlier ones
            for row in self.store.rows(self.suite.name, entry.name, since=night, until=night):
                if row.status == EntryStatus.skipped:
                    outcome.skipped[entry.name] = row.reason
                elif row.status in PROBLEMS:
                    outcome.problems[entry.name] = f"{row.status}: {row.reason}"
        return bool(todo)

    # -------------------------------------------------------------- one run
    def _config(self, entry: Entry, seed: int, night: date, attempt: int) -> tuple[dict[str, Any], list[str]]:
        forced = [
            f"tracking.experiment=nightly/{self.suite.name}",
            f"tracking.run_name='{entry.name} seed {seed} {night}'",
        ]
        if entry.kind == "sweep":  # the process id keeps a rerun after a crash clear of the dead one's state
            name = f"nightly-{self.suite.name}-{entry.name}-{night}-s{seed}-a{attempt}-p{os.getpid()}"
            forced.append(f"tune.name={name}")
        overrides = [*ENTRY_DEFAULTS, *entry.overrides, *self.entry_overrides, *forced, f"seed={seed}"]
        key = tuple(overrides)
        if key not in self._composed:  # composing takes ~0.4 s; the check before the claim composed it
            self._composed[key] = compose_entry(entry.name, overrides)
        return copy.deepcopy(self._composed[key]), overrides

    def _measure(self, entry: Entry, seed: int, night: date, attempt: int) -> Measurement:
        cfg, overrides = self._config(entry, seed, night, attempt)
        if entry.skip_if_missing and (why := _missing_data(cfg["data"])):
            return Measurement({}, EntryStatus.skipped, why)
        tags = {
            "nightly.suite": self.suite.name,
            "nightly.night": night.isoformat(),
            "nightly.entry": entry.name,
            "nightly.seed": str(seed),
            "nightly.attempt": str(attempt),
            "nightly.git_commit": self.commit or "unknown",
        }
        try:
            if entry.kind == "sweep":
                return self._sweep(cfg, overrides, tags)
            return self._train(cfg, tags)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one entry failing must not stop the suite
            return Measurement({}, EntryStatus.failed, _one_line(exc))

    def _train(self, cfg: dict[str, Any], tags: dict[str, str]) -> Measurement:
        from sweeplab.run import train_and_track

        data = self._cached_data(cfg["data"])
        t0 = time.perf_counter()
        outcome = train_and_track(cfg, data, tags=tags)
        wall = time.perf_counter() - t0
        result = outcome.result
        metrics = dict(result.test)
        metrics.update({best_key(k): v for k, v in result.best.items() if k in (VAL_ACC, VAL_LOSS)})
        if result.history:
            metrics[EPOCH_TIME] = statistics.median(h[EPOCH_TIME] for h in result.history)
            metrics["epochs"] = float(len(result.history))
        metrics["wall_seconds"] = wall
        diverged = result.status == TrialStatus.diverged
        status = EntryStatus.diverged if diverged else EntryStatus.completed
        return Measurement(metrics, status, result.reason if diverged else "", wall, outcome.run_id)

    def _sweep(self, cfg: dict[str, Any], overrides: list[str], tags: dict[str, str]) -> Measurement:
        from sweeplab import sweep
        from sweeplab.tracking import Tracker

        name, n = cfg["tune"]["name"], 1
        while (Path(cfg["tune"]["storage_path"]) / cfg["tune"]["name"]).exists():  # a failed attempt left it
            n += 1
            cfg["tune"]["name"] = f"{name}-{n}"
        overrides = [o for o in overrides if not o.startswith("tune.name=")] + [
            f"tune.name={cfg['tune']['name']}"
        ]
        t0 = time.perf_counter()
        outcome = sweep.start(cfg, overrides)
        wall = time.perf_counter() - t0
        parent = outcome.state.parent_run_id
        Tracker(cfg["tracking"]).set_tags(parent, tags)
        s = outcome.summary
        if s.best is None:
            return Measurement(
                {}, EntryStatus.failed, s.no_model or "no trial of the sweep finished", wall, parent
            )
        c = s.compute
        metrics = {k: float(s.test[k]) for k in (TEST_ACC, TEST_LOSS) if k in s.test}
        metrics.update(
            wall_seconds=float(c.wall_seconds), trials=float(len(s.trials)), epochs_run=float(c.epochs_run)
        )
        if c.epochs_run:
            metrics[EPOCH_TIME] = c.trial_seconds / c.epochs_run
        if s.metric == VAL_LOSS:
            metrics[best_key(VAL_LOSS)] = float(s.best.best)
        return Measurement(metrics, EntryStatus.completed, "", wall, parent)

    def _cached_data(self, data_cfg: Mapping[str, Any]):
        """Seeds of an entry share its data (IMDB takes a minute to vectorize); one set is kept."""
        from sweeplab.data import load_data

        key = repr(sorted(data_cfg.items()))
        if key != self._data_key:
            self._data, self._data_key = None, None  # free the previous set before loading the next
            self._data, self._data_key = load_data(data_cfg), key
        return self._data

    def _record(self, entry: Entry, seed: int, night: date, m: Measurement, rerun: bool = False) -> None:
        metrics: dict[str, float | None] = dict(m.metrics)
        for w in entry.watches:  # a watched metric gets a row even when the run produced none
            metrics.setdefault(w.metric, None)
        rows = [
            Row(
                night,
                entry.name,
                seed,
                metric,
                value,
                m.status,
                m.reason,
                m.wall_seconds,
                1,
                None,
                self.commit,
                machine(),
                m.run_id,
            )
            for metric, value in metrics.items()
        ]
        self.store.record(self.suite.name, rows, rerun=rerun)

    # -------------------------------------------------------------- verdicts
    def _judge_and_rerun(self, night: date, outcome: NightOutcome) -> None:
        for entry in self.suite.entries:
            outcome.judged.extend(self._judge_entry(entry, night))
        self.store.save_verdicts(
            self.suite.name,
            night,
            [
                (
                    j.entry,
                    j.watch.metric,
                    j.judgement.verdict,
                    {**asdict(j.judgement), "watch": j.watch.describe(), "note": j.note},
                )
                for j in outcome.judged
            ],
        )

    def _judge_entry(self, entry: Entry, night: date) -> list[Judged]:
        """Judge the entry; while it regressed and reruns are left, run it again and judge again."""
        judged = judge_entry(self.store, self.suite, entry, night)
        tonight = self.store.rows(self.suite.name, entry.name, since=night, until=night)
        attempts = max((r.attempts for r in tonight), default=1)  # a rerun night run again: no third try
        notes: dict[str, str] = {}
        while attempts <= self.settings["reruns"] and (
            worse := [j.watch.metric for j in judged if j.judgement.verdict == Verdict.regressed]
        ):
            attempts += 1
            self.console.print(
                f"{entry.name} regressed on {', '.join(worse)}: running it again (attempt {attempts}) "
                "before the verdict is final",
                markup=False,
            )
            failed = self._rerun(entry, night, attempts)
            if failed:
                notes.update({m: f"the rerun failed ({failed}); the first attempt stands" for m in worse})
                break
            judged = judge_entry(self.store, self.suite, entry, night)
            for j in judged:
                if j.watch.metric in worse:
                    confirmed = j.judgement.verdict == Verdict.regressed
                    notes[j.watch.metric] = f"regressed in attempt {attempts - 1}; the rerun " + (
                        "confirmed it" if confirmed else f"did not confirm it ({j.judgement.verdict})"
                    )
        for j in judged:
            j.note = notes.get(j.watch.metric, "")
        return judged

    def _rerun(self, entry: Entry, night: date, attempt: int) -> str:
        """Run every seed of the entry again; its values replace the night's. A failure keeps the first."""
        measured = []
        for seed in entry.seeds:
            m = self._measure(entry, seed, night, attempt)
            if m.status != EntryStatus.completed:
                return f"seed {seed}: {m.status} {m.reason}".strip()
            measured.append((seed, m))
        for seed, m in measured:
            self._record(entry, seed, night, m, rerun=True)
        return ""

    # ---------------------------------------------------------------- report
    def _report(self, night: date, outcome: NightOutcome, log: bool) -> None:
        if not outcome.judged:
            outcome.judged = stored_judgements(self.store, self.suite, night)
        out_dir = Path(self.settings["reports_dir"]) / self.suite.name / night.isoformat()
        paths = reports.write(self.store, self.suite, night, outcome, out_dir)
        outcome.report = paths.markdown
        self.console.print(reports.terminal_summary(outcome))
        self._say(f"report: {paths.html}")
        if log:
            self._log_report(night, outcome, paths)

    def _log_report(self, night: date, outcome: NightOutcome, paths: reports.ReportPaths) -> None:
        from sweeplab.tracking import Tracker

        tracking = to_container(compose(in_sections(self.entry_overrides, ("tracking",))))["tracking"]
        try:
            tracker = Tracker(tracking)
            run_id = tracker.start_run(
                f"nightly/{self.suite.name}",
                f"report {night}",
                {},
                tags={
                    "nightly.suite": self.suite.name,
                    "nightly.night": night.isoformat(),
                    "nightly.kind": "report",
                    "nightly.git_commit": self.commit or "unknown",
                },
            )
            for path in (paths.html, paths.markdown):
                tracker.log_file(run_id, path, "report")
            for png in paths.plots:
                tracker.log_file(run_id, png, "report/plots")
            counts = {
                f"verdicts/{v}": float(sum(j.judgement.verdict == v for j in outcome.judged)) for v in Verdict
            }
            tracker.log_metrics(run_id, counts, step=0)
            tracker.end_run(run_id, TrialStatus.completed, f"nightly report for {night}")
            self._say(f"report logged to MLflow run {run_id}")
        except Exception as exc:  # noqa: BLE001 - the report is on disk; say why MLflow lacks it
            self._warn(f"report not logged to MLflow: {_one_line(exc)}")

    def _hook(self, outcome: NightOutcome) -> None:
        command = self.settings.get("on_regression")
        if not command or not outcome.exit_code or outcome.report is None:
            return
        env = {
            **os.environ,
            "SWEEPLAB_NIGHTLY_SUITE": outcome.suite,
            "SWEEPLAB_NIGHTLY_NIGHT": outcome.night.isoformat(),
            "SWEEPLAB_NIGHTLY_STATUS": Verdict.regressed if outcome.regressed else EntryStatus.failed,
            "SWEEPLAB_NIGHTLY_REPORT": str(outcome.report.resolve()),
            "SWEEPLAB_NIGHTLY_REPORT_HTML": str(outcome.report.with_suffix(".html").resolve()),
        }
        try:
            done = subprocess.run(
                [*shlex.split(command), str(outcome.report.resolve())], env=env, timeout=300
            )
            if done.returncode:
                self._warn(f"nightly.on_regression exited with {done.returncode}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._warn(f"nightly.on_regression could not run: {_one_line(exc)}")


# ------------------------------------------------------------ judging rows
def judge_entry(store: HistoryStore, suite: Suite, entry: Entry, night: date) -> list[Judged]:
    accepted = store.accepted(suite.name)
    out = []
    for w in entry.watches:
        nights = store.series(suite.name, entry.name, w.metric, until=night)
        if nights and nights[-1].night == night:
            out.append(
                Judged(
                    entry.name, w, judge(nights, w, suite.settings, accepted.get((entry.name, w.metric), []))
                )
            )
    return out


def stored_judgements(store: HistoryStore, suite: Suite, night: date) -> list[Judged]:
    """What a night decided, as saved (reruns included), for reports rebuilt later."""
    order = [(e.name, w.metric) for e in suite.entries for w in e.watches]  # as the night listed them
    watches = {(e.name, w.metric): w for e in suite.entries for w in e.watches}
    out = []
    for v in store.verdicts(suite.name, night):
        w = watches.get((v["entry"], v["metric"]))
        if w is None:  # the suite no longer watches it
            continue
        fields_ = {k: v.get(k) for k in Judgement.__dataclass_fields__}
        fields_["verdict"] = v["verdict"]
        out.append(Judged(v["entry"], w, Judgement(**_dates(fields_)), v.get("note", "")))
    return sorted(out, key=lambda j: order.index((j.entry, j.watch.metric)))


def _dates(fields_: dict[str, Any]) -> dict[str, Any]:
    for key in ("night", "baseline_from", "baseline_to", "began"):
        if isinstance(fields_.get(key), str):
            fields_[key] = date.fromisoformat(fields_[key])
    fields_["change_points"] = [
        date.fromisoformat(d) if isinstance(d, str) else d for d in fields_.get("change_points") or []
    ]
    return fields_


# ------------------------------------------------------------------ helpers
def _missing_data(data_cfg: Mapping[str, Any]) -> str | None:
    """Why the entry's data set is not on disk (never downloaded at night), or None."""
    if data_cfg["name"] not in ("imdb", "fashion_mnist"):
        return None
    from sweeplab.data import DataError

    try:
        import_module(f"sweeplab.data.{data_cfg['name']}").ensure_available(
            data_cfg.get("root"), download=False
        )
    except DataError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return " ".join(lines)[:600]
    return None


def _describe(m: Measurement, entry: Entry) -> str:
    if m.status != EntryStatus.completed:
        return f"{m.status}: {m.reason}"
    shown = [w.metric for w in entry.watches if w.metric in m.metrics]
    values = "  ".join(f"{k} {m.metrics[k]:.4g}" for k in shown)
    return f"{values}  ({m.wall_seconds:.1f} s)"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
