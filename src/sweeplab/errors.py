"""How an error is told to a person: one line, its first, credentials masked.

Libraries raise messages of many lines (a driver's error and its SQL, Ray's error and its
traceback, pyarrow's error and its hint); sweeplab's messages end with the first line that
says something, never a bare type name unless there is nothing else.
"""

from __future__ import annotations

from sweeplab.redact import scrub


def one_line(exc: BaseException | None, limit: int = 300, with_type: bool = False) -> str:
    """The first non-empty line of ``exc`` (of the database's own error for a SQLAlchemy error),
    masked and cut at ``limit``; its type's name when it says nothing; ``Type: line`` with
    ``with_type``."""
    if exc is None:
        return "unknown error"
    text = str(getattr(exc, "orig", None) or exc)
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    if with_type or not line:
        line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return scrub(line)[:limit]
