"""Segment's messages in tracker's terms: the pure half of :mod:`collector.segment`.

A message is first made self-contained (:func:`merged`): the batch's ``context``
merged under its own (its own keys win), the batch's ``sentAt`` when it has none, the
type of its path, the write key left out. Then it is translated (:func:`translate`)
and validated by :func:`tracker.events.parse_event`:

- ``page`` and ``screen`` are pageviews; ``identify`` with an ``anonymousId`` and a
  ``userId`` is an identify; ``alias`` is an identify of ``previousId`` as
  ``userId``; ``track`` is a conversion when its name is one (below).
- ``messageId`` is the event id (one longer than 64 characters: ``seg-`` and 40 hex
  of its SHA-256, so a retry still counts once). ``originalTimestamp``, else
  ``timestamp``, is the device's time of the event and ``sentAt`` its clock when
  sending: the event time is the receive time less the span between them, and the
  device's time is kept as ``device_ts`` (without ``sentAt``, the time is taken as
  it is; without either, the receive time).
- ``anonymousId``, ``userId`` (numbers too, as strings; a message names at least one,
  as Segment requires); ``context.ip`` (else the request's); ``context.userAgent``,
  which alone decides the bot verdict (the HTTP client is a library relaying events,
  its agent is nobody's); ``context.page.url`` and ``context.page.referrer`` (a
  ``page`` call's ``properties.url`` and ``properties.referrer`` first).
- ``context.campaign``'s ``name``, ``source``, ``medium`` and ``content`` are the
  campaign, source, medium and creative (``term`` is dropped: tracker has no
  keyword dimension); without it, the page URL's ``utm_*`` parameters. The URL's
  click ids (``gclid``, ``fbclid``, ...) are read in either case: analytics.js
  does not put them in ``context.campaign``.

**Conversions** (Segment's e-commerce spec v2): ``Order Completed`` is a ``purchase``
of ``properties.revenue`` (else ``total``) in ``properties.currency``, keyed by
``properties.order_id``. ``Order Refunded`` and ``Order Cancelled`` name the
``order_id`` they undo (status ``refund`` and ``rejected``): tracker takes the whole
order back out, as a postback refund does; a partial refund (some of the products)
cannot be told apart and reverses the whole order too. Any other name listed in
``TRACKER_CONVERSION_EVENTS`` (``Signed Up=signup``; ``Order Completed`` may be given
a goal of its own there) or named by a goal rule saved through ``/v1/goals``
(:mod:`tracker.goals`, which wins) is a conversion of that goal, worth the rule's
fixed value if it has one, else ``properties.revenue``, else ``value``, else ``total``.
Amounts sent as JSON numbers are rounded to the micro-unit, since JavaScript's
arithmetic leaves tails like ``30.299999999999997``; amounts sent as strings are taken exactly.

**Not counted** (:class:`~tracker.events.Uncounted`): a ``track`` whose name is no
conversion (kept: name it in ``TRACKER_CONVERSION_EVENTS`` and replay), ``group``
calls (kept; tracker has no accounts). An ``identify`` that does not link a device
to a user (no ``anonymousId``, as a server's identify of traits; or no ``userId``)
is not kept: no setting makes it link anything. Traits, integrations and properties
not named above are ignored, never an error.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import msgspec
import orjson

from collector import validation
from tracker.events import (
    ALIASES,
    Context,
    Event,
    InvalidEvent,
    Rules,
    Uncounted,
    parse_event,
    parse_ts,
)
from tracker.goals import ORDER_COMPLETED, PURCHASE, REVERSALS
from tracker.money import to_number
from tracker.settings import env_name

TYPES: Final = ("alias", "group", "identify", "page", "screen", "track")
CAMPAIGN: Final = {
    "name": "campaign",
    "source": "source",
    "medium": "medium",
    "content": "creative",
}
"""``context.campaign``'s keys and the event fields they fill."""
MICRO_DIGITS: Final = 6
ORIGINS: Final = {
    "type": "type",
    "anonymous_id": "anonymousId",
    "user_id": "userId",
    "event_id": "messageId",
    "ip": "context.ip",
    "user_agent": "context.userAgent",
    "status": "event",
    "goal": "event",
    "currency": "properties.currency",
    "order_id": "properties.order_id",
    **{name: f"context.campaign.{key}" for key, name in CAMPAIGN.items()},
}
"""The Segment field each event field is usually read from (:meth:`Translation.put`
says so where another is)."""
_CLICK_ID_IN_URL: Final = re.compile("|".join(validation.CLICK_IDS))


@dataclass(slots=True)
class Translation:
    """A message in event field names, ready for :func:`~tracker.events.parse_event`."""

    raw: dict[str, Any]
    context: Context
    """The request's receive time and IP, with the message's own ``sentAt``."""
    reasons: dict[str, str]
    """What is wrong, by Segment field, before :func:`~tracker.events.parse_event` looks."""
    fields: dict[str, str] = field(default_factory=dict)
    """The Segment field an event field was read from, where it is not :data:`ORIGINS`'."""
    goal_version: int | None = None
    """The version of the goal rules that made the message a conversion, if one did."""

    def put(self, name: str, value: Any, origin: str | None = None) -> None:
        """Set ``name`` unless ``value`` is absent (null or empty, as Segment reads it);
        either way, what parse_event says of ``name`` is said of ``origin`` (by default
        its usual Segment field)."""
        if value is not None and value != "":
            self.raw[name] = value
        if origin is not None:
            self.fields[name] = origin

    def origin(self, name: str) -> str:
        """The Segment field event field ``name`` was read from, to name it in a reason."""
        return self.fields.get(name) or ORIGINS.get(name, name)


def merged(
    message: Mapping[str, Any], batch_context: Any, batch_sent_at: Any, implied: str | None
) -> dict[str, Any]:
    """``message`` made self-contained: what its request said for all its messages, added.

    The batch's ``context`` goes under the message's own (key by key, the message's
    win); the batch's ``sentAt`` is used when the message has none; ``implied`` (the
    type a single-message path names) replaces its type. The write key is left out,
    so no dead letter keeps it.
    """
    own = dict(message)
    own.pop("writeKey", None)
    if implied is not None:
        own["type"] = implied
    if batch_context is not None:
        context = own.get("context")
        if context is None:
            own["context"] = batch_context
        elif isinstance(context, dict) and isinstance(batch_context, dict):
            own["context"] = {**batch_context, **context}
    if own.get("sentAt") is None and batch_sent_at is not None:
        own["sentAt"] = batch_sent_at
    return own


def event_id(message_id: Any) -> Any:
    """The event id of a ``messageId``: itself, or a stable digest when over 64 characters."""
    if isinstance(message_id, str) and len(message_id) > 64:
        return "seg-" + hashlib.sha256(message_id.encode()).hexdigest()[:40]
    return message_id


def translate(message: Mapping[str, Any], context: Context, rules: Rules) -> Translation:
    """One self-contained message (see :func:`merged`) in tracker's terms; no I/O.

    ``context`` gives the receive time and the request's IP; nothing else of the
    request is used. Raises :class:`Uncounted` for a message tracker does not count,
    :class:`InvalidEvent` for a type it does not know; what else is wrong is in the
    translation's ``reasons``, so :func:`message_event` can name it together with what
    :func:`~tracker.events.parse_event` finds.
    """
    kind = message.get("type")
    if kind not in TYPES:
        raise InvalidEvent({"type": f"must be one of {', '.join(TYPES)}"})
    if kind == "group":
        raise Uncounted("group", "a group call is not counted: tracker has no accounts")
    reasons: dict[str, str] = {}
    props = _object(message, "properties", "properties", reasons)
    ctx = _object(message, "context", "context", reasons)
    page = _object(ctx, "page", "context.page", reasons)
    sent_at = _sent_at(message.get("sentAt"), context.received_at, rules, reasons)
    request = Context(received_at=context.received_at, ip=context.ip, sent_at=sent_at)
    out = Translation({}, request, reasons)
    if kind == "track":
        _track(message.get("event"), props, rules, out, reasons)
    elif kind in ("page", "screen"):
        out.put("type", "pageview")
    else:
        if kind == "identify":
            _linking(message)
        for name in ("previousId", "userId") if kind == "alias" else ():
            if message.get(name) in (None, ""):
                reasons[name] = f"an alias call needs a {name}"
        out.put("type", "identify")
    device = "previousId" if kind == "alias" else "anonymousId"
    out.put("anonymous_id", message.get(device), device if kind == "alias" else None)
    out.put("user_id", message.get("userId"))
    if "anonymous_id" not in out.raw and "user_id" not in out.raw and device not in reasons:
        reasons["anonymousId"] = "a message needs an anonymousId or a userId (as in Segment)"
    out.put("event_id", event_id(message.get("messageId")))
    for name in ("originalTimestamp", "timestamp"):
        if message.get(name) not in (None, ""):
            try:
                out.put("ts", parse_ts(message[name]), name)
            except ValueError as exc:
                reasons[name] = str(exc)
            break
    out.put("ip", ctx.get("ip"))
    out.put("user_agent", ctx.get("userAgent"))
    url = _page_field("url", kind, props, page, out)
    _page_field("referrer", kind, props, page, out)
    _campaign(ctx.get("campaign"), url, out, reasons)
    return out


def message_event(
    message: Mapping[str, Any], context: Context, rules: Rules, fallback_id: str | None = None
) -> Event:
    """The event of one self-contained message; :class:`InvalidEvent` (or
    :class:`Uncounted`) naming Segment's fields otherwise.

    ``fallback_id`` is the event id of a message without ``messageId`` (a replay's
    stable one); without it, the collector mints one.
    """
    out = translate(message, context, rules)
    if fallback_id is not None:
        out.raw.setdefault("event_id", fallback_id)
    try:
        event = parse_event(out.raw, out.context, rules)
    except InvalidEvent as exc:
        named = {out.origin(name): why for name, why in exc.reasons.items()}
        raise InvalidEvent(named | out.reasons) from None
    if out.reasons:
        raise InvalidEvent(out.reasons)
    if out.goal_version is not None:
        return msgspec.structs.replace(event, goal_version=out.goal_version)
    return event


def judge(raw: str, context: Context, rules: Rules, fallback_id: str) -> list[Event]:
    """The events of a Segment dead letter (a self-contained message) under ``rules``.

    Raises :class:`InvalidEvent` or :class:`Uncounted` exactly as the collector would.
    """
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidEvent({"raw": "is a request body that was not JSON"}) from None
    if not isinstance(message, dict):
        raise InvalidEvent({"message": "must be a JSON object"})
    validation.check_size(message, "message")
    return [message_event(message, context, rules, fallback_id)]


def _object(
    parent: Mapping[str, Any], key: str, name: str, reasons: dict[str, str]
) -> Mapping[str, Any]:
    """``parent[key]`` when it is a JSON object; empty when absent or null (else a reason)."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        reasons[name] = "must be a JSON object"
        return {}
    return value


def _sent_at(raw: Any, received_at: int, rules: Rules, reasons: dict[str, str]) -> int | None:
    """``sentAt`` in epoch ms, when given and believable (the rule of
    :func:`collector.validation.sender_clock`)."""
    if raw is None or raw == "":
        return None
    try:
        sent_at = _parse_sent_at(raw) if isinstance(raw, str) else parse_ts(raw)
        return validation.sender_clock(sent_at, received_at, rules)
    except ValueError as exc:
        reasons["sentAt"] = str(exc)
        return None


@lru_cache(maxsize=256)
def _parse_sent_at(text: str) -> int:
    # A batch's sentAt is every message's: read it once, not per message.
    return parse_ts(text)


def _linking(message: Mapping[str, Any]) -> None:
    """:class:`Uncounted` for an identify that links no device to a user."""
    if message.get("anonymousId") in (None, ""):
        raise Uncounted(
            "identify",
            "an identify without an anonymousId links no device to its user: not counted",
            keep=False,
        )
    if message.get("userId") in (None, ""):
        raise Uncounted(
            "identify",
            "an identify without a userId (traits of an anonymous visitor) links nobody:"
            " not counted",
            keep=False,
        )


def _track(
    name: Any,
    props: Mapping[str, Any],
    rules: Rules,
    out: Translation,
    reasons: dict[str, str],
) -> None:
    """A ``track`` call's conversion fields; :class:`Uncounted` when it is no conversion."""
    if not isinstance(name, str) or not name:
        reasons["event"] = "a track call needs an event name (a string)"
        out.fields["type"] = "event"  # parse_event's "no type" is this reason
        return
    out.put("type", "conversion", "event")
    status = REVERSALS.get(name)
    if status is not None:
        out.put("status", status)
        if props.get("order_id") in (None, ""):
            reasons["properties.order_id"] = f"{name} needs the order_id of the order it undoes"
        out.put("order_id", props.get("order_id"))
        return
    ruled = rules.goals.for_event(name) if rules.goals else None
    goal = ruled.name if ruled else rules.conversion_events.get(name)
    if ruled and rules.goals:
        out.goal_version = rules.goals.version
    if ruled and ruled.value is not None:
        out.put("goal", goal)
        out.put("value", to_number(ruled.value), "goal value")
        out.put("currency", ruled.currency, "goal currency")
        out.put("order_id", props.get("order_id"))
        return
    if goal is not None:
        amounts: tuple[str, ...] = ("revenue", "value", "total")
    elif name == ORDER_COMPLETED:
        goal, amounts = PURCHASE, ("revenue", "total")
    else:
        shown = name if len(name) <= 100 else name[:100] + "..."
        where = f"a goal (PUT /v1/goals) or {_CONVERSIONS}"
        raise Uncounted("track", f"{shown!r} is no conversion: name it in {where}")
    out.put("goal", goal)
    for amount in amounts:
        if props.get(amount) not in (None, ""):
            out.put("value", _money(props[amount]), f"properties.{amount}")
            break
    out.put("currency", props.get("currency"))
    out.put("order_id", props.get("order_id"))


_CONVERSIONS: Final = env_name("conversion_events")


def _money(value: Any) -> Any:
    """A JSON number rounded to the micro-unit, without a binary float's tail; else as is."""
    if isinstance(value, float) and math.isfinite(value):
        return format(round(value, MICRO_DIGITS), "f")
    return value


def _page_field(
    name: str,
    kind: str,
    props: Mapping[str, Any],
    page: Mapping[str, Any],
    out: Translation,
) -> Any:
    """``url`` or ``referrer``: a page call's own property, else ``context.page``'s."""
    if kind == "page" and props.get(name) not in (None, ""):
        out.put(name, props[name], f"properties.{name}")
    else:
        out.put(name, page.get(name), f"context.page.{name}")
    return out.raw.get(name)


def _campaign(campaign: Any, url: Any, out: Translation, reasons: dict[str, str]) -> None:
    """The campaign fields: ``context.campaign``, else the URL's ``utm_*``; click ids
    from the URL always."""
    given = campaign not in (None, {})
    params: dict[str, str] = {}
    # With the campaign given, only click ids are read off the URL: most URLs have
    # none, and looking for their names costs less than reading the query.
    if isinstance(url, str) and (not given or _CLICK_ID_IN_URL.search(url)):
        params = validation.landing_params(url)
    if given:
        if not isinstance(campaign, dict):
            reasons["context.campaign"] = "must be a JSON object"
        else:
            for key, name in CAMPAIGN.items():
                out.put(name, campaign.get(key))
        params = {key: value for key, value in params.items() if key in validation.CLICK_IDS}
    origin = out.origin("url")
    for key, value in params.items():
        out.raw[key] = value  # under its raw name: parse_event's aliases read it
        out.fields.setdefault(ALIASES.get(key, key), f"{origin} ({key})")


__all__ = [
    "TYPES",
    "Translation",
    "event_id",
    "judge",
    "merged",
    "message_event",
    "translate",
]
