"""How a run or trial ended: the one home of the status names and what each one means.

A training run ends ``completed``, ``early_stopped`` or ``diverged`` on its own terms;
a sweep adds the endings a trial is given from outside (a scheduler, the time budget,
an error, Ctrl-C) and the states of a trial still in play. MLflow knows only
FINISHED / FAILED / KILLED, so the ``sweeplab.status`` tag keeps the detail.
"""

from __future__ import annotations

from enum import StrEnum


class TrialStatus(StrEnum):
    pending = "pending"
    running = "running"
    retrying = "retrying"
    completed = "completed"
    early_stopped = "early_stopped"
    stopped_by_scheduler = "stopped_by_scheduler"
    stopped_by_budget = "stopped_by_budget"
    diverged = "diverged"
    failed = "failed"
    interrupted = "interrupted"

    @property
    def active(self) -> bool:
        """Still in play: a resumed sweep will run it (again)."""
        return self in _ACTIVE

    @property
    def rankable(self) -> bool:
        """Ended on its own or a scheduler's terms with epochs worth comparing (a diverged
        trial's epochs before the blow-up count too)."""
        return self in _RANKABLE

    @property
    def mlflow_status(self) -> str:
        return _MLFLOW[self]

    @property
    def style(self) -> str:
        """Its colour in the terminal."""
        return _STYLE[self]


_ACTIVE = {TrialStatus.pending, TrialStatus.running, TrialStatus.retrying}
_RANKABLE = {
    TrialStatus.completed,
    TrialStatus.early_stopped,
    TrialStatus.stopped_by_scheduler,
    TrialStatus.stopped_by_budget,
    TrialStatus.diverged,
}
_MLFLOW = {
    TrialStatus.pending: "RUNNING",
    TrialStatus.running: "RUNNING",
    TrialStatus.retrying: "RUNNING",
    TrialStatus.completed: "FINISHED",
    TrialStatus.early_stopped: "FINISHED",
    TrialStatus.stopped_by_scheduler: "FINISHED",
    TrialStatus.stopped_by_budget: "FINISHED",
    TrialStatus.diverged: "FAILED",
    TrialStatus.failed: "FAILED",
    TrialStatus.interrupted: "KILLED",
}
_STYLE = {
    TrialStatus.pending: "dim",
    TrialStatus.running: "yellow",
    TrialStatus.retrying: "magenta",
    TrialStatus.completed: "green",
    TrialStatus.early_stopped: "cyan",
    TrialStatus.stopped_by_scheduler: "blue",
    TrialStatus.stopped_by_budget: "blue",
    TrialStatus.diverged: "red",
    TrialStatus.failed: "bold red",
    TrialStatus.interrupted: "yellow",
}
