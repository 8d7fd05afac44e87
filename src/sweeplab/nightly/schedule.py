"""The nightly scheduler: a suite on a cron expression, in a time zone, exactly once per night.

One rule, evaluated whenever the scheduler wakes: the night that is due is the local date of
the latest cron time at or before now; it runs if it has not run yet (its claim is not
``finished``) and is younger than ``catch_up_hours``. So

* at each cron time the new night runs;
* after downtime (or a run that overran the next cron time) only the latest missed night
  runs, once -- never once per missed night; a suite that never ran before starts at its
  next cron time (installing the scheduler at noon does not start a night at noon);
* after a restart a finished night is not run again (the history store's claim row says so),
  and a night whose runner crashed is picked up;
* a cron time that happens twice in one night (the hour repeated when daylight-saving time
  ends) runs its night once, and one skipped by the spring change fires at the next valid
  minute (croniter's rule).

Time comes from a :class:`Clock`, so tests drive the scheduler through days and DST changes
without sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from sweeplab.config import ConfigError


class Clock(Protocol):
    def now(self) -> datetime: ...  # timezone-aware

    def sleep_until(self, moment: datetime) -> bool: ...  # False: stop the scheduler


class Heartbeat:
    """The file a supervisor watches (``sweeplab services``, the compose health check): touched
    at least every :data:`BEAT_S` seconds while the scheduler lives, a night running or not.

    ``$SWEEPLAB_NIGHTLY_HEARTBEAT``, else ``nightly.heartbeat`` in the services' state folder.
    """

    def __init__(self, env: dict[str, str] | None = None):
        from sweeplab.services.catalog import HEARTBEAT_FILE
        from sweeplab.services.supervisor import state_dir

        env = dict(os.environ if env is None else env)
        self.path = Path(env.get("SWEEPLAB_NIGHTLY_HEARTBEAT") or state_dir(env) / HEARTBEAT_FILE)

    def __call__(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError:  # an unwritable state folder shows as an unhealthy scheduler, not a dead one
            pass


BEAT_S = 30.0


class SystemClock:
    """Real time. Sleeps in slices of at most :data:`BEAT_S`, beating the heartbeat each time, so
    a suspended machine or a clock correction does not make the scheduler oversleep;
    :meth:`stop` wakes it at once."""

    def __init__(self, beat: Callable[[], None] = lambda: None) -> None:
        self._stop = threading.Event()
        self.beat = beat

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep_until(self, moment: datetime) -> bool:
        while not self._stop.is_set():
            self.beat()
            remaining = (moment - self.now()).total_seconds()
            if remaining <= 0:
                return True
            self._stop.wait(min(remaining, BEAT_S))
        return False

    def stop(self) -> None:
        self._stop.set()


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone nightly.timezone={name!r}; use an IANA name such as UTC or Europe/Berlin"
        ) from None


def today(timezone: str, clock: Clock | None = None) -> date:
    return (clock or SystemClock()).now().astimezone(zone(timezone)).date()


class NightScheduler:
    def __init__(
        self,
        cron: str,
        timezone: str,
        launch: Callable[[date], int],
        is_done: Callable[[date], bool],
        clock: Clock | None = None,
        catch_up_hours: float = 24.0,
        say: Callable[[str], None] = print,
        ran_before: Callable[[], bool] = lambda: True,
    ):
        if not croniter.is_valid(cron):
            raise ConfigError(
                f"nightly.schedule={cron!r} is not a cron expression; write minute hour day month weekday, "
                "e.g. '0 2 * * *' for 02:00 every night"
            )
        self.cron, self.tz = cron, zone(timezone)
        self.launch, self.is_done = launch, is_done
        self.clock = clock or SystemClock()
        self.window = timedelta(hours=catch_up_hours)
        self.say = say
        self.ran_before = ran_before  # has this suite ever run (anywhere)? If not, nothing was missed
        self.last: date | None = None  # the night this process launched last

    # Times are compared in UTC: Python compares and subtracts two datetimes of the *same* zone
    # by wall clock, so 02:30 CET would sort before 02:35 CEST on the night the hour repeats.
    def latest_fire(self, now: datetime) -> datetime:
        """The latest cron time at or before ``now`` (a fire exactly at ``now`` counts)."""
        start = (now + timedelta(seconds=1)).astimezone(self.tz)
        return croniter(self.cron, start).get_prev(datetime).astimezone(UTC)

    def next_fire(self, now: datetime) -> datetime:
        return croniter(self.cron, now.astimezone(self.tz)).get_next(datetime).astimezone(UTC)

    def night_of(self, fire: datetime) -> date:
        return fire.astimezone(self.tz).date()

    def due(self) -> date | None:
        """The night to run now, if any."""
        now = self.clock.now().astimezone(UTC)
        fire = self.latest_fire(now)
        night = self.night_of(fire)
        if night == self.last or now - fire > self.window or self.is_done(night):
            return None
        late = now - fire > timedelta(minutes=1)
        if late and not self.ran_before():
            return None
        if late:
            when = fire.astimezone(self.tz).isoformat()
            self.say(f"night {night} was due at {when} and has not run; running it now (once)")
        return night

    def run(self, max_launches: int | None = None) -> int:
        """Launch nights until the clock says stop (or ``max_launches``); returns the launches made."""
        launches = 0
        self.say(f"scheduler: '{self.cron}' in {self.tz.key}")
        while True:
            night = self.due()
            if night is not None:
                self.last = night
                code = self.launch(night)
                launches += 1
                self.say(f"night {night} ended with exit code {code}")
                if max_launches is not None and launches >= max_launches:
                    return launches
                if not self.clock.sleep_until(self.clock.now()):  # asked to stop during the night
                    return launches
                continue  # a long run may have passed the next cron time: look again
            fire = self.next_fire(self.clock.now())
            self.say(f"next night {self.night_of(fire)} at {fire.astimezone(self.tz).isoformat()}")
            if not self.clock.sleep_until(fire):
                return launches


def subprocess_launcher(
    suite: str, overrides: Sequence[str], beat: Callable[[], None] = lambda: None
) -> tuple[Callable[[date], int], Callable[[], None]]:
    """Each night in its own ``sweeplab nightly run`` process (Ray, memory and crashes stay there).

    Returns the launcher and a function that stops a running night gracefully: SIGINT lets
    it close its MLflow runs as KILLED and release its claim, so the next start picks it up.
    """
    child: dict[str, subprocess.Popen] = {}

    def launch(night: date) -> int:
        cmd = [
            sys.executable,
            "-m",
            "sweeplab.cli",
            "nightly",
            "run",
            "--suite",
            suite,
            "--date",
            night.isoformat(),
            *overrides,
        ]
        proc = subprocess.Popen(cmd)
        child["proc"] = proc
        try:
            while True:  # a night takes hours: the scheduler stays visibly alive meanwhile
                beat()
                try:
                    return proc.wait(timeout=BEAT_S)
                except subprocess.TimeoutExpired:
                    continue
        finally:
            child.pop("proc", None)

    def interrupt() -> None:
        proc = child.get("proc")
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)

    return launch, interrupt
