"""The collector's own batch API ``POST /v1/events``: per-item results, all-or-nothing delivery."""

from __future__ import annotations

import contextlib
import time
import zlib
from typing import Any

import orjson

from collector import validation
from collector.intake import Intake
from tracker.asgi import HTTPError, Request, Response
from tracker.events import Event, InvalidEvent, parse_event


class Batch:
    """The ``/v1/events`` handler: a JSON array, NDJSON or an envelope
    ``{"sent_at": T, "events": [...]}`` of events."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def receive(self, request: Request) -> Response:
        intake = self._intake
        started = time.perf_counter()
        body = await inflated_body(request, intake.settings.max_body_bytes)
        try:
            items = parse_items(body)
        except ValueError as exc:
            await intake.reject(request, "batch", body, {"body": str(exc)})
            raise HTTPError(400, str(exc)) from exc
        context, _ = intake.context(request, mint=False)
        if len(items) == 1 and validation.is_envelope(items[0]):
            try:
                context.sent_at, items = validation.envelope(
                    items[0], context.received_at, intake.rules
                )
            except InvalidEvent as exc:  # the whole batch: its clock or shape is wrong
                await intake.reject(request, "batch", body, exc.reasons, context)
                return Response.json({"error": str(exc), "reasons": exc.reasons}, 400)
        if len(items) > intake.settings.max_batch_events:
            raise HTTPError(413, f"more than {intake.settings.max_batch_events} events")
        accepted: list[Event] = []
        results: list[dict[str, Any]] = []
        large = len(body) > validation.MAX_EVENT_BYTES  # else no item can be too large
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise InvalidEvent({"event": "must be a JSON object"})
                if large:
                    validation.check_size(item)
                event = parse_event(item, context, intake.rules)
            except InvalidEvent as exc:
                raw = validation.raw_item(item)
                await intake.reject(request, "batch", raw, exc.reasons, context)
                results.append({"index": index, "status": "rejected", "reasons": exc.reasons})
                continue
            accepted.append(event)
            results.append({"index": index, "status": "accepted", "event_id": event.event_id})
        await intake.deliver(request, "batch", accepted)
        intake.metrics.took["batch"].observe(time.perf_counter() - started)
        return Response.json(
            {"accepted": len(accepted), "rejected": len(items) - len(accepted), "results": results}
        )


async def inflated_body(request: Request, limit: int) -> bytes:
    """The request's body as sent before ``Content-Encoding: gzip``; ``limit`` holds after it.

    Decompressing at most ``limit + 1`` bytes stops a small gzip bomb from growing
    into gigabytes in memory.
    """
    body = await request.body(limit)
    encoding = request.header(b"content-encoding")
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


def parse_items(body: bytes) -> list[Any]:
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


__all__ = ["Batch", "inflated_body", "parse_items"]
