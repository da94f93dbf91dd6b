"""Segment's HTTP tracking API: the SDKs sites already run send to tracker unchanged.

analytics.js, analytics-python, analytics-node, RudderStack's SDKs and anything else
that speaks Segment's API post here: ``POST /v1/batch`` (``{"batch": [messages],
"sentAt": T, "context": {...}}``) or one message to ``/v1/track``, ``/v1/page``,
``/v1/screen``, ``/v1/identify``, ``/v1/alias``, ``/v1/group``, whose path names its
type. analytics.js posts to the first letter of the type (``/v1/t``, ``/v1/p``, ...)
and batches to ``/v1/b``: those are served too. How a message becomes an event, and
what is not counted: :mod:`collector.segment_messages`.

**Write key.** The HTTP Basic user (empty password), else the body's ``writeKey``
(Segment's OAuth bearer tokens are not understood). With ``TRACKER_WRITE_KEYS`` set,
a missing or unknown key answers 401, is counted and never dead-lettered (anyone
could fill the topic); unset, any key is accepted. The key is never logged.

**Not counted**, yet acknowledged (an SDK would retry a refusal forever): counted per
kind in ``tracker_collector_uncounted_total`` and kept as dead letters when a later
setting or version may count them.

**Limits and answers**, as Segment's: a message of a batch over 32 KB is rejected
alone, the rest of its batch goes on; a single call over 32 KB, a batch over 500 KB
(both after gzip, which is understood) or a body that is not JSON answers 400, and
the body is dead-lettered (bodies over ``TRACKER_MAX_BODY_BYTES`` answer 413
unread). Otherwise the answer is 200 ``{"success": true, "accepted": n, "rejected":
m, "uncounted": k}`` (with ``errors``, per rejected message, when there are some): a
bad message is dead-lettered with its reasons and must not make the SDK drop the
good ones of its batch, as a 400 would. The accepted events of a request are
delivered to Kafka together or not at all (503, which the SDKs retry). A sender over
its rate limit (its address's, or its write key's with ``TRACKER_WRITE_KEY_RATE_LIMIT``)
gets 429 with ``Retry-After``, which the SDKs retry too. A dead letter
holds the self-contained message, so ``tracker replay-dead-letters`` judges it with
:func:`~collector.segment_messages.judge` alone. Answers carry
``Access-Control-Allow-Origin: *``, so analytics.js in a page on another origin can
read them; errors have Segment's ``code`` and ``message``, which its libraries log.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson
import structlog

from collector import validation
from collector.batch import inflated_body
from collector.intake import Intake
from collector.segment_messages import merged, message_event
from collector.validation import MAX_EVENT_BYTES
from tracker import asgi
from tracker.asgi import HTTPError, Request, Response
from tracker.events import Context, Event, InvalidEvent, Uncounted
from tracker.settings import env_name

log = structlog.get_logger(__name__)

ENDPOINT: Final = "segment"
MAX_BATCH_BYTES: Final = 500 * 1024
"""One batch request, after inflating, at most (Segment's limit)."""
PATHS: Final[Mapping[str, str | None]] = {
    "/v1/batch": None,
    "/v1/track": "track",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/identify": "identify",
    "/v1/alias": "alias",
    "/v1/group": "group",
    "/v1/b": None,  # analytics.js: its batching delivery
    "/v1/t": "track",  # analytics.js: the first letter of the type, one message a request
    "/v1/p": "page",
    "/v1/s": "screen",
    "/v1/i": "identify",
    "/v1/a": "alias",
    "/v1/g": "group",
}
"""Each path served, with the type of message it takes (None: a batch)."""
_HEADERS: Final = [(b"access-control-allow-origin", b"*")]
_CODES: Final = {429: "too_many_requests", 503: "service_unavailable"}
_CHALLENGE: Final = (b"www-authenticate", b'Basic realm="segment"')
_SETTING: Final = env_name("write_keys")


class Segment:
    """The handler of Segment's paths."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake
        self._keys = [key.encode() for key in intake.settings.write_key_set()]

    def routes(self, app: asgi.App) -> None:
        for path in PATHS:
            app.route(path, self.receive, methods=("POST",))

    async def receive(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await self._receive(request, PATHS[request.path])
        except HTTPError as exc:
            code = _CODES.get(exc.status, "invalid_request")
            response = _error(exc.status, code, exc.reason)
            response.headers.extend(exc.headers)
        else:
            if response.status == 200:
                self._intake.metrics.took[ENDPOINT].observe(time.perf_counter() - started)
        response.headers.extend(_HEADERS)
        return response

    async def _receive(self, request: Request, implied: str | None) -> Response:
        intake = self._intake
        key = basic_user(request.header(b"authorization"))
        if self._keys and key is not None and not self._known(key):
            return self._refuse(request, "unknown write key")  # refused before reading the body
        # Charged to the write key only when it is a configured one: with none configured,
        # any key passes and says nothing about who sends. Known from the header, before
        # the body is read, so a flood is refused unread.
        admitted = key is not None or not self._keys
        if admitted:
            intake.admit(request, ENDPOINT, write_key=key if self._keys else None)
        body = await inflated_body(request, intake.settings.max_body_bytes)
        data, problem = _parsed(body, implied)
        if key is None and data is not None and isinstance(data.get("writeKey"), str):
            key = data["writeKey"]
        if self._keys and (key is None or not self._known(key)):
            return self._refuse(request, "unknown write key" if key else "missing write key")
        if not admitted:
            intake.admit(request, ENDPOINT, write_key=key)
        request_context, _ = intake.context(request, mint=False, browser=False)
        context = Context(received_at=request_context.received_at, ip=request_context.ip)
        if data is None or problem:
            # Parsed, the letter goes without the write key; a single call's is the
            # message made whole (its type the path's), so it can be replayed.
            letter = body
            if data is not None:
                letter = validation.raw_item(merged(data, None, None, implied))
            await intake.reject(request, ENDPOINT, letter, {"body": problem}, context)
            return _error(400, "invalid_request", problem)
        if implied is None:
            items, batch_context, sent_at = data["batch"], data.get("context"), data.get("sentAt")
        else:
            items, batch_context, sent_at = [data], None, None
        return await self._messages(
            request, items, batch_context, sent_at, implied, context, len(body)
        )

    async def _messages(
        self,
        request: Request,
        items: list[Any],
        batch_context: Any,
        sent_at: Any,
        implied: str | None,
        context: Context,
        size: int,
    ) -> Response:
        intake = self._intake
        accepted: list[Event] = []
        uncounted = 0
        errors: list[dict[str, Any]] = []
        large = size > MAX_EVENT_BYTES  # else no message can be too large
        for index, item in enumerate(items):
            message = (
                merged(item, batch_context, sent_at, implied) if isinstance(item, dict) else item
            )
            try:
                if not isinstance(message, dict):
                    raise InvalidEvent({"message": "must be a JSON object"})
                if large:
                    validation.check_size(message, "message")
                event = message_event(message, context, intake.rules)
            except Uncounted as exc:
                await intake.uncounted(
                    request, ENDPOINT, validation.raw_item(message), exc, context
                )
                uncounted += 1
                continue
            except InvalidEvent as exc:
                await intake.reject(
                    request, ENDPOINT, validation.raw_item(message), exc.reasons, context
                )
                errors.append({"index": index, "reasons": exc.reasons})
                continue
            accepted.append(event)
        await intake.deliver(request, ENDPOINT, accepted)
        answer: dict[str, Any] = {
            "success": True,
            "accepted": len(accepted),
            "rejected": len(errors),
            "uncounted": uncounted,
        }
        if errors:
            answer["errors"] = errors
        return Response.json(answer)

    def _known(self, key: str) -> bool:
        """Whether ``key`` is configured; compared with every key, in constant time each."""
        given = key.encode()
        found = False
        for known in self._keys:
            found |= hmac.compare_digest(known, given)
        return found

    def _refuse(self, request: Request, reason: str) -> Response:
        """401, counted and logged (never the key itself); never dead-lettered.

        Charged to the client address, as an unknown key is anyone's to make up.
        """
        self._intake.admit(request, ENDPOINT)
        self._intake.metrics.events.labels(ENDPOINT, "unauthorized").inc()
        log.warning("segment request refused", reason=reason, ip=request.client_ip)
        message = f"{reason}: send a write key of {_SETTING} as the Basic user or as writeKey"
        response = _error(401, "unauthorized", message)
        response.headers.append(_CHALLENGE)
        return response


def basic_user(header: str | None) -> str | None:
    """The user of an ``Authorization: Basic`` header (Segment's write key); else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def _parsed(body: bytes, implied: str | None) -> tuple[dict[str, Any] | None, str]:
    """The body as a JSON object (None if it is none), and what is wrong with the whole
    request ("" if nothing): Segment's size limits, JSON, a batch without ``batch``."""
    limit = MAX_BATCH_BYTES if implied is None else MAX_EVENT_BYTES
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        data, problem = None, f"invalid JSON: {exc}"
    else:
        problem = "" if isinstance(data, dict) else "the body must be a JSON object"
    if len(body) > limit:
        problem = f"Exceeded payload size: {len(body)} bytes, over Segment's limit of {limit}"
    elif implied is None and isinstance(data, dict) and not isinstance(data.get("batch"), list):
        problem = "batch: must be a JSON array of messages"
    return (data if isinstance(data, dict) else None), problem


def _error(status: int, code: str, message: str) -> Response:
    """An error in Segment's form (its libraries log ``code`` and ``message``) and ours."""
    body = {"success": False, "code": code, "message": message, "error": message}
    return Response.json(body, status)


__all__ = ["MAX_BATCH_BYTES", "PATHS", "Segment", "basic_user"]
