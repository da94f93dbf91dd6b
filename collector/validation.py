"""From HTTP input to what :func:`tracker.events.parse_event` validates, with the limits.

Shared by every collector endpoint and by ``tracker replay-dead-letters``, so a
dead letter is judged again by exactly the rules the collector applies.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qsl, unquote_plus, urlencode

import orjson

from collector import bots
from tracker.asgi import Request
from tracker.channels import CLICK_ID_CHANNELS
from tracker.events import PERSONAL, Context, InvalidEvent, Rules, parse_ts, redacted, truncate_ip
from tracker.settings import Settings
from tracker.types import EpochMs

MAX_EVENT_BYTES: Final = 32 * 1024
"""One event of a batch (a Segment message, a Snowplow event), as JSON, at most; larger
items are rejected on their own. Segment's own limit per message is the same."""
ENVELOPE_KEYS: Final = frozenset({"sent_at", "events"})
"""The keys of a batch envelope ``{"sent_at": T, "events": [...]}``."""
_LANDING_PARAMS: Final = frozenset(
    {"utm_campaign", "utm_source", "utm_medium", "utm_content", "click_id", *CLICK_ID_CHANNELS}
)
"""The campaign parameters of a landing URL; ``utm_term`` is not one (no keyword dimension).
``click_id`` is what the click redirect appends, so the landing page can hand it back."""
CLICK_IDS: Final = ("click_id", *CLICK_ID_CHANNELS)
"""The parameters of a landing URL that name the click (a platform's, or ours)."""


def rules(settings: Settings) -> Rules:
    """The validation rules of the current settings."""
    return Rules(
        currencies=frozenset(settings.rates()),
        default_currency=settings.base_currency.upper(),
        max_future_ms=settings.max_future_s * 1000,
        max_age_ms=settings.max_age_days * 86_400_000,
        truncate_ip=settings.truncate_ip,
        is_bot=bots.is_bot,
        conversion_events=settings.conversion_goals(),
    )


def parse_query(raw: str | bytes) -> dict[str, str]:
    """Query parameters (a query string, as bytes or text); the first of repeated names wins.

    Raises :class:`InvalidEvent` when the query (or a percent-escape in it) is not UTF-8,
    so it is rejected with a reason instead of counted with replacement characters.
    """
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        if "%" in text or "+" in text:
            pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
        else:  # nothing to unescape: a third of parse_qsl's time, on every pixel hit
            pairs = [(key, value) for key, _, value in (p.partition("=") for p in _split(text))]
    except UnicodeDecodeError:
        raise InvalidEvent({"query": "is not valid UTF-8"}) from None
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    return params


def _split(text: str) -> list[str]:
    """The ``name=value`` parts of a query, as parse_qsl splits it (on ``&`` only)."""
    return [part for part in text.split("&") if part]


def query(request: Request) -> dict[str, str]:
    """The request's query parameters; :class:`InvalidEvent` when not UTF-8."""
    raw: bytes = request.scope["query_string"]
    return parse_query(raw)


def landing_params(url: str) -> dict[str, str]:
    """The campaign parameters of a landing URL's query, under their raw names.

    ``utm_campaign``, ``utm_source``, ``utm_medium``, ``utm_content`` and the click ids
    (``gclid``, ``fbclid``, ...), as :func:`tracker.events.parse_event` reads them
    through its aliases. The first of repeated names wins; empty values are left out.
    A parameter that does not decode (a bad percent-escape, not UTF-8) is left out
    alone: the URL is the event's context, and a stray escape elsewhere in it must not
    lose the campaign, nor reject the event.
    """
    query = url.partition("?")[2].partition("#")[0]
    found: dict[str, str] = {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        try:
            name = _unquoted(name)
            if name not in _LANDING_PARAMS or name in found:
                continue
            if text := _unquoted(value):
                found[name] = text
        except UnicodeDecodeError:
            continue
    return found


def _unquoted(text: str) -> str:
    # Most landing URLs escape nothing: unquote_plus would cost a third of an SDK
    # message's translation for them.
    return unquote_plus(text, errors="strict") if "%" in text or "+" in text else text


def is_envelope(body: Any) -> bool:
    """Whether a batch body's one JSON object is an envelope (it has ``events``), not an event."""
    return isinstance(body, dict) and "events" in body


def envelope(
    body: dict[str, Any], received_at: EpochMs, rules: Rules
) -> tuple[EpochMs | None, list[Any]]:
    """The ``sent_at`` (None when absent or null) and the items of a batch envelope.

    Raises :class:`InvalidEvent` naming every bad key: the whole batch is refused.
    ``sent_at`` is the sender's clock, which may be off by hours or days, so it need
    only lie within the accepted horizon (``max_age_ms``, TRACKER_MAX_AGE_DAYS) of the
    time received, either way. A clock further off would move events by more than the
    whole span the collector accepts events for: the likelier cause is a wrong unit
    (epoch seconds read as milliseconds fall in January 1970, microseconds thousands
    of years ahead) or garbage, and trusting it would shift every event of the batch.
    The events' own times, once corrected, still face the usual range checks one by one.
    """
    reasons = {key: "unknown field" for key in body if key not in ENVELOPE_KEYS}
    items = body["events"]
    if not isinstance(items, list):
        reasons["events"] = "must be a JSON array of events"
    sent_at = None
    if body.get("sent_at") is not None:
        try:
            sent_at = sender_clock(parse_ts(body["sent_at"]), received_at, rules)
        except ValueError as exc:
            reasons["sent_at"] = str(exc)
    if reasons:
        raise InvalidEvent(reasons)
    return sent_at, items


def sender_clock(sent_at: EpochMs, received_at: EpochMs, rules: Rules) -> EpochMs:
    """``sent_at`` if it may be the sender's clock when sending (see :func:`envelope`:
    within the accepted horizon of the time received); :class:`ValueError` saying why not.

    Every protocol that says when it sent (the batch envelope's ``sent_at``, Segment's
    ``sentAt``) is judged by this one rule.
    """
    if abs(sent_at - received_at) > rules.max_age_ms:
        raise ValueError(
            f"is more than {rules.max_age_ms / 86_400_000:g} days from the time received"
            " (TRACKER_MAX_AGE_DAYS); it must be the sender's clock when sending,"
            " in epoch milliseconds or RFC 3339"
        )
    return sent_at


def check_size(item: Any, name: str = "event") -> None:
    """Raise :class:`InvalidEvent` (about ``name``) for a batch item over
    :data:`MAX_EVENT_BYTES` as JSON."""
    try:
        size = len(orjson.dumps(item))
    except TypeError:  # orjson refuses to write what it read: nested more than 254 deep
        raise InvalidEvent({name: "is nested too deeply"}) from None
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent({name: f"larger than {MAX_EVENT_BYTES} bytes"})


def raw_item(item: Any) -> bytes:
    """A batch item as JSON for its dead letter, even when it cannot be written whole."""
    try:
        return orjson.dumps(item)
    except TypeError:
        return orjson.dumps({"unrecorded": "item nested too deeply to keep"})


_UNRECORDED: Final = orjson.dumps(
    {"unrecorded": "input naming email or phone that could not be read to hash them"}
)


def without_personal_data(raw: bytes | str) -> bytes | str:
    """A rejected input as its dead letter may keep it: ``email`` and ``phone`` hashed.

    Raw personal data must not reach Kafka, rejected or not. The input is whatever the
    endpoint got: a query string, a JSON item, a whole body (an array, an envelope,
    NDJSON, a Segment or Snowplow payload with objects inside objects); every object
    in it is :func:`~tracker.events.redacted`. Input that does not even mention the
    names is kept as it is, untouched and unparsed; input that mentions them but cannot
    be read is not kept at all.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if not any(name.encode() in data for name in PERSONAL):
        return raw
    try:
        return orjson.dumps(_redacted_json(orjson.loads(data)))
    except orjson.JSONDecodeError:
        pass
    lines = data.splitlines()
    if len(lines) > 1:
        try:
            return b"\n".join(orjson.dumps(_redacted_json(orjson.loads(line))) for line in lines)
        except orjson.JSONDecodeError:
            pass
    if data.lstrip()[:1] in (b"{", b"["):
        return _UNRECORDED  # JSON cut short or malformed: no safe way to find the values
    try:
        pairs = parse_qsl(data.decode(), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return _UNRECORDED
    if not pairs or not any(key in PERSONAL for key, _ in pairs):
        return raw if pairs else _UNRECORDED
    return urlencode(list(redacted(dict(pairs)).items()))


def _redacted_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _redacted_json(item) for key, item in redacted(value).items()}
    if isinstance(value, list):
        return [_redacted_json(item) for item in value]
    return value


def letter_context(context: Context, rules: Rules) -> dict[str, str | int]:
    """What a dead letter keeps of its request, so a replay judges it as the collector did.

    The IP is stored as the event would store it (truncated unless configured otherwise);
    ``sent_at`` (epoch ms) when the batch's envelope gave one, to correct ``ts`` alike;
    Global Privacy Control and required consent as 1 when they applied. The day's
    cookieless salt is never kept: a replay counts such events under the salt of its
    own day.
    """
    kept: dict[str, str | int | None] = {
        "user_agent": context.user_agent,
        "referrer": context.referrer,
        "anonymous_id": context.anonymous_id,
        "ip": context.ip,
        "sent_at": context.sent_at,
        "gpc": 1 if context.gpc else None,
        "consent_required": 1 if context.consent_required else None,
    }
    if context.ip is not None and rules.truncate_ip:
        try:
            kept["ip"] = truncate_ip(context.ip)
        except ValueError:
            kept["ip"] = None
    return {key: value for key, value in kept.items() if value is not None}


def restored_context(received_at: int, kept: Any, salt: bytes | None = None) -> Context:
    """The :class:`Context` of a dead letter, from :func:`letter_context`'s mapping, with
    the replaying day's cookieless ``salt``."""
    fields = kept if isinstance(kept, dict) else {}

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    sent_at = fields.get("sent_at")
    return Context(
        received_at=received_at,
        ip=text("ip"),
        user_agent=text("user_agent"),
        referrer=text("referrer"),
        anonymous_id=text("anonymous_id"),
        sent_at=sent_at if isinstance(sent_at, int) and not isinstance(sent_at, bool) else None,
        gpc=fields.get("gpc") == 1,
        consent_required=fields.get("consent_required") == 1,
        salt=salt,
    )
