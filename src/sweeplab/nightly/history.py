"""The nightly history store: SQLAlchemy models and every read and write of them.

SQLite (``./nightly.db``) by default, PostgreSQL in service mode; the schema is created and
migrated by Alembic (``migrations/``, version table ``sweeplab_nightly_alembic_version`` so the
store can share a database with MLflow's). Four tables:

* ``nightly_claims``: one row per (suite, night), inserted under a unique constraint before
  anything runs: whoever inserts it runs the night. A claim whose runner died (no heartbeat
  for ``claim_timeout_s``, or a dead process on this host) is taken over by compare-and-swap
  on its ``version``.
* ``nightly_results``: one row per (suite, night, entry, seed, metric): value, wall time,
  status, git commit, machine, MLflow run id; a rerun keeps the first attempt's value.
* ``nightly_verdicts``: one row per (suite, night, entry, metric), as decided that night.
* ``nightly_accepts``: intended changes; nights before one are not a baseline for later nights.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sweeplab.errors import one_line
from sweeplab.nightly.detect import Night, Verdict
from sweeplab.nightly.status import DONE, ClaimStatus, EntryStatus
from sweeplab.redact import scrub

VERSION_TABLE = "sweeplab_nightly_alembic_version"


class HistoryStoreError(RuntimeError):
    """The history store cannot be opened or migrated; the message says how to fix it."""


class Base(DeclarativeBase):
    pass


class EnumString(TypeDecorator):
    """A ``VARCHAR`` column of a :class:`~enum.StrEnum`'s values: the plain value is written, the
    member is read back. A value the enum does not know (an older store's) is read back as it is."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int):
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: Any) -> StrEnum | str | None:
        if value is None:
            return None
        try:
            return self.enum(value)
        except ValueError:
            return value


class Claim(Base):
    __tablename__ = "nightly_claims"
    __table_args__ = (UniqueConstraint("suite", "night", name="uq_nightly_claims_suite_night"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suite: Mapped[str] = mapped_column(String(100))
    night: Mapped[date] = mapped_column(Date)
    owner: Mapped[str] = mapped_column(String(200))
    status: Mapped[ClaimStatus] = mapped_column(EnumString(ClaimStatus, 20))
    version: Mapped[int] = mapped_column(Integer, default=1)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Result(Base):
    __tablename__ = "nightly_results"
    __table_args__ = (
        UniqueConstraint("suite", "night", "entry", "seed", "metric", name="uq_nightly_results_key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suite: Mapped[str] = mapped_column(String(100))
    night: Mapped[date] = mapped_column(Date, index=True)
    entry: Mapped[str] = mapped_column(String(100))
    seed: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[EntryStatus] = mapped_column(EnumString(EntryStatus, 20))
    reason: Mapped[str] = mapped_column(Text, default="")
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_value: Mapped[float | None] = mapped_column(Float, nullable=True)  # before a rerun
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    machine: Mapped[str] = mapped_column(String(200))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VerdictRow(Base):
    __tablename__ = "nightly_verdicts"
    __table_args__ = (UniqueConstraint("suite", "night", "entry", "metric", name="uq_nightly_verdicts_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suite: Mapped[str] = mapped_column(String(100))
    night: Mapped[date] = mapped_column(Date)
    entry: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(100))
    verdict: Mapped[Verdict] = mapped_column(EnumString(Verdict, 30))
    detail: Mapped[str] = mapped_column(Text)  # the Judgement as JSON (means, baseline, p, began, reason)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Accept(Base):
    __tablename__ = "nightly_accepts"
    __table_args__ = (UniqueConstraint("suite", "entry", "metric", "night", name="uq_nightly_accepts_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suite: Mapped[str] = mapped_column(String(100))
    entry: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(100))
    night: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    accepted_by: Mapped[str] = mapped_column(String(200))
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# -------------------------------------------------------------------- helpers
def now_utc() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def machine() -> str:
    return socket.gethostname()


def owner_id() -> str:
    return f"{machine()}:{os.getpid()}"


def resolve_url(url: str | None) -> str:
    """``nightly.history_url``, else ``$SWEEPLAB_NIGHTLY_DB``, else ``sqlite:///<cwd>/nightly.db``."""
    url = url or os.environ.get("SWEEPLAB_NIGHTLY_DB")
    return url or f"sqlite:///{Path.cwd() / 'nightly.db'}"


def display_url(url: str) -> str:
    """The URL with its password masked: what may be printed or logged."""
    return scrub(url)


@dataclass(frozen=True)
class ClaimState:
    acquired: bool
    owner: str
    status: ClaimStatus | str  # "?" when the claim vanished under us
    taken_over_from: str | None = None  # a stale claim we took over


@dataclass(frozen=True)
class Row:
    night: date
    entry: str
    seed: int
    metric: str
    value: float | None
    status: EntryStatus
    reason: str
    wall_seconds: float | None
    attempts: int
    first_value: float | None
    git_commit: str | None
    machine: str
    mlflow_run_id: str | None


# ---------------------------------------------------------------------- store
class HistoryStore:
    def __init__(self, url: str | None = None):
        self.url = resolve_url(url)
        try:
            u = make_url(self.url)
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if u.get_backend_name() == "sqlite":
                kwargs["connect_args"] = {"timeout": 60}  # writers queue instead of failing
                if u.database:
                    Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(u, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise HistoryStoreError(
                f"cannot use nightly history store {display_url(self.url)}: {exc}; give "
                "nightly.history_url (or $SWEEPLAB_NIGHTLY_DB) as e.g. sqlite:///nightly.db or "
                "postgresql+psycopg2://user@host:5432/db"
            ) from None

    @property
    def shown(self) -> str:
        return display_url(self.url)

    def has_schema(self) -> bool:
        """Whether a history was ever written here (read-only commands neither create nor migrate one)."""
        from sqlalchemy import inspect

        try:
            return inspect(self.engine).has_table(VERSION_TABLE)
        except DBAPIError as exc:
            raise HistoryStoreError(
                f"cannot open the nightly history store {self.shown}: {one_line(exc)}; "
                "check that the database server is running and the URL is right"
            ) from None

    def upgrade(self) -> None:
        """Create or migrate the schema to the newest revision (safe with concurrent runners)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        last: Exception | None = None
        for _ in range(3):  # a concurrent runner migrating the same SQLite file: the retry sees head
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":  # one migrator at a time per database
                        conn.execute(text("SELECT pg_advisory_xact_lock(7458210913)"))
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                return
            except DBAPIError as exc:
                last = exc
                if "does not exist" in str(exc) and self.engine.dialect.name == "postgresql":
                    self._create_database()
        raise HistoryStoreError(
            f"cannot open the nightly history store {self.shown}: {one_line(last)}; "
            "check that the database server is running and the URL is right"
        )

    def _create_database(self) -> None:
        """Service mode's first run: create the database (through the server's ``postgres`` one)."""
        name = self.engine.url.database
        admin = create_engine(self.engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                quoted = conn.dialect.identifier_preparer.quote(name)
                conn.execute(text(f"CREATE DATABASE {quoted}"))
        except DBAPIError:  # no right to create it, or a concurrent runner just did: the retry says which
            pass
        finally:
            admin.dispose()

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- claims
    def claim(self, suite: str, night: date, owner: str, stale_after_s: float, now: datetime) -> ClaimState:
        """Insert the (suite, night) claim, or take over one whose runner is gone."""
        try:
            with self.session() as s, s.begin():
                s.add(
                    Claim(
                        suite=suite,
                        night=night,
                        owner=owner,
                        status=ClaimStatus.running,
                        version=1,
                        claimed_at=now,
                        heartbeat_at=now,
                    )
                )
            return ClaimState(True, owner, ClaimStatus.running)
        except IntegrityError:
            pass
        with self.session() as s:
            held = s.scalars(select(Claim).where(Claim.suite == suite, Claim.night == night)).one()
        alive = (
            held.status == ClaimStatus.running and held.owner != owner and not _gone(held, stale_after_s, now)
        )
        if alive:
            return ClaimState(False, held.owner, held.status)
        with self.session() as s, s.begin():
            changed = s.execute(
                update(Claim)
                .where(Claim.id == held.id, Claim.version == held.version)
                .values(
                    owner=owner,
                    status=ClaimStatus.running,
                    version=held.version + 1,
                    heartbeat_at=now,
                    claimed_at=now,
                    finished_at=None,
                )
            ).rowcount
        if changed != 1:  # another runner took it between our read and our update
            current = self.claim_of(suite, night)
            return ClaimState(False, current.owner if current else "?", current.status if current else "?")
        stale = held.owner if held.status == ClaimStatus.running and held.owner != owner else None
        return ClaimState(True, owner, ClaimStatus.running, taken_over_from=stale)

    def claim_of(self, suite: str, night: date) -> Claim | None:
        with self.session() as s:
            return s.scalars(select(Claim).where(Claim.suite == suite, Claim.night == night)).one_or_none()

    def ever_claimed(self, suite: str) -> bool:
        with self.session() as s:
            return s.scalars(select(Claim.id).where(Claim.suite == suite).limit(1)).first() is not None

    def heartbeat(self, suite: str, night: date, owner: str) -> None:
        with self.session() as s, s.begin():
            s.execute(
                update(Claim)
                .where(Claim.suite == suite, Claim.night == night, Claim.owner == owner)
                .values(heartbeat_at=now_utc())
            )

    def release(self, suite: str, night: date, owner: str, status: ClaimStatus) -> None:
        """``finished``: the night ran to its end; ``partial``: some entries ran (``--entry``);
        ``failed``: interrupted. Only ``running`` keeps others out."""
        with self.session() as s, s.begin():
            s.execute(
                update(Claim)
                .where(Claim.suite == suite, Claim.night == night, Claim.owner == owner)
                .values(status=status, finished_at=now_utc(), version=Claim.version + 1)
            )

    # -- results
    def done_seeds(self, suite: str, night: date, entry: str) -> set[int]:
        with self.session() as s:
            rows = s.scalars(
                select(Result.seed).where(
                    Result.suite == suite,
                    Result.night == night,
                    Result.entry == entry,
                    Result.status.in_(DONE),
                )
            )
            return set(rows)

    def record(self, suite: str, rows: Iterable[Row], rerun: bool = False) -> None:
        """Write rows by their (suite, night, entry, seed, metric) key: insert, or update in place.

        A rerun keeps the first attempt's value in ``first_value`` and counts the attempt.
        """
        now = now_utc()
        with self.session() as s, s.begin():
            for row in rows:
                old = s.scalars(
                    select(Result).where(
                        Result.suite == suite,
                        Result.night == row.night,
                        Result.entry == row.entry,
                        Result.seed == row.seed,
                        Result.metric == row.metric,
                    )
                ).one_or_none()
                values = {k: getattr(row, k) for k in Row.__dataclass_fields__}
                values["recorded_at"] = now
                if old is None:
                    s.add(Result(suite=suite, **values))
                    continue
                if rerun and old.status in DONE:
                    values["first_value"] = old.first_value if old.attempts > 1 else old.value
                    values["attempts"] = old.attempts + 1
                for k, v in values.items():
                    setattr(old, k, v)

    def rows(
        self,
        suite: str,
        entry: str | None = None,
        metric: str | None = None,
        until: date | None = None,
        since: date | None = None,
    ) -> list[Row]:
        q = select(Result).where(Result.suite == suite)
        if entry:
            q = q.where(Result.entry == entry)
        if metric:
            q = q.where(Result.metric == metric)
        if until:
            q = q.where(Result.night <= until)
        if since:
            q = q.where(Result.night >= since)
        q = q.order_by(Result.night, Result.entry, Result.metric, Result.seed)
        with self.session() as s:
            return [_row(r) for r in s.scalars(q)]

    def series(self, suite: str, entry: str, metric: str, until: date | None = None) -> list[Night]:
        """A metric's nights: the finished seeds' values, by date (what the detector judges)."""
        by_night: dict[date, list[tuple[int, float]]] = {}
        for r in self.rows(suite, entry, metric, until=until):
            if r.status == EntryStatus.completed and r.value is not None:
                by_night.setdefault(r.night, []).append((r.seed, r.value))
        return [Night(d, tuple(v for _, v in sorted(vals))) for d, vals in sorted(by_night.items())]

    def nights(self, suite: str | None = None) -> list[tuple[str, date]]:
        q = select(Result.suite, Result.night).distinct().order_by(Result.night)
        if suite:
            q = q.where(Result.suite == suite)
        with self.session() as s:
            return [(a, b) for a, b in s.execute(q)]

    # -- verdicts
    def save_verdicts(
        self, suite: str, night: date, verdicts: Sequence[tuple[str, str, Verdict, dict]]
    ) -> None:
        """(entry, metric, verdict, detail) for one night, replacing what that night had."""
        now = now_utc()
        with self.session() as s, s.begin():
            for entry, metric, verdict, detail in verdicts:
                old = s.scalars(
                    select(VerdictRow).where(
                        VerdictRow.suite == suite,
                        VerdictRow.night == night,
                        VerdictRow.entry == entry,
                        VerdictRow.metric == metric,
                    )
                ).one_or_none()
                body = json.dumps(detail, default=str)
                if old is None:
                    s.add(
                        VerdictRow(
                            suite=suite,
                            night=night,
                            entry=entry,
                            metric=metric,
                            verdict=verdict,
                            detail=body,
                            decided_at=now,
                        )
                    )
                else:
                    old.verdict, old.detail, old.decided_at = verdict, body, now

    def verdicts(self, suite: str, night: date | None = None, since: date | None = None) -> list[dict]:
        q = select(VerdictRow).where(VerdictRow.suite == suite)
        if night:
            q = q.where(VerdictRow.night == night)
        if since:
            q = q.where(VerdictRow.night >= since)
        with self.session() as s:
            return [
                {  # the row's own columns win over the detail's copies (dates there are text)
                    **json.loads(v.detail),
                    "night": v.night,
                    "entry": v.entry,
                    "metric": v.metric,
                    "verdict": v.verdict,
                }
                for v in s.scalars(q.order_by(VerdictRow.night, VerdictRow.entry, VerdictRow.metric))
            ]

    # -- accepted changes
    def accept(self, suite: str, entry: str, metric: str, night: date, note: str, by: str) -> bool:
        """Record an intended change beginning on ``night``; False if it was already recorded."""
        try:
            with self.session() as s, s.begin():
                s.add(
                    Accept(
                        suite=suite,
                        entry=entry,
                        metric=metric,
                        night=night,
                        note=note,
                        accepted_by=by,
                        accepted_at=now_utc(),
                    )
                )
            return True
        except IntegrityError:
            return False

    def accepted(self, suite: str) -> dict[tuple[str, str], list[date]]:
        out: dict[tuple[str, str], list[date]] = {}
        with self.session() as s:
            for a in s.scalars(select(Accept).where(Accept.suite == suite).order_by(Accept.night)):
                out.setdefault((a.entry, a.metric), []).append(a.night)
        return out


def _row(r: Result) -> Row:
    return Row(**{k: getattr(r, k) for k in Row.__dataclass_fields__})


def _gone(claim: Claim, stale_after_s: float, now: datetime) -> bool:
    """A running claim whose runner is dead: its process is gone on this host, or its heartbeat stopped."""
    host, _, pid = claim.owner.rpartition(":")
    if host == machine() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return (now - aware(claim.heartbeat_at)).total_seconds() > stale_after_s
