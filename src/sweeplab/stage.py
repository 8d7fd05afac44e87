"""A sweep's stages: the one home of their names.

A sweep searches first; with ``tune.reevaluate.top_k`` it then re-trains its top configurations
with fresh seeds. The stage is the sweep's (``SweepState.stage`` in ``sweeplab.json``) and each
trial's (its record, and the ``sweeplab.stage`` tag of its run). The re-evaluation's name is
spelled in two more places that outlive a driver: its Tune experiment's folder inside the sweep's
folder, and the key of a re-evaluation trial's config. None of these values may change: a sweep
written by an earlier sweeplab must resume.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    search = "search"
    reevaluate = "reevaluate"  # a top configuration trained again with a fresh seed

    @property
    def trial_prefix(self) -> str:
        """How a trial of this stage is called in the terminal (``trial-003``, ``reeval-001``)."""
        return "trial" if self is Stage.search else "reeval"


# The re-evaluation stage's Tune experiment: a folder of this name inside the sweep's folder
REEVALUATION_EXPERIMENT = Stage.reevaluate.value
# The key of a re-evaluation trial's config (its param space): {"sampled": values of the trial it
# repeats, "seed": ..., "of": its trial id}
REEVALUATION_POINT = Stage.reevaluate.value
