"""Snowplow's tracker protocol on a real collector process and the real Kafka, sent by
hand and by Snowplow's own Python and Node trackers. What landed in Kafka is read back."""

from __future__ import annotations

import dataclasses
import gzip
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from snowplow_tracker.emitters import Emitter
from snowplow_tracker.events.page_view import PageView
from snowplow_tracker.events.self_describing import SelfDescribing
from snowplow_tracker.self_describing_json import SelfDescribingJson
from snowplow_tracker.subject import Subject
from snowplow_tracker.tracker import Tracker

from collector import validation
from collector.pixel import GIF
from collector.snowplow_events import judge
from tests.e2e.clients import CLIENTS, run_node
from tests.integration.test_collector_edge import Answer, Running, collector
from tracker.events import Event, InvalidEvent, Uncounted
from tracker.settings import Settings

pytestmark = pytest.mark.services

UA = "Mozilla/5.0 (X11; Linux x86_64) edge-test"  # what Running.call sends
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
ECOMMERCE = "iglu:com.snowplowanalytics.snowplow.ecommerce"
ACTION = f"{ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2"
TRANSACTION = f"{ECOMMERCE}/transaction/jsonschema/1-0-0"
ORIGIN = "https://shop.example"
HOUR = 3_600_000
LANDING = "https://shop.example/land?utm_campaign=spring&utm_source=google&utm_medium=cpc"


@pytest.fixture
def sp(settings: Settings) -> Iterator[Running]:
    """A collector with a EUR rate and one structured event named a conversion."""
    configured = dataclasses.replace(
        settings, currency_rates="EUR=1.08", conversion_events="Signed Up=signup"
    )
    yield from collector(configured)


def get(sp: Running, params: dict[str, str], headers: dict[str, str] | None = None) -> Answer:
    return sp.call("GET", f"/i?{urllib.parse.urlencode(params)}", headers=headers)


def post(
    sp: Running,
    events: list[dict[str, str]],
    headers: dict[str, str] | None = None,
    compress: bool = False,
) -> Answer:
    body = orjson.dumps({"schema": PAYLOAD_DATA, "data": events})
    sent = {"content-type": "application/json; charset=UTF-8", **(headers or {})}
    if compress:
        body, sent["content-encoding"] = gzip.compress(body), "gzip"
    return sp.call("POST", TP2, body, sent)


def visitor(answer: Answer) -> str:
    cookie = answer.headers["set-cookie"]
    assert "Max-Age=31536000" in cookie
    return cookie.split(";")[0].removeprefix("sp=")


def by_id(events: list[Event]) -> dict[str, Event]:
    return {event.event_id: event for event in events}


def metric(sp: Running, name: str, **labels: str) -> float | None:
    answer = sp.call("GET", "/metrics")
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


# GET /i, the visitor cookie and SP-Anonymous


def test_get_i_records_a_page_view_and_gives_a_browser_the_sp_cookie(sp: Running) -> None:
    now = int(time.time() * 1000)
    params = {
        "e": "pv",
        "eid": "pv-1",
        "p": "web",
        "url": f"{LANDING}&gclid=G-1",
        "refr": "https://www.google.com/",
        "dtm": str(now - 3 * HOUR - 2_000),  # a device clock 3 hours behind
        "stm": str(now - 3 * HOUR),
        "tv": "js-4.10.1",
        "res": "1920x1080",
    }
    answer = get(sp, params, {"origin": ORIGIN})
    assert answer.status == 200, answer.headers
    assert answer.body == GIF
    assert answer.headers["content-type"] == "image/gif"
    assert answer.headers["cache-control"].startswith("no-cache, no-store")
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"
    minted = visitor(answer)

    again = get(sp, {"e": "pv", "eid": "pv-2", "p": "web"}, {"cookie": f"sp={minted}"})
    assert again.status == 200
    assert "set-cookie" not in again.headers  # a known visitor keeps their id
    tracker_id = get(sp, {"e": "pv", "eid": "pv-3", "duid": "d-9"}, {"cookie": f"sp={minted}"})
    assert tracker_id.status == 200

    # The GIF promised the events are in Kafka: no waiting.
    landed = by_id(sp.events())
    first = landed["pv-1"]
    assert abs(first.ts - (first.received_at - 2_000)) < 1_000  # corrected as derived_tstamp
    assert first.device_ts == now - 3 * HOUR - 2_000
    assert first == Event(
        event_id="pv-1",
        type="pageview",
        ts=first.ts,
        received_at=first.received_at,
        device_ts=first.device_ts,
        channel="search",
        campaign="spring",
        source="google",
        medium="cpc",
        click_id="G-1",
        anonymous_id=minted,
        currency="USD",
        url=params["url"],
        referrer="https://www.google.com/",
        user_agent=UA,
        ip="127.0.0.0",
    )
    assert landed["pv-2"].anonymous_id == minted
    assert landed["pv-3"].anonymous_id == "d-9"  # the tracker's own id comes first
    assert sp.dead_letters() == []


def test_sp_anonymous_reads_no_cookie_sets_none_and_keeps_no_ip(sp: Running) -> None:
    anonymous = {"sp-anonymous": "*", "cookie": "sp=known-visitor"}
    answer = get(sp, {"e": "pv", "eid": "anon-get", "p": "web"}, anonymous)
    assert answer.status == 200
    assert "set-cookie" not in answer.headers
    fresh = post(sp, [{"e": "pv", "eid": "anon-post", "p": "web"}], {"sp-anonymous": "*"})
    assert fresh.status == 200, fresh.body
    assert "set-cookie" not in fresh.headers  # nor for a browser that has none yet

    landed = by_id(sp.events())
    for event_id in ("anon-get", "anon-post"):
        assert (landed[event_id].anonymous_id, landed[event_id].ip) == (None, None)
        assert landed[event_id].user_agent == UA  # the agent is no identifier


def test_a_server_side_tracker_gets_no_cookie_and_lends_no_agent(sp: Running) -> None:
    server = {"user-agent": "python-requests/2.31.0"}
    events = [{"e": "pv", "eid": f"srv-{n}", "p": "srv", "url": LANDING} for n in range(2)]
    answer = post(sp, events, server)
    assert answer.status == 200, answer.body
    assert "set-cookie" not in answer.headers  # one id would merge everyone it speaks for
    one = get(sp, {"e": "pv", "eid": "srv-get", "p": "srv"}, server)
    assert "set-cookie" not in one.headers

    for event in sp.events():
        assert (event.anonymous_id, event.user_agent, event.bot) == (None, None, False)
        assert event.ip == "127.0.0.0"


def test_get_i_answers_400_for_a_rejected_event_and_200_for_an_uncounted_one(
    sp: Running,
) -> None:
    bad = get(sp, {"e": "pv", "eid": "bad-get", "ip": "not-an-ip"})
    assert bad.status == 400
    assert bad.body == GIF
    assert bad.headers["x-tracker-error"] == "ip: is not an IP address"
    assert bad.headers["access-control-allow-origin"] == "*"
    ping = get(sp, {"e": "pp", "eid": "ping-get", "p": "web"})
    assert ping.status == 200
    assert ping.body == GIF
    head = sp.call("HEAD", f"/i?{urllib.parse.urlencode({'e': 'pv', 'eid': 'head-only'})}")
    assert head.status == 200
    assert head.body == b""

    assert sp.events() == []
    (letter,) = sp.dead_letters()  # the ping never counts: not kept
    assert letter["endpoint"] == "snowplow"
    assert orjson.loads(letter["raw"]) == {"e": "pv", "eid": "bad-get", "ip": "not-an-ip"}
    assert letter["reasons"] == {"ip": "is not an IP address"}
    assert metric(sp, "tracker_collector_uncounted_total", kind="page_ping") == 1


# POST tp2


def test_tp2_takes_the_good_events_and_dead_letters_each_bad_one_alone(sp: Running) -> None:
    now = str(int(time.time() * 1000))
    events = [
        {"e": "pv", "eid": "e-pv", "p": "web", "url": LANDING, "dtm": now, "stm": now},
        {"e": "tr", "eid": "e-tr", "p": "web", "tr_id": "T-1", "tr_tt": "45.50", "tr_cu": "EUR"},
        {"e": "ti", "eid": "e-ti", "p": "web", "ti_id": "T-1", "ti_sk": "S", "ti_pr": "45.50"},
        {"e": "se", "eid": "e-signup", "p": "web", "se_ca": "account", "se_ac": "Signed Up"},
        {"e": "se", "eid": "e-play", "p": "web", "se_ca": "video", "se_ac": "play"},
        {"e": "pp", "eid": "e-pp", "p": "web"},
        {"e": "xx", "eid": "e-xx", "p": "web"},
        {"e": "ue", "eid": "e-ue", "p": "web", "ue_px": "%%%"},
        {"e": "tr", "eid": "e-xxx", "p": "web", "tr_id": "T-2", "tr_tt": "5", "tr_cu": "XXX"},
    ]
    answer = post(sp, events, {"origin": ORIGIN})
    assert answer.status == 200, answer.body
    assert answer.json() == {"accepted": 3, "rejected": 3, "uncounted": 3}
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"
    minted = visitor(answer)

    landed = by_id(sp.events())
    assert set(landed) == {"e-pv", "e-tr", "e-signup"}
    assert (landed["e-pv"].campaign, landed["e-pv"].anonymous_id) == ("spring", minted)
    purchase = landed["e-tr"]
    assert (purchase.type, purchase.goal, purchase.order_id) == ("conversion", "purchase", "T-1")
    assert (purchase.value, purchase.currency) == (45_500_000, "EUR")
    assert (landed["e-signup"].type, landed["e-signup"].goal) == ("conversion", "signup")

    letters = {orjson.loads(letter["raw"])["eid"]: letter for letter in sp.dead_letters()}
    assert set(letters) == {"e-play", "e-xx", "e-ue", "e-xxx"}  # the ping and item: never
    assert set(letters["e-xx"]["reasons"]) == {"e"}
    assert letters["e-ue"]["reasons"] == {"ue_px": "is not base64url"}
    assert letters["e-xxx"]["reasons"] == {"tr_cu": "no rate configured for 'XXX'"}
    assert "is no conversion" in letters["e-play"]["reasons"]["type"]
    for letter in letters.values():
        assert letter["endpoint"] == "snowplow"
        assert letter["context"] == {"user_agent": UA, "anonymous_id": minted, "ip": "127.0.0.0"}

    # Replayed, each letter is judged as the collector judged it; once the action is
    # named a conversion, the kept structured event counts, with its own id.
    rules = validation.rules(sp.settings)
    play = letters["e-play"]
    context = validation.restored_context(play["received_at"], play["context"])
    with pytest.raises(Uncounted):
        judge(play["raw"], context, rules, "dl-0-0")
    with pytest.raises(InvalidEvent, match="tr_cu"):
        judge(letters["e-xxx"]["raw"], context, rules, "dl-0-1")
    later = dataclasses.replace(sp.settings, conversion_events="Signed Up=signup,play=engaged")
    (replayed,) = judge(play["raw"], context, validation.rules(later), "dl-0-0")
    assert (replayed.event_id, replayed.goal, replayed.anonymous_id) == (
        "e-play",
        "engaged",
        minted,
    )
    assert replayed.received_at == play["received_at"]

    assert (
        metric(sp, "tracker_collector_events_total", endpoint="snowplow", outcome="accepted") == 3
    )
    assert (
        metric(sp, "tracker_collector_events_total", endpoint="snowplow", outcome="rejected") == 3
    )
    for kind in ("page_ping", "transaction_item", "struct"):
        assert metric(sp, "tracker_collector_uncounted_total", kind=kind) == 1, kind


def test_tp2_takes_a_gzip_body(sp: Running) -> None:
    answer = post(sp, [{"e": "pv", "eid": "gz-1", "p": "web"}], compress=True)
    assert answer.status == 200, answer.body
    assert [event.event_id for event in sp.events()] == ["gz-1"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON"),
        (orjson.dumps([{"e": "pv"}]), "body must be self-describing JSON"),
        (orjson.dumps({"schema": PAYLOAD_DATA, "data": {"e": "pv"}}), "data must be a list"),
        (orjson.dumps({"schema": PAYLOAD_DATA, "data": [{"e": "pv", "dtm": 1}]}), "data must"),
    ],
)
def test_a_body_that_is_no_payload_answers_400_and_is_dead_lettered_whole(
    sp: Running, body: bytes, reason: str
) -> None:
    answer = sp.call("POST", TP2, body, {"content-type": "application/json", "origin": ORIGIN})
    assert answer.status == 400
    assert answer.json()["error"].startswith(reason)
    assert answer.headers["access-control-allow-origin"] == ORIGIN  # the page may read why

    assert sp.events() == []
    (letter,) = sp.dead_letters()
    assert letter["raw"].encode() == body
    assert letter["reasons"]["body"].startswith(reason)
    with pytest.raises(InvalidEvent, match="raw"):  # a whole body is no event to replay
        judge(
            letter["raw"], validation.restored_context(1, None), validation.rules(sp.settings), "x"
        )


def test_the_browser_trackers_cors_preflight_is_allowed(sp: Running) -> None:
    asking = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,sp-anonymous",
    }
    for path in (TP2, "/i"):
        answer = sp.call("OPTIONS", path, headers=asking)
        assert answer.status == 200, path
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert answer.headers["access-control-allow-credentials"] == "true"
        allowed = {
            h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")
        }
        assert {"content-type", "sp-anonymous"} <= allowed
        assert "POST" in answer.headers["access-control-allow-methods"]
        assert int(answer.headers["access-control-max-age"]) > 0
    assert sp.events() == []
    assert sp.dead_letters() == []


# Snowplow's own trackers


def test_the_python_tracker_a_campaign_visit_then_a_purchase_by_the_same_visitor(
    sp: Running,
) -> None:
    failures: list[Any] = []
    emitter = Emitter(
        "127.0.0.1",
        protocol="http",
        port=sp.settings.collector_port,
        method="post",
        batch_size=50,
        on_failure=lambda sent, unsent: failures.append(unsent),
    )
    subject = Subject().set_domain_user_id("py-visitor").set_user_id("carol")
    tracker = Tracker("py-test", emitter, subject=subject, app_id="shop")
    page = tracker.track(PageView(f"{LANDING}&gclid=G-7", page_title="Spring sale"))
    action = SelfDescribingJson(ACTION, {"type": "transaction"})
    order = {"transaction_id": "P-1", "revenue": 19.99, "currency": "EUR", "payment_method": "card"}
    purchase = tracker.track(
        SelfDescribing(action, context=[SelfDescribingJson(TRANSACTION, order)])
    )
    emitter.flush()
    assert failures == []
    assert page is not None
    assert purchase is not None

    landed = by_id(sp.events())
    assert set(landed) == {page, purchase}
    visit, bought = landed[page], landed[purchase]
    assert (visit.type, visit.campaign, visit.channel, visit.click_id) == (
        "pageview",
        "spring",
        "search",
        "G-7",
    )
    assert (bought.type, bought.goal, bought.order_id) == ("conversion", "purchase", "P-1")
    assert (bought.value, bought.currency) == (19_990_000, "EUR")
    for event in (visit, bought):
        assert (event.anonymous_id, event.user_id) == ("py-visitor", "carol")
        # Platform "pc": the tracker's HTTP client (python-requests) is no visitor.
        assert (event.user_agent, event.bot) == (None, False)
        assert abs(event.ts - event.received_at) < 2_000
        assert event.device_ts is not None


def test_the_python_tracker_sending_an_event_twice_sends_one_event_id(sp: Running) -> None:
    """A tracker retries a request whose answer it lost: the same eid, twice."""
    failures: list[Any] = []
    on_failure = lambda sent, unsent: failures.append(unsent)  # noqa: E731
    port = sp.settings.collector_port
    post_emitter = Emitter("127.0.0.1", "http", port, "post", on_failure=on_failure)
    get_emitter = Emitter("127.0.0.1", "http", port, "get", on_failure=on_failure)
    tracker = Tracker("py-test", post_emitter, subject=Subject().set_domain_user_id("py-2"))
    payload = tracker.complete_payload(PageView(LANDING)).nv_pairs
    for emitter in (post_emitter, post_emitter, get_emitter):
        emitter.input(dict(payload))
        emitter.flush()
    assert failures == []

    landed = sp.events()
    assert [event.event_id for event in landed] == [payload["eid"]] * 3
    assert {(e.type, e.campaign, e.anonymous_id) for e in landed} == {
        ("pageview", "spring", "py-2")
    }


def test_the_node_tracker_with_a_clock_hours_behind(sp: Running) -> None:
    offset = -3 * HOUR
    sent = orjson.loads(
        run_node(CLIENTS / "snowplow-node.cjs", str(sp.settings.collector_port), str(offset), "n-1")
    )

    landed = by_id(sp.events())
    assert set(landed) == {sent["pageview"], sent["transaction"], sent["refund"]}
    visit = landed[sent["pageview"]]
    assert (visit.type, visit.campaign, visit.source, visit.channel) == (
        "pageview",
        "autumn",
        "newsletter",
        "email",
    )
    assert visit.referrer == "https://mail.example/"
    purchase, refund = landed[sent["transaction"]], landed[sent["refund"]]
    assert (purchase.type, purchase.goal, purchase.status) == ("conversion", "purchase", "approved")
    assert (purchase.order_id, purchase.value, purchase.currency) == ("N-1", 99_900_000, "EUR")
    assert (refund.type, refund.status, refund.order_id) == ("conversion", "refund", "N-0")
    assert (refund.value, refund.currency) == (20_000_000, "EUR")
    for event in landed.values():
        assert (event.anonymous_id, event.user_id) == ("n-1", "bob")
        assert (event.user_agent, event.bot) == (None, False)  # node's fetch is no visitor
        # Created moments before sending, on a clock 3 hours behind: the time is the
        # time received, the device's own kept.
        assert event.received_at - 5_000 <= event.ts <= event.received_at
        assert event.device_ts is not None
        assert abs(event.device_ts - (event.ts + offset)) < 1_000

    letters = {orjson.loads(letter["raw"])["eid"]: letter for letter in sp.dead_letters()}
    assert set(letters) == {sent["struct"]}  # the item and the ping never count
    assert metric(sp, "tracker_collector_uncounted_total", kind="transaction_item") == 1
    assert metric(sp, "tracker_collector_uncounted_total", kind="page_ping") == 1
