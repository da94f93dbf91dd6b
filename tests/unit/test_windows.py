from __future__ import annotations

import pytest

from tracker.windows import (
    ALL_TIME,
    WINDOWS,
    bucket_start,
    buckets_between,
    day_of,
    period_start,
    rfc3339,
)

# 2024-05-01T00:00:00Z: 2024-01-01 is day 19_723 (1_704_067_200 s); May 1st is 121 days
# later (31 + 29 + 31 + 30) -> day 19_844 -> 19_844 * 86_400_000 ms.
DAY = 1_714_521_600_000
HOUR = 3_600_000
MINUTE = 60_000
NOW = DAY + 10 * HOUR  # 2024-05-01T10:00:00Z


def test_window_sizes() -> None:
    assert WINDOWS == {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}


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
    assert bucket_start(ts, window) == expected


def test_bucket_start_unknown_window() -> None:
    with pytest.raises(KeyError):
        bucket_start(NOW, "5m")


@pytest.mark.parametrize(
    ("start", "end", "window", "expected"),
    [
        (NOW + 30_000, NOW + 150_000, "1m", [NOW, NOW + MINUTE, NOW + 2 * MINUTE]),
        (NOW, NOW + MINUTE, "1m", [NOW]),  # the end is exclusive
        (NOW, NOW + MINUTE + 1, "1m", [NOW, NOW + MINUTE]),
        (NOW, NOW, "1m", []),  # empty range
        (NOW + 1, NOW, "1m", []),  # reversed range
        (NOW - 1, NOW + 1, "1d", [DAY]),
    ],
)
def test_buckets_between(start: int, end: int, window: str, expected: list[int]) -> None:
    assert buckets_between(start, end, window) == expected


def test_buckets_between_a_day_of_hours() -> None:
    hours = buckets_between(DAY, DAY + 86_400_000, "1h")
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
    assert period_start(period) == expected


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
        period_start(period)


@pytest.mark.parametrize("period", ["2024-05- 1", "2024-05-01t10"])
def test_period_start_rejects_non_canonical_forms(period: str) -> None:
    with pytest.raises(ValueError, match="neither YYYY-MM-DD nor YYYY-MM-DDTHH"):
        period_start(period)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [(NOW, "2024-05-01"), (DAY, "2024-05-01"), (DAY - 1, "2024-04-30"), (0, "1970-01-01")],
)
def test_day_of(ts: int, expected: str) -> None:
    assert day_of(ts) == expected


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
