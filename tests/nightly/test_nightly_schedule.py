"""The scheduler driven by an injected clock through days, downtime, restarts and DST changes.

The "already ran" state is the real history store's claim row (SQLite): the launcher below
claims and finishes the night the way ``sweeplab nightly run`` does.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sweeplab.config import ConfigError
from sweeplab.nightly.history import HistoryStore
from sweeplab.nightly.schedule import NightScheduler

BERLIN = ZoneInfo("Europe/Berlin")


class FakeClock:
    """Time moves only when the scheduler sleeps; it stops once asked to sleep past ``until``."""

    def __init__(self, start: datetime, until: datetime):
        self.t, self.until = start, until
        self.idle = 0  # sleeps in a row that did not move time forward

    def now(self) -> datetime:
        return self.t

    def sleep_until(self, moment: datetime) -> bool:
        if moment > self.until:
            return False
        self.idle = self.idle + 1 if moment <= self.t else 0
        assert self.idle < 100, f"the scheduler spins at {self.t} without letting time pass"
        self.t = max(self.t, moment)
        return True


class Nights:
    """Launches recorded with the clock's time; each claims and finishes its night in the store."""

    def __init__(self, store: HistoryStore, clock: FakeClock, duration=timedelta(minutes=20)):
        self.store, self.clock, self.duration = store, clock, duration
        self.launched: list[tuple[date, datetime]] = []

    def launch(self, night: date) -> int:
        self.launched.append((night, self.clock.now()))
        claim = self.store.claim("nightly", night, f"test:{len(self.launched)}", 900, self.clock.now())
        if claim.acquired:
            self.clock.t += self.duration  # the run takes a while
            self.store.release("nightly", night, claim.owner, "finished")
        return 0

    def is_done(self, night: date) -> bool:
        claim = self.store.claim_of("nightly", night)
        return claim is not None and claim.status == "finished"


@pytest.fixture
def store(tmp_path) -> HistoryStore:
    s = HistoryStore(f"sqlite:///{tmp_path / 'nightly.db'}")
    s.upgrade()
    return s


def scheduler(nights: Nights, cron="0 2 * * *", tz="Europe/Berlin", catch_up_hours=24.0) -> NightScheduler:
    return NightScheduler(
        cron,
        tz,
        nights.launch,
        nights.is_done,
        nights.clock,
        catch_up_hours,
        say=lambda _: None,
        ran_before=lambda: nights.store.ever_claimed("nightly"),
    )


def local(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_fires_at_the_cron_times_in_its_time_zone(store):
    clock = FakeClock(local(2026, 6, 1, 12, 0), local(2026, 6, 4, 12, 0))
    nights = Nights(store, clock)
    scheduler(nights).run()
    assert nights.launched == [
        (date(2026, 6, 2), local(2026, 6, 2, 2, 0)),
        (date(2026, 6, 3), local(2026, 6, 3, 2, 0)),
        (date(2026, 6, 4), local(2026, 6, 4, 2, 0)),
    ]
    assert nights.launched[0][1].astimezone(UTC).hour == 0  # 02:00 in Berlin's summer is 00:00 UTC


def test_a_restart_never_runs_a_night_twice(store):
    clock = FakeClock(local(2026, 6, 1, 12, 0), local(2026, 6, 2, 3, 0))
    nights = Nights(store, clock)
    scheduler(nights).run()
    assert [n for n, _ in nights.launched] == [date(2026, 6, 2)]
    # restarted at 03:00 the same night, then again at 09:00: the claim row says the night ran
    for restart_at in (local(2026, 6, 2, 3, 0), local(2026, 6, 2, 9, 0)):
        clock.t, clock.until = restart_at, local(2026, 6, 2, 23, 0)
        scheduler(nights).run()
    assert [n for n, _ in nights.launched] == [date(2026, 6, 2)]


def test_a_first_start_waits_for_the_cron_time(store):
    clock = FakeClock(local(2026, 6, 1, 12, 0), local(2026, 6, 2, 3, 0))
    nights = Nights(store, clock)
    scheduler(nights).run()  # installed at noon: nothing was missed, the first night is June 2
    assert nights.launched == [(date(2026, 6, 2), local(2026, 6, 2, 2, 0))]


def test_catches_up_once_after_downtime_not_once_per_missed_night(store):
    clock = FakeClock(local(2026, 6, 1, 1, 0), local(2026, 6, 1, 23, 0))
    nights = Nights(store, clock)
    scheduler(nights).run()
    assert nights.launched == [(date(2026, 6, 1), local(2026, 6, 1, 2, 0))]
    # down from June 1 evening to June 5 10:00: the nights of June 2, 3, 4 and 5 were missed
    clock.t, clock.until = local(2026, 6, 5, 10, 0), local(2026, 6, 6, 3, 0)
    scheduler(nights).run()
    assert nights.launched[1:] == [
        (date(2026, 6, 5), local(2026, 6, 5, 10, 0)),  # the latest missed night, once, right away
        (date(2026, 6, 6), local(2026, 6, 6, 2, 0)),  # then the schedule as usual
    ]


def test_a_night_whose_run_crashed_is_run_again_after_a_restart(store):
    june1 = date(2026, 6, 1)
    crashed = store.claim("nightly", june1, "gone:1", 900, local(2026, 6, 1, 2, 0))
    store.release("nightly", june1, crashed.owner, "failed")  # the run (and the machine) went down mid-night
    clock = FakeClock(local(2026, 6, 1, 8, 0), local(2026, 6, 1, 9, 0))  # back at 08:00
    nights = Nights(store, clock)
    scheduler(nights).run()
    assert nights.launched == [(june1, local(2026, 6, 1, 8, 0))]
    assert store.claim_of("nightly", june1).status == "finished"


def test_a_missed_night_older_than_the_catch_up_window_waits_for_the_next(store):
    clock = FakeClock(local(2026, 6, 1, 12, 0), local(2026, 6, 2, 3, 0))
    nights = Nights(store, clock)
    store.claim("nightly", date(2026, 5, 31), "earlier:1", 900, local(2026, 5, 31, 2, 0))  # it ran before
    scheduler(nights, catch_up_hours=6).run()  # June 1 02:00 is 10 hours old
    assert nights.launched == [(date(2026, 6, 2), local(2026, 6, 2, 2, 0))]


def test_a_run_that_overruns_the_next_cron_time_is_followed_by_one_run(store):
    clock = FakeClock(local(2026, 6, 1, 1, 0), local(2026, 6, 5, 12, 0))
    nights = Nights(store, clock, duration=timedelta(hours=49))  # each run outlasts two cron times
    scheduler(nights).run()
    assert nights.launched == [
        (date(2026, 6, 1), local(2026, 6, 1, 2, 0)),
        (date(2026, 6, 3), local(2026, 6, 3, 3, 0)),  # June 2 and 3 were missed: only June 3 runs
        (date(2026, 6, 5), local(2026, 6, 5, 4, 0)),
    ]


def test_spring_forward_runs_the_skipped_time_once_at_the_next_valid_minute(store):
    # 02:30 does not exist on 29 March 2026 in Berlin: clocks jump from 02:00 to 03:00
    clock = FakeClock(local(2026, 3, 28, 12), local(2026, 3, 30, 12))
    nights = Nights(store, clock, duration=timedelta(minutes=5))
    scheduler(nights, cron="30 2 * * *").run()
    assert [(n, t.astimezone(BERLIN).strftime("%H:%M %Z")) for n, t in nights.launched] == [
        (date(2026, 3, 29), "03:00 CEST"),
        (date(2026, 3, 30), "02:30 CEST"),
    ]


def test_fall_back_runs_the_repeated_hour_once(store):
    # 02:30 happens twice on 25 October 2026 in Berlin (03:00 CEST -> 02:00 CET): croniter fires twice
    clock = FakeClock(local(2026, 10, 24, 12), local(2026, 10, 26, 12))
    nights = Nights(store, clock, duration=timedelta(minutes=5))
    scheduler(nights, cron="30 2 * * *").run()
    assert [(n, t.astimezone(BERLIN).strftime("%H:%M %Z")) for n, t in nights.launched] == [
        (date(2026, 10, 25), "02:30 CEST"),
        (date(2026, 10, 26), "02:30 CET"),
    ]
    # a scheduler restarted between the two 02:30s finds the night finished
    clock.t, clock.until = datetime(2026, 10, 25, 1, 0, tzinfo=UTC), local(2026, 10, 25, 12)  # 02:00 CET
    scheduler(nights, cron="30 2 * * *").run()
    assert len(nights.launched) == 2


def test_bad_cron_or_time_zone_is_one_clear_line(store):
    nights = Nights(store, FakeClock(local(2026, 6, 1), local(2026, 6, 2)))
    with pytest.raises(ConfigError, match="not a cron expression"):
        scheduler(nights, cron="every night")
    with pytest.raises(ConfigError, match="IANA name"):
        scheduler(nights, tz="Mars/Olympus")
