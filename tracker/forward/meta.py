"""Meta's Conversions API: approved conversions, as website events of a pixel.

``POST {TRACKER_META_ENDPOINT}/v26.0/{pixel id}/events`` with ``{"data": [...],
"access_token": ...}``, at most 1,000 events (Meta's limit per request). The body is
what Meta's facebook-business SDK builds (``EventRequest``) for the same events
(tests/unit/test_forward_payloads.py), its version the SDK's. Meta refuses a request
whole when one of its events is invalid.

Each event's ``event_id`` is its order id, else its own id, so that the browser pixel's
copy of the same order (sent with that id as ``eventID``) is deduplicated. Meta takes
website events up to 7 days old, and needs the page's URL and the visitor's user agent
for them: a conversion without either is not sent. Meta has no retraction: only
approved conversions are sent.

Errors are the Graph API's codes: 4, 17, 32, 341, 613 and 80000-80014 are rate limits;
1, 2 and any error Meta marks ``is_transient`` are passing; 10, 102, 190, 200-299 and
803 concern the token, its permissions or an id (100 with subcode 33: no such pixel);
the rest, 100 above all (an invalid parameter), are the events' own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final

from tracker import money
from tracker.events import Event
from tracker.forward import allowed
from tracker.forward.exchange import (
    Failure,
    HttpRequest,
    Kind,
    Outcome,
    all_or_none,
    batches,
    json_object,
    kind_of_status,
    present,
)
from tracker.settings import Settings, env_name
from tracker.types import EpochMs

name: Final = "meta"
max_batch: Final = 1000
VERSION: Final = "v26.0"
MAX_AGE_MS: Final = 7 * 86_400_000
EVENT_NAMES: Final = {"purchase": "Purchase", "lead": "Lead"}
"""Meta's standard events for tracker's goals; TRACKER_META_EVENT_NAMES adds others."""
_MAX_EVENT_NAME: Final = 50
_THROTTLED: Final = frozenset({4, 17, 32, 341, 613, *range(80000, 80015)})
_TRANSIENT: Final = frozenset({1, 2})
_MISCONFIGURED: Final = frozenset({10, 102, 190, 803, *range(200, 300)})
_NO_SUCH_OBJECT: Final = (100, 33)


def configured(settings: Settings) -> bool:
    """Whether conversions go to Meta: its pixel id and token are both set.

    Raises :class:`ValueError` naming the setting when what is set cannot be used.
    """
    required = {
        env_name("meta_pixel_id"): settings.meta_pixel_id,
        env_name("meta_access_token"): settings.meta_access_token,
    }
    if not all_or_none(required, "Meta"):
        return False
    if not settings.meta_pixel_id.isdigit():
        raise ValueError(f"{env_name('meta_pixel_id')}: a pixel id is digits")
    event_names(settings)
    return True


def event_names(settings: Settings) -> dict[str, str]:
    """Goal -> Meta event name: :data:`EVENT_NAMES` with TRACKER_META_EVENT_NAMES over them."""
    return _event_names(settings.meta_event_names)


@functools.lru_cache(maxsize=8)
def _event_names(text: str) -> dict[str, str]:
    names = dict(EVENT_NAMES)
    items = [item.strip() for item in text.split(",") if item.strip()]
    for position, item in enumerate(items, 1):
        goal, _, event = (part.strip() for part in item.partition("="))
        if not goal or not event:
            raise ValueError(f"{env_name('meta_event_names')}: item {position} is not goal=Name")
        if len(event) > _MAX_EVENT_NAME or not event.isprintable():
            raise ValueError(
                f"{env_name('meta_event_names')}: {event!r} must be printable, "
                f"at most {_MAX_EVENT_NAME} characters"
            )
        names[goal] = event
    return names


def accepts(event: Event, settings: Settings, now_ms: EpochMs) -> str | None:
    """None when ``event`` is to be sent to Meta, else why it is not."""
    if event.type != "conversion":
        return "not a conversion"
    if event.bot:
        return "a bot's"
    if event.status == "pending":
        return "pending: sent once approved"
    if event.status != "approved":
        return f"{event.status}: Meta takes no retraction"
    event_name = event_names(settings).get(event.goal or "")
    if event_name is None:
        return f"goal {event.goal!r} has no Meta event name ({env_name('meta_event_names')})"
    if now_ms - event.ts > MAX_AGE_MS:
        return "older than 7 days: Meta refuses it"
    if event.url is None:
        return "no url: Meta's website events need event_source_url"
    if not allowed.user_data_allowed(event):
        return "ad_user_data denied: Meta's website events need the visitor's user agent"
    if event.user_agent is None:
        return "no user agent: Meta's website events need client_user_agent"
    if event_name == "Purchase" and event.value is None:
        return "no value: Meta refuses a Purchase without value and currency"
    return None


def requests(events: Sequence[Event], settings: Settings) -> list[HttpRequest]:
    """The requests that send ``events`` (each accepted by :func:`accepts`), at most
    :data:`max_batch` each."""
    names = event_names(settings)
    url = f"{settings.meta_endpoint.rstrip('/')}/{VERSION}/{settings.meta_pixel_id}/events"
    headers = {"Content-Type": "application/json"}
    return [
        HttpRequest(
            "POST",
            url,
            headers,
            {
                "data": [_server_event(allowed.permitted(e), names) for e in batch],
                "access_token": settings.meta_access_token,
            },
            batch,
        )
        for batch in batches(events, max_batch)
    ]


def _server_event(event: Event, names: dict[str, str]) -> dict[str, Any]:
    """One event of Meta's ``data``."""
    user = {
        "em": [event.email_sha256] if event.email_sha256 else None,
        "ph": [event.phone_sha256] if event.phone_sha256 else None,
        "client_ip_address": event.ip,
        "client_user_agent": event.user_agent,
        "fbc": event.fbc,
        "fbp": event.fbp,
    }
    custom: dict[str, Any] = {"order_id": event.order_id}
    if event.value is not None:
        custom.update(value=money.to_number(event.value), currency=event.currency.lower())
    return present(
        {
            "event_name": names[event.goal or ""],
            "event_time": event.ts // 1000,
            "event_source_url": event.url,
            "event_id": event.order_id or event.event_id,
            "user_data": present(user),
            "custom_data": present(custom) or None,
            "action_source": "website",
        }
    )


def outcome(request: HttpRequest, status: int, body: bytes) -> Outcome:
    """What Meta's answer to ``request`` says: all taken, or why not (whole requests only)."""
    answer = json_object(body)
    error = answer.get("error") if answer is not None else None
    if 200 <= status < 300 and answer is not None and error is None:
        return Outcome()
    if not isinstance(error, dict):
        return Outcome(Failure(kind_of_status(status), f"http {status}", "not an answer of Meta's"))
    code, subcode = error.get("code"), error.get("error_subcode")
    message = str(error.get("error_user_msg") or error.get("message") or "")
    shown = f"{code}/{subcode}" if subcode is not None else str(code)
    return Outcome(Failure(_kind(code, subcode, error.get("is_transient"), status), shown, message))


def _kind(code: object, subcode: object, transient: object, status: int) -> Kind:
    if not isinstance(code, int) or isinstance(code, bool):  # no code of Meta's
        return "transient" if transient is True else kind_of_status(status)
    if code in _THROTTLED:
        return "throttled"
    if code in _TRANSIENT or transient is True:
        return "transient"
    if code in _MISCONFIGURED or (code, subcode) == _NO_SUCH_OBJECT:
        return "misconfigured"
    return "permanent"


__all__ = [
    "EVENT_NAMES",
    "MAX_AGE_MS",
    "VERSION",
    "accepts",
    "configured",
    "event_names",
    "max_batch",
    "name",
    "outcome",
    "requests",
]
