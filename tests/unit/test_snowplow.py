"""Snowplow's tracker protocol mapped onto events: the pure part, no server."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from snowplow_tracker.payload import Payload

from collector import bots
from collector.snowplow_events import judge, parse, payload_events
from tracker.events import Context, Event, InvalidEvent, Rules, Uncounted

NOW = 1_714_557_600_000
HOUR = 3_600_000
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"
RULES = Rules(
    currencies=frozenset({"USD", "EUR"}),
    default_currency="USD",
    is_bot=bots.is_bot,
    conversion_events={"Signed Up": "signup"},
)
ECOMMERCE = "iglu:com.snowplowanalytics.snowplow.ecommerce"
ACTION = f"{ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2"
TRANSACTION = f"{ECOMMERCE}/transaction/jsonschema/1-0-0"
REFUND = f"{ECOMMERCE}/refund/jsonschema/1-0-0"
PRODUCT = f"{ECOMMERCE}/product/jsonschema/1-0-0"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
WEB_PAGE = {"schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0", "data": {}}


def request(**changes: Any) -> Context:
    """A browser's request: its IP, agent, page (Referer) and ``sp`` cookie."""
    fields: dict[str, Any] = {
        "received_at": NOW,
        "ip": "203.0.113.7",
        "user_agent": BROWSER,
        "referrer": "https://shop.example/page",
        "anonymous_id": "cookie-visitor",
    }
    return Context(**(fields | changes))


def event(params: dict[str, str], context: Context | None = None) -> Event:
    return parse(params, context or request(), RULES)


def encoded(document: Any, padding: bool = False) -> str:
    """base64url as the Python tracker writes it (padded); the JS trackers strip the padding."""
    payload = Payload()
    payload.add_json(document, True, "x", "plain")
    text: str = payload.get()["x"]
    return text if padding else text.rstrip("=")


def unstruct(schema: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"schema": UNSTRUCT, "data": {"schema": schema, "data": data}}


def contexts(*entities: dict[str, Any]) -> dict[str, Any]:
    return {"schema": CONTEXTS, "data": list(entities)}


def reasons(params: dict[str, str], context: Context | None = None) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        event(params, context)
    assert not isinstance(caught.value, Uncounted)
    return caught.value.reasons


def uncounted(params: dict[str, str]) -> Uncounted:
    with pytest.raises(Uncounted) as caught:
        event(params)
    return caught.value


# Page views, campaigns, who and where


def test_a_campaign_page_view_maps_every_parameter() -> None:
    params = {
        "e": "pv",
        "eid": "0b6f6f1e-6bb8-4f5e-9a59-4f0a1b1d2c3e",
        "p": "web",
        "url": "https://shop.example/land?utm_campaign=spring&utm_source=google"
        "&utm_medium=cpc&utm_content=red&utm_term=shoes&gclid=G-1&x=1",
        "refr": "https://www.google.com/",
        "duid": "d-1",
        "uid": "alice@example.com",
        "page": "Landing",
        "tv": "js-4.10.1",
        "aid": "shop",
        "res": "1920x1080",
        "vp": "1280x720",
        "cs": "UTF-8",
        "lang": "en-GB",
        "cookie": "1",
        "tz": "Europe/London",
        "sid": "s-1",
        "vid": "3",
    }
    assert event(params) == Event(
        event_id="0b6f6f1e-6bb8-4f5e-9a59-4f0a1b1d2c3e",
        type="pageview",
        ts=NOW,
        received_at=NOW,
        channel="search",
        campaign="spring",
        source="google",
        medium="cpc",
        creative="red",
        click_id="G-1",
        user_id="alice@example.com",
        anonymous_id="d-1",
        currency="USD",
        url=params["url"],
        referrer="https://www.google.com/",
        user_agent=BROWSER,
        ip="203.0.113.0",
    )


def test_a_click_id_alone_names_its_channel() -> None:
    found = event({"e": "pv", "url": "https://shop.example/?fbclid=F-9"})
    assert (found.click_id, found.channel, found.campaign) == ("F-9", "social", None)


def test_a_page_without_campaign_is_direct_and_has_no_referrer_of_its_own() -> None:
    found = event({"e": "pv", "url": "https://shop.example/"})
    assert (found.channel, found.referrer, found.campaign) == ("direct", None, None)


@pytest.mark.parametrize(
    ("ids", "visitor"),
    [
        ({"duid": "d", "tnuid": "t", "nuid": "n"}, "d"),
        ({"tnuid": "t", "nuid": "n"}, "t"),
        ({"nuid": "n"}, "n"),
        ({"duid": ""}, "cookie-visitor"),
        ({}, "cookie-visitor"),
    ],
)
def test_the_visitor_is_duid_then_tnuid_then_nuid_then_the_sp_cookie(
    ids: dict[str, str], visitor: str
) -> None:
    assert event({"e": "pv", **ids}).anonymous_id == visitor


def test_no_visitor_at_all_when_the_request_has_none() -> None:
    assert event({"e": "pv"}, request(anonymous_id=None)).anonymous_id is None


@pytest.mark.parametrize("platform", [None, "", "web"])
def test_a_browser_or_plain_pixel_takes_the_request_agent_and_page(platform: str | None) -> None:
    params = {"e": "pv"} | ({"p": platform} if platform is not None else {})
    found = event(params, request(referrer="https://shop.example/p?utm_campaign=mail"))
    assert found.user_agent == BROWSER
    assert found.url == "https://shop.example/p?utm_campaign=mail"
    assert found.campaign == "mail"
    assert found.referrer is None  # the Referer header is the page, not where it came from


@pytest.mark.parametrize("platform", ["srv", "pc", "mob", "app", "iot"])
def test_a_server_side_trackers_http_client_is_not_the_visitor(platform: str) -> None:
    found = event({"e": "pv", "p": platform}, request(user_agent="python-requests/2.31.0"))
    assert found.user_agent is None
    assert found.bot is False  # the client's agent does not make the events it relays bots
    assert found.url is None


def test_the_events_own_agent_decides_the_bot_verdict_on_any_platform() -> None:
    found = event({"e": "pv", "p": "srv", "ua": "Googlebot/2.1"})
    assert (found.user_agent, found.bot) == ("Googlebot/2.1", True)
    found = event({"e": "pv", "p": "web", "ua": BROWSER}, request(user_agent="curl/8.0"))
    assert (found.user_agent, found.bot) == (BROWSER, False)


def test_a_referer_too_long_for_a_url_is_not_taken_for_one() -> None:
    long_page = "https://shop.example/?" + "a" * 3000
    assert event({"e": "pv"}, request(referrer=long_page)).url is None


def test_the_url_parameter_wins_over_the_referer_header() -> None:
    found = event({"e": "pv", "url": "https://shop.example/a"}, request(referrer="https://x/b"))
    assert found.url == "https://shop.example/a"


def test_the_ip_parameter_wins_over_the_requests_and_is_truncated() -> None:
    assert event({"e": "pv", "ip": "198.51.100.23"}).ip == "198.51.100.0"
    assert event({"e": "pv"}, request(ip=None)).ip is None


# Time


def test_a_true_timestamp_is_taken_as_is() -> None:
    params = {"e": "pv", "ttm": str(NOW - HOUR), "dtm": str(NOW - 9 * HOUR), "stm": str(NOW)}
    found = event(params)
    assert (found.ts, found.device_ts) == (NOW - HOUR, None)


def test_a_device_clock_hours_off_is_corrected_by_its_sending_time() -> None:
    # The device runs 3 hours behind; it created the event 5 s before sending it.
    created, sent = NOW - 3 * HOUR - 5_000, NOW - 3 * HOUR
    found = event({"e": "pv", "dtm": str(created), "stm": str(sent)})
    assert (found.ts, found.device_ts, found.received_at) == (NOW - 5_000, created, NOW)


def test_an_event_sent_before_it_was_created_takes_the_time_received() -> None:
    # The Python tracker cuts stm to the second: it may precede dtm by up to 999 ms.
    found = event({"e": "pv", "dtm": str(NOW + 400), "stm": str(NOW)})
    assert (found.ts, found.device_ts) == (NOW, NOW + 400)


def test_a_device_time_without_sending_time_takes_the_time_received() -> None:
    found = event({"e": "pv", "dtm": str(NOW - 2 * HOUR)})
    assert (found.ts, found.device_ts) == (NOW, NOW - 2 * HOUR)


def test_no_time_at_all_is_the_time_received() -> None:
    found = event({"e": "pv", "stm": str(NOW - HOUR)})
    assert (found.ts, found.device_ts) == (NOW, None)


def test_bad_times_are_rejected_under_their_parameter_names() -> None:
    assert set(reasons({"e": "pv", "dtm": "yesterday", "stm": str(NOW)})) == {"dtm"}
    assert set(reasons({"e": "pv", "dtm": str(NOW), "stm": "later"})) == {"stm"}
    assert set(reasons({"e": "pv", "ttm": "soon"})) == {"ttm"}
    # Corrected, an event still faces the horizon: created 40 days before it was sent.
    created = NOW - 40 * 24 * HOUR
    assert set(reasons({"e": "pv", "dtm": str(created), "stm": str(NOW)})) == {"dtm"}


# Conversions


def test_a_transaction_is_a_purchase_of_its_order() -> None:
    params = {"e": "tr", "tr_id": "T-1", "tr_tt": "45.50", "tr_cu": "EUR", "tr_tx": "5", "p": "web"}
    found = event(params)
    assert (found.type, found.goal, found.status) == ("conversion", "purchase", "approved")
    assert (found.order_id, found.value, found.currency) == ("T-1", 45_500_000, "EUR")


def test_a_transactions_bad_amounts_are_named_by_their_parameters() -> None:
    assert reasons({"e": "tr", "tr_id": "T-1", "tr_tt": "-3", "tr_cu": "XXX"}) == {
        "tr_tt": "must not be negative",
        "tr_cu": "no rate configured for 'XXX'",
    }


def test_a_structured_event_named_a_conversion_counts_with_its_goal_and_value() -> None:
    found = event({"e": "se", "se_ca": "account", "se_ac": "Signed Up", "se_va": "12.5"})
    assert (found.type, found.goal, found.value) == ("conversion", "signup", 12_500_000)


def test_other_structured_events_are_uncounted_but_kept() -> None:
    caught = uncounted({"e": "se", "se_ca": "video", "se_ac": "play"})
    assert (caught.kind, caught.keep) == ("struct", True)
    assert "TRACKER_CONVERSION_EVENTS" in caught.reasons["type"]


def test_a_structured_event_without_an_action_is_rejected() -> None:
    assert set(reasons({"e": "se", "se_ca": "video"})) == {"se_ac"}


def test_page_pings_and_transaction_items_never_count_and_are_not_kept() -> None:
    ping = uncounted({"e": "pp", "pp_mix": "0", "pp_max": "10"})
    item = uncounted({"e": "ti", "ti_id": "T-1", "ti_sk": "SKU", "ti_pr": "9", "ti_qu": "1"})
    assert (ping.kind, ping.keep) == ("page_ping", False)
    assert (item.kind, item.keep) == ("transaction_item", False)


# Self-describing events and the e-commerce plugin


def transaction_params(context_param: str = "cx", **entity: Any) -> dict[str, str]:
    transaction = {"transaction_id": "T-9", "revenue": 45.5, "currency": "EUR"} | entity
    document = contexts(
        WEB_PAGE,
        {"schema": PRODUCT, "data": {"id": "P-1", "price": 45.5}},
        {"schema": TRANSACTION, "data": transaction},
    )
    value = encoded(document) if context_param == "cx" else orjson.dumps(document).decode()
    return {
        "e": "ue",
        "ue_px": encoded(unstruct(ACTION, {"type": "transaction"})),
        context_param: value,
    }


@pytest.mark.parametrize("context_param", ["cx", "co"])
def test_an_ecommerce_transaction_is_a_purchase_from_its_transaction_entity(
    context_param: str,
) -> None:
    found = event(transaction_params(context_param))
    assert (found.type, found.goal, found.status) == ("conversion", "purchase", "approved")
    assert (found.order_id, found.value, found.currency) == ("T-9", 45_500_000, "EUR")


def test_an_ecommerce_refund_reverses_the_order_its_refund_entity_names() -> None:
    refund = {"transaction_id": "T-9", "currency": "EUR", "refund_amount": 10}
    params = {
        "e": "ue",
        "ue_pr": orjson.dumps(unstruct(ACTION, {"type": "refund"})).decode(),
        "co": orjson.dumps(contexts({"schema": REFUND, "data": refund})).decode(),
    }
    found = event(params)
    assert (found.type, found.status, found.order_id) == ("conversion", "refund", "T-9")
    assert (found.value, found.currency) == (10_000_000, "EUR")


def test_a_refund_without_its_transaction_id_is_rejected() -> None:
    refund = {"currency": "EUR", "refund_amount": 10}
    params = {
        "e": "ue",
        "ue_px": encoded(unstruct(ACTION, {"type": "refund"})),
        "cx": encoded(contexts({"schema": REFUND, "data": refund})),
    }
    assert set(reasons(params)) == {"cx"}


def test_an_ecommerce_transaction_without_its_entity_is_rejected() -> None:
    params = {"e": "ue", "ue_px": encoded(unstruct(ACTION, {"type": "transaction"}))}
    assert set(reasons(params)) == {"co"}
    params["cx"] = encoded(contexts(WEB_PAGE))
    assert set(reasons(params)) == {"cx"}


def test_bad_entity_values_are_named_by_the_contexts_parameter() -> None:
    assert reasons(transaction_params(revenue=-1)) == {"cx": "must not be negative"}


def test_ue_px_is_read_with_or_without_padding_and_in_either_alphabet() -> None:
    document = unstruct(ACTION, {"type": "transaction", "note": "??>>"})  # makes - and _
    padded = encoded(document, padding=True)
    assert padded.endswith("=")
    assert "-" in padded or "_" in padded
    standard = padded.replace("-", "+").replace("_", "/")
    for ue_px in (padded, padded.rstrip("="), standard):
        found = event(transaction_params() | {"ue_px": ue_px})
        assert found.order_id == "T-9"


def test_ue_px_outside_the_base64_alphabet_is_not_read_around() -> None:
    # "e30" is "{}": skipping the stray "*" would read it, and blame the wrong thing.
    assert reasons({"e": "ue", "ue_px": "e3*0="}) == {"ue_px": "is not base64url"}


def test_other_ecommerce_actions_are_uncounted_but_kept() -> None:
    params = {"e": "ue", "ue_px": encoded(unstruct(ACTION, {"type": "add_to_cart"}))}
    caught = uncounted(params)
    assert (caught.kind, caught.keep) == ("ecommerce", True)


def test_other_self_describing_events_are_uncounted_but_kept() -> None:
    link = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
    params = {"e": "ue", "ue_pr": orjson.dumps(unstruct(link, {"targetUrl": "/x"})).decode()}
    caught = uncounted(params)
    assert (caught.kind, caught.keep) == ("self_describing", True)
    assert link in caught.reasons["type"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"ue_px": "not*base64"}, "ue_px"),
        ({"ue_px": "abcde"}, "ue_px"),  # a length no base64 has
        ({"ue_px": base64.urlsafe_b64encode(b"{oops").decode()}, "ue_px"),
        ({"ue_px": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "ue_px"),
        ({"ue_pr": "{oops"}, "ue_pr"),
        ({"ue_pr": '{"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": {}}'}, "ue_pr"),
        ({"ue_pr": orjson.dumps({"schema": UNSTRUCT, "data": [1]}).decode()}, "ue_pr"),
        ({}, "ue_pr"),
    ],
)
def test_undecodable_self_describing_events_are_rejected_naming_the_parameter(
    params: dict[str, str], named: str
) -> None:
    assert set(reasons({"e": "ue", **params})) == {named}


@pytest.mark.parametrize(
    ("cx", "named"),
    [
        ("%%%", "cx"),
        (base64.urlsafe_b64encode(b"[]").decode(), "cx"),
        (base64.urlsafe_b64encode(orjson.dumps({"schema": CONTEXTS, "data": {}})).decode(), "cx"),
    ],
)
def test_undecodable_contexts_are_rejected_where_they_are_needed(cx: str, named: str) -> None:
    ue_px = encoded(unstruct(ACTION, {"type": "transaction"}))
    assert set(reasons({"e": "ue", "ue_px": ue_px, "cx": cx})) == {named}


def test_contexts_of_events_that_need_none_are_ignored() -> None:
    assert event({"e": "pv", "cx": "%%%", "co": "{oops", "ue_px": "!"}).type == "pageview"


# Rejections


@pytest.mark.parametrize("kind", ["ev", "ad", "PV", "page_view"])
def test_unknown_event_types_are_rejected(kind: str) -> None:
    assert set(reasons({"e": kind})) == {"e"}


def test_an_event_without_type_is_rejected() -> None:
    assert set(reasons({"url": "https://shop.example/"})) == {"e"}


def test_fields_parse_event_refuses_are_named_by_their_parameters() -> None:
    found = reasons({"e": "pv", "eid": "x" * 65, "ip": "not-an-ip", "duid": "d\x00" * 200})
    assert set(found) == {"eid", "ip", "duid"}


# The payload_data body


def body(document: Any) -> bytes:
    return orjson.dumps(document)


PAYLOAD = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def test_payload_data_holds_the_events() -> None:
    events = [{"e": "pv", "eid": "1"}, {"e": "pp"}]
    assert payload_events(body({"schema": PAYLOAD, "data": events})) == events
    assert payload_events(body({"schema": PAYLOAD, "data": []})) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"",
        body([{"e": "pv"}]),
        body({"data": [{"e": "pv"}]}),
        body({"schema": "iglu:com.acme/payload_data/jsonschema/1-0-4", "data": [{"e": "pv"}]}),
        body({"schema": PAYLOAD, "data": {"e": "pv"}}),
        body({"schema": PAYLOAD, "data": ["e=pv"]}),
        body({"schema": PAYLOAD, "data": [{"e": "pv", "dtm": 1714557600000}]}),
        body({"schema": PAYLOAD, "data": [{"e": "pv"}, {"e": None}]}),
    ],
)
def test_anything_else_is_no_payload(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"^(body|data) "):
        payload_events(raw)


# Dead letters judged again


def test_a_letter_is_judged_as_the_collector_judged_its_event() -> None:
    params = transaction_params() | {
        "eid": "E-1",
        "dtm": str(NOW - HOUR - 50),
        "stm": str(NOW - HOUR),
    }
    context = request()
    assert judge(orjson.dumps(params).decode(), context, RULES, "dl-0-7") == [
        parse(params, context, RULES)
    ]


def test_a_letter_without_eid_gets_the_fallback_id_every_time() -> None:
    raw = orjson.dumps({"e": "pv"}).decode()
    first = judge(raw, request(), RULES, "dl-0-7")
    assert [e.event_id for e in first] == ["dl-0-7"]
    assert judge(raw, request(), RULES, "dl-0-7") == first


def test_a_letter_raises_as_its_event_would() -> None:
    with pytest.raises(Uncounted):
        judge(orjson.dumps({"e": "se", "se_ac": "play"}).decode(), request(), RULES, "dl-0-1")
    # Once the action is named a conversion, the kept letter counts.
    rules = Rules(RULES.currencies, "USD", conversion_events={"play": "engaged"})
    (found,) = judge(orjson.dumps({"e": "se", "se_ac": "play"}).decode(), request(), rules, "dl")
    assert (found.type, found.goal) == ("conversion", "engaged")


@pytest.mark.parametrize(
    "raw",
    ["not json", "[]", '{"e": 1}', orjson.dumps({"schema": PAYLOAD, "data": []}).decode()],
)
def test_letters_that_hold_no_events_parameters_stay_rejected(raw: str) -> None:
    with pytest.raises(InvalidEvent, match="raw"):
        judge(raw, request(), RULES, "dl-0-1")
