"""How a nightly entry and a night ended: the one home of the nightly history's status names.

An entry's seed ends as its run did (``completed``, ``diverged``, ``failed``: the words of
:class:`~sweeplab.status.TrialStatus`) or is ``skipped``; a night's claim is ``running`` until
its runner releases it. Both are stored in the history store (``nightly_results.status``,
``nightly_claims.status``), so the values never change: an existing store must still read.
A night's verdicts are :class:`~sweeplab.nightly.detect.Verdict`.
"""

from __future__ import annotations

from enum import StrEnum

from sweeplab.status import TrialStatus


class EntryStatus(StrEnum):
    """How one (entry, seed) of a night ended: what its rows in ``nightly_results`` record."""

    completed = TrialStatus.completed.value
    diverged = TrialStatus.diverged.value  # its training blew up; its values are not judged
    failed = TrialStatus.failed.value  # an error, or a sweep that chose no model
    skipped = "skipped"  # its data set is not on disk (never downloaded at night)


# A (seed, entry) with one of these rows is not run again that night
DONE = (EntryStatus.completed, EntryStatus.diverged)
# Tonight's entry measured nothing to judge: the night alerts (exit 1) and the report says why
PROBLEMS = (EntryStatus.failed, EntryStatus.diverged)


class ClaimStatus(StrEnum):
    """A (suite, night) claim in ``nightly_claims``: only ``running`` keeps other runners out."""

    running = "running"
    finished = "finished"  # the night ran to its end
    partial = "partial"  # some entries ran (``--entry``): the scheduler still runs the rest
    failed = "failed"  # the runner was interrupted
