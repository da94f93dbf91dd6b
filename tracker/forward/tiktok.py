"""TikTok's Events API: approved conversions, as web events of a pixel.

``POST {TRACKER_TIKTOK_ENDPOINT}/open_api/v1.3/event/track/`` with header
``Access-Token`` and ``{"event_source": "web", "event_source_id": <pixel code>,
"data": [...]}``, at most 1,000 events a request. Purchases are ``CompletePayment``
and leads ``SubmitForm`` (TikTok's standard events); other goals are not sent. Each
event's ``event_id`` is its order id, else its own id, as the TikTok pixel's copy must
say to be deduplicated. The phone's hash is of its E.164 form with ``+``, TikTok's rule.
Only approved conversions are sent: TikTok takes no retraction.

TikTok answers HTTP 200 with a ``code`` of its own: 0 is success, 40100 a rate limit,
40001 and 40101-40199 concern the token or its permissions, 5xxxx are TikTok's passing
failures, and any other 4xxxx (40002 above all, a parameter) the events' own; a bad
event refuses the whole request.
"""

from __future__ import annotations

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

name: Final = "tiktok"
max_batch: Final = 1000
VERSION: Final = "v1.3"
EVENT_NAMES: Final = {"purchase": "CompletePayment", "lead": "SubmitForm"}
CLICK_IDS: Final = frozenset({"ttclid", "tclid"})
"""The parameters that carry TikTok's click id: ``ttclid``, TikTok's own name, and
``tclid``, the name tracker's links have used for it."""
_THROTTLED: Final = 40100
_MISCONFIGURED: Final = frozenset({40001, *range(40101, 40200)})


def configured(settings: Settings) -> bool:
    """Whether conversions go to TikTok: its pixel code and token are both set.

    Raises :class:`ValueError` naming the setting when only one is.
    """
    required = {
        env_name("tiktok_pixel_code"): settings.tiktok_pixel_code,
        env_name("tiktok_access_token"): settings.tiktok_access_token,
    }
    return all_or_none(required, "TikTok")


def accepts(event: Event, settings: Settings, now_ms: EpochMs) -> str | None:
    """None when ``event`` is to be sent to TikTok, else why it is not.

    ``settings`` and ``now_ms`` are unused: TikTok's event names are fixed, and it states
    no age limit. They are taken for the interface all destinations share.
    """
    if event.type != "conversion":
        return "not a conversion"
    if event.bot:
        return "a bot's"
    if event.status == "pending":
        return "pending: sent once approved"
    if event.status != "approved":
        return f"{event.status}: TikTok takes no retraction"
    if event.goal not in EVENT_NAMES:
        return f"goal {event.goal!r} has no TikTok event (only {', '.join(EVENT_NAMES)})"
    if not _user(allowed.permitted(event)):
        return "nothing to match it by: no email, phone, ttclid, IP or user agent consented"
    return None


def requests(events: Sequence[Event], settings: Settings) -> list[HttpRequest]:
    """The requests that send ``events`` (each accepted by :func:`accepts`), at most
    :data:`max_batch` each."""
    url = f"{settings.tiktok_endpoint.rstrip('/')}/open_api/{VERSION}/event/track/"
    headers = {"Content-Type": "application/json", "Access-Token": settings.tiktok_access_token}
    return [
        HttpRequest(
            "POST",
            url,
            headers,
            {
                "event_source": "web",
                "event_source_id": settings.tiktok_pixel_code,
                "data": [_web_event(allowed.permitted(event)) for event in batch],
            },
            batch,
        )
        for batch in batches(events, max_batch)
    ]


def _web_event(event: Event) -> dict[str, Any]:
    properties: dict[str, Any] = {"order_id": event.order_id}
    if event.value is not None:
        properties.update(value=money.to_number(event.value), currency=event.currency)
    web = {
        "event": EVENT_NAMES[event.goal or ""],
        "event_time": event.ts // 1000,
        "event_id": event.order_id or event.event_id,
        "user": _user(event),
        "properties": present(properties),
        "page": {"url": event.url} if event.url else None,
    }
    return present(web)


def _user(event: Event) -> dict[str, str]:
    """TikTok's ``user`` of an event whose consent was applied (:func:`allowed.permitted`)."""
    ttclid = event.ad_click_id if event.click_source in CLICK_IDS else None
    return present(
        {
            "email": event.email_sha256,
            "phone": event.phone_e164_sha256,
            "ttclid": ttclid,
            "ip": event.ip,
            "user_agent": event.user_agent,
        }
    )


def outcome(request: HttpRequest, status: int, body: bytes) -> Outcome:
    """What TikTok's answer to ``request`` says: all taken, or why not (whole requests only)."""
    answer = json_object(body)
    code = answer.get("code") if answer is not None else None
    if not isinstance(code, int) or isinstance(code, bool):
        return Outcome(
            Failure(kind_of_status(status), f"http {status}", "not an answer of TikTok's")
        )
    if code == 0:
        return Outcome()
    message = str(answer.get("message") or "") if answer is not None else ""
    return Outcome(Failure(_kind(code), str(code), message))


def _kind(code: int) -> Kind:
    if code == _THROTTLED:
        return "throttled"
    if code in _MISCONFIGURED:
        return "misconfigured"
    if 40000 <= code < 50000:
        return "permanent"
    return "transient"


__all__ = [
    "CLICK_IDS",
    "EVENT_NAMES",
    "VERSION",
    "accepts",
    "configured",
    "max_batch",
    "name",
    "outcome",
    "requests",
]
