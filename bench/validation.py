"""Validation benchmark: the hand validator against msgspec and pydantic, per event.

``python -m bench.validation`` (no services needed; msgspec and pydantic are in the
``test`` extra that ``make install`` installs). Everything runs in this process on
the same inputs; each round times every path once, in turn, so a load change on a
shared machine hits them all alike, and each figure is the best of ``--repeat``
rounds (the least disturbed). Each timing repeats its call for about
``--target-ms``; the garbage collector stays on, as in the collector. Printed:
microseconds per event and each path's time as a ratio of the current path's,
measured in the same run, with the machine's conditions before and after.

Inputs: a batch of 100 events as the batch API receives it (JSON, built from
``tracker.simulate`` as ``bench/collector.py`` builds its load), the same batch with
one bad event (one the schema passes, one it refuses), and pixel queries
(``dict[str, str]``, as ``collector.validation.query`` hands them on).

Paths, each checked to end in the same events or reasons before it is timed:

* current: ``orjson.loads``, then :func:`tracker.events.parse_event` per item;
* msgspec: ``msgspec.json.decode(body, type=list[EventIn])`` (pixel:
  ``msgspec.convert(query, EventIn)``, strict: lax mode would read the text "null"
  as no value). ``EventIn`` says what a schema can: field names (each alias a field
  of its own), unknown fields forbidden, enumerations as ``Literal``, lengths as
  ``Meta(max_length)``, scalar types. :func:`finish` then does what no schema says:
  empty values as absent, aliases, printable dimensions, money (exact,
  non-negative, at most 6 decimals), known currencies, the time horizon, periods,
  spend's campaign and cost, IP truncation, defaults, channel derivation, the bot
  flag. msgspec stops at the first error of the whole body, and cannot ignore name
  prefixes (``_``, ``cb``, ``utm_``, ``rnd``), keep input order (the first of two
  platform click ids wins) or take numbers for text; so whatever it or
  :func:`finish` refuses is judged again by ``parse_event``, which names every bad
  field. The outcome stays identical, per-field reasons included; the bad-event and
  noise-parameter rows show what that fallback costs;
* pydantic: ``TypeAdapter(list[EventModel]).validate_json`` (pixel:
  ``validate_python``), the same schema as a strict model, then the same
  :func:`finish` and fallback. Pydantic lists every error, but in its own words,
  and can no more ignore prefixes than msgspec;
* "decode only": the library's part alone (or plain ``orjson.loads``): what a path
  costs before any semantic check, a floor rather than an equivalent.

Then what every path shares, against what it was before :class:`Event` became a
frozen msgspec Struct (a frozen dataclass, written with orjson, read with
``Event(**item)``): building one Event, the collector's ``encode_records`` and the
worker's ``decode_events`` (:mod:`tracker.records`), checked to write the same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
import orjson
from pydantic import VERSION as PYDANTIC_VERSION
from pydantic import BaseModel, ConfigDict, StringConstraints, TypeAdapter
from pydantic import ValidationError as PydanticError

from bench.conditions import describe
from collector import validation
from tracker import simulate
from tracker.channels import CHANNELS, CLICK_ID_CHANNELS, derive_channel
from tracker.events import (
    _MAX_LENGTH,
    EVENT_TYPES,
    STATUSES,
    Context,
    Event,
    InvalidEvent,
    Rules,
    parse_event,
    parse_ts,
    truncate_ip,
)
from tracker.ids import new_id
from tracker.market import BROWSER
from tracker.money import MoneyError, parse_micros
from tracker.records import decode_events, encode_events, encode_records
from tracker.settings import Settings
from tracker.windows import parse_period

BATCH_EVENTS: Final = 100
PIXELS: Final[dict[str, dict[str, str]]] = {
    "impression": {
        "type": "impression",
        "utm_campaign": "c",
        "utm_medium": "cpc",
        "utm_source": "google",
    },
    "conversion": {
        "type": "conversion",
        "utm_campaign": "c",
        "value": "49.90",
        "currency": "EUR",
        "order_id": "o-1",
        "click_id": "01a21de2-63a9-7bb8-a032-884f0076b53b",
    },
    # A cache buster, as tag managers add: ignored by prefix, which no schema can say.
    "impression, noise parameter": {
        "type": "impression",
        "utm_campaign": "c",
        "utm_medium": "cpc",
        "utm_source": "google",
        "cb": "1700000000000",
    },
}

EventType = Literal["impression", "click", "pageview", "conversion", "spend", "identify", "reset"]
Channel = Literal["search", "social", "email", "affiliate", "display", "direct", "other"]
Status = Literal["approved", "pending", "rejected", "refund"]
for _literal, _expected in ((EventType, EVENT_TYPES), (Channel, CHANNELS), (Status, STATUSES)):
    if set(get_args(_literal)) != set(_expected):
        raise RuntimeError(f"{_literal} no longer matches tracker.events: {sorted(_expected)}")

# msgspec: the event's input schema, as far as a schema goes.
Id = Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["event_id"])]
Short = Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["campaign"])]
Goal = Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["goal"])]
Period = Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["period"])]
Url = Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["url"])]
Agent = Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["user_agent"])]
Ip = Annotated[str, msgspec.Meta(max_length=_MAX_LENGTH["ip"])]


class EventIn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An incoming event as msgspec decodes it; :func:`finish` makes it an Event."""

    type: EventType
    event_id: Id | None = None
    ts: int | float | str | None = None
    channel: Channel | None = None
    campaign: Short | None = None
    source: Short | None = None
    medium: Short | None = None
    ad_group: Short | None = None
    creative: Short | None = None
    click_id: Short | None = None
    user_id: Short | None = None
    anonymous_id: Short | None = None
    cost: int | float | str | None = None
    value: int | float | str | None = None
    currency: str | None = None
    goal: Goal | None = None
    status: Status | None = None
    order_id: Short | None = None
    period: Period | None = None
    url: Url | None = None
    referrer: Url | None = None
    user_agent: Agent | None = None
    ip: Ip | None = None
    utm_campaign: Short | None = None
    utm_source: Short | None = None
    utm_medium: Short | None = None
    utm_content: Short | None = None
    gclid: Short | None = None
    msclkid: Short | None = None
    fbclid: Short | None = None
    tclid: Short | None = None


# pydantic: the same schema as a model.
PId = Annotated[str, StringConstraints(max_length=_MAX_LENGTH["event_id"])]
PShort = Annotated[str, StringConstraints(max_length=_MAX_LENGTH["campaign"])]
PGoal = Annotated[str, StringConstraints(max_length=_MAX_LENGTH["goal"])]
PPeriod = Annotated[str, StringConstraints(max_length=_MAX_LENGTH["period"])]
PUrl = Annotated[str, StringConstraints(max_length=_MAX_LENGTH["url"])]
PAgent = Annotated[str, StringConstraints(max_length=_MAX_LENGTH["user_agent"])]
PIp = Annotated[str, StringConstraints(max_length=_MAX_LENGTH["ip"])]


class EventModel(BaseModel):
    """An incoming event as pydantic validates it; :func:`finish` makes it an Event."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: EventType
    event_id: PId | None = None
    ts: int | float | str | None = None
    channel: Channel | None = None
    campaign: PShort | None = None
    source: PShort | None = None
    medium: PShort | None = None
    ad_group: PShort | None = None
    creative: PShort | None = None
    click_id: PShort | None = None
    user_id: PShort | None = None
    anonymous_id: PShort | None = None
    cost: int | float | str | None = None
    value: int | float | str | None = None
    currency: str | None = None
    goal: PGoal | None = None
    status: Status | None = None
    order_id: PShort | None = None
    period: PPeriod | None = None
    url: PUrl | None = None
    referrer: PUrl | None = None
    user_agent: PAgent | None = None
    ip: PIp | None = None
    utm_campaign: PShort | None = None
    utm_source: PShort | None = None
    utm_medium: PShort | None = None
    utm_content: PShort | None = None
    gclid: PShort | None = None
    msclkid: PShort | None = None
    fbclid: PShort | None = None
    tclid: PShort | None = None


def finish(raw: EventIn | EventModel, context: Context, rules: Rules) -> Event | None:
    """``parse_event``'s checks and defaults on a decoded event.

    None whenever ``parse_event`` must judge: a rejection (its reasons come from
    there), or two platform click ids (the first given wins, and a decoded event no
    longer knows which came first).
    """
    hint = alias_click = None
    if raw.gclid or raw.msclkid or raw.fbclid or raw.tclid:
        for name, given in (
            ("gclid", raw.gclid),
            ("msclkid", raw.msclkid),
            ("fbclid", raw.fbclid),
            ("tclid", raw.tclid),
        ):
            if given:
                if hint is not None:
                    return None
                hint, alias_click = CLICK_ID_CHANNELS[name], given
    campaign = raw.campaign or raw.utm_campaign or None
    source = raw.source or raw.utm_source or None
    medium = raw.medium or raw.utm_medium or None
    creative = raw.creative or raw.utm_content or None
    ad_group = raw.ad_group or None
    goal = raw.goal or None
    for text in (campaign, source, medium, ad_group, creative, goal):
        if text is not None and not text.isprintable():
            return None

    received = context.received_at
    ts = received
    if raw.ts is not None and raw.ts != "":
        try:
            ts = parse_ts(raw.ts)
        except ValueError:
            return None
        if not received - rules.max_age_ms <= ts <= received + rules.max_future_ms:
            return None
    currency = (raw.currency or rules.default_currency).upper()
    if currency not in rules.currencies:
        return None
    try:
        cost = None if raw.cost is None or raw.cost == "" else parse_micros(raw.cost)
        value = None if raw.value is None or raw.value == "" else parse_micros(raw.value)
    except MoneyError:
        return None
    if raw.period:
        try:
            parse_period(raw.period)
        except ValueError:
            return None
    kind = raw.type
    if kind == "spend" and (campaign is None or cost is None):
        return None
    ip = raw.ip or context.ip
    if ip is not None and rules.truncate_ip:
        try:
            ip = truncate_ip(ip)
        except ValueError:
            return None

    status = raw.status
    if kind == "conversion":
        goal = goal or "purchase"
        status = status or "approved"
    user_agent = raw.user_agent or (
        None if context.user_agent is None else context.user_agent[: _MAX_LENGTH["user_agent"]]
    )
    return Event(
        event_id=raw.event_id or new_id(received),
        type=kind,
        ts=ts,
        received_at=received,
        channel=raw.channel or hint or derive_channel(source, medium),
        campaign=campaign,
        source=source,
        medium=medium,
        ad_group=ad_group,
        creative=creative,
        click_id=raw.click_id or alias_click,
        user_id=raw.user_id or None,
        anonymous_id=raw.anonymous_id or context.anonymous_id,
        cost=cost,
        value=value,
        currency=currency,
        goal=goal,
        status=status,
        order_id=raw.order_id or None,
        period=raw.period or None,
        url=raw.url or None,
        referrer=raw.referrer
        or (None if context.referrer is None else context.referrer[: _MAX_LENGTH["referrer"]]),
        user_agent=user_agent,
        ip=ip,
        bot=kind != "spend" and rules.is_bot(user_agent),
    )


Outcome = Event | dict[str, str]
"""An accepted event, or the reasons it was rejected."""


def judged(item: Any, context: Context, rules: Rules) -> Outcome:
    """One batch item as the collector judges it now."""
    try:
        if not isinstance(item, dict):
            raise InvalidEvent({"event": "must be a JSON object"})
        return parse_event(item, context, rules)
    except InvalidEvent as exc:
        return exc.reasons


def current_batch(body: bytes, context: Context, rules: Rules) -> list[Outcome]:
    return [judged(item, context, rules) for item in orjson.loads(body)]


BATCH_DECODER: Final = msgspec.json.Decoder(list[EventIn])
BATCH_ADAPTER: Final = TypeAdapter(list[EventModel])
MODEL_ADAPTER: Final = TypeAdapter(EventModel)


def finished(
    decoded: Sequence[EventIn | EventModel], body: bytes, context: Context, rules: Rules
) -> list[Outcome]:
    """:func:`finish` on each decoded item, ``parse_event`` on those it leaves."""
    outcomes: list[Outcome] = []
    items: list[Any] | None = None
    for index, raw in enumerate(decoded):
        event = finish(raw, context, rules)
        if event is None:
            items = orjson.loads(body) if items is None else items
            outcomes.append(judged(items[index], context, rules))
        else:
            outcomes.append(event)
    return outcomes


def msgspec_batch(body: bytes, context: Context, rules: Rules) -> list[Outcome]:
    try:
        decoded = BATCH_DECODER.decode(body)
    except msgspec.DecodeError:  # the first error of the whole body: judge it all by hand
        return current_batch(body, context, rules)
    return finished(decoded, body, context, rules)


def pydantic_batch(body: bytes, context: Context, rules: Rules) -> list[Outcome]:
    try:
        decoded = BATCH_ADAPTER.validate_json(body)
    except PydanticError:
        return current_batch(body, context, rules)
    return finished(decoded, body, context, rules)


def current_pixel(query: Mapping[str, str], context: Context, rules: Rules) -> Outcome:
    return judged(query, context, rules)


def msgspec_pixel(query: Mapping[str, str], context: Context, rules: Rules) -> Outcome:
    try:
        event = finish(msgspec.convert(query, EventIn), context, rules)
    except msgspec.ValidationError:
        event = None
    return judged(query, context, rules) if event is None else event


def pydantic_pixel(query: Mapping[str, str], context: Context, rules: Rules) -> Outcome:
    try:
        event = finish(MODEL_ADAPTER.validate_python(query), context, rules)
    except PydanticError:
        event = None
    return judged(query, context, rules) if event is None else event


# :class:`Event` as it was before it became a msgspec Struct: a frozen dataclass of the
# same fields, written with orjson and read with ``DataclassEvent(**item)``. What the
# Struct saves.
DataclassEvent: Any = dataclasses.make_dataclass(
    "DataclassEvent",
    [
        (f.name, f.type, dataclasses.field(default=f.default))
        if f.default is not msgspec.NODEFAULT
        else (f.name, f.type)
        for f in msgspec.structs.fields(Event)
    ],
    frozen=True,
    slots=True,
    kw_only=True,
)


def batch_body(seed: int, now_ms: int) -> bytes:
    """``BATCH_EVENTS`` realistic events as a JSON array, as ``bench/collector.py`` posts."""
    return orjson.dumps(simulate.sample(BATCH_EVENTS, seed, now_ms))


def with_bad_event(body: bytes, name: str, value: object) -> bytes:
    """The batch with its middle event's ``name`` set to ``value``: one rejection of 100."""
    events = orjson.loads(body)
    events[len(events) // 2][name] = value
    return orjson.dumps(events)


def minted(outcome: Outcome) -> Outcome:
    """A pixel's outcome with its minted (random) event id blanked, to compare two paths."""
    return msgspec.structs.replace(outcome, event_id="") if isinstance(outcome, Event) else outcome


@dataclasses.dataclass
class Case:
    """One path on one input, and how many events a call handles."""

    section: str
    name: str
    call: Callable[[], object]
    events: int
    baseline: str | None = None
    """The row this one is a ratio of; None for a baseline itself."""
    best: float = float("inf")
    number: int = 1


def timed(call: Callable[[], object], number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - started) / number


def cases(now_ms: int) -> list[Case]:
    """Every timed path, after checking that each ends where the current one does."""
    rules = validation.rules(Settings(currency_rates="EUR=1.08"))
    batch_context = Context(received_at=now_ms, ip="203.0.113.7", user_agent=BROWSER)
    pixel_context = Context(
        received_at=now_ms, ip="203.0.113.7", user_agent=BROWSER, anonymous_id=new_id(now_ms)
    )
    body = batch_body(1, now_ms)
    found: list[Case] = []
    base = ""

    def add(section: str, name: str, call: Callable[[], object], events: int) -> None:
        """A row; the first of its section is the baseline of the others."""
        nonlocal base
        if not found or found[-1].section != section:
            base = name = f"{section}: {name}"
            found.append(Case(section, name, call, events))
        else:
            found.append(Case(section, name, call, events, base))

    batches = (
        (f"batch of {BATCH_EVENTS} events ({len(body) // 1024} KiB JSON)", body),
        # Passes the schema, fails finish(): parse_event judges that one item again.
        ("the same batch, one cost negative", with_bad_event(body, "cost", "-1")),
        # Fails the schema: msgspec and pydantic refuse the body, parse_event judges it all.
        ("the same batch, one status unknown", with_bad_event(body, "status", "won")),
    )
    for section, data in batches:
        reference = current_batch(data, batch_context, rules)
        for name, path in (("msgspec", msgspec_batch), ("pydantic", pydantic_batch)):
            if path(data, batch_context, rules) != reference:
                raise SystemExit(f"{name} differs from parse_event on {section}")
        for name, path in (
            ("current: orjson + parse_event", current_batch),
            ("msgspec decode + finish", msgspec_batch),
            ("pydantic validate_json + finish", pydantic_batch),
        ):
            add(section, name, functools.partial(path, data, batch_context, rules), BATCH_EVENTS)
        if data is body:
            add(
                section,
                "decode only: orjson.loads",
                functools.partial(orjson.loads, body),
                BATCH_EVENTS,
            )
            add(
                section,
                "decode only: msgspec",
                functools.partial(BATCH_DECODER.decode, body),
                BATCH_EVENTS,
            )
            validate_json = functools.partial(BATCH_ADAPTER.validate_json, body)
            add(section, "decode only: pydantic", validate_json, BATCH_EVENTS)

    for label, query in PIXELS.items():
        section = f"pixel: {label}"
        expected = minted(current_pixel(query, pixel_context, rules))
        for name, pixel in (("msgspec", msgspec_pixel), ("pydantic", pydantic_pixel)):
            if minted(pixel(query, pixel_context, rules)) != expected:
                raise SystemExit(f"{name} differs from parse_event on {section}")
        for name, pixel in (
            ("current: parse_event", current_pixel),
            ("msgspec convert + finish", msgspec_pixel),
            ("pydantic validate_python + finish", pydantic_pixel),
        ):
            add(section, name, functools.partial(pixel, query, pixel_context, rules), 1)

    outcomes = current_batch(body, batch_context, rules)
    events = [event for event in outcomes if isinstance(event, Event)]
    before = [DataclassEvent(**msgspec.structs.asdict(event)) for event in events]
    value = encode_events(events)
    if orjson.dumps(before) != value:
        raise SystemExit("the dataclass written with orjson differs from encode_events")
    if [msgspec.structs.asdict(e) for e in decode_events(value)] != orjson.loads(value):
        raise SystemExit("decode_events reads other events than were written")
    count = len(events)
    section = f"collector: the {count} accepted events to Kafka ({len(value) // 1024} KiB)"
    add(
        section,
        "current: encode_records (msgspec)",
        functools.partial(encode_records, events),
        count,
    )
    add(
        section,
        "before: orjson of frozen dataclasses",
        functools.partial(orjson.dumps, before),
        count,
    )
    section = "building one Event (part of every path above)"
    fields = msgspec.structs.asdict(events[0])
    add(section, "current: Event(**fields), frozen Struct", functools.partial(Event, **fields), 1)
    add(section, "before: the frozen dataclass", functools.partial(DataclassEvent, **fields), 1)
    section = "worker: the same record from Kafka"
    add(
        section,
        "current: decode_events (msgspec Decoder)",
        functools.partial(decode_events, value),
        count,
    )

    def before_decode() -> list[Any]:
        return [DataclassEvent(**item) for item in orjson.loads(value)]

    add(section, "before: orjson + DataclassEvent(**item)", before_decode, count)
    return found


def measure(found: list[Case], repeat: int, target_s: float) -> None:
    for case in found:  # warm up, and size each timing to about target_s
        once = timed(case.call, 1)
        once = min(once, timed(case.call, 1))
        case.number = max(1, int(target_s / max(once, 1e-9)))
    for _ in range(repeat):
        for case in found:
            case.best = min(case.best, timed(case.call, case.number))


def report(found: list[Case]) -> None:
    rows = {case.name: case for case in found}
    print(f"\n{'':<56}{'us/event':>10}{'time vs current':>17}{'speed-up':>10}")
    section = None
    for case in found:
        if case.section != section:
            section = case.section
            print(f"\n{section}")
        per_event = case.best / case.events * 1e6
        name = case.name.removeprefix(f"{section}: ")
        if case.baseline is None:
            print(f"  {name:<54}{per_event:>10.2f}{'1.00':>17}{'':>10}")
            continue
        base = rows[case.baseline].best / rows[case.baseline].events * 1e6
        print(f"  {name:<54}{per_event:>10.2f}{per_event / base:>17.2f}{base / per_event:>9.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="rounds; the best one counts")
    parser.add_argument("--target-ms", type=float, default=20.0, help="per timing")
    args = parser.parse_args()

    print(describe())
    print(
        f"msgspec {msgspec.__version__}, pydantic {PYDANTIC_VERSION}, orjson {orjson.__version__}"
    )
    found = cases(int(time.time() * 1000))
    measure(found, args.repeat, args.target_ms / 1000)
    print(f"\nbest of {args.repeat} rounds, about {args.target_ms:.0f} ms a timing, gc on")
    report(found)
    print()
    print(describe())


if __name__ == "__main__":
    main()
