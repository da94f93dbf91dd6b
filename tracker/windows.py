"""Event-time tumbling windows in the reporting time zone, and their bucket arithmetic.

Minutes are the same everywhere. Hours and days are the reporting zone's own
(``TRACKER_TIMEZONE``): a day starts at local midnight, so a daylight-saving day
lasts 23 or 25 hours, and a day in Asia/Kolkata starts at 18:30 UTC. A bucket is
named by the epoch milliseconds of its start, which is unambiguous in any zone.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tracker.types import EpochMs

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000

WINDOWS: dict[str, int] = {"1m": MINUTE, "1h": HOUR, "1d": DAY}
"""Window name -> nominal size in milliseconds (a zone's day may be 23 or 25 hours)."""

ALL_TIME = "all"
"""The pseudo-window of cumulative totals; its only bucket starts at 0."""

_QUARTER = 15 * MINUTE
"""Every zone in use changes its offset on a quarter-hour boundary, to a multiple of one."""

_PERIOD_FORMATS = {10: "%Y-%m-%d", 13: "%Y-%m-%dT%H"}
# strptime tolerates padding spaces and lower case; one spelling per period keeps
# spend upserts from counting the same day twice under two names.
_PERIOD = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2})?")


def parse_period(period: str) -> datetime:
    """A reporting period (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH``) as a naive local time."""
    fmt = _PERIOD_FORMATS.get(len(period))
    if fmt is None or not _PERIOD.fullmatch(period):
        raise ValueError(f"{period!r} is neither YYYY-MM-DD nor YYYY-MM-DDTHH")
    try:
        return datetime.strptime(period, fmt)
    except ValueError:
        raise ValueError(f"{period!r} is neither YYYY-MM-DD nor YYYY-MM-DDTHH") from None


class Calendar:
    """Bucket arithmetic of one IANA time zone; get one with :func:`calendar`.

    Offsets are looked up once per quarter-hour and day starts once per day, so the
    worker's hot path costs two dictionary reads instead of a ``zoneinfo`` call.
    """

    def __init__(self, timezone: str) -> None:
        try:
            self._zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as "America"
            raise ValueError(f"{timezone!r} is not an IANA time zone") from None
        self.timezone = timezone
        self._utc = timezone in ("UTC", "Etc/UTC")
        self._offsets: dict[int, int] = {}
        self._midnights: dict[int, EpochMs] = {}

    def __repr__(self) -> str:
        return f"Calendar({self.timezone!r})"

    def offset(self, ts: EpochMs) -> int:
        """The zone's offset from UTC at ``ts``, in milliseconds."""
        quarter = ts // _QUARTER
        found = self._offsets.get(quarter)
        if found is None:
            moment = datetime.fromtimestamp(quarter * _QUARTER / 1000, self._zone)
            found = self._offsets[quarter] = _ms(moment.utcoffset() or timedelta(0))
        return found

    def bucket_start(self, ts: EpochMs, window: str) -> EpochMs:
        """Start of the bucket of ``window`` that holds ``ts``."""
        if window == "1m":
            return ts - ts % MINUTE
        if window == ALL_TIME:
            return 0
        if self._utc:
            size = WINDOWS[window]
            return ts - ts % size
        local = ts + self.offset(ts)
        if window == "1h":
            return ts - local % HOUR
        if window == "1d":
            return self._midnight(local // DAY)
        raise KeyError(window)

    def bucket_end(self, start: EpochMs, window: str) -> EpochMs:
        """Start of the bucket after the one starting at ``start``."""
        if window == "1d" and not self._utc:
            return self._midnight((start + self.offset(start)) // DAY + 1)
        return start + WINDOWS[window]

    def buckets_between(self, start: EpochMs, end: EpochMs, window: str) -> list[EpochMs]:
        """Starts of the buckets of ``window`` overlapping ``[start, end)``."""
        starts: list[EpochMs] = []
        bucket = self.bucket_start(start, window)
        while bucket < end and end > start:
            starts.append(bucket)
            bucket = self.bucket_end(bucket, window)
        return starts

    def days_before(self, ts: EpochMs, days: int) -> list[EpochMs]:
        """Starts of the ``days`` whole local days before the one holding ``ts``, oldest first.

        The day holding ``ts`` is left out: today, still running, is never history.
        """
        starts: list[EpochMs] = []
        day = self.bucket_start(ts, "1d")
        for _ in range(days):
            day = self.bucket_start(day - 1, "1d")
            starts.append(day)
        return starts[::-1]

    def period_start(self, period: str) -> EpochMs:
        """Start of a reporting period (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH``, local) in epoch ms.

        An hour that a clock change repeats means its first occurrence; one that it
        skips means the moment the clocks jumped.
        """
        local = parse_period(period)
        if len(period) == 10:
            return self._midnight((local - datetime(1970, 1, 1)) // timedelta(days=1))
        return self._instant(local)

    def day_of(self, ts: EpochMs) -> str:
        """The local day (``YYYY-MM-DD``) holding ``ts``."""
        return datetime.fromtimestamp(ts / 1000, self._zone).strftime("%Y-%m-%d")

    def _midnight(self, day: int) -> EpochMs:
        """The instant local day number ``day`` (days since 1970-01-01) starts."""
        found = self._midnights.get(day)
        if found is None:
            local = datetime.combine(date(1970, 1, 1) + timedelta(days=day), datetime.min.time())
            found = self._midnights[day] = self._instant(local)
        return found

    def _instant(self, local: datetime) -> EpochMs:
        aware = local.replace(tzinfo=self._zone)
        start = _ms(aware.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC))
        # A skipped local time (spring forward) maps past the jump; the period starts at it.
        if datetime.fromtimestamp(start / 1000, self._zone).replace(tzinfo=None) != local:
            return self._jump_before(start)
        return start

    def _jump_before(self, ts: EpochMs) -> EpochMs:
        """The clock change at or before ``ts`` (within a day): where a skipped time lands."""
        low, high = ts - DAY, ts
        while high - low > MINUTE:
            middle = (low + high) // 2 // MINUTE * MINUTE
            if self.offset(middle) == self.offset(high):
                high = middle
            else:
                low = middle
        return high


@lru_cache(maxsize=64)
def calendar(timezone: str = "UTC") -> Calendar:
    """The :class:`Calendar` of ``timezone`` (an IANA name), shared by every caller."""
    return Calendar(timezone)


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def rfc3339(ts: EpochMs) -> str:
    """``ts`` as RFC 3339 in UTC, with a ``Z``."""
    text = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")
