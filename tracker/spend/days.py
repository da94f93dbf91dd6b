"""An ad account's day in the reporting calendar: which reporting day its spend counts in.

Every ad account keeps its own time zone, and reports spend by its days; tracker keeps
one spend figure per reporting period, ``YYYY-MM-DD`` in ``TRACKER_TIMEZONE``, and
counts it whole at the start of that day (the worker's ``period_start``:
:mod:`tracker.stream.aggregate`). Where the account's day starts when a reporting day
does, it *is* that reporting day. Where it does not (an account in New York, reporting
in UTC), the account's day straddles two reporting days, and a day's figure holds no
hours to split it by: splitting would invent how the money was spread. It counts whole
in the reporting day holding most of its hours (the same date while the zones are less
than twelve hours apart; of two halves, the same date), and :class:`Placement` says how
much of it lies outside, for the import to say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tracker.windows import Calendar


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an account's day counts."""

    period: str
    """The reporting day, ``YYYY-MM-DD``."""
    outside_ms: int
    """How much of the account's day lies outside that reporting day: 0 when exact."""


def place(day: date, account: Calendar, reporting: Calendar) -> Placement:
    """The reporting day the account's ``day`` counts in: the one holding most of it."""
    name = day.isoformat()
    start = account.period_start(name)
    end = account.bucket_end(start, "1d")
    best: tuple[tuple[int, bool], str] | None = None
    for bucket in reporting.buckets_between(start, end, "1d"):
        overlap = min(end, reporting.bucket_end(bucket, "1d")) - max(start, bucket)
        period = reporting.day_of(bucket)
        rank = (overlap, period == name)
        if best is None or rank > best[0]:
            best = (rank, period)
    assert best is not None  # a day overlaps at least the reporting day it starts in
    (overlap, _), period = best
    return Placement(period, end - start - overlap)


__all__ = ["Placement", "place"]
