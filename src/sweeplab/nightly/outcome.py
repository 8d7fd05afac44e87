"""What a night produced: each entry's measurement, each watched metric's verdict, the night's
outcome (and the exit code a scheduler alerts on). Plain data, shared by the runner and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sweeplab.nightly.detect import Judgement, Verdict, Watch
from sweeplab.nightly.status import EntryStatus


@dataclass
class Measurement:
    metrics: dict[str, float]
    status: EntryStatus
    reason: str = ""
    wall_seconds: float | None = None
    run_id: str | None = None


@dataclass
class Judged:
    entry: str
    watch: Watch
    judgement: Judgement
    note: str = ""


@dataclass
class NightOutcome:
    suite: str
    night: date
    ran: bool  # this process held the claim
    message: str = ""
    judged: list[Judged] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # entry -> failed / diverged reason
    skipped: dict[str, str] = field(default_factory=dict)  # entry -> why
    report: Path | None = None

    @property
    def regressed(self) -> list[Judged]:
        return [j for j in self.judged if j.judgement.verdict == Verdict.regressed]

    @property
    def exit_code(self) -> int:
        """1 when anything regressed or failed (a scheduler or CI alerts on it), else 0."""
        return 1 if self.regressed or self.problems else 0
