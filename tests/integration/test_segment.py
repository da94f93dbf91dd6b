"""Segment's HTTP API on a real collector and real Kafka, driven by hand and by the SDKs
sites run (analytics-python, RudderStack's). What landed in the events topic and in the
dead-letter topic is read back and checked field by field.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector import segment_messages, validation
from harness.isolation import isolated_settings
from tests.integration.test_collector_edge import Answer, Running, collector
from tests.sdks import SEGMENT_SDKS, segment_client, skew_clock
from tracker.events import Event
from tracker.settings import Settings

pytestmark = pytest.mark.services

KEY = "wk_test_" + uuid.uuid4().hex[:12]  # made up per run
OTHER_KEY = "wk_other_" + uuid.uuid4().hex[:12]
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15"
SKEW = timedelta(hours=5, minutes=7)
"""How far the clients' clocks are off in the tests that say so."""


def configured(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(
        settings,
        conversion_events="Signed Up=signup",
        currency_rates="EUR=1.08",
        **changes,
    )


@pytest.fixture(scope="module")
def keyed(servers: tuple[str, str]) -> Iterator[Running]:
    """A collector taking two write keys; its topics shared by this module's tests,
    each of which tells its own events by a mark in their ids."""
    settings = configured(isolated_settings(servers, "segment"), write_keys=f"{KEY},{OTHER_KEY}")
    yield from collector(settings)


def mark() -> str:
    return uuid.uuid4().hex[:12]


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post(
    running: Running,
    path: str,
    payload: Any,
    key: str | None = KEY,
    *,
    compress: bool = False,
    headers: dict[str, str] | None = None,
) -> Answer:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    sent = {"content-type": "application/json"}
    if key is not None:
        sent["authorization"] = basic(key)
    if compress:
        body = gzip.compress(body)
        sent["content-encoding"] = "gzip"
    return running.call("POST", path, body, sent | (headers or {}))


def events_of(running: Running, marked: str) -> list[Event]:
    """The events of the topic whose ids carry ``marked``."""
    return [
        event
        for event in running.events()
        if marked in f"{event.event_id} {event.anonymous_id} {event.user_id}"
    ]


def letters_of(running: Running, marked: str) -> list[dict[str, Any]]:
    return [letter for letter in running.dead_letters() if marked in letter["raw"]]


def metric(running: Running, name: str, **labels: str) -> float:
    """A sample of the collector's /metrics; 0 when it has none yet."""
    page = running.call("GET", "/metrics").body.decode()
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def key_of(letter: dict[str, Any]) -> str:
    """The ``messageId`` of a dead letter's message."""
    kept = orjson.loads(letter["raw"])
    return str(kept["messageId"]) if isinstance(kept, dict) else "not a message"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# The API by hand


def test_a_batch_lands_message_by_message(keyed: Running) -> None:
    m = mark()
    device = f"dev-{m}"
    sent = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)  # 2 h fast
    url = f"https://shop.example/?utm_campaign=spring&utm_source=google&utm_medium=cpc&gclid=G-{m}"
    payload = {
        "batch": [
            {
                "type": "page",
                "messageId": f"p-{m}",
                "anonymousId": device,
                "timestamp": iso(sent - timedelta(seconds=30)),
                "context": {"page": {"url": url, "referrer": "https://www.google.com/"}},
            },
            {
                "type": "track",
                "event": "Order Completed",
                "messageId": f"o-{m}",
                "anonymousId": device,
                "timestamp": iso(sent - timedelta(seconds=10)),
                "properties": {"order_id": f"O-{m}", "revenue": "49.90", "currency": "EUR"},
            },
            {
                "type": "track",
                "event": "Product Viewed",
                "messageId": f"v-{m}",
                "anonymousId": device,
                "timestamp": iso(sent - timedelta(seconds=20)),
                "properties": {"sku": "S-1"},
            },
            {
                "type": "track",
                "event": "Order Completed",
                "messageId": f"bad-{m}",
                "anonymousId": device,
                "properties": {"revenue": -5},
            },
            {"type": "group", "messageId": f"g-{m}", "groupId": "acme", "anonymousId": device},
            {"type": "identify", "messageId": f"i-{m}", "userId": f"u-{m}", "traits": {}},
            ["not a message", m],
        ],
        "context": {"ip": "198.51.100.23", "userAgent": BROWSER, "library": {"name": "test"}},
        "sentAt": iso(sent),
    }
    before = {
        kind: metric(keyed, "tracker_collector_uncounted_total", endpoint="segment", kind=kind)
        for kind in ("track", "group", "identify")
    }
    took = metric(keyed, "tracker_collector_request_duration_seconds_count", endpoint="segment")

    answer = post(keyed, "/v1/batch", payload, compress=True)

    assert answer.status == 200, answer.body
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.json() == {
        "success": True,
        "accepted": 2,
        "rejected": 2,
        "uncounted": 3,
        "errors": [
            {"index": 3, "reasons": {"properties.revenue": "must not be negative"}},
            {"index": 6, "reasons": {"message": "must be a JSON object"}},
        ],
    }
    page, order = sorted(events_of(keyed, m), key=lambda e: e.type, reverse=True)
    received = page.received_at
    assert page == Event(
        event_id=f"p-{m}",
        type="pageview",
        ts=received - 30_000,  # 30 s before sending, the device's 2 h set aside
        received_at=received,
        device_ts=ms(sent - timedelta(seconds=30)),
        channel="search",
        campaign="spring",
        source="google",
        medium="cpc",
        click_id=f"G-{m}",
        anonymous_id=device,
        currency="USD",
        url=url,
        referrer="https://www.google.com/",
        user_agent=BROWSER,  # the batch's context, not the HTTP client's agent
        ip="198.51.100.0",
    )
    assert order == Event(
        event_id=f"o-{m}",
        type="conversion",
        ts=received - 10_000,
        received_at=received,
        device_ts=ms(sent - timedelta(seconds=10)),
        channel="direct",
        anonymous_id=device,
        value=49_900_000,
        currency="EUR",
        goal="purchase",
        status="approved",
        order_id=f"O-{m}",
        user_agent=BROWSER,
        ip="198.51.100.0",
    )

    letters = {key_of(letter): letter for letter in letters_of(keyed, m)}
    assert {key: letter["reasons"] for key, letter in letters.items()} == {
        f"v-{m}": {
            "type": "'Product Viewed' is no conversion: name it in a goal (PUT /v1/goals) or "
            "TRACKER_CONVERSION_EVENTS"
        },
        f"bad-{m}": {"properties.revenue": "must not be negative"},
        f"g-{m}": {"type": "a group call is not counted: tracker has no accounts"},
        "not a message": {"message": "must be a JSON object"},
        # the identify of nobody's device is not kept: no setting makes it count
    }
    viewed = letters[f"v-{m}"]
    assert viewed["endpoint"] == "segment"
    assert viewed["received_at"] == received
    assert viewed["context"] == {"ip": "127.0.0.0"}
    kept = orjson.loads(viewed["raw"])  # the message, self-contained, without the key
    assert kept["context"] == payload["context"]
    assert kept["sentAt"] == payload["sentAt"]
    assert KEY not in viewed["raw"]

    # Named as a conversion later, the kept message replays as the collector would
    # have counted it: same receive time, same clock correction.
    later = validation.rules(
        dataclasses.replace(keyed.settings, conversion_events="Product Viewed=view")
    )
    restored = validation.restored_context(viewed["received_at"], viewed.get("context"))
    (replayed,) = segment_messages.judge(viewed["raw"], restored, later, "dl-0-0-0")
    assert (replayed.event_id, replayed.goal, replayed.ts, replayed.user_agent) == (
        f"v-{m}",
        "view",
        received - 20_000,
        BROWSER,
    )

    after = {
        kind: metric(keyed, "tracker_collector_uncounted_total", endpoint="segment", kind=kind)
        for kind in before
    }
    assert {kind: after[kind] - before[kind] for kind in before} == {
        "track": 1,
        "group": 1,
        "identify": 1,
    }
    assert (
        metric(keyed, "tracker_collector_request_duration_seconds_count", endpoint="segment")
        == took + 1
    )


def test_single_message_paths_take_the_type_they_name(keyed: Running) -> None:
    m = mark()
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/track", {"event": "Signed Up", "userId": f"u-{m}", "properties": {"value": 12}}),
        ("/v1/identify", {"type": "track", "anonymousId": f"d-{m}", "userId": f"u-{m}"}),
        ("/v1/alias", {"previousId": f"d2-{m}", "userId": f"u-{m}"}),
        ("/v1/screen", {"anonymousId": f"d-{m}", "name": "Home"}),
        ("/v1/group", {"anonymousId": f"d-{m}", "groupId": "acme"}),
    ]
    answers = [post(keyed, path, {"messageId": f"{path[4:]}-{m}", **body}) for path, body in calls]
    assert [(a.status, a.json()["accepted"], a.json()["uncounted"]) for a in answers] == [
        (200, 1, 0),
        (200, 1, 0),
        (200, 1, 0),
        (200, 1, 0),
        (200, 0, 1),
    ]
    found = {e.event_id: e for e in events_of(keyed, m)}
    assert sorted(found) == [f"alias-{m}", f"identify-{m}", f"screen-{m}", f"track-{m}"]
    assert (found[f"track-{m}"].goal, found[f"track-{m}"].value) == ("signup", 12_000_000)
    assert (found[f"identify-{m}"].type, found[f"identify-{m}"].anonymous_id) == (
        "identify",  # the path's type, not the body's
        f"d-{m}",
    )
    assert (found[f"alias-{m}"].anonymous_id, found[f"alias-{m}"].user_id) == (
        f"d2-{m}",
        f"u-{m}",
    )
    assert found[f"screen-{m}"].type == "pageview"


def test_analytics_js_short_paths_with_the_key_in_a_text_body(keyed: Running) -> None:
    """analytics.js posts each call to the first letter of its type, as text/plain (no
    CORS preflight), with the write key in the body; its batching mode posts to /b."""
    m = mark()
    page = {
        "type": "page",
        "writeKey": KEY,
        "messageId": f"ajs-{m}",
        "anonymousId": f"d-{m}",
        "timestamp": iso(datetime.now(UTC)),
        "sentAt": iso(datetime.now(UTC)),
        "context": {"userAgent": BROWSER, "page": {"url": "https://shop.example/?fbclid=F"}},
        "properties": {"url": "https://shop.example/?fbclid=F", "title": "Home"},
    }
    text = {"content-type": "text/plain", "origin": "https://shop.example"}
    answer = post(keyed, "/v1/p", page, key=None, headers=text)
    assert answer.status == 200, answer.body
    assert answer.headers["access-control-allow-origin"] == "*"
    batch = {
        "writeKey": KEY,
        "sentAt": iso(datetime.now(UTC)),
        "batch": [page | {"messageId": f"b-{m}"}],
    }
    assert post(keyed, "/v1/b", batch, key=None, headers=text).json()["accepted"] == 1
    found = sorted(events_of(keyed, m), key=lambda e: e.event_id)
    assert [(e.event_id, e.type, e.channel, e.click_id, e.user_agent) for e in found] == [
        (f"ajs-{m}", "pageview", "social", "F", BROWSER),
        (f"b-{m}", "pageview", "social", "F", BROWSER),
    ]
    assert all(KEY not in letter["raw"] for letter in keyed.dead_letters())


def test_write_keys_are_checked(keyed: Running) -> None:
    m = mark()

    def batch(n: int, **extra: Any) -> dict[str, Any]:
        return {
            "batch": [{"type": "page", "anonymousId": f"d-{m}", "messageId": f"{n}-{m}"}],
            **extra,
        }

    refused_before = metric(
        keyed, "tracker_collector_events_total", endpoint="segment", outcome="unauthorized"
    )
    refused = [
        post(keyed, "/v1/batch", batch(1), key=None),
        post(keyed, "/v1/batch", batch(2), key="wk_guess"),
        post(keyed, "/v1/batch", batch(3, writeKey="wk_guess"), key=None),
        post(keyed, "/v1/batch", batch(4), key=None, headers={"authorization": f"Bearer {KEY}"}),
        post(keyed, "/v1/batch", batch(5), key=KEY[:-1]),
        post(keyed, "/v1/batch", b"{not json", key=None),  # refused, not dead-lettered
    ]
    for answer in refused:
        assert answer.status == 401, answer.body
        assert answer.json()["code"] == "unauthorized"
        assert answer.headers["www-authenticate"] == 'Basic realm="segment"'
        assert answer.headers["access-control-allow-origin"] == "*"
        assert KEY not in answer.body.decode()
    assert [a.json()["message"].split(":")[0] for a in refused] == [
        "missing write key",
        "unknown write key",
        "unknown write key",
        "missing write key",
        "unknown write key",
        "missing write key",
    ]
    accepted = [
        post(keyed, "/v1/batch", batch(6)),
        post(keyed, "/v1/batch", batch(7), key=OTHER_KEY),
        post(keyed, "/v1/batch", batch(8, writeKey=KEY), key=None),
        post(keyed, "/v1/batch", batch(9, writeKey="wk_guess"), key=KEY),  # Basic first
    ]
    assert [a.status for a in accepted] == [200, 200, 200, 200]
    assert sorted(e.event_id for e in events_of(keyed, m)) == [f"{n}-{m}" for n in (6, 7, 8, 9)]
    assert letters_of(keyed, m) == []
    refused_after = metric(
        keyed, "tracker_collector_events_total", endpoint="segment", outcome="unauthorized"
    )
    assert refused_after - refused_before == 6


def test_without_write_keys_any_key_is_accepted(settings: Settings) -> None:
    for running in collector(configured(settings)):
        m = mark()
        for n, key in enumerate((None, "anything", "")):
            message = {"type": "page", "anonymousId": f"d-{m}", "messageId": f"{n}-{m}"}
            answer = post(running, "/v1/batch", {"batch": [message]}, key=key)
            assert answer.status == 200, answer.body
        assert len(events_of(running, m)) == 3


def test_segment_s_size_limits(keyed: Running) -> None:
    m = mark()
    good = {"type": "page", "anonymousId": f"d-{m}", "messageId": f"good-{m}"}
    big = {"type": "page", "anonymousId": f"d-{m}", "messageId": f"big-{m}", "x": "y" * 33_000}

    answer = post(keyed, "/v1/batch", {"batch": [big, good]})
    assert answer.status == 200, answer.body
    (error,) = answer.json()["errors"]
    assert error["index"] == 0
    assert error["reasons"]["message"].endswith("larger than 32768 bytes")
    assert [e.event_id for e in events_of(keyed, m)] == [f"good-{m}"]
    (letter,) = letters_of(keyed, f"big-{m}")
    assert letter["reasons"] == error["reasons"]
    assert "truncated" not in letter

    # A batch over 500 KB (inflated) is refused whole, as Segment does: 400, kept.
    many = [good | {"messageId": f"many-{i}-{m}", "x": "y" * 1000} for i in range(520)]
    answer = post(keyed, "/v1/batch", {"writeKey": KEY, "batch": many}, compress=True)
    assert answer.status == 400
    assert answer.json()["code"] == "invalid_request"
    assert answer.json()["message"].startswith("Exceeded payload size:")
    assert not any(e.event_id.startswith("many-") for e in events_of(keyed, m))
    (letter,) = letters_of(keyed, f"many-0-{m}")
    assert letter["reasons"] == {"body": answer.json()["message"]}
    assert letter["truncated"] is True
    assert KEY not in letter["raw"]

    # One call over 32 KB: 400, its letter the message made whole (its type the path's).
    answer = post(keyed, "/v1/track", {"event": "Signed Up", "userId": f"u-{m}", "x": "y" * 33_000})
    assert answer.status == 400
    assert answer.json()["message"].startswith("Exceeded payload size:")
    (letter,) = letters_of(keyed, f"u-{m}")
    assert orjson.loads(letter["raw"])["type"] == "track"

    # Past the collector's own body limit (1 MiB inflated), the body is not even read.
    answer = post(keyed, "/v1/batch", b" " * 1_100_000, compress=True)
    assert answer.status == 413
    assert answer.json()["code"] == "invalid_request"


def test_bad_bodies_answer_400_and_are_kept(keyed: Running) -> None:
    m = mark()
    cases = [
        (b'{"batch": [' + m.encode(), "invalid JSON"),
        (orjson.dumps([{"type": "page", "anonymousId": m}]), "the body must be a JSON object"),
        (orjson.dumps({"batch": {"type": "page", "anonymousId": m}}), "batch: must be a JSON"),
    ]
    for body, reason in cases:
        answer = post(keyed, "/v1/batch", body)
        assert answer.status == 400, answer.body
        assert answer.json()["message"].startswith(reason)
    # Letters land on the topic's partitions in no set order: matched by their body.
    kept = {letter["raw"].encode(): letter["reasons"]["body"] for letter in letters_of(keyed, m)}
    assert sorted(kept) == sorted(body for body, _ in cases)
    assert all(kept[body].startswith(reason) for body, reason in cases)
    assert post(keyed, "/v1/batch", {"batch": []}).json() == {
        "success": True,
        "accepted": 0,
        "rejected": 0,
        "uncounted": 0,
    }


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "OPTIONS"])
def test_only_post_is_served(keyed: Running, method: str) -> None:
    for path in ("/v1/batch", "/v1/track", "/v1/p"):
        answer = keyed.call(method, path, headers={"authorization": basic(KEY)})
        assert answer.status == 405
        assert answer.headers["allow"] == "POST"


# The SDKs sites run


def client(sdk: str, running: Running) -> contextlib.AbstractContextManager[Any]:
    """An SDK client sending to ``running`` (see :func:`tests.sdks.segment_client`)."""
    return segment_client(sdk, f"http://127.0.0.1:{running.settings.collector_port}", KEY)


@pytest.mark.parametrize("sdk", sorted(SEGMENT_SDKS))
def test_sdk_campaign_page_view_then_order(keyed: Running, sdk: str) -> None:
    m = mark()
    url = f"https://shop.example/land?utm_campaign=summer&utm_source=meta&utm_medium=paid_social&fbclid=F-{m}"
    with client(sdk, keyed) as sdk_client:
        sdk_client.page(anonymous_id=f"d-{m}", name="Landing", properties={"url": url})
        sdk_client.track(
            anonymous_id=f"d-{m}",
            event="Order Completed",
            properties={"order_id": f"O-{m}", "revenue": 59.97, "currency": "EUR"},
        )
    page, order = sorted(events_of(keyed, m), key=lambda e: e.type, reverse=True)
    assert (page.type, page.campaign, page.source, page.medium, page.channel) == (
        "pageview",
        "summer",
        "meta",
        "paid_social",
        "social",
    )
    assert (page.click_id, page.url, page.anonymous_id, page.user_agent) == (
        f"F-{m}",
        url,
        f"d-{m}",
        None,  # the SDK's own agent is no visitor's
    )
    assert (order.type, order.goal, order.value, order.currency, order.order_id) == (
        "conversion",
        "purchase",
        59_970_000,
        "EUR",
        f"O-{m}",
    )
    assert order.anonymous_id == f"d-{m}"


@pytest.mark.parametrize("sdk", sorted(SEGMENT_SDKS))
def test_sdk_identify_then_order_by_user(keyed: Running, sdk: str) -> None:
    m = mark()
    with client(sdk, keyed) as sdk_client:
        sdk_client.identify(user_id=f"u-{m}", anonymous_id=f"d-{m}", traits={"plan": "pro"})
        sdk_client.track(
            user_id=f"u-{m}",
            event="Order Completed",
            properties={"order_id": f"O-{m}", "total": "20"},
        )
    identify, order = sorted(events_of(keyed, m), key=lambda e: e.type, reverse=True)
    assert (identify.type, identify.anonymous_id, identify.user_id) == (
        "identify",
        f"d-{m}",
        f"u-{m}",
    )
    assert (order.type, order.user_id, order.anonymous_id, order.value) == (
        "conversion",
        f"u-{m}",
        None,
        20_000_000,
    )


@pytest.mark.parametrize("sdk", sorted(SEGMENT_SDKS))
def test_sdk_order_refunded(keyed: Running, sdk: str) -> None:
    m = mark()
    with client(sdk, keyed) as sdk_client:
        sdk_client.track(
            user_id=f"u-{m}", event="Order Refunded", properties={"order_id": f"O-{m}", "total": 20}
        )
    (refund,) = events_of(keyed, m)
    assert (refund.type, refund.status, refund.order_id, refund.value) == (
        "conversion",
        "refund",
        f"O-{m}",
        None,
    )


@pytest.mark.parametrize("sdk", sorted(SEGMENT_SDKS))
def test_sdk_message_sent_twice_is_one_event_id(keyed: Running, sdk: str) -> None:
    m = mark()
    with client(sdk, keyed) as sdk_client:
        for _ in range(2):
            sdk_client.track(
                user_id=f"u-{m}",
                event="Signed Up",
                message_id=f"msg-{m}",
                properties={"value": 5},
            )
    twice = events_of(keyed, m)
    assert [e.event_id for e in twice] == [f"msg-{m}", f"msg-{m}"]  # the worker counts it once


@pytest.mark.parametrize("sdk", sorted(SEGMENT_SDKS))
def test_sdk_with_a_clock_hours_off_is_corrected(
    keyed: Running, sdk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's own clock, where it times its messages and its sentAt.
    skew_clock(monkeypatch, sdk, SKEW)
    m = mark()
    with client(sdk, keyed) as sdk_client:
        sdk_client.page(anonymous_id=f"d-{m}", name="Home")
    (event,) = events_of(keyed, m)
    assert abs(event.ts - event.received_at) < 5_000  # seconds at most between timing and sending
    assert event.device_ts is not None
    assert abs(event.device_ts - (event.received_at + SKEW / timedelta(milliseconds=1))) < 5_000
