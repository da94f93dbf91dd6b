"""The one event model, and the validation that turns raw input into it.

Collector, stream processors, simulator and tests all share :class:`Event`; its
wire form (its fields as a JSON object) is derived from it in :mod:`tracker.records`.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import msgspec

from tracker import consent as consents
from tracker import money
from tracker.channels import CHANNELS, CLICK_ID_CHANNELS, derive_channel
from tracker.forward import identity
from tracker.ids import new_id
from tracker.types import EpochMs, Micros
from tracker.windows import parse_period

if TYPE_CHECKING:
    from tracker.goals import GoalSet

EVENT_TYPES: Final = frozenset(
    {"impression", "click", "pageview", "conversion", "spend", "identify", "reset"}
)
"""``identify`` links its ``anonymous_id`` to its ``user_id``; ``reset`` signs its
``anonymous_id`` out (a logout). Neither is traffic: they count in no KPI."""
STATUSES: Final = frozenset({"approved", "pending", "rejected", "refund"})

# Incoming names that mean one of our fields, as sent by UTM links and ad platforms.
ALIASES: Final = {
    "utm_campaign": "campaign",
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_content": "creative",
    **{name: "click_id" for name in CLICK_ID_CHANNELS},
}
# Parameters browsers and tag managers add that carry nothing for us.
IGNORED_PREFIXES: Final = ("_", "cb", "utm_", "rnd")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MS_DIGITS: Final = 18
"""Longer digit strings are no time (and past 4,300 digits ``int()`` refuses them)."""
_SHORT, _LONG, _URL = 256, 512, 2048
_MAX_LENGTH: Final = {
    "event_id": 64,
    "campaign": _SHORT,
    "source": _SHORT,
    "medium": _SHORT,
    "ad_group": _SHORT,
    "creative": _SHORT,
    "click_id": _SHORT,
    "user_id": _SHORT,
    "anonymous_id": _SHORT,
    "goal": 64,
    "order_id": _SHORT,
    "period": 32,
    "url": _URL,
    "referrer": _URL,
    "user_agent": _LONG,
    "ip": 64,
    "email_sha256": 64,
    "phone_sha256": 64,
    "phone_e164_sha256": 64,
    "fbc": _LONG,
    "fbp": _SHORT,
}
# Dimensions end up in Redis field names and Prometheus labels: keep them printable.
_DIMENSIONS: Final = ("campaign", "source", "medium", "ad_group", "creative", "goal")
PERSONAL: Final = {"email": identity.MAX_EMAIL, "phone": identity.MAX_PHONE}
"""Input names of personal data, with their length limits: a conversion may carry them,
hashed on arrival into the ``*_sha256`` fields (:mod:`tracker.forward.identity`); never kept."""
_HASHES: Final = ("email_sha256", "phone_sha256", "phone_e164_sha256")
_MATCH_KEYS: Final = frozenset({*_HASHES, "fbc", "fbp"})
"""The fields that match a conversion to a person on an ad platform."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted tracking event. Money in micro-units of ``currency``.

    A msgspec Struct rather than a dataclass: built in 0.5 us instead of 2.8, written
    4.6x and read 6.5x faster (``bench/validation.py``), on every event's path.
    """

    event_id: str
    """Client-chosen or collector-minted id; the same id twice is one event."""
    type: str
    """One of :data:`EVENT_TYPES`."""
    ts: EpochMs
    """Event time; windows use it. Corrected for the sender's clock when it said ``sent_at``."""
    received_at: EpochMs
    """When the collector accepted it."""
    device_ts: EpochMs | None = None
    """The sender's own clock's time for the event, when its time was corrected by
    ``sent_at`` (else None); derived, never taken from input."""
    channel: str
    """One of :data:`tracker.channels.CHANNELS`, given or derived."""
    campaign: str | None = None
    source: str | None = None
    medium: str | None = None
    ad_group: str | None = None
    creative: str | None = None
    click_id: str | None = None
    """The click this event belongs to."""
    click_source: str | None = None
    """Conversions: the parameter that named an ad platform's click id, as given (``gclid``,
    ``fbclid``, ``msclkid``, ``tclid``), the first when several did; derived, never input."""
    ad_click_id: str | None = None
    """Conversions: that click id, which the platform's conversion upload needs (Google's,
    the gclid). Equal to ``click_id`` unless the event named our own click too (the
    redirect's ``click_id``), which then wins there, for attribution."""
    user_id: str | None = None
    """Who, signed in: only ever from the event itself, never from a request header."""
    anonymous_id: str | None = None
    """The device: the event's own, else the collector's first-party visitor cookie."""
    cost: Micros | None = None
    """Money spent on this impression or click, or a spend event's amount."""
    value: Micros | None = None
    """Conversion revenue."""
    currency: str = "USD"
    goal: str | None = None
    goal_version: int | None = None
    """Conversions made by a goal rule: the version of the rules that made it
    (:mod:`tracker.goals`); derived, never taken from input."""
    status: str | None = None
    """Conversions: approved, pending, rejected or refund."""
    order_id: str | None = None
    email_sha256: str | None = None
    """Conversions: SHA-256 (hex) of the email address given as ``email``, trimmed and
    lower-cased (Meta's and TikTok's rule), or given hashed so. The address is never kept."""
    phone_sha256: str | None = None
    """Conversions: SHA-256 of the E.164 digits, without ``+``, of the number given as
    ``phone`` (Meta's rule), or given hashed so. The number is never kept."""
    phone_e164_sha256: str | None = None
    """Conversions: SHA-256 of the same number with its ``+`` (TikTok's and Google's rule)."""
    fbc: str | None = None
    """Meta's click id in its cookie form (``_fbc``), as given; a conversion's is else built
    from its ``fbclid`` and its time. Left out when it has not Meta's form."""
    fbp: str | None = None
    """Meta's browser id (the ``_fbp`` cookie), as given; left out when not of Meta's form."""
    period: str | None = None
    """Spend events: the day (YYYY-MM-DD) or hour (YYYY-MM-DDTHH) the amount covers."""
    url: str | None = None
    referrer: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    """Truncated unless configured otherwise."""
    bot: bool = False
    """Flagged by user agent; bots never enter KPIs."""
    consent: consents.Consent | None = None
    """What the visitor agreed to (:mod:`tracker.consent`); None when nothing was stated
    and nothing is required: everything granted."""


@dataclass(frozen=True, slots=True)
class Rules:
    """What validation needs to know, taken from the settings."""

    currencies: frozenset[str]
    default_currency: str
    max_future_ms: int = 300_000
    max_age_ms: int = 30 * 86_400_000
    truncate_ip: bool = True
    is_bot: Callable[[str | None], bool] = lambda user_agent: False
    """Bot decision on the event's final user agent (its own, else the request's)."""
    conversion_events: Mapping[str, str] = field(default_factory=dict)
    """SDK event names (Segment's ``track``, Snowplow's structured actions) that are
    conversions, with their goal (TRACKER_CONVERSION_EVENTS)."""
    goals: GoalSet | None = None
    """The goal rules saved in the store, as the collector last read them; they take
    precedence over ``conversion_events``."""


@dataclass(slots=True)
class Context:
    """What the request adds to events that do not say it themselves."""

    received_at: EpochMs = field(default_factory=lambda: time.time_ns() // 1_000_000)
    ip: str | None = None
    user_agent: str | None = None
    referrer: str | None = None
    anonymous_id: str | None = None
    sent_at: EpochMs | None = None
    """When the sender sent the request, on the sender's clock (a batch envelope's
    ``sent_at``). Events' own ``ts`` are read on that clock and corrected by it:
    event time = ``received_at - (sent_at - ts)``."""
    gpc: bool = False
    """The browser sent ``Sec-GPC: 1`` (Global Privacy Control)."""
    consent_required: bool = False
    """Consent not stated is denied (``TRACKER_CONSENT_REQUIRED``), for requests that
    speak for a visitor; a partner's postback does not."""
    salt: bytes | None = None
    """Today's key for cookieless visitor ids; None when the collector has none."""


class InvalidEvent(ValueError):
    """Input that is not an event; ``reasons`` maps each bad field to what is wrong."""

    def __init__(self, reasons: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in reasons.items()))
        self.reasons = reasons


class Uncounted(InvalidEvent):
    """Well-formed input that tracker understands but counts in no KPI.

    A Segment ``group`` call, a ``track`` of a name that is no conversion, an unknown
    Snowplow self-describing event: the SDK gets its acknowledgement (or it would
    retry forever), the collector counts it by ``kind`` and, when ``keep``, keeps it
    as a dead letter with the reason, so a later version or setting can replay it.
    ``keep=False`` for what can never count (a Snowplow page ping).
    """

    def __init__(self, kind: str, reason: str, keep: bool = True) -> None:
        super().__init__({"type": reason})
        self.kind = kind
        self.keep = keep


def parse_ts(raw: object) -> EpochMs:
    """Epoch milliseconds from epoch ms (number or digits) or an RFC 3339 string."""
    if isinstance(raw, bool):
        raise ValueError("must be epoch milliseconds or RFC 3339")
    if isinstance(raw, int):
        return int(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError("must be a finite number of epoch milliseconds")
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text.isascii() and text.isdigit():  # not "٣" or "²", which isdigit() also takes
            if len(text) > _MAX_MS_DIGITS:
                raise ValueError("epoch milliseconds out of range")
            return int(text)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{raw!r} is neither epoch milliseconds nor RFC 3339") from None
        if parsed.tzinfo is None:
            raise ValueError("RFC 3339 time needs an offset such as Z or +02:00")
        return (parsed - _EPOCH) // timedelta(milliseconds=1)  # exact, unlike float math
    raise ValueError("must be epoch milliseconds or RFC 3339")


@lru_cache(maxsize=16_384)
def truncate_ip(raw: str) -> str:
    """Keep the network part only: IPv4 /24, IPv6 /48.

    Cached, since one client sends many events (a batch shares its request's IP).
    """
    address = ipaddress.ip_address(raw.strip())
    if address.version == 4:
        return str(ipaddress.IPv4Address(int(address) & 0xFFFF_FF00))
    return str(ipaddress.IPv6Address(int(address) >> 80 << 80))


def parse_event(raw: Mapping[str, Any], context: Context, rules: Rules) -> Event:
    """Validate one raw event (a JSON object or pixel query) into an :class:`Event`.

    Raises :class:`InvalidEvent` naming every bad field; never returns half an event.
    """
    reasons: dict[str, str] = {}
    values: dict[str, Any] = {}
    stated: dict[str, Any] = {}
    personal: dict[str, Any] = {}
    click_hint: str | None = None
    ad_click: tuple[str, Any] | None = None  # the first platform click id: (its name, value)
    for key, item in raw.items():
        known = _KEYS.get(key)
        if known is None:
            if key in consents.FIELDS or key in PERSONAL:
                if item is not None and item != "":
                    (personal if key in PERSONAL else stated)[key] = item
            elif not key.startswith(IGNORED_PREFIXES):
                reasons[key] = "unknown field"
            continue
        name, platform = known
        if platform is not None and item and click_hint is None:
            click_hint = platform  # a platform's click id names its channel
            ad_click = (key, item)
        if key != name and name in values:
            continue  # the canonical name (or the first alias) wins
        if item is None or item == "":
            continue
        values[name] = item

    for name, item in values.items():  # replaces values in place, never adds a name
        limit = _MAX_LENGTH.get(name)
        if limit is None:
            continue
        if not isinstance(item, str):
            if isinstance(item, int | float) and not isinstance(item, bool) and name != "ip":
                item = values[name] = str(item)
            else:
                reasons[name] = "must be a string"
                continue
        if len(item) > limit:
            reasons[name] = f"longer than {limit} characters"
        elif name in _DIMENSIONS and not item.isprintable():
            reasons[name] = "has control characters"

    kind = values.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        reasons["type"] = f"must be one of {', '.join(sorted(EVENT_TYPES))}"
    if ad_click is not None and kind == "conversion":
        _keep_ad_click(*ad_click, values, reasons)

    ts = context.received_at
    device_ts: EpochMs | None = None
    if "ts" in values:
        try:
            ts = parse_ts(values["ts"])
        except ValueError as exc:
            reasons["ts"] = str(exc)
        else:
            corrected = ""
            if context.sent_at is not None:
                # The sender's clock may be hours off, but the time between an event
                # and its sending is not: move that span back from our receive time.
                device_ts, ts = ts, context.received_at - (context.sent_at - ts)
                corrected = "corrected by sent_at, "  # judged, never silently shifted
            if ts > context.received_at + rules.max_future_ms:
                reasons["ts"] = f"{corrected}is too far in the future"
            elif ts < context.received_at - rules.max_age_ms:
                reasons["ts"] = f"{corrected}is older than the accepted horizon"

    currency = str(values.get("currency", rules.default_currency)).upper()
    if currency not in rules.currencies:
        reasons["currency"] = f"no rate configured for {currency!r}"
    amounts: dict[str, Micros | None] = {}
    for name in ("cost", "value"):
        try:
            amounts[name] = money.parse_micros(values[name]) if name in values else None
        except money.MoneyError as exc:
            reasons[name] = str(exc)

    channel = values.get("channel")
    if channel is not None and (not isinstance(channel, str) or channel not in CHANNELS):
        reasons["channel"] = f"must be one of {', '.join(CHANNELS)}"
    status = values.get("status")
    if status is not None and (not isinstance(status, str) or status not in STATUSES):
        reasons["status"] = f"must be one of {', '.join(sorted(STATUSES))}"
    if "period" in values and "period" not in reasons:
        try:
            parse_period(values["period"])
        except ValueError as exc:
            reasons["period"] = str(exc)
    if kind == "spend":
        if "campaign" not in values:
            reasons["campaign"] = "spend needs a campaign"
        if amounts.get("cost") is None and "cost" not in reasons:
            reasons["cost"] = "spend needs a cost"
    if personal or not values.keys().isdisjoint(_MATCH_KEYS):
        _match_keys(kind, personal, values, reasons)

    consent = None
    if stated or context.gpc or context.consent_required:
        consent = consents.resolve(
            stated, gpc=context.gpc, required=context.consent_required, reasons=reasons
        )
    cookieless = consent is not None and not consent.cookies and kind != "spend"
    if kind in ("identify", "reset"):
        if cookieless:
            reasons["type"] = f"{kind} links a visitor across visits: it needs analytics consent"
        else:
            _check_identity(kind, values, context, reasons)

    ip = values.get("ip", context.ip)
    if cookieless and not reasons:
        _count_cookieless(values, context, ip, reasons)
    if ip is not None and rules.truncate_ip and "ip" not in reasons:
        try:
            ip = truncate_ip(str(ip))
        except ValueError:
            reasons["ip"] = "is not an IP address"

    if reasons:
        raise InvalidEvent(reasons)
    # ``values`` now holds valid fields only, as given; the rest are derived or
    # defaulted. Unpacking it spares a lookup per field of the event.
    if "event_id" not in values:
        values["event_id"] = new_id(context.received_at)
    if not channel:
        values["channel"] = click_hint or derive_channel(values.get("source"), values.get("medium"))
    if "anonymous_id" not in values:
        values["anonymous_id"] = context.anonymous_id
    if "referrer" not in values:
        # The request's headers are clipped, not judged: an event is not the browser's fault.
        values["referrer"] = _clipped(context.referrer, "referrer")
    if "user_agent" not in values:
        values["user_agent"] = _clipped(context.user_agent, "user_agent")
    if kind == "conversion":
        values.setdefault("goal", "purchase")
        values["status"] = status or "approved"
        if "fbc" not in values and values.get("click_source") == "fbclid":
            values["fbc"] = identity.fbc_from_click(values["ad_click_id"], ts)
    values.update(ts=ts, cost=amounts["cost"], value=amounts["value"], currency=currency, ip=ip)
    return Event(
        **values,
        received_at=context.received_at,
        device_ts=device_ts,
        bot=kind != "spend" and rules.is_bot(values["user_agent"]),  # spend: a report, not a hit
        consent=consent,
    )


def _keep_ad_click(
    source: str, item: object, values: dict[str, Any], reasons: dict[str, str]
) -> None:
    """Keep the first platform click id given (``gclid``, ...) and its name, judged as a
    ``click_id`` is: whether or not it is the event's ``click_id`` too."""
    if isinstance(item, int | float) and not isinstance(item, bool):
        item = str(item)
    limit = _MAX_LENGTH["click_id"]
    if not isinstance(item, str):
        reasons[source] = "must be a string"
    elif len(item) > limit:
        reasons[source] = f"longer than {limit} characters"
    else:
        values.update(click_source=source, ad_click_id=item)


def _match_keys(
    kind: object, personal: Mapping[str, Any], values: dict[str, Any], reasons: dict[str, str]
) -> None:
    """A conversion's keys for the ad platforms: email and phone hashed, the raw values
    dropped; ``fbc`` and ``fbp`` kept only in Meta's form.

    A sender's mistake is refused: personal data on an event that is no conversion, a
    value that is no string, a hash not in hex. A person's typo is not: an address or
    number that does not normalise, or a cookie not in Meta's form, is left out, and the
    conversion counts without it. A hash given (``email_sha256``) wins over the value
    given (``email``), as a field's own name wins over its alias.
    """
    given = [*personal, *(name for name in _HASHES if name in values)]
    if given and kind != "conversion":
        reasons.update(dict.fromkeys(given, "only conversions carry personal data"))
        given = []
    for name in given:
        if name in reasons:
            continue
        item = personal.get(name, values.get(name))
        if not isinstance(item, str):
            reasons[name] = "must be a string"
        elif name in _HASHES:
            try:
                values[name] = identity.given_sha256(item)
            except ValueError as exc:
                reasons[name] = str(exc)
        elif len(item) > PERSONAL[name]:
            reasons[name] = f"longer than {PERSONAL[name]} characters"
        else:
            for field, digest in _hashed(name, item).items():
                values.setdefault(field, digest)
    for name, valid in (("fbc", identity.is_fbc), ("fbp", identity.is_fbp)):
        if name in values and name not in reasons and not valid(values[name]):
            del values[name]  # a stale or mangled cookie of the visitor's: left out


def _hashed(name: str, text: str) -> dict[str, str]:
    """The event fields an ``email`` or ``phone`` input stands for: their hashes, by the
    platforms' rules (:mod:`tracker.forward.identity`); none when it does not normalise."""
    try:
        if name == "email":
            return {"email_sha256": identity.email_sha256(text)}
        meta, e164 = identity.phone_sha256s(text)
    except ValueError:
        return {}
    return {"phone_sha256": meta, "phone_e164_sha256": e164}


def redacted(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` input as a dead letter may keep it: with no raw personal data.

    ``email`` and ``phone`` are replaced by the hashes they stand for (under the names
    :func:`parse_event` reads again, so a replay forwards the conversion as the
    collector would have), or dropped when they do not normalise. A hash given under
    its own name stays, and wins.
    """
    kept = {key: item for key, item in raw.items() if key not in PERSONAL}
    for name in PERSONAL:
        item = raw.get(name)
        if isinstance(item, str):
            for field, digest in _hashed(name, item).items():
                kept.setdefault(field, digest)
    return kept


def _count_cookieless(
    values: dict[str, Any], context: Context, ip: object, reasons: dict[str, str]
) -> None:
    """Make the event a cookieless visitor's: the day's id in place of every id it gave.

    No visitor cookie, no device id of the sender's and no user id: only the keyed
    hash of IP, agent and site (:func:`tracker.consent.cookieless_id`), which changes
    every day, so nobody is followed from one day to the next. The hash takes the
    full IP and the event's own agent, before either is cut for keeping.
    """
    if context.salt is None:
        reasons["consent"] = (
            "cookieless counting needs the day's salt, which the collector keeps in Redis: "
            "is Redis reachable from the collector?"
        )
        return
    agent = values.get("user_agent", context.user_agent)
    page = values.get("url") or values.get("referrer") or context.referrer or ""
    try:
        site = urlsplit(page).hostname or ""
    except ValueError:
        site = ""
    values["anonymous_id"] = consents.cookieless_id(context.salt, str(ip or ""), agent, site)
    values.pop("user_id", None)


def _check_identity(
    kind: str, values: Mapping[str, Any], context: Context, reasons: dict[str, str]
) -> None:
    """An identify names a device and a different user; a reset names a device.

    The device may be the visitor cookie (the collector's own, so the pixel and the
    snippet can sign their visitor in); the user only ever comes from the event.
    """
    device = values.get("anonymous_id", context.anonymous_id)  # a string, unless in reasons
    if "anonymous_id" not in reasons and not (device and device.strip()):
        reasons["anonymous_id"] = f"{kind} needs an anonymous_id"
    if kind != "identify" or "user_id" in reasons:
        return
    user = values.get("user_id")
    if not (user and user.strip()):  # blank is nobody, as absent is
        reasons["user_id"] = "identify needs a user_id"
    elif user == device and "anonymous_id" not in reasons:
        reasons["user_id"] = "must differ from anonymous_id"


def _clipped(text: str | None, name: str) -> str | None:
    return text[: _MAX_LENGTH[name]] if text is not None else None


_FIELDS: Final = frozenset(Event.__struct_fields__) - {
    "received_at",
    "device_ts",
    "bot",
    "consent",
    "click_source",
    "ad_click_id",
    "goal_version",
}
"""The fields an input may give; the rest the collector derives."""
_KEYS: Final = {
    **{name: (name, None) for name in _FIELDS},
    **{alias: (name, CLICK_ID_CHANNELS.get(alias)) for alias, name in ALIASES.items()},
}
"""Each name an input may use: the field it fills, and the channel a platform's click
id names (``gclid``: search)."""

__all__ = [
    "EVENT_TYPES",
    "Context",
    "Event",
    "InvalidEvent",
    "Rules",
    "Uncounted",
    "parse_event",
    "redacted",
]
