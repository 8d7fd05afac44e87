"""An error told in one line (sweeplab.errors.one_line)."""

from __future__ import annotations

from sweeplab.errors import one_line


class Wrapped(Exception):
    def __init__(self, orig: Exception):
        super().__init__("(psycopg.OperationalError) see the SQL below\n[SQL: SELECT 1]")
        self.orig = orig


def test_the_first_line_that_says_something_masked_and_cut():
    assert one_line(RuntimeError("\n  \nfirst\nsecond")) == "first"
    assert one_line(ValueError("")) == "ValueError"  # says nothing: its type
    assert one_line(KeyError("x"), with_type=True) == "KeyError: 'x'"
    assert (
        one_line(Wrapped(OSError("connection to server failed\nis it running?")))
        == "connection to server failed"
    )
    assert (
        one_line(RuntimeError("cannot open postgresql://me:s3cret@db/x"))
        == "cannot open postgresql://me:***@db/x"
    )
    assert len(one_line(RuntimeError("x" * 500), limit=40)) == 40
    assert one_line(None) == "unknown error"
