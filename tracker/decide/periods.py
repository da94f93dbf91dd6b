"""Periods of buckets: the one before a period, and a period's sums per dimension value."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tracker.store import Buckets
from tracker.types import EpochMs
from tracker.windows import WINDOWS


def previous(starts: Sequence[EpochMs], window: str) -> list[EpochMs]:
    """The bucket starts of the period of equal length right before ``starts``."""
    if not starts:
        return []
    size = WINDOWS[window]
    return [starts[0] - (len(starts) - i) * size for i in range(len(starts))]


def summed(buckets: Buckets, starts: Iterable[EpochMs], dimension: str) -> dict[str, Counter[str]]:
    """Each value of ``dimension``: its raw bucket metrics added up over ``starts``.

    Raw metrics (counts, micro-units, micro-conversions) add exactly; KPIs are then
    computed once over the sums, as :func:`tracker.export.rows.row` does for a bucket.
    """
    sums: dict[str, Counter[str]] = {}
    for start in starts:
        for (dim, value), metrics in buckets.get(start, {}).items():
            if dim == dimension:
                sums.setdefault(value, Counter()).update(metrics)
    return sums
