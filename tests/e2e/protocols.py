"""The oracle's events as Segment's and Snowplow's SDKs would send them.

``tests/e2e/test_oracle.py`` sends a third of the people of its log through Segment's
HTTP API and a third through Snowplow's tracker protocol, so every hard case the
reference knows (duplicates, refunds, clocks hours off, bots, sign-ins) also holds
when an SDK says it. Written from the protocols' documentation, not from the
collector's adapters, so a wrong mapping there shows as a wrong figure here.

Each function returns None for an event its protocol cannot say (an impression, spend,
a postback's click id, a pending order), which then goes through the batch API.
"""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from tests.e2e.oracle import SDK_EVENT

LEAD_EVENT = "Lead Created"
CONVERSION_EVENTS = f"{LEAD_EVENT}=lead"
"""TRACKER_CONVERSION_EVENTS of the oracle's run: a lead is a named track event."""
SOURCE_MEDIUM = {
    "search": ("google", "cpc"),
    "social": ("facebook", "paid_social"),
    "email": ("newsletter", "email"),
    "affiliate": ("net1", "affiliate"),
    "display": ("gdn", "display"),
}
"""A campaign's source and medium as a UTM link says them: they name the channel."""
PROTOCOLS = ("batch", "segment", "snowplow")
LANDING = "https://shop.example/"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
_UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
_CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
_ECOMMERCE = "iglu:com.snowplowanalytics.snowplow.ecommerce"
_WHO = frozenset({"event_id", "type", "ts", "user_agent", "anonymous_id", "user_id"})
_TOUCH = _WHO | {"campaign", "channel"}
_ORDER = _TOUCH | {"order_id", "status", "value", "currency", "goal"}


def protocol_of(event: dict[str, Any]) -> str:
    """Which protocol a person's events go by: all of one device's alike, so that
    Kafka keeps their order as it does for one sender."""
    person = event.get("anonymous_id") or event.get("user_id") or event["event_id"]
    return PROTOCOLS[zlib.crc32(str(person).encode()) % len(PROTOCOLS)]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _given(event: dict[str, Any]) -> set[str]:
    return {name for name, value in event.items() if value is not None}


def _landing(event: dict[str, Any]) -> str | None:
    """The page the event happened on: its campaign's UTM link, if it names one."""
    campaign = event.get("campaign")
    if not campaign:
        return event.get("url") or LANDING
    if event.get("channel") not in SOURCE_MEDIUM:
        return None
    source, medium = SOURCE_MEDIUM[event["channel"]]
    query = urlencode({"utm_campaign": campaign, "utm_source": source, "utm_medium": medium})
    return f"{event.get('url') or LANDING}?{query}"


def segment_message(event: dict[str, Any], clock_off: int = 0) -> dict[str, Any] | None:
    """A Segment spec message saying ``event``, timed by a clock ``clock_off`` ms off."""
    given, kind = _given(event), event["type"]
    if not event.get("anonymous_id") and not event.get("user_id"):
        return None  # Segment's spec: every message names somebody
    context: dict[str, Any] = {}
    if event.get("user_agent"):
        context["userAgent"] = event["user_agent"]
    if event.get("campaign"):
        if event.get("channel") not in SOURCE_MEDIUM:
            return None
        source, medium = SOURCE_MEDIUM[event["channel"]]
        context["campaign"] = {"name": event["campaign"], "source": source, "medium": medium}
    message: dict[str, Any] = {
        "messageId": event["event_id"],
        "originalTimestamp": iso(event["ts"] + clock_off),
        "context": context,
    }
    for name, key in (("anonymous_id", "anonymousId"), ("user_id", "userId")):
        if event.get(name):
            message[key] = event[name]
    if kind == "pageview" and given <= _TOUCH | {"url"}:
        return message | {"type": "page", "properties": {"url": event.get("url") or LANDING}}
    if SDK_EVENT in event:
        properties = {"revenue": event["value"]} if event.get("value") else {}
        return message | {"type": "track", "event": event[SDK_EVENT], "properties": properties}
    if kind == "identify" and given <= _WHO:
        return message | {"type": "identify"}
    if kind != "conversion" or not given <= _ORDER:
        return None
    status, goal = event.get("status", "approved"), event.get("goal", "purchase")
    properties = {
        name: event[field]
        for field, name in (
            ("order_id", "order_id"),
            ("value", "revenue"),
            ("currency", "currency"),
        )
        if event.get(field) is not None
    }
    if status in ("refund", "rejected") and "order_id" in properties:
        name = "Order Refunded" if status == "refund" else "Order Cancelled"
        return message | {"type": "track", "event": name, "properties": properties}
    names = {"purchase": "Order Completed", "lead": LEAD_EVENT}
    if status != "approved" or goal not in names:
        return None  # Segment's spec has no pending order
    return message | {"type": "track", "event": names[goal], "properties": properties}


def segment_batch(messages: list[dict[str, Any]], sent_at: int | None) -> dict[str, Any]:
    """A batch; its ``sentAt`` only from a clock that is off (without one the SDK's time
    is taken as it is, exactly: a corrected time carries the network's milliseconds,
    which ``time_decay`` would see)."""
    return {"batch": messages} | ({"sentAt": iso(sent_at)} if sent_at is not None else {})


def snowplow_params(event: dict[str, Any], clock_off: int = 0) -> dict[str, str] | None:
    """Tracker protocol parameters saying ``event``, timed by a clock ``clock_off`` ms off."""
    given, kind = _given(event), event["type"]
    url = _landing(event)
    if url is None:
        return None
    params = {"eid": event["event_id"], "dtm": str(event["ts"] + clock_off), "tv": "oracle-1"}
    if event.get("user_agent") and event.get("anonymous_id"):
        params |= {"p": "web", "ua": event["user_agent"]}
    else:
        # A server: its HTTP client's agent is nobody's. A browser without a visitor id
        # would be given one minted for its request, and two of a user's events in two
        # requests would go to two partitions, out of the order the log relies on.
        params["p"] = "srv"
    if event.get("anonymous_id"):
        params["duid"] = event["anonymous_id"]
    if event.get("user_id"):
        params["uid"] = event["user_id"]
    if kind == "pageview" and given <= _TOUCH | {"url"}:
        return params | {"e": "pv", "url": url}
    if SDK_EVENT in event:
        value = {"se_va": event["value"]} if event.get("value") else {}
        return (
            params | {"e": "se", "url": url, "se_ca": "oracle", "se_ac": event[SDK_EVENT]} | value
        )
    if kind != "conversion" or not given <= _ORDER or not event.get("order_id"):
        return None  # a transaction needs its id; identify and reset have no event
    status, goal = event.get("status", "approved"), event.get("goal", "purchase")
    if status == "approved" and goal == "purchase":
        currency = {"tr_cu": event["currency"]} if event.get("currency") else {}
        total = event.get("value") or "0"
        return (
            params | {"e": "tr", "url": url, "tr_id": event["order_id"], "tr_tt": total} | currency
        )
    if status == "refund":
        action = {"schema": f"{_ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2"}
        refund = {
            "schema": f"{_ECOMMERCE}/refund/jsonschema/1-0-0",
            "data": {"transaction_id": event["order_id"], "currency": "USD", "refund_amount": 0},
        }
        return params | {
            "e": "ue",
            "url": url,
            "ue_px": _base64url(
                {"schema": _UNSTRUCT, "data": action | {"data": {"type": "refund"}}}
            ),
            "cx": _base64url({"schema": _CONTEXTS, "data": [refund]}),
        }
    return None


def snowplow_payload(events: list[dict[str, str]], sent_at: int | None) -> dict[str, Any]:
    """A payload; from a clock that is off, device times corrected by the sending time
    (``stm``), else the true time (``ttm``), which is taken as it is (see
    :func:`segment_batch`)."""
    if sent_at is None:
        data = [{k: v for k, v in e.items() if k != "dtm"} | {"ttm": e["dtm"]} for e in events]
    else:
        data = [e | {"stm": str(sent_at)} for e in events]
    return {"schema": PAYLOAD_DATA, "data": data}


def _base64url(data: Any) -> str:
    """As the browser tracker encodes ``ue_px`` and ``cx``: URL-safe, without padding."""
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")
