"""The sweep's choosing on plain trial records: ranking, the best trial with weights, robust
selection, compute accounting and the no-model reason (no Ray, no MLflow, no training)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from sweeplab.objective import Objective
from sweeplab.status import TrialStatus
from sweeplab.sweep import results
from sweeplab.sweep.results import SweepSummary, TrialSummary, trial_summary
from sweeplab.tracking.tags import (
    BEST_EPOCH_TAG,
    EPOCHS_TRAINED_TAG,
    REEVALUATES_TAG,
    STAGE_TAG,
    STATUS_REASON_TAG,
    STATUS_TAG,
    TRAIN_SECONDS_TAG,
    TRIAL_ID_TAG,
)

LOSS = Objective("val/loss", "min")


def trial(name, losses, status="completed", accs=None, **tags) -> TrialSummary:
    """A trial whose epochs 1..n logged ``losses`` (val/acc = 1 - loss unless given)."""
    accs = accs or [1 - v for v in losses]
    history = [
        {"epoch": float(i), "val/loss": v, "val/acc": a, "epoch_time_s": 2.0}
        for i, (v, a) in enumerate(zip(losses, accs, strict=True), 1)
    ]
    tags = {STATUS_TAG: status, TRIAL_ID_TAG: f"id-{name}", **tags}
    return trial_summary(
        name=name,
        run_id=f"run-{name}",
        tags=tags,
        sampled={"optimizer.lr": 0.1, "seed": 7},
        history=history,
        metrics={"overfit/gap_acc": 0.01},
        objective=LOSS,
    )


def test_a_trial_is_judged_by_the_epoch_whose_weights_it_kept():
    stopped = trial("a", [0.9, 0.5, 0.3], **{BEST_EPOCH_TAG: "2"})  # epoch 3 was never checkpointed
    assert stopped.best == 0.5 and stopped.best_epoch["epoch"] == 2
    assert trial("b", [0.9, 0.5, 0.3]).best == 0.3  # no tag: the best logged epoch
    assert trial("c", [0.9, math.nan], **{BEST_EPOCH_TAG: "2"}).best == 0.9  # kept a NaN: the best finite
    nothing = trial("d", [])
    assert nothing.best == math.inf and nothing.best_epoch is None and nothing.epochs == 0


def test_an_unknown_status_tag_counts_as_failed():
    assert trial("a", [0.5], status="RUNNING").status is TrialStatus.failed
    assert trial("b", [0.5], status="diverged").status is TrialStatus.diverged


def test_ranking_takes_the_search_stage_trials_that_ended_rankably_best_first():
    trials = [
        trial("a", [0.6, 0.4]),
        trial("b", [0.5, 0.2], status="early_stopped"),
        trial("c", [0.1], status="failed"),  # not rankable
        trial("d", [0.05], **{STAGE_TAG: "reevaluate", REEVALUATES_TAG: "id-b"}),  # not the search
        trial("e", [], status="completed"),  # no epochs
        trial("f", [0.4, 0.3], status="stopped_by_budget"),
    ]
    assert [t.name for t in results.ranked(trials, LOSS)] == ["b", "f", "a"]


def test_the_best_trial_is_the_best_ranked_that_kept_weights_asked_no_further():
    ranked = [trial("a", [0.1]), trial("b", [0.2]), trial("c", [0.3])]
    asked = []

    def has_weights(t):
        asked.append(t.name)
        return t.name != "a"

    assert results.choose_best(ranked, has_weights).name == "b" and asked == ["a", "b"]
    assert results.choose_best(ranked, lambda t: False) is None


def test_compute_accounting_prefers_the_tags_over_the_logged_epochs():
    trials = [
        trial("a", [0.5, 0.4], **{EPOCHS_TRAINED_TAG: "3", TRAIN_SECONDS_TAG: "9.0"}),  # a replay
        trial("b", [0.5]),  # 1 epoch of 2 s
    ]
    c = results.compute(trials, max_epochs=5, max_concurrent=None, wall_seconds=4.0)
    assert (c.epochs_run, c.epochs_budget, c.slots) == (4, 10, 2)
    assert c.saved_fraction == pytest.approx(0.6) and c.trial_seconds == pytest.approx(11.0)
    assert c.efficiency == pytest.approx(11.0 / (4.0 * 2))
    one = results.compute(trials, max_epochs=5, max_concurrent=1, wall_seconds=0.0)
    assert one.slots == 1 and one.efficiency == 0.0
    none = results.compute([], max_epochs=5, max_concurrent=4, wall_seconds=1.0)
    assert (none.epochs_budget, none.saved_fraction, none.slots) == (0, 0.0, 1)


def test_counts_and_diagnosis_by_trial():
    trials = [trial("a", [0.5]), trial("b", [0.4], status="diverged"), trial("c", [0.3])]
    assert results.counts(trials) == {"completed": 2, "diverged": 1}
    assert results.diagnosis(trials)["b"] == {"overfit/gap_acc": 0.01}


def test_no_model_says_why_and_what_to_change():
    said = results.no_model_reason([], [], "val/loss", 60)
    assert "no trial started" in said and "tune.time_budget_s=60" in said
    ranked = [trial("a", [0.5], status="stopped_by_budget")]
    said = results.no_model_reason(ranked, ranked, "val/loss", 60)
    assert "no trial kept weights" in said and "1 stopped_by_budget" in said and "checkpoint_every" in said
    ended = [
        trial("trial-000", [], status="failed", **{STATUS_REASON_TAG: "RuntimeError: CUDA out of memory"}),
        trial("trial-001", [], status="stopped_by_budget"),
        trial("trial-002", [], status="interrupted"),
    ]
    said = results.no_model_reason(ended, [], "val/loss", 30)
    assert "1 failed" in said and "1 stopped_by_budget" in said and "1 interrupted" in said
    assert "trial-000: RuntimeError: CUDA out of memory" in said and "tune.time_budget_s" in said
    assert "sweep resume" in said
    assert "see the trials' runs" in results.no_model_reason([trial("x", [], status="completed")], [], "m", 1)


def reeval(name, of, losses, accs=None, status="completed") -> TrialSummary:
    return trial(name, losses, status, accs, **{STAGE_TAG: "reevaluate", REEVALUATES_TAG: of})


def test_robust_selection_picks_the_best_mean_over_fresh_seeds():
    single = trial("s", [0.10])  # the luckiest single run
    repeats = [
        reeval("r1", "id-s", [0.30]),
        reeval("r2", "id-s", [0.50]),
        reeval("r3", "id-x", [0.20]),
        reeval("r4", "id-x", [0.22]),
        reeval("r5", "id-y", [math.nan]),  # diverged at once: does not count
        reeval("r6", "id-y", [0.01]),  # no weights: does not count
    ]
    groups = results.counted_repeats(repeats, lambda t: t.name != "r6")
    assert {of: [t.name for t in runs] for of, runs in groups.items()} == {
        "id-s": ["r1", "r2"],
        "id-x": ["r3", "r4"],
    }
    tests = {"run-r1": 0.8, "run-r2": 0.7, "run-r3": 0.9, "run-r4": math.nan, "run-s": 0.85}
    robust = results.robust_selection(groups, tests, single, LOSS)
    assert robust.winner == "id-x" and robust.differs and robust.single_winner == "id-s"
    assert [r.of for r in robust.rows] == ["id-x", "id-s"]
    assert robust.representative.name == "r3"  # the winner's best repeat: its weights are registered
    w = robust.rows[0]
    assert w.runs == 2 and "seed" not in w.sampled
    assert w.figures["val/loss"] == pytest.approx((0.21, math.sqrt(0.0002)))
    assert w.figures["test/acc"] == (0.9, 0.0)  # NaN left out
    assert robust.metrics["robust/val/loss/mean"] == pytest.approx(0.21)
    assert robust.metrics["robust/differs"] == 1.0
    assert robust.metrics["robust/single_winner_test/acc"] == 0.85
    assert results.robust_selection({}, {}, single, LOSS) is None


def test_robust_selection_of_the_single_winners_configuration_does_not_differ():
    single = trial("s", [0.10])
    groups = {"id-s": [reeval("r1", "id-s", [0.3])]}
    robust = results.robust_selection(groups, {}, single, LOSS)
    assert not robust.differs and robust.metrics["robust/differs"] == 0.0
    assert math.isnan(robust.metrics["robust/single_winner_test/acc"])


def test_mean_std_of_the_finite_values():
    assert results.mean_std([1.0, 3.0, math.nan]) == (2.0, pytest.approx(math.sqrt(2)))
    assert results.mean_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in results.mean_std([math.nan]))


def test_a_summary_is_frozen_and_converts_to_plain_data():
    t = trial("a", [0.5])
    c = results.compute([t], 1, None, 1.0)
    s = SweepSummary("s", "p", LOSS, (t,), results.counts([t]), c, best=t, best_epoch=t.best_epoch)
    assert s.metric == "val/loss" and s.mode == "min"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "other"  # type: ignore[misc]
    plain = dataclasses.asdict(s)
    assert plain["best"]["name"] == "a" and plain["compute"]["epochs_run"] == 1
    assert plain["objective"] == {"metric": "val/loss", "mode": "min"}
