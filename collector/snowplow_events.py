"""Snowplow's tracker protocol in tracker's terms: the pure half of :mod:`collector.snowplow`.

How one event's parameters map (:func:`parse`):

- ``eid`` is the event id (the same id twice is one event). Time: ``ttm`` (a true
  timestamp the site set) as is; else ``dtm`` (the device's clock at creation) read on
  the clock of ``stm`` (the device's clock at sending), as Snowplow's
  ``derived_tstamp``: event time = received - (``stm`` - ``dtm``), the device's own
  time kept as ``device_ts``. An event sent before it was created, or with no ``stm``
  (a plain pixel), is taken as sent when created: its time is the time received.
- Who: ``duid`` (the tracker's domain user id), else ``tnuid`` or ``nuid``, else the
  collector's ``sp`` cookie (Snowplow's network user id), as ``anonymous_id``;
  ``uid`` as ``user_id``. The cookie is set when a browser's request lacks it. An
  ``SP-Anonymous`` header (server-side anonymisation) reads no cookie, sets none and
  keeps no request IP, as Snowplow's collector does.
- Context: ``url`` (else, from a web page, the request's ``Referer``: the page that
  fired a plain pixel) with its ``utm_*`` and click ids (``gclid``, ``fbclid``, ...),
  as Snowplow's campaign attribution enrichment reads them; ``refr`` as the referrer;
  ``ua``, else the request's ``User-Agent`` only on platform (``p``) ``web`` or none: a
  server-side tracker's HTTP client is no visitor, and its agent must not make the
  events it relays bots; ``ip``, else the request's.
- Events: ``e=pv`` is a pageview. ``e=tr`` is a ``purchase`` conversion: order
  ``tr_id``, value ``tr_tt``, currency ``tr_cu``. ``e=se`` whose action ``se_ac`` is
  named in TRACKER_CONVERSION_EVENTS or by a goal rule (:mod:`tracker.goals`, which
  wins) is a conversion with that goal and the rule's fixed value, else ``se_va``.
  ``e=ue`` (``ue_pr`` JSON or ``ue_px`` base64url) of the e-commerce plugin's
  ``snowplow_ecommerce_action``: ``transaction`` is a ``purchase`` from the
  ``transaction`` entity in the contexts (``co``/``cx``): ``transaction_id`` the order,
  ``revenue`` the value, ``currency``; ``refund`` is a conversion of status ``refund``
  of the ``refund`` entity's ``transaction_id``. The tracker takes a refunded order's
  whole revenue back, whatever ``refund_amount`` says: a partial refund reverses the
  whole order (the event keeps the amount as its ``value``, for the record).

Not counted, acknowledged all the same (:class:`~tracker.events.Uncounted`): page pings
(``e=pp``: time on page, which no KPI measures) and transaction items (``e=ti``: the
transaction carries the order's total) are only counted by kind; structured events of
other actions, other e-commerce actions and every other self-describing schema are also
kept as dead letters, so ``tracker replay-dead-letters`` can count them once a setting
or a later version does.

Rejected with reasons (dead-lettered): an unknown or missing ``e``, undecodable
``ue_px``/``ue_pr``/``co``/``cx`` (each named), and whatever
:func:`~tracker.events.parse_event` refuses, named by the Snowplow parameter it came
from. Parameters not used here (``tv``, ``aid``, ``p``'s other values, ``res``, ``vp``,
cookie flags, contexts of events that need none, ...) are ignored, never an error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

import msgspec
import orjson

from collector import validation
from tracker.events import (
    Context,
    Event,
    InvalidEvent,
    Rules,
    Uncounted,
    parse_event,
    parse_ts,
)
from tracker.goals import PURCHASE
from tracker.money import to_number
from tracker.settings import env_name
from tracker.types import EpochMs

COOKIE: Final = "sp"
"""Snowplow collector's network user id cookie, under its name, so a site moving over
keeps its visitors."""

_IGLU = "iglu:com.snowplowanalytics.snowplow"
PAYLOAD_DATA: Final = f"{_IGLU}/payload_data/jsonschema/1-0-"
UNSTRUCT_EVENT: Final = f"{_IGLU}/unstruct_event/jsonschema/1-"
CONTEXTS: Final = f"{_IGLU}/contexts/jsonschema/1-"
_ECOMMERCE = f"{_IGLU}.ecommerce"
ECOMMERCE_ACTION: Final = f"{_ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-"
TRANSACTION: Final = f"{_ECOMMERCE}/transaction/jsonschema/1-"
REFUND: Final = f"{_ECOMMERCE}/refund/jsonschema/1-"

WEB: Final = ("", "web")
"""Platforms (``p``) whose request comes from the visitor's browser; none is a pixel's."""
_URL_CHARS: Final = 2048
"""The longest ``url`` an event may have: a longer ``Referer`` is not taken for one."""


def parse(params: Mapping[str, str], request: Context, rules: Rules) -> Event:
    """One Snowplow event's parameters as an :class:`Event`, judged by ``parse_event``.

    ``request`` is what the request says (:meth:`Snowplow._context`): its IP (none under
    ``SP-Anonymous``), ``User-Agent`` and ``Referer`` headers, the ``sp`` cookie's
    visitor as ``anonymous_id``, and the receive time. Pure: no I/O. Raises
    :class:`Uncounted` for events that count in no KPI, else :class:`InvalidEvent` with
    its reasons keyed by the Snowplow parameters at fault.
    """
    raw: dict[str, Any] = {}
    names: dict[str, str] = {}  # our field -> the parameter it came from

    def take(field: str, *candidates: str) -> None:
        for param in candidates:
            if value := params.get(param):
                raw[field] = value
                names[field] = param
                return

    goal_version = _event_type(params, rules, raw, names)
    take("event_id", "eid")
    take("user_id", "uid")
    take("anonymous_id", "duid", "tnuid", "nuid")
    take("referrer", "refr")
    take("user_agent", "ua")
    take("ip", "ip")
    web = params.get("p", "") in WEB
    url = params.get("url")
    if url:
        raw["url"], names["url"] = url, "url"
    elif web and request.referrer and len(request.referrer) <= _URL_CHARS:
        url = raw["url"] = request.referrer
    if url:
        for name, value in validation.landing_params(url).items():
            raw.setdefault(name, value)
    sent_at = _time(params, raw, names)
    context = Context(
        received_at=request.received_at,
        ip=request.ip,
        user_agent=request.user_agent if web else None,
        referrer=None,  # the request's Referer is the page (``url``), not its referrer
        anonymous_id=request.anonymous_id,
        sent_at=sent_at,
    )
    try:
        event = parse_event(raw, context, rules)
    except InvalidEvent as exc:
        raise InvalidEvent({names.get(k, k): why for k, why in exc.reasons.items()}) from None
    if goal_version is not None:
        return msgspec.structs.replace(event, goal_version=goal_version)
    return event


def _time(params: Mapping[str, str], raw: dict[str, Any], names: dict[str, str]) -> EpochMs | None:
    """Put the event's time in ``raw``; the ``sent_at`` it is to be corrected by, if any."""
    if true := params.get("ttm"):
        raw["ts"], names["ts"] = true, "ttm"
        return None
    if not params.get("dtm"):
        return None
    created = _epoch_ms(params, "dtm")
    raw["ts"], names["ts"] = created, "dtm"
    # Sent before it was created: the clock moved in between (or ``stm`` was cut to
    # the second, as the Python tracker does); Snowplow then trusts neither.
    return max(_epoch_ms(params, "stm"), created) if params.get("stm") else created


def _epoch_ms(params: Mapping[str, str], name: str) -> EpochMs:
    try:
        return parse_ts(params[name])
    except ValueError as exc:
        raise InvalidEvent({name: f"{exc} (epoch milliseconds)"}) from None


def _event_type(
    params: Mapping[str, str], rules: Rules, raw: dict[str, Any], names: dict[str, str]
) -> int | None:
    """Put the type (and a conversion's fields) of ``e`` in ``raw``, or raise; the version
    of the goal rules if one made the event a conversion."""
    kind = params.get("e")
    if kind == "pv":
        raw["type"] = "pageview"
    elif kind == "pp":
        raise Uncounted("page_ping", "page pings (e=pp) measure time on page: no KPI", False)
    elif kind == "ti":
        reason = "transaction items (e=ti) are not counted: the transaction carries the total"
        raise Uncounted("transaction_item", reason, False)
    elif kind == "tr":
        raw.update(type="conversion", goal=PURCHASE)
        for field, param in (("order_id", "tr_id"), ("value", "tr_tt"), ("currency", "tr_cu")):
            if value := params.get(param):
                raw[field], names[field] = value, param
    elif kind == "se":
        action = params.get("se_ac")
        if not action:
            raise InvalidEvent({"se_ac": "a structured event (e=se) needs an action"})
        ruled = rules.goals.for_event(action) if rules.goals else None
        goal = ruled.name if ruled else rules.conversion_events.get(action)
        if goal is None:
            raise Uncounted(
                "struct",
                f"structured event action {action!r} is no conversion;"
                f" name it in a goal (PUT /v1/goals) or {env_name('conversion_events')}"
                " to count it",
            )
        raw.update(type="conversion", goal=goal)
        if ruled and ruled.value is not None:
            raw.update(value=to_number(ruled.value), currency=ruled.currency)
        elif value := params.get("se_va"):
            raw["value"], names["value"] = value, "se_va"
        return rules.goals.version if ruled and rules.goals else None
    elif kind == "ue":
        _self_describing(params, raw, names)
    elif not kind:
        raise InvalidEvent({"e": "missing: the event type (pv, se, tr, ti, pp or ue)"})
    else:
        raise InvalidEvent({"e": f"unknown event type {kind!r}; expected pv, se, tr, ti, pp or ue"})
    return None


def _self_describing(params: Mapping[str, str], raw: dict[str, Any], names: dict[str, str]) -> None:
    found = _json(params, "ue_px", "ue_pr")
    if found is None:
        raise InvalidEvent({"ue_pr": "a self-describing event (e=ue) needs ue_pr or ue_px"})
    param, wrapper = found
    event = _self_describing_data(wrapper, UNSTRUCT_EVENT, param)
    if not _is_instance(event):
        raise InvalidEvent({param: "must hold one self-describing event {schema, data}"})
    schema: str = event["schema"]
    if not schema.startswith(ECOMMERCE_ACTION):
        raise Uncounted("self_describing", f"self-describing events of {schema} are not counted")
    action = event["data"].get("type")
    if action == "transaction":
        context, entity = _entity(params, TRANSACTION, "transaction")
        fields = {"order_id": "transaction_id", "value": "revenue", "currency": "currency"}
        raw.update(type="conversion", goal=PURCHASE)
    elif action == "refund":
        context, entity = _entity(params, REFUND, "refund")
        if not entity.get("transaction_id"):
            raise InvalidEvent({context: "a refund's entity needs the transaction_id it refunds"})
        fields = {"order_id": "transaction_id", "value": "refund_amount", "currency": "currency"}
        raw.update(type="conversion", goal=PURCHASE, status="refund")
    else:
        raise Uncounted("ecommerce", f"e-commerce action {action!r} is not counted")
    for field, key in fields.items():
        if (value := entity.get(key)) is not None:
            raw[field], names[field] = value, context


def _entity(params: Mapping[str, str], prefix: str, action: str) -> tuple[str, dict[str, Any]]:
    """The parameter holding the contexts, and the data of its first entity of ``prefix``."""
    found = _json(params, "cx", "co")
    param = found[0] if found else "co"
    if found is not None:
        entities = _self_describing_data(found[1], CONTEXTS, param)
        if not isinstance(entities, list):
            raise InvalidEvent({param: "must hold a list of entities"})
        for entity in entities:
            if _is_instance(entity) and entity["schema"].startswith(prefix):
                data: dict[str, Any] = entity["data"]
                return param, data
    raise InvalidEvent({param: f"an e-commerce {action} needs its entity {prefix}*"})


def _json(params: Mapping[str, str], encoded: str, plain: str) -> tuple[str, Any] | None:
    """The JSON of base64url parameter ``encoded``, else of parameter ``plain``, with its name."""
    if text := params.get(encoded):
        try:
            # Trackers leave out the padding; Snowplow also reads the standard alphabet.
            data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEvent({encoded: "is not base64url"}) from None
        try:
            return encoded, orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent({encoded: f"is base64url of no JSON: {exc}"}) from None
    if text := params.get(plain):
        try:
            return plain, orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent({plain: f"is not JSON: {exc}"}) from None
    return None


def _self_describing_data(wrapper: Any, schema: str, param: str) -> Any:
    if not isinstance(wrapper, dict) or not str(wrapper.get("schema", "")).startswith(schema):
        raise InvalidEvent({param: f"must be self-describing JSON of {schema}*"})
    return wrapper.get("data")


def _is_instance(entity: Any) -> bool:
    """Whether ``entity`` is self-describing: ``{"schema": "iglu:...", "data": {...}}``."""
    return (
        isinstance(entity, dict)
        and isinstance(entity.get("schema"), str)
        and isinstance(entity.get("data"), dict)
    )


def payload_events(body: bytes) -> list[dict[str, str]]:
    """The events of a ``payload_data`` body; :class:`ValueError` saying what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    schema = payload.get("schema") if isinstance(payload, dict) else None
    if not isinstance(schema, str) or not schema.startswith(PAYLOAD_DATA):
        raise ValueError(f"body must be self-describing JSON of {PAYLOAD_DATA}x")
    events = payload.get("data")
    if not isinstance(events, list) or not all(
        isinstance(event, dict) and all(isinstance(value, str) for value in event.values())
        for event in events
    ):
        raise ValueError("data must be a list of events, each an object of string parameters")
    return events


def judge(raw: str, context: Context, rules: Rules, fallback_id: str) -> list[Event]:
    """The events of a dead letter of this endpoint, judged again as the collector would.

    ``raw`` is one event's parameters as a JSON object, ``context`` the request's, as the
    letter kept them; an event without ``eid`` gets ``fallback_id``, so a replay is
    idempotent. Raises :class:`InvalidEvent` (or :class:`Uncounted`) as :func:`parse`
    does, and for letters that hold no event's parameters (a whole malformed body).
    """
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidEvent({"raw": "is a request body that was not JSON"}) from None
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise InvalidEvent({"raw": "is not one Snowplow event's parameters"})
    if not params.get("eid"):
        params["eid"] = fallback_id
    return [parse(params, context, rules)]


__all__ = ["COOKIE", "WEB", "judge", "parse", "payload_events"]
