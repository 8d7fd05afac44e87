"""The read model's plain parts: a run's epochs as rows, and a patient read (no store needed)."""

from __future__ import annotations

import pytest

from sweeplab.tracking.reader import patiently
from sweeplab.tracking.records import Point, epoch_rows
from sweeplab.tracking.uri import StoreError


def test_epoch_rows_are_one_per_epoch_with_the_later_of_a_replayed_value():
    rows = epoch_rows(
        {
            "val/acc": [Point(1, 0.5, 10), Point(2, 0.6, 20), Point(2, 0.7, 30)],  # epoch 2 replayed
            "train/loss": [Point(0, 9.0, 5), Point(1, 1.0, 10)],  # step 0: before the first epoch
            "test/acc": [Point(2, 0.9, 40)],  # not an epoch metric: logged once, at the end
        }
    )
    assert rows == [{"epoch": 1, "val/acc": 0.5, "train/loss": 1.0}, {"epoch": 2, "val/acc": 0.7}]
    assert epoch_rows({}) == []


def test_a_patient_read_rides_out_a_store_out_of_reach_and_not_other_errors():
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StoreError("cannot reach the tracking server")
        return "read"

    assert patiently(flaky, seconds=30) == "read" and len(calls) == 3

    def broken() -> str:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    calls.clear()
    with pytest.raises(ValueError):
        patiently(broken, seconds=30)
    assert len(calls) == 1
    with pytest.raises(StoreError):  # an outage longer than the patience: the error, not a hang
        patiently(lambda: (_ for _ in ()).throw(StoreError("down")), seconds=0.5)
