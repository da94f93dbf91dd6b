"""Event-time tumbling windows (UTC) and their bucket arithmetic."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from tracker.types import EpochMs

WINDOWS: dict[str, int] = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
"""Window name -> size in milliseconds. Day buckets start at 00:00 UTC."""

ALL_TIME = "all"
"""The pseudo-window of cumulative totals; its only bucket starts at 0."""


def bucket_start(ts: EpochMs, window: str) -> EpochMs:
    """Start of the bucket of ``window`` that holds ``ts``."""
    if window == ALL_TIME:
        return 0
    size = WINDOWS[window]
    return ts - ts % size


def buckets_between(start: EpochMs, end: EpochMs, window: str) -> list[EpochMs]:
    """Starts of the buckets of ``window`` overlapping ``[start, end)``."""
    size = WINDOWS[window]
    first = bucket_start(start, window)
    return list(range(first, end, size)) if end > start else []


_PERIOD_FORMATS = {10: "%Y-%m-%d", 13: "%Y-%m-%dT%H"}
# strptime tolerates padding spaces and lower case; one spelling per period keeps
# spend upserts from counting the same day twice under two names.
_PERIOD = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2})?")


def period_start(period: str) -> EpochMs:
    """Start of a reporting period (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH``, UTC) in epoch ms."""
    fmt = _PERIOD_FORMATS.get(len(period))
    if fmt is None or not _PERIOD.fullmatch(period):
        raise ValueError(f"{period!r} is neither YYYY-MM-DD nor YYYY-MM-DDTHH")
    try:
        parsed = datetime.strptime(period, fmt)
    except ValueError:
        raise ValueError(f"{period!r} is neither YYYY-MM-DD nor YYYY-MM-DDTHH") from None
    return int(parsed.replace(tzinfo=UTC).timestamp() * 1000)


def day_of(ts: EpochMs) -> str:
    """The UTC day (``YYYY-MM-DD``) holding ``ts``."""
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d")


def rfc3339(ts: EpochMs) -> str:
    """``ts`` as RFC 3339 in UTC, with a ``Z``."""
    text = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")
