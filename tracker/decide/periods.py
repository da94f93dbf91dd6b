"""Periods of buckets: the one before a period, and a period's sums per dimension value."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tracker.store import Buckets
from tracker.types import EpochMs
from tracker.windows import Calendar


def previous(calendar: Calendar, starts: Sequence[EpochMs], window: str) -> list[EpochMs]:
    """The starts of as many buckets of ``window`` right before ``starts``, oldest first.

    As many buckets, not as many hours: the seven local days before a week holding a
    daylight-saving change last 168 hours when the week lasts 167.
    """
    found: list[EpochMs] = []
    bucket = starts[0] if starts else 0
    for _ in starts:
        bucket = calendar.bucket_start(bucket - 1, window)
        found.append(bucket)
    return found[::-1]


def summed(buckets: Buckets, starts: Iterable[EpochMs], dimension: str) -> dict[str, Counter[str]]:
    """Each value of ``dimension``: its raw bucket metrics added up over ``starts``.

    Raw metrics (counts, micro-units, micro-conversions) add exactly; KPIs are then
    computed once over the sums, as :func:`tracker.rows.row` does for a bucket.
    """
    sums: dict[str, Counter[str]] = {}
    for start in starts:
        for (dim, value), metrics in buckets.get(start, {}).items():
            if dim == dimension:
                sums.setdefault(value, Counter()).update(metrics)
    return sums
