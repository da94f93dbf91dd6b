"""``/v1/kpis`` and ``/v1/clv`` refuse bad parameters with 400 and a reason; ranges and
finality follow the reporting time zone.

Requests go through the exporter's real routes; a refused request never reaches Redis,
so no server is needed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.asgi import HTTPError, Message
from tracker.events import parse_ts
from tracker.export.api import LATEST_MS, MAX_BUCKETS, count_buckets, earlier, parse_span
from tracker.export.server import build
from tracker.rows import final
from tracker.settings import Settings
from tracker.windows import ALL_TIME, WINDOWS, calendar, rfc3339

APP = build(Settings(redis_url="redis://127.0.0.1:1/0"))  # never reached by these requests
MINUTE = 60_000
HOUR = 3_600_000
UTC = calendar("UTC")
NEW_YORK = calendar("America/New_York")
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham")


def get(path: str, query: bytes) -> tuple[int, dict[str, Any]]:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(APP(scope, receive, send))
    body: dict[str, Any] = orjson.loads(sent[1]["body"])
    return sent[0]["status"], body


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"dimension": "country"}, "dimension must be one of campaign, channel, goal, total"),
        ({"dimension": ""}, "dimension must be one of campaign, channel, goal, total"),
        ({"window": "1w"}, "window must be one of 1m, 1h, 1d"),
        ({"model": "u_shaped"}, "model must be one of last_click, first_click, linear, "),
        ({"from": "yesterday"}, "from: 'yesterday' is neither epoch milliseconds nor RFC 3339"),
        ({"to": ""}, "to: '' is neither epoch milliseconds nor RFC 3339"),
        ({"to": "2026-05-01T00:00:00"}, "to: RFC 3339 time needs an offset such as Z or +02:00"),
        ({"to": "9" * 19}, "to: epoch milliseconds out of range"),
        ({"to": "9" * 5000}, "to: epoch milliseconds out of range"),
        ({"from": "-1"}, "from: '-1' is neither epoch milliseconds nor RFC 3339"),
        ({"from": "1969-12-31T23:59:59Z"}, "from must be at or after 1970-01-01"),
        ({"to": "9999-12-31T12:00:00Z"}, "to must be at or after 1970-01-01 and before 9999-12-31"),
        ({"from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "from must be before to"),
        ({"from": "2026-05-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "from must be before to"),
        ({"from": "1777593600000", "to": "2026-05-01T02:00:00+02:00"}, "from must be before to"),
        (
            {"window": "1m", "from": "0", "to": str((MAX_BUCKETS + 1) * MINUTE)},
            "range spans 1501 1m buckets, at most 1500: narrow from/to or take a larger window",
        ),
        ({"window": "1h", "from": "0"}, "range spans "),
        ({"windw": "1d"}, "unknown parameter 'windw'; known: dimension, window, from, to, model"),
        ({"_": "1714557600"}, "unknown parameter '_'"),
    ],
)
def test_kpis_refuse_bad_parameters_with_a_reason(query: dict[str, str], reason: str) -> None:
    status, body = get("/v1/kpis", urlencode(query).encode())
    assert status == 400
    assert reason in body["error"]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (b"window=1h&window=1d", "parameter 'window' is given twice"),
        (b"dimension=%FF", "the query is not valid UTF-8"),
        (b"dimension=caf\xc3", "the query is not valid UTF-8"),
    ],
)
def test_kpis_refuse_repeated_and_undecodable_parameters(query: bytes, reason: str) -> None:
    assert get("/v1/kpis", query) == (400, {"error": reason})


def test_a_range_of_billions_of_buckets_is_refused_without_listing_them() -> None:
    started = time.perf_counter()
    status, body = get("/v1/kpis", b"window=1m&from=0&to=253402214399999")
    assert status == 400
    assert body["error"].startswith("range spans 4223370240 1m buckets")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("path", ["/v1/kpis", "/v1/trends", "/v1/attribution"])
def test_no_range_ends_a_bucket_in_year_10000(path: str) -> None:
    """Trends print the end of their last bucket: it must have an RFC 3339 form."""
    query = b"from=9999-12-30T00:00:00Z&to=9999-12-31T12:00:00Z&window=1d"
    status, body = get(path, query)
    assert (status, body["error"]) == (
        400,
        "to must be at or after 1970-01-01 and before 9999-12-31",
    )


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (b"dimension=goal", "dimension must be campaign or channel"),
        (b"model=none", "model must be one of"),
        (b"window=1h", "unknown parameter 'window'; known: dimension, model"),
        (b"model=linear&model=linear", "parameter 'model' is given twice"),
    ],
)
def test_clv_refuses_bad_parameters_with_a_reason(query: bytes, reason: str) -> None:
    status, body = get("/v1/clv", query)
    assert status == 400
    assert reason in body["error"]


def test_the_defaults_are_the_last_day_of_hours_by_total_and_last_click() -> None:
    span = parse_span({}, UTC)
    assert (span.dimension, span.window, span.model) == ("total", "1h", "last_click")
    assert len(span.starts) in (24, 25)  # 25 unless now is on the hour
    assert span.starts[-1] <= time.time() * 1000 < span.starts[-1] + WINDOWS["1h"]


def test_a_range_of_exactly_the_most_buckets_is_served() -> None:
    span = parse_span({"window": "1m", "from": "30000", "to": str(MAX_BUCKETS * MINUTE)}, UTC)
    assert len(span.starts) == MAX_BUCKETS
    assert span.starts[0] == 0


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.sampled_from(sorted(WINDOWS)),
    st.integers(0, 10**13),
    st.integers(1, (MAX_BUCKETS + 2) * WINDOWS["1h"]),
)
def test_the_bucket_limit_counts_exactly_the_buckets_served(
    zone: str, window: str, start: int, length: int
) -> None:
    days = calendar(zone)
    query = {"window": window, "from": str(start), "to": str(start + length)}
    expected = len(days.buckets_between(start, start + length, window))
    assert count_buckets(days, start, start + length, window) == expected
    if expected > MAX_BUCKETS:
        with pytest.raises(HTTPError, match=f"^range spans {expected} {window} buckets"):
            parse_span(query, days)
    else:
        assert len(parse_span(query, days).starts) == expected


def test_a_week_over_a_clock_change_is_seven_local_days() -> None:
    """2024-03-10 lasts 23 hours in New York: the week of 167 hours has 7 day buckets."""
    query = {"window": "1d", "from": "2024-03-07T00:00:00-05:00", "to": "2024-03-14T00:00:00-04:00"}
    span = parse_span(query, NEW_YORK)
    assert [NEW_YORK.day_of(s) for s in span.starts] == [f"2024-03-{d:02d}" for d in range(7, 14)]
    assert span.starts[0] == NEW_YORK.period_start("2024-03-07")
    # the same instants in UTC days: 8 buckets, the first and last cut
    assert len(parse_span(query, UTC).starts) == 8


def test_the_default_range_is_whole_local_days() -> None:
    """``complete`` ends at today's local midnight, and starts seven local days before."""
    end = NEW_YORK.period_start("2024-03-14")
    start = earlier(NEW_YORK, end, "1d", 7)
    assert start == NEW_YORK.period_start("2024-03-07")
    assert end - start == 7 * 24 * HOUR - HOUR
    assert len(NEW_YORK.buckets_between(start, end, "1d")) == 7
    # within a day, as far into its day: the 25-hour day's last hour maps to the last hour
    late = NEW_YORK.period_start("2024-11-04") - 1
    assert earlier(NEW_YORK, late, "1d", 1) == NEW_YORK.period_start("2024-11-03") - 1
    assert earlier(NEW_YORK, NEW_YORK.period_start("2024-11-04") + 30 * MINUTE, "1d", 1) == (
        NEW_YORK.period_start("2024-11-03") + 30 * MINUTE
    )
    assert earlier(UTC, 10 * HOUR, "1h", 3) == 7 * HOUR


def test_trends_default_to_the_seven_whole_days_before_today() -> None:
    span = parse_span({}, NEW_YORK, default_window="1d", default_buckets=7, complete=True)
    today = NEW_YORK.bucket_start(int(time.time() * 1000), "1d")
    assert len(span.starts) == 7
    assert NEW_YORK.bucket_end(span.starts[-1], "1d") == today


def test_a_zone_whose_last_day_never_ends_is_refused() -> None:
    """In Pacific/Kiritimati (+14) the day holding 9999-12-30T12:00Z is 9999-12-31."""
    query = {"window": "1d", "from": str(LATEST_MS - 2 * 24 * HOUR), "to": str(LATEST_MS - 1)}
    with pytest.raises(HTTPError, match="ends after 9999-12-31 in Pacific/Kiritimati"):
        parse_span(query, calendar("Pacific/Kiritimati"))
    assert rfc3339(UTC.bucket_end(parse_span(query, UTC).starts[-1], "1d")) == (
        "9999-12-31T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("zone", "bucket", "window", "final_from"),
    [
        ("UTC", "2024-05-01T00:00:00Z", "1d", "2024-05-02T01:00:00Z"),
        ("UTC", "2024-05-01T10:00:00Z", "1h", "2024-05-01T12:00:00Z"),
        ("UTC", "2024-05-01T10:07:00Z", "1m", "2024-05-01T11:08:00Z"),
        # a local day ends at the next local midnight, 23 or 25 hours on
        ("America/New_York", "2024-03-10T05:00:00Z", "1d", "2024-03-11T05:00:00Z"),
        ("America/New_York", "2024-11-03T04:00:00Z", "1d", "2024-11-04T06:00:00Z"),
        ("Asia/Kolkata", "2024-04-30T18:30:00Z", "1d", "2024-05-01T19:30:00Z"),
    ],
)
def test_a_bucket_is_final_a_grace_after_it_ends(
    zone: str, bucket: str, window: str, final_from: str
) -> None:
    days, grace = calendar(zone), HOUR
    start, then = parse_ts(bucket), parse_ts(final_from)
    assert final(days, start, window, grace, then)
    assert not final(days, start, window, grace, then - 1)


def test_the_all_time_bucket_is_never_final() -> None:
    assert not final(UTC, 0, ALL_TIME, 0, LATEST_MS)
