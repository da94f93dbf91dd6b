"""Rate limits on a real collector and real Kafka: who is refused, how, and what is kept.

One collector for the module, its limits slow enough (one request per 125-250 s) that
nothing refills while a test runs. Each test sends from addresses of its own: Linux
routes all of 127.0.0.0/8 to the loopback interface, so a client socket bound to
127.0.0.N reaches the collector as a sender of its own.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
import pytest

from collector.pixel import GIF
from collector.postback import sign
from harness.isolation import isolated_settings
from tests.integration.test_collector_edge import REFUSED_MIDWAY, Answer, Running, collector
from tests.integration.test_segment import metric
from tracker.events import Event
from tracker.settings import Settings

pytestmark = pytest.mark.services

UA = "Mozilla/5.0 (X11; Linux x86_64) rate-limit-test"
SECRET = secrets.token_hex(16)  # made up per run: no secret lives in the repository
# Made up per run; each test spends a key of its own.
KEY, OTHER_KEY, THIRD_KEY = ("wk-" + secrets.token_hex(8) for _ in range(3))
PARTNERS = ("net1", "net2", "net3")
BURST_S = 1000.0
# Bursts of 5 (an address), 8 (a partner) and 4 (a write key); one more request each
# 200, 125 and 250 s later.
ADDRESS, PARTNER, WRITE_KEY = 0.005, 0.008, 0.004
ADDRESS_BURST, PARTNER_BURST, KEY_BURST = 5, 8, 4
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


@pytest.fixture(scope="module")
def limited(servers: tuple[str, str]) -> Iterator[Running]:
    settings: Settings = dataclasses.replace(
        isolated_settings(servers, "limits"),
        rate_limit=ADDRESS,
        postback_rate_limit=PARTNER,
        write_key_rate_limit=WRITE_KEY,
        rate_burst_s=BURST_S,
        redirect_allow="shop.example",
        postback_secrets=",".join(f"{partner}={SECRET}" for partner in PARTNERS),
        write_keys=f"{KEY},{OTHER_KEY},{THIRD_KEY}",
    )
    yield from collector(settings)


def call(
    running: Running,
    source: str,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request from the client address ``source`` (127.0.0.N)."""
    port = running.settings.collector_port
    connection = http.client.HTTPConnection("127.0.0.1", port, 30, source_address=(source, 0))
    try:
        with contextlib.suppress(*REFUSED_MIDWAY):
            connection.request(method, target, body, {"user-agent": UA, **(headers or {})})
        answer = connection.getresponse()
        return Answer(answer.status, dict(answer.getheaders()), answer.read())
    finally:
        connection.close()


def marked(running: Running, mark: str) -> list[Event]:
    """The events in Kafka whose id or campaign carries ``mark``."""
    return [e for e in running.events() if mark in f"{e.event_id} {e.campaign} {e.order_id}"]


def letters(running: Running, mark: str) -> list[dict[str, Any]]:
    return [letter for letter in running.dead_letters() if mark in str(letter["raw"])]


def limited_count(running: Running, endpoint: str) -> float:
    return metric(running, "tracker_collector_rate_limited_total", endpoint=endpoint)


def retry_after(answer: Answer, interval_s: float) -> int:
    """The answer's ``Retry-After``: whole seconds, at least 1, at most one interval."""
    seconds = int(answer.headers["retry-after"])
    assert 1 <= seconds <= interval_s
    # The burst was sent moments ago: the next request is due about one interval on.
    assert seconds > interval_s - 60
    return seconds


def query(**params: str) -> str:
    return urllib.parse.urlencode(params)


# What each limited endpoint is sent: a good request marked ``mark`` with number n,
# and a bad one that, were it admitted, would be dead-lettered.
Request = tuple[str, str, bytes | None, dict[str, str]]


def pixel(mark: str, n: int, good: bool) -> Request:
    return (
        "GET",
        "/p.gif?" + query(type="impression" if good else "nope", event_id=f"{mark}-{n}"),
        None,
        {},
    )


def batch(mark: str, n: int, good: bool) -> Request:
    event = {"type": "impression" if good else "nope", "event_id": f"{mark}-{n}"}
    return "POST", "/v1/events", orjson.dumps([event]), {"content-type": "application/json"}


def redirect(mark: str, n: int, good: bool) -> Request:
    to = "https://shop.example/land" if good else "https://elsewhere.example/"
    return "GET", "/r?" + query(to=to, utm_campaign=f"{mark}-{n}"), None, {}


def snowplow_get(mark: str, n: int, good: bool) -> Request:
    return "GET", "/i?" + query(e="pv" if good else "xx", eid=f"{mark}-{n}", p="web"), None, {}


def snowplow_post(mark: str, n: int, good: bool) -> Request:
    data = [{"e": "pv" if good else "xx", "eid": f"{mark}-{n}", "p": "web"}]
    body = orjson.dumps({"schema": PAYLOAD_DATA, "data": data})
    return "POST", TP2, body, {"content-type": "application/json"}


ENDPOINTS: dict[str, tuple[Callable[[str, int, bool], Request], int, str]] = {
    # endpoint: (request, status when admitted, type of the 429's body)
    "pixel": (pixel, 200, "image/gif"),
    "batch": (batch, 200, "application/json"),
    "redirect": (redirect, 302, "application/json"),
    "snowplow GET": (snowplow_get, 200, "image/gif"),
    "snowplow POST": (snowplow_post, 200, "application/json"),
}


@pytest.mark.parametrize(
    ("case", "source"), [(c, f"127.0.1.{i + 1}") for i, c in enumerate(ENDPOINTS)]
)
def test_past_its_burst_an_address_gets_429_and_nothing_is_kept(
    limited: Running, case: str, source: str
) -> None:
    make, status, kind = ENDPOINTS[case]
    endpoint = case.split()[0]
    mark = uuid.uuid4().hex[:12]
    before = limited_count(limited, endpoint)
    for n in range(ADDRESS_BURST):
        method, target, body, headers = make(mark, n, True)
        answer = call(limited, source, method, target, body, headers)
        assert answer.status == status, answer.body
    refused = []
    for n, good in ((ADDRESS_BURST, True), (ADDRESS_BURST + 1, False)):
        method, target, body, headers = make(mark, n, good)
        refused.append(call(limited, source, method, target, body, headers))
    for answer in refused:
        assert answer.status == 429, answer.body
        assert answer.headers["content-type"] == kind
        retry_after(answer, 1 / ADDRESS)
        if kind == "image/gif":  # a pixel in a page: no broken image
            assert answer.body == GIF
            assert "too many requests" in answer.headers["x-tracker-error"]
        else:
            assert "too many requests from this address" in answer.json()["error"]

    # Another address, the same moment: its own budget.
    method, target, body, headers = make(mark, 99, True)
    other = source.replace("127.0.1.", "127.0.2.")
    assert call(limited, other, method, target, body, headers).status == status

    # A click's id is minted by the redirect: its campaign carries the mark there.
    kept = sorted(
        e.event_id if endpoint != "redirect" else e.campaign or "" for e in marked(limited, mark)
    )
    assert kept == sorted(f"{mark}-{n}" for n in [*range(ADDRESS_BURST), 99])
    assert letters(limited, mark) == []  # the refused bad request was not dead-lettered
    assert limited_count(limited, endpoint) == before + 2


def test_health_metrics_snippet_and_description_are_never_limited(limited: Running) -> None:
    source = "127.0.3.1"
    for n in range(ADDRESS_BURST + 1):
        last = call(limited, source, *pixel("health", n, True)[:2])
    assert last.status == 429  # this address is spent
    for path in ("/healthz", "/readyz", "/metrics", "/t.js", "/openapi.yaml"):
        for _ in range(3 * ADDRESS_BURST):
            answer = call(limited, source, "GET", path)
            assert answer.status == 200, (path, answer.body)
    preflight = {"origin": "https://shop.example", "access-control-request-method": "POST"}
    for _ in range(3 * ADDRESS_BURST):
        assert call(limited, source, "OPTIONS", TP2, headers=preflight).status == 200


def postback(mark: str, n: int, partner: str, secret: str = SECRET) -> str:
    params = {
        "partner": partner,
        "ts": str(int(time.time())),
        "txid": f"{mark}-{n}",
        "payout": "12.50",
        "status": "approved",
    }
    return "/v1/postback?" + query(**params, sig=sign(params, secret))


def test_a_verified_partner_has_a_limit_of_its_own(limited: Running) -> None:
    source, mark = "127.0.4.1", uuid.uuid4().hex[:12]
    before = limited_count(limited, "postback")
    # More than the address's burst: a partner's postbacks are not charged to it.
    for n in range(PARTNER_BURST):
        answer = call(limited, source, "GET", postback(mark, n, "net1"))
        assert answer.status == 200, answer.body
    refused = call(limited, source, "GET", postback(mark, PARTNER_BURST, "net1"))
    assert refused.status == 429, refused.body
    assert refused.json()["error"].startswith("too many requests from partner 'net1'")
    retry_after(refused, 1 / PARTNER)
    # Another partner, from the same address: its own budget; and the address's is whole.
    assert call(limited, source, "GET", postback(mark, 100, "net2")).status == 200
    for n in range(ADDRESS_BURST):
        assert call(limited, source, *pixel(mark, n, True)[:2]).status == 200

    orders = sorted(e.order_id or "" for e in marked(limited, mark) if e.type == "conversion")
    assert orders == sorted(f"{mark}-{n}" for n in [*range(PARTNER_BURST), 100])
    assert limited_count(limited, "postback") == before + 1


def test_postbacks_failing_verification_are_charged_to_their_address(limited: Running) -> None:
    source, mark = "127.0.4.2", uuid.uuid4().hex[:12]
    wrong = secrets.token_hex(16)
    for n in range(ADDRESS_BURST):
        assert call(limited, source, "GET", postback(mark, n, "net3", wrong)).status == 401
    refused = call(limited, source, "GET", postback(mark, 9, "net3", wrong))
    assert refused.status == 429
    assert "from this address" in refused.json()["error"]
    # The partner named in them is not hurt: its own signed postbacks still pass.
    assert call(limited, source, "GET", postback(mark, 10, "net3")).status == 200
    assert [e.order_id for e in marked(limited, mark)] == [f"{mark}-10"]


def segment(
    mark: str, n: int, key: str | None, in_body: bool = False
) -> tuple[bytes, dict[str, str]]:
    message: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"{mark}-{n}",
        "anonymousId": f"dev-{mark}",
        "properties": {"order_id": f"{mark}-{n}", "revenue": 10, "currency": "USD"},
    }
    headers = {"content-type": "application/json"}
    if key is not None and in_body:
        message["writeKey"] = key
    elif key is not None:
        headers["authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return orjson.dumps(message), headers


def test_a_write_key_has_a_limit_of_its_own(limited: Running) -> None:
    source, mark = "127.0.5.1", uuid.uuid4().hex[:12]
    before = limited_count(limited, "segment")
    for n in range(KEY_BURST):
        answer = call(limited, source, "POST", "/v1/track", *segment(mark, n, KEY))
        assert answer.json() == {"success": True, "accepted": 1, "rejected": 0, "uncounted": 0}
    refused = call(limited, source, "POST", "/v1/track", *segment(mark, 50, KEY))
    assert refused.status == 429, refused.body
    assert refused.json()["code"] == "too_many_requests"  # Segment's form, which SDKs log
    assert "this write key" in refused.json()["message"]
    assert KEY not in refused.body.decode()  # a key is never echoed
    assert refused.headers["access-control-allow-origin"] == "*"
    retry_after(refused, 1 / WRITE_KEY)
    # The other key, from the same address, past the address's burst; its key in the
    # body (as analytics.js sends it) is charged to that key too.
    for n in range(KEY_BURST):
        answer = call(limited, source, "POST", "/v1/t", *segment(mark, 100 + n, OTHER_KEY, True))
        assert answer.status == 200, answer.body
    body_keyed = call(limited, source, "POST", "/v1/t", *segment(mark, 51, OTHER_KEY, True))
    assert body_keyed.status == 429, body_keyed.body

    kept = sorted(e.event_id for e in marked(limited, mark))
    assert kept == sorted(f"{mark}-{n}" for n in [*range(KEY_BURST), *range(100, 100 + KEY_BURST)])
    assert letters(limited, mark) == []
    assert limited_count(limited, "segment") == before + 2


def test_calls_with_an_unknown_write_key_are_charged_to_their_address(limited: Running) -> None:
    source, mark = "127.0.5.2", uuid.uuid4().hex[:12]
    for n in range(ADDRESS_BURST):
        answer = call(limited, source, "POST", "/v1/track", *segment(mark, n, "made-up"))
        assert answer.status == 401, answer.body
    refused = call(limited, source, "POST", "/v1/track", *segment(mark, 9, None))
    assert refused.status == 429
    assert "this address" in refused.json()["message"]
    # A configured key is not hurt: its calls are charged to it.
    ok = call(limited, source, "POST", "/v1/track", *segment(mark, 10, THIRD_KEY))
    assert ok.status == 200, ok.body
