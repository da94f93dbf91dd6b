"""``/v1/kpis`` and ``/v1/clv`` refuse bad parameters with 400 and a reason.

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
from tracker.export.api import MAX_BUCKETS, parse_span
from tracker.export.server import build
from tracker.settings import Settings
from tracker.windows import WINDOWS, buckets_between

APP = build(Settings(redis_url="redis://127.0.0.1:1/0"))  # never reached by these requests
MINUTE = 60_000


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
    span = parse_span({})
    assert (span.dimension, span.window, span.model) == ("total", "1h", "last_click")
    assert len(span.starts) in (24, 25)  # 25 unless now is on the hour
    assert span.starts[-1] <= time.time() * 1000 < span.starts[-1] + WINDOWS["1h"]


def test_a_range_of_exactly_the_most_buckets_is_served() -> None:
    span = parse_span({"window": "1m", "from": "30000", "to": str(MAX_BUCKETS * MINUTE)})
    assert len(span.starts) == MAX_BUCKETS
    assert span.starts[0] == 0


@settings(max_examples=200, derandomize=True, database=None)
@given(
    st.sampled_from(sorted(WINDOWS)),
    st.integers(0, 10**13),
    st.integers(1, (MAX_BUCKETS + 2) * WINDOWS["1h"]),
)
def test_the_bucket_limit_counts_exactly_the_buckets_served(
    window: str, start: int, length: int
) -> None:
    query = {"window": window, "from": str(start), "to": str(start + length)}
    expected = len(buckets_between(start, start + length, window))
    if expected > MAX_BUCKETS:
        with pytest.raises(HTTPError, match=f"^range spans {expected} {window} buckets"):
            parse_span(query)
    else:
        assert len(parse_span(query).starts) == expected
