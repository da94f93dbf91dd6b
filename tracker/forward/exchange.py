"""One request to an ad platform, and what came of it, as plain values.

A destination's module builds :class:`HttpRequest` values and reads each answer into an
:class:`Outcome`; the forwarder does the I/O in between (its HTTP client, timeouts,
retries, dead letters), so every platform's rules stay pure and are tested without a
network. What a failure means for the events is its :data:`Kind`:

- ``throttled``: the platform refuses for now because of the rate: send the same again
  later, slower;
- ``transient``: the platform failed or asks to wait (``retry_after_s`` when it said
  how long): the same request may succeed later;
- ``permanent``: these events will never be taken as they are: dead-letter them. Meta
  and TikTok refuse a whole request for one bad event, so for a request of several,
  halving it finds the one;
- ``misconfigured``: credentials, ids or permissions: every request fails alike until an
  operator acts. Keep the events, stop and alert; dead-lettering them would lose them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson

from tracker.events import Event

Kind = Literal["throttled", "transient", "permanent", "misconfigured"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request to send as it is. ``headers`` and ``json`` hold credentials (Meta's
    access token is a body parameter): they stay out of its ``repr``; log neither."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    json: Mapping[str, Any] = field(repr=False)
    """The body, to send as JSON (:meth:`content`)."""
    events: tuple[Event, ...] = field(repr=False)
    """The events the body carries, in its order: :attr:`Outcome.failed` indexes them."""

    def content(self) -> bytes:
        """The body as sent: :attr:`json` as UTF-8 JSON."""
        return orjson.dumps(self.json)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why the platform did not take events, in its own terms."""

    kind: Kind
    code: str
    """The platform's error code (``190``, ``conversionUploadError.EXPIRED_EVENT``,
    ``40002``), or ``http <status>`` when it gave none."""
    message: str
    retry_after_s: float | None = None
    """How long the platform said to wait, when it did."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of one :class:`HttpRequest`: all taken unless said otherwise."""

    failure: Failure | None = None
    """Of the whole request, every event alike; None when the platform took the request."""
    failed: Mapping[int, Failure] = field(default_factory=dict)
    """When it took it: the events (indexes into :attr:`HttpRequest.events`) it refused
    nonetheless (Google's partial failures). An answer that an event was already there
    (a retry of a request whose answer was lost) counts as taken."""

    @property
    def ok(self) -> bool:
        """Whether every event of the request was taken."""
        return self.failure is None and not self.failed


def all_or_none(required: Mapping[str, str], platform: str) -> bool:
    """Whether a destination is on: every setting it needs (variable -> value) is set.

    False when none is; :class:`ValueError` naming the first missing one when only some
    are, which is a mistake rather than a choice.
    """
    missing = [variable for variable, value in required.items() if not value]
    if len(missing) == len(required):
        return False
    if missing:
        raise ValueError(f"{missing[0]} is needed too, to send conversions to {platform}")
    return True


def batches(items: Sequence[T], size: int) -> list[tuple[T, ...]]:
    """``items`` in order, ``size`` at most a batch: a platform's limit per request."""
    return [tuple(items[start : start + size]) for start in range(0, len(items), size)]


def present(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object's members that have a value: platforms read ``null`` as a value given."""
    return {key: value for key, value in fields.items() if value is not None}


def kind_of_status(status: int) -> Kind:
    """What an HTTP status says, for an answer whose body says nothing more."""
    if status == 429:
        return "throttled"
    if status in (401, 403, 404):  # credentials, permissions, a wrong id or URL
        return "misconfigured"
    if 400 <= status < 500:
        return "permanent"
    return "transient"  # 5xx, and a 2xx whose body is not the platform's: unconfirmed


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object; None when it is none (an HTML error page, a cut answer)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return answer if isinstance(answer, dict) else None


__all__ = [
    "Failure",
    "HttpRequest",
    "Kind",
    "Outcome",
    "all_or_none",
    "batches",
    "json_object",
    "kind_of_status",
    "present",
]
