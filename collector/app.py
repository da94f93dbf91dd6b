"""The collector's HTTP routes: validate, enrich, hand to Kafka, answer truthfully."""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from collector import postback, redirect, validation
from collector.metrics import Metrics
from collector.pixel import GIF, NO_CACHE_HEADERS
from collector.producer import BatchingProducer, Unavailable
from collector.snippet import Snippet
from tracker import asgi
from tracker.asgi import HTTPError, Request, Response
from tracker.events import Context, Event, InvalidEvent, parse_event
from tracker.ids import new_id
from tracker.kafka import ensure_topics
from tracker.openapi import Description
from tracker.records import encode_dead_letter
from tracker.settings import Settings

log = structlog.get_logger(__name__)

COOKIE = "tid"
COOKIE_MAX_AGE = 365 * 86_400


class Collector:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.producer = BatchingProducer(settings, on_flushed=self.metrics.flushed)
        self.metrics.buffered.set_function(lambda: self.producer.buffered)
        self.rules = validation.rules(settings)

    def app(self) -> asgi.App:
        app = asgi.App(on_startup=self.start, on_shutdown=self.stop)
        app.route("/p.gif", self.pixel)
        app.route("/v1/events", self.batch, methods=("POST",))
        app.route("/r", redirect.Redirect(self).click)
        app.route("/v1/postback", postback.Postback(self).receive, methods=("GET", "POST"))
        app.route("/t.js", Snippet().serve)
        app.route("/healthz", self.healthz)
        app.route("/readyz", self.readyz)
        app.route("/metrics", self.metrics_page)
        app.route("/openapi.yaml", Description("collector").serve)
        return app

    async def start(self) -> None:
        await ensure_topics(self.settings)
        await self.producer.start()
        log.info("collector started", kafka=self.settings.kafka_bootstrap)

    async def stop(self) -> None:
        await self.producer.stop()
        log.info("collector stopped", buffered=self.producer.buffered)

    def _context(self, request: Request, mint: bool = True) -> tuple[Context, str | None]:
        """What the request says about its events, and a fresh visitor id if it had none.

        ``mint=False`` for requests that speak for many people (a server's batch):
        one minted id would merge them all into one visitor.
        """
        cookie, user_agent, referrer = request.headers(b"cookie", b"user-agent", b"referer")
        visitor = _cookie(cookie, COOKIE)
        minted = None if visitor or not mint else new_id()
        return Context(
            ip=request.client_ip,
            user_agent=user_agent,
            referrer=referrer,
            anonymous_id=visitor or minted,
        ), minted

    def _cookie_header(self, request: Request, visitor: str) -> tuple[bytes, bytes]:
        secure = "; Secure" if request.secure else ""
        value = f"{COOKIE}={visitor}; Max-Age={COOKIE_MAX_AGE}; Path=/; SameSite=Lax{secure}"
        return (b"set-cookie", value.encode())

    async def _deliver(self, request: Request, endpoint: str, events: list[Event]) -> None:
        """Hand ``events`` to Kafka; 503 when it does not take them. A HEAD records nothing."""
        if not _records(request):
            return
        try:
            await self.producer.send(events)
        except Unavailable as exc:
            self.metrics.unavailable.inc()
            raise HTTPError(503, str(exc), [(b"retry-after", b"5")]) from exc
        self.metrics.accepted[endpoint].inc(len(events))

    async def _reject(
        self,
        request: Request,
        endpoint: str,
        raw: bytes | str,
        reasons: Mapping[str, str],
        context: Context | None = None,
    ) -> None:
        """Dead-letter rejected input, so it is never dropped silently. A HEAD records nothing."""
        if not _records(request):
            return
        self.metrics.rejected[endpoint].inc()
        kept = validation.letter_context(context, self.rules) if context else None
        # The request's own receive time, so a replay gives ``ts`` (absent, or
        # corrected by ``sent_at``) exactly the time the collector would have.
        received_at = context.received_at if context else int(time.time() * 1000)
        letter = encode_dead_letter(raw, reasons, endpoint, received_at, kept)
        try:
            await self.producer.send_raw(self.settings.dead_letter_topic, letter)
        except Unavailable as exc:
            raise HTTPError(503, str(exc), [(b"retry-after", b"5")]) from exc

    async def pixel(self, request: Request) -> Response:
        started = time.perf_counter()
        context, minted = self._context(request)
        headers = list(NO_CACHE_HEADERS)
        if minted:
            headers.append(self._cookie_header(request, minted))
        try:
            event = parse_event(validation.query(request), context, self.rules)
        except InvalidEvent as exc:
            query = request.scope["query_string"]
            await self._reject(request, "pixel", query, exc.reasons, context)
            headers.append((b"x-tracker-error", str(exc).encode("ascii", "replace")[:512]))
            return Response(GIF, 400, b"image/gif", headers)
        await self._deliver(request, "pixel", [event])
        self.metrics.took["pixel"].observe(time.perf_counter() - started)
        return Response(GIF, 200, b"image/gif", headers)

    async def batch(self, request: Request) -> Response:
        """A JSON array, NDJSON or an envelope ``{"sent_at": T, "events": [...]}`` of
        events; per-item results, all-or-nothing delivery."""
        started = time.perf_counter()
        body = _inflated(
            await request.body(self.settings.max_body_bytes),
            request.header(b"content-encoding"),
            self.settings.max_body_bytes,
        )
        try:
            items = _parse_items(body)
        except ValueError as exc:
            await self._reject(request, "batch", body, {"body": str(exc)})
            raise HTTPError(400, str(exc)) from exc
        context, _ = self._context(request, mint=False)
        if len(items) == 1 and validation.is_envelope(items[0]):
            try:
                context.sent_at, items = validation.envelope(
                    items[0], context.received_at, self.rules
                )
            except InvalidEvent as exc:  # the whole batch: its clock or shape is wrong
                await self._reject(request, "batch", body, exc.reasons, context)
                return Response.json({"error": str(exc), "reasons": exc.reasons}, 400)
        if len(items) > self.settings.max_batch_events:
            raise HTTPError(413, f"more than {self.settings.max_batch_events} events")
        accepted: list[Event] = []
        results: list[dict[str, Any]] = []
        large = len(body) > validation.MAX_EVENT_BYTES  # else no item can be too large
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise InvalidEvent({"event": "must be a JSON object"})
                if large:
                    validation.check_size(item)
                event = parse_event(item, context, self.rules)
            except InvalidEvent as exc:
                raw = validation.raw_item(item)
                await self._reject(request, "batch", raw, exc.reasons, context)
                results.append({"index": index, "status": "rejected", "reasons": exc.reasons})
                continue
            accepted.append(event)
            results.append({"index": index, "status": "accepted", "event_id": event.event_id})
        await self._deliver(request, "batch", accepted)
        self.metrics.took["batch"].observe(time.perf_counter() - started)
        return Response.json(
            {"accepted": len(accepted), "rejected": len(items) - len(accepted), "results": results}
        )

    async def healthz(self, request: Request) -> Response:
        return Response.json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.producer.ready:
            return Response.json({"status": "ready"})
        return Response.json({"status": "kafka unavailable"}, 503)

    async def metrics_page(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.encode())


def _records(request: Request) -> bool:
    """False for HEAD: it asks what a GET would answer (link checkers, previews), so it
    is answered alike but records no hit and dead-letters nothing."""
    return request.method != "HEAD"


def _inflated(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before ``Content-Encoding: gzip``; the size limit holds after it.

    Decompressing at most ``limit + 1`` bytes stops a small gzip bomb from growing
    into gigabytes in memory.
    """
    if encoding is None or encoding.strip().lower() in ("", "identity"):
        return body
    if encoding.strip().lower() != "gzip":
        raise HTTPError(415, f"content-encoding {encoding!r} is not supported; use gzip or none")
    inflater = zlib.decompressobj(wbits=31)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HTTPError(400, f"body is not valid gzip: {exc}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise HTTPError(413, f"decompressed body larger than {limit} bytes")
    return inflated


def _parse_items(body: bytes) -> list[Any]:
    """Events from a JSON array, a single JSON object (an event or an envelope) or NDJSON."""
    text = body.strip()
    if not text:
        raise ValueError("empty body")
    if text[:1] == b"[":
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc}") from None
        return list(items)
    try:
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]
    except orjson.JSONDecodeError as exc:
        if text[:1] == b"{":  # one object over many lines, pretty-printed (an envelope, say)
            with contextlib.suppress(orjson.JSONDecodeError):
                return [orjson.loads(text)]
        raise ValueError(f"invalid JSON or NDJSON: {exc}") from None


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value[:64]
    return None
