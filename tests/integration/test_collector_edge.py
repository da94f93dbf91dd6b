"""The collector's edge on a real process and real Kafka: click redirects, signed
postbacks and hostile input. What landed in Kafka is read back and checked field by field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import http.client
import secrets
import socket
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from subprocess import Popen
from typing import Any

import msgspec
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.pixel import GIF
from collector.postback import sign
from harness.processes import tracker
from tests.kafka import records
from tracker.events import Event
from tracker.records import decode_dead_letter, decode_events
from tracker.settings import Settings

pytestmark = pytest.mark.services

UA = "Mozilla/5.0 (X11; Linux x86_64) edge-test"
SECRET = secrets.token_hex(16)  # made up per run: no secret lives in the repository
ALLOW = "shop.example,*.brand.example,pay.example:8443"
REFUSED_MIDWAY = (BrokenPipeError, ConnectionResetError)
"""What sending gets when the collector answers (413, 431) and closes before reading a
whole oversized request: the answer is in the socket all the same, still to be read."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Running:
    settings: Settings
    process: Popen[bytes]

    def call(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.settings.collector_port, 30)
        try:
            with contextlib.suppress(*REFUSED_MIDWAY):
                connection.request(method, target, body, {"user-agent": UA, **(headers or {})})
            answer = connection.getresponse()
            return Answer(answer.status, dict(answer.getheaders()), answer.read())
        finally:
            connection.close()

    def raw(self, request: bytes) -> int:
        """Send bytes as they are; the status of the answer (0 when the server hung up)."""
        with socket.create_connection(("127.0.0.1", self.settings.collector_port), 30) as sock:
            with contextlib.suppress(*REFUSED_MIDWAY):
                sock.sendall(request)
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    return 0
                head += chunk
        return int(head.split(b" ", 2)[1])

    def events(self) -> list[Event]:
        found = records(self.settings.kafka_bootstrap, self.settings.events_topic)
        return [event for _, _, value in found for event in decode_events(value)]

    def dead_letters(self) -> list[dict[str, Any]]:
        found = records(self.settings.kafka_bootstrap, self.settings.dead_letter_topic)
        return [decode_dead_letter(value) for _, _, value in found]


def collector(settings: Settings) -> Iterator[Running]:
    url = f"http://127.0.0.1:{settings.collector_port}/healthz"
    with tracker("collector", settings, url) as process:
        yield Running(settings, process)


@pytest.fixture
def edge(settings: Settings) -> Iterator[Running]:
    """A collector with redirect hosts, a postback partner and a EUR rate configured."""
    configured = dataclasses.replace(
        settings,
        redirect_allow=ALLOW,
        postback_secrets=f"net1={SECRET}",
        currency_rates="EUR=1.08",
    )
    yield from collector(configured)


@pytest.fixture
def plain(settings: Settings) -> Iterator[Running]:
    """A collector with the default settings: no redirect host, no postback partner."""
    yield from collector(settings)


def query(**params: str) -> str:
    return urllib.parse.urlencode(params)


# Click redirect


def test_redirect_records_the_click_then_answers_302_with_its_id(edge: Running) -> None:
    to = "https://shop.example/land?a=1&b=x%20y#top"
    link = query(
        to=to,
        utm_campaign="spring",
        utm_source="google",
        utm_medium="cpc",
        utm_term="red shoes",
        gclid="G-1",
        cost="0.35",
    )
    answer = edge.call("GET", f"/r?{link}", headers={"referer": "https://news.example/a"})
    assert answer.status == 302, answer.body
    assert answer.headers["cache-control"].startswith("no-cache, no-store")
    visitor = answer.headers["set-cookie"].split(";")[0].removeprefix("tid=")
    location = urllib.parse.urlsplit(answer.headers["location"])
    passed = urllib.parse.parse_qs(location.query)
    click_id = passed["click_id"][0]
    assert location._replace(query="").geturl() == "https://shop.example/land#top"
    assert location.query == (
        "a=1&b=x%20y&utm_campaign=spring&utm_source=google&utm_medium=cpc"
        f"&utm_term=red+shoes&gclid=G-1&click_id={click_id}"
    )

    # The 302 promised the click is in Kafka already: no waiting.
    (event,) = edge.events()
    assert event == Event(
        event_id=event.event_id,
        type="click",
        ts=event.received_at,
        received_at=event.received_at,
        channel="search",
        campaign="spring",
        source="google",
        medium="cpc",
        click_id=click_id,
        anonymous_id=visitor,
        cost=350_000,
        currency="USD",
        url=to,
        referrer="https://news.example/a",
        user_agent=UA,
        ip="127.0.0.0",
    )
    assert event.event_id != click_id
    assert abs(event.received_at - time.time() * 1000) < 60_000

    again = edge.call(
        "GET", f"/r?{query(to='https://a.brand.example')}", headers={"cookie": f"tid={visitor}"}
    )
    assert again.status == 302
    assert "set-cookie" not in again.headers  # a known visitor keeps their id
    second = urllib.parse.parse_qs(urllib.parse.urlsplit(again.headers["location"]).query)
    assert second["click_id"][0] != click_id
    clicks = edge.events()
    assert [e.click_id for e in clicks] == [click_id, second["click_id"][0]]
    assert clicks[1].anonymous_id == visitor
    assert clicks[1].channel == "direct"


TRICKS = [
    "https://evil.example/",
    "//evil.example/",
    "https:evil.example",
    "https:/evil.example",
    "https://shop.example@evil.example/",
    "https://shop.example%2F@evil.example/",
    "https://shop.example\\@evil.example/",
    "https:\\\\evil.example",
    "https://shop.example\t.evil.example/",
    "https://shop.example\r\nSet-Cookie: x=1",
    " https://shop.example/",
    "https://shop%2Eexample/",
    "https://shöp.example/",
    "https://xn--shp-sna.example/",
    "https://shop.example.evil.example/",
    "https://brand.example/",
    "https://shop.example:8443/",
    "https://pay.example/",
    "javascript:alert(1)//https://shop.example/",
    "data:text/html;base64,PHNjcmlwdD4=",
    "ftp://shop.example/",
    "",
]


def test_redirect_refuses_every_open_redirect_trick(edge: Running) -> None:
    for to in TRICKS:
        answer = edge.call("GET", f"/r?{query(to=to, utm_campaign='c')}")
        assert answer.status == 400, to
        assert "location" not in answer.headers
        assert set(answer.json()["reasons"]) == {"to"}, to
    answer = edge.call("GET", "/r?utm_campaign=c")  # no to at all
    assert answer.status == 400
    assert answer.json()["reasons"] == {"to": "is required: the URL to send the visitor to"}

    assert edge.events() == []
    letters = edge.dead_letters()
    assert len(letters) == len(TRICKS) + 1
    assert {letter["endpoint"] for letter in letters} == {"redirect"}
    # Letters spread over the topic's partitions: find the first by its raw query.
    (first,) = [x for x in letters if x["raw"] == query(to=TRICKS[0], utm_campaign="c")]
    assert first["reasons"] == {
        "to": "evil.example is not an allowed destination (see TRACKER_REDIRECT_ALLOW)"
    }
    assert first["context"]["user_agent"] == UA
    assert edge.call("GET", "/healthz").status == 200


# Identity through the pixel: the visitor cookie is the device, the query names the user


def test_the_pixel_signs_its_visitor_in_and_out(plain: Running) -> None:
    signed_in = plain.call(
        "GET", f"/p.gif?{query(type='identify', user_id='u-42')}", headers={"cookie": "tid=v-1"}
    )
    assert signed_in.status == 200, signed_in.headers
    assert signed_in.body == GIF
    assert "set-cookie" not in signed_in.headers  # a known visitor keeps their id
    # No cookie yet: the id minted for the visitor is the one signed in.
    first_visit = plain.call("GET", f"/p.gif?{query(type='identify', user_id='u-7')}")
    assert first_visit.status == 200, first_visit.headers
    minted = first_visit.headers["set-cookie"].split(";")[0].removeprefix("tid=")
    signed_out = plain.call("GET", "/p.gif?type=reset", headers={"cookie": "tid=v-1"})
    assert signed_out.status == 200, signed_out.headers

    # The answers waited for Kafka: the events are there, with the cookie as device.
    landed = {event.user_id: event for event in plain.events()}
    assert set(landed) == {"u-42", "u-7", None}
    identify, reset = landed["u-42"], landed[None]
    assert identify == Event(
        event_id=identify.event_id,
        type="identify",
        ts=identify.received_at,
        received_at=identify.received_at,
        channel="direct",
        user_id="u-42",
        anonymous_id="v-1",
        currency="USD",
        user_agent=UA,
        ip="127.0.0.0",
    )
    assert (landed["u-7"].type, landed["u-7"].anonymous_id) == ("identify", minted)
    assert (reset.type, reset.anonymous_id, reset.user_id) == ("reset", "v-1", None)
    assert plain.dead_letters() == []


def test_the_pixel_refuses_an_identify_without_two_different_ids(plain: Running) -> None:
    cases = {
        "/p.gif?type=identify": {"user_id": "identify needs a user_id"},
        f"/p.gif?{query(type='identify', user_id='v-1')}": {
            "user_id": "must differ from anonymous_id"
        },
        f"/p.gif?{query(type='identify', user_id='u' * 257)}": {
            "user_id": "longer than 256 characters"
        },
    }
    for target, reasons in cases.items():
        answer = plain.call("GET", target, headers={"cookie": "tid=v-1"})
        assert answer.status == 400, target
        assert answer.body == GIF
        expected = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
        assert answer.headers["x-tracker-error"] == expected
    # A request header never names the user: the user agent and referrer stay context.
    headers = {"cookie": "tid=v-1", "user-agent": "u-9", "referer": "https://u-9.example/"}
    assert plain.call("GET", "/p.gif?type=identify", headers=headers).status == 400

    assert plain.events() == []
    letters = plain.dead_letters()
    assert len(letters) == len(cases) + 1
    assert {letter["endpoint"] for letter in letters} == {"pixel"}
    by_raw = {letter["raw"]: letter["reasons"] for letter in letters}
    for target, reasons in cases.items():
        assert by_raw[target.removeprefix("/p.gif?")] == reasons


# Signed postbacks


def test_head_answers_as_get_would_and_records_nothing(edge: Running) -> None:
    """Link checkers and previews send HEAD; a hit is only a GET."""
    pixel = f"/p.gif?{query(type='impression', utm_campaign='head-only')}"
    click = f"/r?{query(to='https://shop.example/', utm_campaign='head-only')}"
    bad = f"/p.gif?{query(type='click', utm_campaign='head-only', cost='-1')}"
    postback = f"/v1/postback?{query(**signed(subid='head-only', payout='2', txid='h-1'))}"
    bad_postback = f"/v1/postback?{query(**signed(subid='head-only', payout='-2'))}"
    for target, status in (
        (pixel, 200),
        (click, 302),
        (bad, 400),
        (postback, 200),
        (bad_postback, 400),
    ):
        answer = edge.call("HEAD", target)
        assert answer.status == status, target
        assert answer.body == b""
    assert edge.call("HEAD", click).headers["location"].startswith("https://shop.example/")
    assert edge.call("GET", pixel).status == 200
    # Each answer waited for Kafka's acknowledgement of whatever it recorded.
    events = edge.events()
    assert [event.campaign for event in events].count("head-only") == 1
    assert not [event for event in events if event.click_id == "head-only"]
    assert not [letter for letter in edge.dead_letters() if b"head-only" in orjson.dumps(letter)]


def signed(**params: str) -> dict[str, str]:
    params = {"partner": "net1", "ts": str(int(time.time())), **params}
    return params | {"sig": sign(params, SECRET)}


def test_signed_postbacks_land_as_conversions(edge: Running) -> None:
    get = signed(subid="k-1", payout="12.50", txid="T-1", status="1", currency="EUR")
    answer = edge.call("GET", f"/v1/postback?{query(**get)}")
    assert answer.status == 200, answer.body
    assert answer.json() == {"status": "accepted", "event_id": "pb-" + get["sig"][:32]}
    # The network retries the same URL: the same event id, counted once downstream.
    assert edge.call("GET", f"/v1/postback?{query(**get)}").json() == answer.json()

    form = signed(cid="k-2", payout="3", txid="T-2", status="chargeback", goal="lead")
    answer = edge.call(
        "POST",
        "/v1/postback",
        query(**form).encode(),
        {"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 200, answer.body

    body: dict[str, Any] = {"partner": "net1", "ts": int(time.time()), "subid": "k-3"}
    body |= {"payout": "0.99", "txid": "T-3", "status": "pending", "campaign": "spring"}
    body["sig"] = sign({k: str(v) for k, v in body.items()}, SECRET)
    answer = edge.call(
        "POST", "/v1/postback", orjson.dumps(body), {"content-type": "application/json"}
    )
    assert answer.status == 200, answer.body

    landed = edge.events()  # partitioned by click id: order only within a partition
    by_order = {e.order_id: [x for x in landed if x.order_id == e.order_id] for e in landed}
    assert set(by_order) == {"T-1", "T-2", "T-3"}
    (first, retried), (second,), (third,) = by_order["T-1"], by_order["T-2"], by_order["T-3"]
    assert retried == msgspec.structs.replace(first, received_at=retried.received_at, ts=retried.ts)
    assert first == Event(
        event_id="pb-" + get["sig"][:32],
        type="conversion",
        ts=first.received_at,
        received_at=first.received_at,
        channel="affiliate",
        source="net1",
        medium="affiliate",
        click_id="k-1",
        value=12_500_000,
        currency="EUR",
        goal="purchase",
        status="approved",
        order_id="T-1",
    )
    assert (second.click_id, second.value, second.order_id, second.status, second.goal) == (
        "k-2",
        3_000_000,
        "T-2",
        "refund",
        "lead",
    )
    assert (third.click_id, third.value, third.status, third.campaign, third.currency) == (
        "k-3",
        990_000,
        "pending",
        "spring",
        "USD",
    )
    # The partner's server is not the customer: no agent, IP, visitor or bot flag.
    assert {(e.user_agent, e.ip, e.anonymous_id, e.bot) for e in edge.events()} == {
        (None, None, None, False)
    }


def test_postbacks_without_a_valid_signature_answer_401(edge: Running) -> None:
    good = signed(subid="k", payout="1", txid="T")
    cases = {
        "signature mismatch": good | {"payout": "1000"},
        "missing sig parameter": {k: v for k, v in good.items() if k != "sig"},
        "unknown partner 'net9'": good | {"partner": "net9"},
        "away from the collector's clock": signed(subid="k", ts=str(int(time.time()) - 3600)),
        "malformed ts": signed(subid="k", ts="yesterday"),
    }
    for reason, params in cases.items():
        answer = edge.call("GET", f"/v1/postback?{query(**params)}")
        assert answer.status == 401, reason
        assert reason in answer.json()["error"]
        assert answer.headers["www-authenticate"].startswith("HMAC-SHA256")

    twice = edge.call("GET", f"/v1/postback?{query(**good)}&subid=other")
    assert (twice.status, twice.json()) == (400, {"error": "parameter 'subid' is given twice"})
    wrong_type = edge.call("POST", "/v1/postback", b"<xml/>", {"content-type": "text/xml"})
    assert wrong_type.status == 415
    not_object = edge.call("POST", "/v1/postback", b"[1]", {"content-type": "application/json"})
    assert not_object.status == 400
    nested = orjson.dumps(good | {"payout": {"amount": 1}})
    answer = edge.call("POST", "/v1/postback", nested, {"content-type": "application/json"})
    assert answer.status == 400

    assert edge.events() == []
    assert edge.dead_letters() == []  # unauthenticated input cannot fill the topic
    metrics = edge.call("GET", "/metrics").body.decode()
    assert (
        'tracker_collector_events_total{endpoint="postback",outcome="unauthorized"} 5.0' in metrics
    )


def test_signed_postbacks_with_bad_fields_answer_400_and_are_dead_lettered(
    edge: Running,
) -> None:
    params = signed(subid="k", payout="-5", txid="T", status="maybe", currency="JPY")
    answer = edge.call("GET", f"/v1/postback?{query(**params)}")
    assert answer.status == 400
    assert answer.json()["reasons"] == {
        "status": "unknown status 'maybe'; use approved, pending, rejected or refund"
    }
    params = signed(subid="k", payout="-5", txid="T", currency="JPY")
    answer = edge.call("GET", f"/v1/postback?{query(**params)}")
    assert answer.json()["reasons"] == {
        "currency": "no rate configured for 'JPY'",
        "value": "must not be negative",
    }
    assert edge.events() == []
    letters = edge.dead_letters()
    assert [letter["endpoint"] for letter in letters] == ["postback", "postback"]
    (second,) = [letter for letter in letters if orjson.loads(letter["raw"]) == params]
    assert second["reasons"] == answer.json()["reasons"]


# Hostile input: 4xx, never a crash, and the collector still serves afterwards


def deep(depth: int) -> bytes:
    return b'{"type": "click", "campaign": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


def test_hostile_requests_answer_4xx_and_leave_the_collector_serving(plain: Running) -> None:
    statuses: dict[str, int] = {}
    answers: dict[str, Answer] = {}

    def hit(name: str, answer: Answer | int) -> None:
        if isinstance(answer, int):
            statuses[name] = answer
        else:
            statuses[name], answers[name] = answer.status, answer

    pixel = "/p.gif?type=pageview"
    hit("100 kB user agent", plain.call("GET", pixel, headers={"user-agent": "A" * 100_000}))
    many = {f"x-h{i}": "v" * 100 for i in range(400)}
    hit("400 headers", plain.call("GET", pixel, headers=many))
    cookie = b"GET /p.gif?type=pageview HTTP/1.1\r\nHost: x\r\nCookie: tid=" + b"a" * 1_000_000
    hit("1 MB cookie", plain.raw(cookie + b"\r\n\r\n"))
    hit("30 kB URL", plain.call("GET", f"{pixel}&campaign=" + "c" * 30_000))
    hit("30 kB path", plain.call("GET", "/" + "p" * 30_000))
    hit("1 MB URL", plain.call("GET", f"{pixel}&campaign=" + "c" * 1_000_000))

    hit("bad UTF-8 escape in pixel query", plain.call("GET", "/p.gif?type=click&campaign=%FF"))
    raw_query = b"GET /p.gif?type=click&campaign=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"
    hit("raw bad UTF-8 in pixel query", plain.raw(raw_query))
    hit("bad UTF-8 in redirect query", plain.call("GET", "/r?to=https%3A%2F%2Fx%FF"))
    hit("bad UTF-8 in batch body", plain.call("POST", "/v1/events", b'[{"type": "\xff"}]'))
    form = {"content-type": "application/x-www-form-urlencoded"}
    hit("bad UTF-8 in postback body", plain.call("POST", "/v1/postback", b"a=%FF", form))
    hit("JSON bomb: deep array", plain.call("POST", "/v1/events", b"[" * 200_000))
    hit("JSON bomb: deep object", plain.call("POST", "/v1/events", b'{"a":' * 100_000))
    hit("JSON bomb: 2000 levels", plain.call("POST", "/v1/events", deep(2000)))
    hit("item nested 300 deep", plain.call("POST", "/v1/events", deep(300)))
    hit("negative cost in pixel", plain.call("GET", "/p.gif?type=click&cost=-0.01"))
    negative = b'[{"type": "conversion", "value": "-1"}]'
    hit("negative value in batch", plain.call("POST", "/v1/events", negative))
    big_item = {"type": "pageview", "campaign": "c", "referrer": "r" * 40_000}
    two = orjson.dumps([{"type": "pageview"}, big_item])
    hit("oversized event", plain.call("POST", "/v1/events", two))
    too_many = orjson.dumps([{"type": "click"}] * 1001)
    hit("too many events", plain.call("POST", "/v1/events", too_many))
    body = b"[" + b" " * plain.settings.max_body_bytes + b"]"
    hit("too large body", plain.call("POST", "/v1/events", body))
    chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
    chunked = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    hit("too large chunked body", plain.raw(chunked + chunk * 20 + b"0\r\n\r\n"))
    hit("redirect with no allow-list", plain.call("GET", f"/r?{query(to='https://x.example/')}"))
    hit("postback with no secrets", plain.call("GET", "/v1/postback?partner=a&sig=b&ts=1"))

    assert statuses == {
        "100 kB user agent": 431,
        "400 headers": 431,
        "1 MB cookie": 431,
        "30 kB URL": 414,
        "30 kB path": 414,
        "1 MB URL": 431,  # past the server's request-head buffer: refused before us
        "bad UTF-8 escape in pixel query": 400,
        "raw bad UTF-8 in pixel query": 400,  # refused by the server's parser itself
        "bad UTF-8 in redirect query": 400,
        "bad UTF-8 in batch body": 400,
        "bad UTF-8 in postback body": 401,  # no secrets: refused before the body is read
        "JSON bomb: deep array": 400,
        "JSON bomb: deep object": 400,
        "JSON bomb: 2000 levels": 400,
        "item nested 300 deep": 200,
        "negative cost in pixel": 400,
        "negative value in batch": 200,
        "oversized event": 200,
        "too many events": 413,
        "too large body": 413,
        "too large chunked body": 413,
        "redirect with no allow-list": 400,
        "postback with no secrets": 401,
    }
    assert answers["item nested 300 deep"].json()["results"][0]["reasons"] == {
        "campaign": "must be a string"
    }
    assert answers["negative value in batch"].json()["results"][0]["reasons"] == {
        "value": "must not be negative"
    }
    assert answers["negative cost in pixel"].headers["x-tracker-error"] == (
        "cost: must not be negative"
    )
    oversized = answers["oversized event"].json()
    assert oversized["accepted"] == 1
    assert oversized["results"][1]["reasons"] == {"event": "larger than 32768 bytes"}
    assert "TRACKER_REDIRECT_ALLOW" in answers["redirect with no allow-list"].json()["error"]
    assert "TRACKER_POSTBACK_SECRETS" in answers["postback with no secrets"].json()["error"]

    # Still alive and well: health, readiness and a normal pixel, exactly as sent.
    assert plain.process.poll() is None
    assert plain.call("GET", "/healthz").status == 200
    assert plain.call("GET", "/readyz").status == 200
    after = query(type="impression", utm_campaign="after", cost="0.01")
    answer = plain.call("GET", f"/p.gif?{after}")
    assert (answer.status, answer.body) == (200, GIF)
    landed = {e.type: e for e in plain.events()}  # the oversized batch's pageview, this
    assert sorted(landed) == ["impression", "pageview"]
    impression = landed["impression"]
    assert impression == Event(
        event_id=impression.event_id,
        type="impression",
        ts=impression.received_at,
        received_at=impression.received_at,
        channel="direct",
        campaign="after",
        anonymous_id=impression.anonymous_id,
        cost=10_000,
        user_agent=UA,
        ip="127.0.0.0",
    )
    assert impression.anonymous_id == answer.headers["set-cookie"].split(";")[0][4:]
    letters = plain.dead_letters()
    reasons = [letter["reasons"] for letter in letters]
    # Raw non-ASCII bytes in a request line never reach us: the server's parser refuses them.
    assert reasons.count({"query": "is not valid UTF-8"}) == 2  # the escapes: pixel, redirect
    assert {"event": "larger than 32768 bytes"} in reasons
    assert all(len(orjson.dumps(letter)) < 100_000 for letter in letters)


def test_a_full_batch_of_large_events_is_not_refused_by_kafka(plain: Running) -> None:
    """1000 events in just under 1 MiB: more than Kafka takes in one record, so split."""
    item = {"type": "pageview", "user_id": "u1", "url": "https://shop.example/" + "a" * 900}
    body = orjson.dumps([item] * 1000)
    assert len(body) < plain.settings.max_body_bytes
    answer = plain.call("POST", "/v1/events", body)
    assert (answer.status, answer.json()["accepted"]) == (200, 1000)
    assert len(plain.events()) == 1000
    assert plain.call("GET", "/readyz").status == 200
    # Answered means acknowledged: nothing is left buffered, and the flushes the
    # metrics saw carried the 1000 events (one visitor: one partition, at least two
    # records), each acknowledged after some time.
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(plain.call("GET", "/metrics").body.decode())
        for sample in family.samples
        if "le" not in sample.labels
    }
    assert samples["tracker_collector_buffered_events"] == 0
    assert samples["tracker_collector_kafka_flush_events_sum"] == 1000
    flushes = samples["tracker_collector_kafka_flush_events_count"]
    assert flushes >= 1
    assert samples["tracker_collector_kafka_flush_seconds_count"] == flushes
    assert samples["tracker_collector_kafka_flush_seconds_sum"] > 0


def test_gzip_batches_are_inflated_within_the_size_limit(plain: Running) -> None:
    items = [{"type": "pageview", "user_id": f"u{i}", "campaign": "zip"} for i in range(50)]
    answer = plain.call(
        "POST", "/v1/events", gzip.compress(orjson.dumps(items)), {"content-encoding": "gzip"}
    )
    assert (answer.status, answer.json()["accepted"]) == (200, 50)
    assert sorted(e.user_id or "" for e in plain.events()) == sorted(f"u{i}" for i in range(50))
    # A bomb: 64 KiB on the wire, 64 MiB inflated; refused before it fills memory.
    bomb = gzip.compress(b" " * (64 * 2**20))
    assert len(bomb) < plain.settings.max_body_bytes
    answer = plain.call("POST", "/v1/events", bomb, {"content-encoding": "gzip"})
    assert answer.status == 413
    assert plain.call("POST", "/v1/events", b"not gzip", {"content-encoding": "gzip"}).status == 400
    assert plain.call("POST", "/v1/events", b"[]", {"content-encoding": "br"}).status == 415


# Batch envelope: {"sent_at": T, "events": [...]}

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_an_envelope_corrects_each_event_time_by_sent_at(plain: Running) -> None:
    """A sender's clock 3 hours fast: its events land at our time, keeping its own."""
    fast = now_ms() + 3 * HOUR_MS
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    at_plus_2 = (epoch + timedelta(milliseconds=fast)).astimezone(timezone(timedelta(hours=2)))
    envelope = {
        "sent_at": at_plus_2.isoformat(timespec="milliseconds"),  # RFC 3339, as Segment's sentAt
        "events": [
            {"event_id": "ten-seconds-before", "type": "click", "ts": fast - 10_000},
            {"event_id": "no-ts", "type": "pageview"},
            {"event_id": "older-than-30-days", "type": "click", "ts": fast - 31 * DAY_MS},
        ],
    }
    # Pretty-printed, as a server's JSON library may write it: one object, many lines.
    answer = plain.call("POST", "/v1/events", orjson.dumps(envelope, option=orjson.OPT_INDENT_2))
    assert answer.status == 200, answer.body
    assert answer.json() == {
        "accepted": 2,
        "rejected": 1,
        "results": [
            {"index": 0, "status": "accepted", "event_id": "ten-seconds-before"},
            {"index": 1, "status": "accepted", "event_id": "no-ts"},
            {
                "index": 2,
                "status": "rejected",
                "reasons": {"ts": "corrected by sent_at, is older than the accepted horizon"},
            },
        ],
    }
    landed = {event.event_id: event for event in plain.events()}
    assert sorted(landed) == ["no-ts", "ten-seconds-before"]
    corrected, untimed = landed["ten-seconds-before"], landed["no-ts"]
    assert corrected.received_at == untimed.received_at  # one request, one receive time
    assert (corrected.ts, corrected.device_ts) == (corrected.received_at - 10_000, fast - 10_000)
    assert (untimed.ts, untimed.device_ts) == (untimed.received_at, None)
    # The rejected item's letter keeps sent_at and the receive time, for a replay.
    (letter,) = plain.dead_letters()
    assert orjson.loads(letter["raw"]) == envelope["events"][2]
    assert letter["reasons"] == {"ts": "corrected by sent_at, is older than the accepted horizon"}
    assert letter["received_at"] == corrected.received_at
    assert letter["context"]["sent_at"] == fast


def test_a_bad_envelope_answers_400_for_the_whole_batch(plain: Running) -> None:
    now = now_ms()
    events = [{"type": "click", "event_id": "never"}]
    bodies = {
        "sent_at not a time": {"sent_at": "yesterday", "events": events},
        "sent_at in epoch seconds": {"sent_at": now // 1000, "events": events},
        "sent_at 31 days ahead": {"sent_at": now + 31 * DAY_MS, "events": events},
        "events not a list": {"sent_at": now, "events": {"type": "click"}},
        "unknown keys": {"sent_at": now, "events": events, "batch": [], "write_key": "k"},
    }
    answers = {
        name: plain.call("POST", "/v1/events", orjson.dumps(body)) for name, body in bodies.items()
    }
    assert {name: a.status for name, a in answers.items()} == dict.fromkeys(bodies, 400)
    reasons = {name: a.json()["reasons"] for name, a in answers.items()}
    assert reasons["sent_at not a time"] == {
        "sent_at": "'yesterday' is neither epoch milliseconds nor RFC 3339"
    }
    for name in ("sent_at in epoch seconds", "sent_at 31 days ahead"):
        assert list(reasons[name]) == ["sent_at"], name
        assert reasons[name]["sent_at"].startswith("is more than 30 days from the time received")
    assert reasons["events not a list"] == {"events": "must be a JSON array of events"}
    assert reasons["unknown keys"] == {"batch": "unknown field", "write_key": "unknown field"}
    assert "sent_at:" in answers["sent_at not a time"].json()["error"]
    # Nothing of them is in Kafka's events; each whole body is dead-lettered with its reasons.
    assert plain.events() == []
    letters = {letter["raw"]: letter["reasons"] for letter in plain.dead_letters()}
    assert letters == {orjson.dumps(body).decode(): reasons[name] for name, body in bodies.items()}
