"""Bucket arithmetic by hand in UTC and across clock changes, and against ``zoneinfo``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.windows import ALL_TIME, WINDOWS, Calendar, calendar, parse_period, rfc3339

# 2024-05-01T00:00:00Z: 2024-01-01 is day 19_723 (1_704_067_200 s); May 1st is 121 days
# later (31 + 29 + 31 + 30) -> day 19_844 -> 19_844 * 86_400_000 ms.
DAY = 1_714_521_600_000
HOUR = 3_600_000
MINUTE = 60_000
NOW = DAY + 10 * HOUR  # 2024-05-01T10:00:00Z
UTC_DAYS = calendar("UTC")
NEW_YORK = calendar("America/New_York")
BERLIN = calendar("Europe/Berlin")
KOLKATA = calendar("Asia/Kolkata")


def ms(text: str) -> int:
    """An RFC 3339 time with an offset as epoch milliseconds."""
    return (datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


def test_window_sizes() -> None:
    assert WINDOWS == {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}


def test_calendars_are_shared_and_named() -> None:
    assert calendar("Europe/Berlin") is BERLIN
    assert BERLIN.timezone == "Europe/Berlin"
    assert repr(BERLIN) == "Calendar('Europe/Berlin')"
    assert calendar().timezone == "UTC"


@pytest.mark.parametrize("name", ["Europe/Nowhere", "", "utc", "Europe/Berlin ", "../UTC"])
def test_an_unknown_zone_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not an IANA time zone"):
        Calendar(name)


def test_a_zone_folder_is_refused() -> None:
    with pytest.raises(ValueError, match="is not an IANA time zone"):
        Calendar("America")


# UTC: days start at 00:00 UTC.


@pytest.mark.parametrize(
    ("ts", "window", "expected"),
    [
        (NOW, "1m", NOW),
        (NOW + 61_234, "1m", NOW + MINUTE),  # 10:01:01.234 -> 10:01
        (NOW - 1, "1m", NOW - MINUTE),  # 09:59:59.999 -> 09:59
        (NOW + HOUR - 1, "1h", NOW),
        (NOW, "1d", DAY),  # days start at 00:00 UTC
        (DAY - 1, "1d", DAY - 86_400_000),
        (NOW, ALL_TIME, 0),  # the all-time bucket always starts at 0
        (0, "1m", 0),
    ],
)
def test_bucket_start(ts: int, window: str, expected: int) -> None:
    assert UTC_DAYS.bucket_start(ts, window) == expected


@pytest.mark.parametrize("days", [UTC_DAYS, BERLIN])
def test_bucket_start_unknown_window(days: Calendar) -> None:
    with pytest.raises(KeyError):
        days.bucket_start(NOW, "5m")


@pytest.mark.parametrize(
    ("start", "window", "end"),
    [(DAY, "1d", DAY + 86_400_000), (NOW, "1h", NOW + HOUR), (NOW, "1m", NOW + MINUTE)],
)
def test_bucket_end(start: int, window: str, end: int) -> None:
    assert UTC_DAYS.bucket_end(start, window) == end


@pytest.mark.parametrize(
    ("start", "end", "window", "expected"),
    [
        (NOW + 30_000, NOW + 150_000, "1m", [NOW, NOW + MINUTE, NOW + 2 * MINUTE]),
        (NOW, NOW + MINUTE, "1m", [NOW]),  # the end is exclusive
        (NOW, NOW + MINUTE + 1, "1m", [NOW, NOW + MINUTE]),
        (NOW, NOW, "1m", []),  # empty range
        (NOW + 1, NOW + 1, "1m", []),  # empty, within a bucket: not that bucket
        (NOW + 1, NOW, "1m", []),  # reversed range
        (NOW - 1, NOW + 1, "1d", [DAY]),
    ],
)
def test_buckets_between(start: int, end: int, window: str, expected: list[int]) -> None:
    assert UTC_DAYS.buckets_between(start, end, window) == expected


def test_buckets_between_a_day_of_hours() -> None:
    hours = UTC_DAYS.buckets_between(DAY, DAY + 86_400_000, "1h")
    assert hours == [DAY + h * HOUR for h in range(24)]


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ("2024-05-01", DAY),
        ("2024-05-01T13", DAY + 13 * HOUR),  # 1_714_568_400_000
        ("2024-05-01T00", DAY),
        ("1970-01-01", 0),
        # 2024-02-29: 2024-01-01 + 59 days = 1_704_067_200_000 + 5_097_600_000
        ("2024-02-29", 1_709_164_800_000),
    ],
)
def test_period_start(period: str, expected: int) -> None:
    assert UTC_DAYS.period_start(period) == expected


@pytest.mark.parametrize(
    "period",
    [
        "2024-13-01",  # no month 13
        "2023-02-29",  # not a leap year
        "2024-05-01T24",  # no hour 24
        "2024-05-01 10",  # the hour is separated by T
        "2024-05-01T10:00",
        "20240501",
        "2024-5-1",
        "May 1 2024",
        "",
    ],
)
def test_period_start_rejects(period: str) -> None:
    with pytest.raises(ValueError, match="neither YYYY-MM-DD nor YYYY-MM-DDTHH"):
        parse_period(period)
    with pytest.raises(ValueError, match="neither YYYY-MM-DD nor YYYY-MM-DDTHH"):
        BERLIN.period_start(period)


@pytest.mark.parametrize("period", ["2024-05- 1", "2024-05-01t10"])
def test_period_start_rejects_non_canonical_forms(period: str) -> None:
    with pytest.raises(ValueError, match="neither YYYY-MM-DD nor YYYY-MM-DDTHH"):
        UTC_DAYS.period_start(period)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [(NOW, "2024-05-01"), (DAY, "2024-05-01"), (DAY - 1, "2024-04-30"), (0, "1970-01-01")],
)
def test_day_of(ts: int, expected: str) -> None:
    assert UTC_DAYS.day_of(ts) == expected


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (NOW, "2024-05-01T10:00:00Z"),
        (NOW + 999, "2024-05-01T10:00:00Z"),  # whole seconds
        (NOW + 61_000, "2024-05-01T10:01:01Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_rfc3339(ts: int, expected: str) -> None:
    assert rfc3339(ts) == expected


# America/New_York: 2024-03-10 (clocks 02:00 EST -> 03:00 EDT) lasts 23 hours,
# 2024-11-03 (clocks 02:00 EDT -> 01:00 EST) 25.

SPRING = ms("2024-03-10T05:00:00Z")  # 2024-03-10T00:00-05:00
FALL = ms("2024-11-03T04:00:00Z")  # 2024-11-03T00:00-04:00


def test_the_spring_forward_day_lasts_23_hours() -> None:
    assert NEW_YORK.period_start("2024-03-10") == SPRING
    end = NEW_YORK.bucket_end(SPRING, "1d")
    assert end == ms("2024-03-11T00:00:00-04:00") == SPRING + 23 * HOUR
    assert NEW_YORK.bucket_start(end - 1, "1d") == SPRING
    assert NEW_YORK.bucket_start(ms("2024-03-10T03:30:00-04:00"), "1d") == SPRING
    hours = NEW_YORK.buckets_between(SPRING, end, "1h")
    assert hours == [SPRING + h * HOUR for h in range(23)]
    assert NEW_YORK.buckets_between(SPRING - 1, end + 1, "1d") == [SPRING - 24 * HOUR, SPRING, end]


def test_the_fall_back_day_lasts_25_hours() -> None:
    assert NEW_YORK.period_start("2024-11-03") == FALL
    end = NEW_YORK.bucket_end(FALL, "1d")
    assert end == ms("2024-11-04T00:00:00-05:00") == FALL + 25 * HOUR
    assert NEW_YORK.bucket_start(end - 1, "1d") == FALL
    assert NEW_YORK.buckets_between(FALL, end, "1h") == [FALL + h * HOUR for h in range(25)]
    assert NEW_YORK.bucket_end(end, "1d") == end + 24 * HOUR


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ("2024-03-10T01", "2024-03-10T01:00:00-05:00"),
        ("2024-03-10T02", "2024-03-10T03:00:00-04:00"),  # skipped: where the clocks jumped
        ("2024-03-10T03", "2024-03-10T03:00:00-04:00"),
        ("2024-11-03T00", "2024-11-03T00:00:00-04:00"),
        ("2024-11-03T01", "2024-11-03T01:00:00-04:00"),  # repeated: its first occurrence
        ("2024-11-03T02", "2024-11-03T02:00:00-05:00"),
        ("2024-03-11", "2024-03-11T00:00:00-04:00"),
    ],
)
def test_new_york_periods(period: str, expected: str) -> None:
    assert NEW_YORK.period_start(period) == ms(expected)


@pytest.mark.parametrize(
    ("ts", "hour"),
    [
        ("2024-03-10T01:59:59-05:00", "2024-03-10T01:00:00-05:00"),
        ("2024-03-10T03:00:00-04:00", "2024-03-10T03:00:00-04:00"),
        ("2024-11-03T01:30:00-04:00", "2024-11-03T01:00:00-04:00"),  # the first 1 AM
        ("2024-11-03T01:30:00-05:00", "2024-11-03T01:00:00-05:00"),  # the second
    ],
)
def test_new_york_hours(ts: str, hour: str) -> None:
    assert NEW_YORK.bucket_start(ms(ts), "1h") == ms(hour)
    assert NEW_YORK.bucket_end(ms(hour), "1h") == ms(hour) + HOUR


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-05-01T03:59:59.999Z", "2024-04-30"),  # 23:59:59.999 EDT
        ("2024-05-01T04:00:00Z", "2024-05-01"),  # midnight EDT
        ("2024-01-01T04:59:59.999Z", "2023-12-31"),  # 23:59:59.999 EST
        ("2024-01-01T05:00:00Z", "2024-01-01"),
    ],
)
def test_new_york_day_of_near_midnight(ts: str, expected: str) -> None:
    assert NEW_YORK.day_of(ms(ts)) == expected


# Europe/Berlin: CET (+01:00) and CEST (+02:00).


def test_berlin_days() -> None:
    may = BERLIN.period_start("2024-05-01")
    assert may == ms("2024-04-30T22:00:00Z")
    assert BERLIN.bucket_start(NOW, "1d") == may
    assert BERLIN.bucket_start(may - 1, "1d") == may - 24 * HOUR
    assert BERLIN.day_of(may - 1) == "2024-04-30"
    assert BERLIN.day_of(may) == "2024-05-01"
    spring = BERLIN.period_start("2024-03-31")
    assert (spring, BERLIN.bucket_end(spring, "1d")) == (
        ms("2024-03-30T23:00:00Z"),
        ms("2024-03-31T22:00:00Z"),
    )
    fall = BERLIN.period_start("2024-10-27")
    assert BERLIN.bucket_end(fall, "1d") - fall == 25 * HOUR
    assert BERLIN.period_start("2024-03-31T02") == ms("2024-03-31T01:00:00Z")  # skipped
    assert BERLIN.period_start("2024-10-27T02") == ms("2024-10-27T00:00:00Z")  # first of two
    assert BERLIN.offset(NOW) == 2 * HOUR
    assert BERLIN.offset(ms("2024-01-01T00:00:00Z")) == HOUR


# Asia/Kolkata: +05:30 all year, so a day starts at 18:30 UTC and hours at half past.


def test_kolkata_days_and_hours() -> None:
    may = KOLKATA.period_start("2024-05-01")
    assert may == ms("2024-04-30T18:30:00Z")
    assert KOLKATA.bucket_end(may, "1d") == may + 24 * HOUR
    assert KOLKATA.bucket_start(NOW, "1d") == may
    assert KOLKATA.bucket_start(NOW, "1h") == ms("2024-05-01T09:30:00Z")
    assert KOLKATA.bucket_start(NOW, "1m") == NOW
    assert KOLKATA.period_start("2024-05-01T13") == ms("2024-05-01T07:30:00Z")
    assert KOLKATA.buckets_between(NOW, NOW + 2 * HOUR, "1h") == [
        ms("2024-05-01T09:30:00Z"),
        ms("2024-05-01T10:30:00Z"),
        ms("2024-05-01T11:30:00Z"),
    ]
    assert KOLKATA.day_of(may - 1) == "2024-04-30"
    assert KOLKATA.day_of(may) == "2024-05-01"
    assert KOLKATA.offset(NOW) == 5 * HOUR + 30 * MINUTE


# Against zoneinfo and datetime arithmetic, in zones of whole, half and three-quarter hour
# offsets, clock changes at night and at midnight, both hemispheres.

ZONES = (
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Australia/Adelaide",
    "Pacific/Chatham",
    "America/Santiago",
    "America/Havana",
)
YEARS = (2022, 2027)


@cache
def changes(zone: str) -> tuple[int, ...]:
    """Instants (ms) the zone's offset changes in ``YEARS``, found hour by hour."""
    tz = ZoneInfo(zone)
    start = datetime(YEARS[0], 1, 1, tzinfo=UTC)
    found, before = [], None
    for hours in range(0, (YEARS[1] - YEARS[0]) * 366 * 24):
        moment = start + timedelta(hours=hours)
        offset = moment.astimezone(tz).utcoffset()
        if before is not None and offset != before:
            found.append(ms(moment.isoformat()))
        before = offset
    return tuple(found)


def local_day_start(day: date, tz: ZoneInfo) -> int:
    """The first instant of local ``day``: its midnight, or where a clock change skipped it."""
    candidates = []
    for fold in (0, 1):
        wall = datetime.combine(day, time(), tzinfo=tz).replace(fold=fold)
        instant = ms(wall.astimezone(UTC).isoformat())
        if datetime.fromtimestamp(instant / 1000, tz).date() == day:
            candidates.append(instant)
    return min(candidates)


def on_the_hour(ts: int, tz: ZoneInfo, step: int) -> int:
    """The nearest whole minute at or before (``step`` -1) or after (1) ``ts`` that shows
    minute 0 on the local clock (the hour where a clock change lands past minute 0)."""
    minute = ts - ts % MINUTE
    while datetime.fromtimestamp(minute / 1000, tz).minute != 0:
        minute += step * MINUTE
    return minute


def reference(ts: int, window: str, zone: str) -> tuple[int, int]:
    """The bucket of ``ts`` as ``(start, end)``, by ``zoneinfo`` and ``datetime`` alone."""
    if window == "1m":
        return ts - ts % MINUTE, ts - ts % MINUTE + MINUTE
    tz = ZoneInfo(zone)
    local = datetime.fromtimestamp(ts / 1000, tz)
    if window == "1h":
        return on_the_hour(ts, tz, -1), on_the_hour(ts + MINUTE, tz, 1)
    day = local.date()
    return local_day_start(day, tz), local_day_start(day + timedelta(days=1), tz)


@st.composite
def moments(draw: st.DrawFn) -> tuple[str, int]:
    zone = draw(st.sampled_from(ZONES))
    low, high = ms(f"{YEARS[0]}-01-02T00:00:00Z"), ms(f"{YEARS[1]}-12-30T00:00:00Z")
    near = changes(zone)
    around: bool = draw(st.booleans())  # around a clock change half of the time
    if near and around:
        ts = draw(st.sampled_from(near)) + draw(st.integers(-30 * HOUR, 30 * HOUR))
    else:
        ts = draw(st.integers(low, high))
    return zone, ts


@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(moments(), st.sampled_from(sorted(WINDOWS)))
def test_buckets_agree_with_zoneinfo(moment: tuple[str, int], window: str) -> None:
    zone, ts = moment
    days = calendar(zone)
    start, end = reference(ts, window, zone)
    bucket = days.bucket_start(ts, window)
    assert (bucket, days.bucket_end(bucket, window)) == (start, end)
    assert bucket <= ts < days.bucket_end(bucket, window)
    assert days.bucket_start(days.bucket_end(bucket, window) - 1, window) == bucket
    assert days.buckets_between(ts, end, window) == [bucket]
    local = datetime.fromtimestamp(ts / 1000, ZoneInfo(zone))
    assert days.day_of(ts) == local.date().isoformat()
    assert days.period_start(days.day_of(ts)) == days.bucket_start(ts, "1d")
    assert days.offset(ts) == local.utcoffset() // timedelta(milliseconds=1)  # type: ignore[operator]


def test_days_before_are_whole_local_days() -> None:
    """New York: the 7 days before 2024-03-14 hold the 23-hour 2024-03-10, and no 8th."""
    new_york = calendar("America/New_York")
    end = new_york.period_start("2024-03-14") + 5 * 3_600_000  # 05:00 on the 14th
    days = new_york.days_before(end, 7)
    assert [new_york.day_of(d) for d in days] == [f"2024-03-{d:02d}" for d in range(7, 14)]
    assert days == [new_york.period_start(f"2024-03-{d:02d}") for d in range(7, 14)]
    assert new_york.bucket_end(days[-1], "1d") == new_york.period_start("2024-03-14")
    assert calendar("UTC").days_before(3 * 86_400_000 + 1, 2) == [86_400_000, 2 * 86_400_000]
    assert new_york.days_before(end, 0) == []
