"""Properties of the SDK protocols' parsers (Segment's messages, Snowplow's parameters).

Like tests/unit/test_parsers_properties.py: generated input may only be refused with
:class:`~tracker.events.InvalidEvent` (or :class:`~tracker.events.Uncounted`, its
kind), never crash; what is accepted is a sound event; and a dead letter judged again
gives exactly what the collector decided, so a replay never counts differently.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import validation
from collector.segment_messages import judge as judge_segment
from collector.segment_messages import merged, message_event
from collector.snowplow_events import judge as judge_snowplow
from collector.snowplow_events import parse
from tracker.events import EVENT_TYPES, Context, Event, InvalidEvent, Rules, Uncounted
from tracker.records import decode_events, encode_events

PROPERTY = settings(
    max_examples=200,
    deadline=timedelta(seconds=1),
    derandomize=True,
    database=None,
)
NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z
RULES = Rules(
    currencies=frozenset({"USD", "EUR"}),
    default_currency="USD",
    conversion_events={"Signed Up": "signup"},
)
FALLBACK = "dl-0-0-0"

# What orjson reads from a request: integers fit 64 bits (it refuses larger ones).
ints = st.integers(-(2**63), 2**64 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)
texts = st.sampled_from(["", " ", "a-1", "u-1", "42", "x" * 70]) | st.text(max_size=20)
times = (
    st.integers(NOW - 40 * 86_400_000, NOW + 86_400_000).map(
        lambda ms: datetime.fromtimestamp(ms / 1000, UTC).isoformat()
    )
    | st.integers(NOW - 40 * 86_400_000, NOW + 86_400_000)
    | texts
)
urls = st.sampled_from(
    [
        "https://shop.example/?utm_campaign=spring&utm_medium=cpc&gclid=g1",
        "https://shop.example/?utm_campaign=%E2%82%AC&click_id=k-1",
        "https://shop.example/?utm_campaign=%FF",
        "https://shop.example/checkout",
        "",
    ]
) | st.text(max_size=40)
money = st.sampled_from(["49.90", "-1", "1e400", "abc"]) | st.floats() | ints
names = st.sampled_from(
    ["Order Completed", "Order Refunded", "Order Cancelled", "Signed Up", "Product Viewed"]
)


@st.composite
def segment_messages(draw: st.DrawFn) -> dict[str, Any]:
    """Messages near Segment's spec: right keys, values right or wrong."""
    message: dict[str, Any] = {
        "type": draw(st.sampled_from(["page", "screen", "track", "identify", "alias", "group"]))
    }
    optional = {
        "messageId": texts,
        "anonymousId": texts | ints,
        "userId": texts | ints,
        "previousId": texts,
        "event": names | texts,
        "timestamp": times,
        "originalTimestamp": times,
        "sentAt": times,
        "properties": st.fixed_dictionaries(
            {},
            optional={
                "order_id": texts,
                "revenue": money,
                "total": money,
                "currency": st.sampled_from(["USD", "EUR", "JPY", "usd"]) | texts,
                "url": urls,
            },
        )
        | json_values,
        "context": st.fixed_dictionaries(
            {},
            optional={
                "ip": st.sampled_from(["203.0.113.9", "::1", "nope"]),
                "userAgent": st.sampled_from(["Mozilla/5.0", "Googlebot/2.1"]) | texts,
                "page": st.fixed_dictionaries({}, optional={"url": urls, "referrer": urls}),
                "campaign": st.fixed_dictionaries(
                    {}, optional={"name": texts, "source": texts, "medium": texts}
                )
                | json_values,
            },
        )
        | json_values,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            message[key] = draw(strategy)
    return message


Verdict = Event | str | tuple[str, bool]
"""What a parser decided: the event, "invalid", or an uncounted kind and whether kept."""


def verdict(call: Callable[[], list[Event]]) -> Verdict:
    """What ``call`` decided, checked: a sound event, or a refusal with reasons; any
    other exception fails the test."""
    try:
        (event,) = call()
    except InvalidEvent as exc:
        refused = exc
    else:
        check_event(event)
        return event
    assert refused.reasons
    assert all(isinstance(why, str) for why in refused.reasons.values())
    if isinstance(refused, Uncounted):
        return (refused.kind, refused.keep)
    return "invalid"


def check_event(event: Event) -> None:
    assert event.type in EVENT_TYPES
    assert event.type not in ("impression", "click", "spend")  # no SDK says those
    assert len(event.event_id) <= 64
    assert decode_events(encode_events([event])) == [event]


@PROPERTY
@given(segment_messages() | st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_a_segment_message_is_an_event_or_refused_with_reasons(message: dict[str, Any]) -> None:
    context = Context(received_at=NOW, ip="198.51.100.7")
    whole = merged(message, None, None, None)
    decided = verdict(lambda: [message_event(whole, context, RULES, FALLBACK)])
    # A dead letter of it, judged again, decides the same.
    raw = validation.raw_item(whole).decode()
    assert verdict(lambda: judge_segment(raw, context, RULES, FALLBACK)) == decided


@st.composite
def snowplow_events(draw: st.DrawFn) -> dict[str, str]:
    params = {"e": draw(st.sampled_from(["pv", "pp", "se", "tr", "ti", "ue", "zz"]))}
    action = draw(st.sampled_from(["transaction", "refund", "add_to_cart"]))
    unstruct = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {
            "schema": "iglu:com.snowplowanalytics.snowplow.ecommerce/"
            "snowplow_ecommerce_action/jsonschema/1-0-2",
            "data": {"type": action},
        },
    }
    encoded = base64.urlsafe_b64encode(orjson.dumps(unstruct)).decode().rstrip("=")
    optional = {
        "eid": texts,
        "dtm": st.integers(NOW - 86_400_000, NOW).map(str) | texts,
        "stm": st.integers(NOW - 86_400_000, NOW + 86_400_000).map(str) | texts,
        "ttm": st.integers(NOW - 86_400_000, NOW).map(str) | texts,
        "duid": texts,
        "uid": texts,
        "url": urls,
        "refr": urls,
        "ua": st.sampled_from(["Mozilla/5.0", "Googlebot/2.1"]) | texts,
        "p": st.sampled_from(["web", "srv", "app"]),
        "tr_id": texts,
        "tr_tt": money.map(str),
        "tr_cu": st.sampled_from(["USD", "EUR", "JPY"]) | texts,
        "se_ac": names | texts,
        "se_va": money.map(str),
        "ue_px": st.just(encoded) | texts,
        "ue_pr": texts,
        "cx": texts,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            params[key] = draw(strategy)
    return params


@PROPERTY
@given(snowplow_events() | st.dictionaries(st.text(max_size=6), st.text(max_size=12)))
def test_snowplow_parameters_are_an_event_or_refused_with_reasons(params: dict[str, str]) -> None:
    context = Context(received_at=NOW, ip="198.51.100.7", user_agent="Mozilla/5.0")
    # The collector mints an id where the tracker sent none; a replay derives one.
    given_id = {"eid": params.get("eid") or FALLBACK}
    decided = verdict(lambda: [parse(params | given_id, context, RULES)])
    raw = orjson.dumps(params).decode()
    assert verdict(lambda: judge_snowplow(raw, context, RULES, FALLBACK)) == decided


@PROPERTY
@given(st.text(max_size=80))
def test_landing_params_never_raise_and_keep_only_campaign_names(url: str) -> None:
    found = validation.landing_params(url)
    assert set(found) <= {
        "utm_campaign",
        "utm_source",
        "utm_medium",
        "utm_content",
        *validation.CLICK_IDS,
    }
    assert all(value for value in found.values())
