"""Snowplow's tracker protocol: ``GET /i`` and ``POST /com.snowplowanalytics.snowplow/tp2``.

Sites running Snowplow's trackers (browser, node, python, ...) point them at the
collector unchanged. ``GET /i`` carries one event in its query and answers the 1x1 GIF;
``POST .../tp2`` carries ``payload_data`` (``{"schema": "iglu:com.snowplowanalytics.
snowplow/payload_data/jsonschema/1-0-x", "data": [{param: "string", ...}, ...]}``,
gzip allowed) and answers ``{"accepted", "rejected", "uncounted"}`` counts. A body
that is no such payload answers 400 and is dead-lettered whole; a bad event inside a
good payload is dead-lettered alone and the answer stays 200, since a tracker drops
or retries a whole request on an error status, good events included. Both paths
answer CORS (the browser tracker posts JSON with credentials, so it asks first with
``OPTIONS``): the request's ``Origin`` is echoed, with credentials allowed.

How one event's parameters map onto events, and what is not counted:
:mod:`collector.snowplow_events`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from collector import validation
from collector.batch import inflated_body
from collector.intake import Intake
from collector.pixel import GIF, NO_CACHE_HEADERS
from collector.snowplow_events import COOKIE, WEB, parse, payload_events
from tracker import asgi
from tracker.asgi import Handler, HTTPError, Request, Response
from tracker.events import Context, Event, InvalidEvent, Uncounted

ENDPOINT: Final = "snowplow"
GET_PATH: Final = "/i"
POST_PATH: Final = "/com.snowplowanalytics.snowplow/tp2"
_PREFLIGHT_MAX_AGE: Final = b"3600"


class Snowplow:
    """The Snowplow routes; each event judged by :func:`parse`, delivered by the intake."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    def routes(self, app: asgi.App, admitted: Callable[[Handler, bool], Handler]) -> None:
        """Serve the protocol's paths on ``app``; ``admitted(handler, image)`` puts an
        event route behind the rate limit (``image``: it answers a GIF)."""
        app.route(GET_PATH, admitted(self.pixel, True))
        app.route(POST_PATH, admitted(self.receive, False), methods=("POST",))
        # A tracker sending SP-Anonymous (or JSON) asks the browser's leave first; a
        # preflight records nothing, the request after it is admitted.
        app.route(GET_PATH, self.preflight, methods=("OPTIONS",))
        app.route(POST_PATH, self.preflight, methods=("OPTIONS",))

    async def pixel(self, request: Request) -> Response:
        """``GET /i``: one event; the GIF, 400 with ``x-tracker-error`` when rejected."""
        intake = self._intake
        started = time.perf_counter()
        anonymous = request.header(b"sp-anonymous") is not None
        headers = [*NO_CACHE_HEADERS, *cors(request)]
        try:
            params = validation.query(request)
        except InvalidEvent as exc:
            context, _ = self._context(request, browser=False, anonymous=anonymous)
            query: bytes = request.scope["query_string"]
            await intake.reject(request, ENDPOINT, query, exc.reasons, context)
            return _gif(400, headers, exc)
        browser = params.get("p", "") in WEB
        context, minted = self._context(request, browser=browser, anonymous=anonymous)
        outcome = await self._judged(request, params, context, large=False)
        if isinstance(outcome, Event):
            await intake.deliver(request, ENDPOINT, [outcome])
            headers += intake.cookie_headers(request, minted, [outcome], cookie=COOKIE)
        elif not isinstance(outcome, Uncounted):
            return _gif(400, headers, outcome)
        intake.metrics.took[ENDPOINT].observe(time.perf_counter() - started)
        return _gif(200, headers)

    async def receive(self, request: Request) -> Response:
        """``POST .../tp2``: a ``payload_data`` body; counts of what became of its events."""
        intake = self._intake
        started = time.perf_counter()
        anonymous = request.header(b"sp-anonymous") is not None
        headers = cors(request)
        body = await inflated_body(request, intake.settings.max_body_bytes)
        try:
            items = payload_events(body)
        except ValueError as exc:
            context, _ = self._context(request, browser=False, anonymous=anonymous)
            await intake.reject(request, ENDPOINT, body, {"body": str(exc)}, context)
            raise HTTPError(400, str(exc), headers) from None
        if len(items) > intake.settings.max_batch_events:
            raise HTTPError(413, f"more than {intake.settings.max_batch_events} events", headers)
        browser = all(item.get("p", "") in WEB for item in items)
        context, minted = self._context(request, browser=browser, anonymous=anonymous)
        large = len(body) > validation.MAX_EVENT_BYTES  # else no item can be too large
        accepted: list[Event] = []
        uncounted = 0
        for item in items:
            outcome = await self._judged(request, item, context, large)
            if isinstance(outcome, Event):
                accepted.append(outcome)
            elif isinstance(outcome, Uncounted):
                uncounted += 1
        await intake.deliver(request, ENDPOINT, accepted)
        headers += intake.cookie_headers(request, minted, accepted, cookie=COOKIE)
        intake.metrics.took[ENDPOINT].observe(time.perf_counter() - started)
        counts = {
            "accepted": len(accepted),
            "rejected": len(items) - len(accepted) - uncounted,
            "uncounted": uncounted,
        }
        response = Response.json(counts)
        response.headers += headers
        return response

    async def preflight(self, request: Request) -> Response:
        """CORS preflight: what Snowplow's collector allows, for any origin."""
        headers = [
            *cors(request),
            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
            (b"access-control-allow-headers", b"Content-Type, SP-Anonymous"),
            (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
        ]
        return Response(b"", 200, headers=headers)

    def _context(
        self, request: Request, browser: bool, anonymous: bool
    ) -> tuple[Context, str | None]:
        """The request's context; a fresh ``sp`` visitor for a browser without one.

        Under ``SP-Anonymous`` the visitor cookie is neither read nor set and the IP is
        not kept. Not a browser's (a server-side tracker): no visitor is minted, as one
        id would merge everyone the server speaks for.
        """
        context, minted = self._intake.context(
            request, mint=browser and not anonymous, cookie=COOKIE
        )
        if anonymous:
            context.anonymous_id = None
            context.ip = None
        return context, minted

    async def _judged(
        self, request: Request, params: dict[str, str], context: Context, large: bool
    ) -> Event | InvalidEvent:
        """The event of ``params``; else what was wrong, once dead-lettered or counted."""
        intake = self._intake
        try:
            if large:
                validation.check_size(params)
            return parse(params, context, intake.rules)
        except Uncounted as exc:
            await intake.uncounted(request, ENDPOINT, validation.raw_item(params), exc, context)
            return exc
        except InvalidEvent as exc:
            await intake.reject(
                request, ENDPOINT, validation.raw_item(params), exc.reasons, context
            )
            return exc


def cors(request: Request) -> list[tuple[bytes, bytes]]:
    """CORS headers for a credentialed request from any page, as Snowplow's collector sends.

    The origin is echoed, not ``*``: a browser sends cookies (``credentials: include``)
    only where the answer names its origin.
    """
    origin = request.header(b"origin")
    return [
        (b"access-control-allow-origin", origin.encode("latin-1") if origin else b"*"),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]


def _gif(
    status: int, headers: list[tuple[bytes, bytes]], error: Exception | None = None
) -> Response:
    if error is not None:
        headers = [*headers, (b"x-tracker-error", str(error).encode("ascii", "replace")[:512])]
    return Response(GIF, status, b"image/gif", headers)


__all__ = ["GET_PATH", "POST_PATH", "Snowplow", "cors"]
