"""Riding out a short outage of the store: one call retried with backoff while its error is one
that passes (tenacity), for a bounded time. Writes retry what MLflow calls transient
(:func:`sweeplab.tracking.store.retrying`), a driver's reads a store out of reach
(:func:`sweeplab.tracking.reader.patiently`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

T = TypeVar("T")


def for_seconds(call: Callable[[], T], seconds: float, passes: Callable[[BaseException], bool]) -> T:
    """``call()``, again after 0.25 s, 0.5 s, ... (at most 5 s apart) while it raises an error that
    ``passes``, until ``seconds`` have gone by; then its error."""
    for attempt in Retrying(
        retry=retry_if_exception(passes),
        wait=wait_exponential(multiplier=0.25, max=5),
        stop=stop_after_delay(seconds),
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable")  # Retrying either returns or raises
