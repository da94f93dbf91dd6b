"""The tracking pixel ``GET /p.gif``: an event from a query string, a GIF no cache keeps."""

from __future__ import annotations

import time

from collector import validation
from collector.intake import Intake
from tracker.asgi import Request, Response
from tracker.events import InvalidEvent, parse_event

GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
"""The smallest transparent GIF89a: 1x1, one transparent colour."""

NO_CACHE_HEADERS = [
    (b"cache-control", b"no-cache, no-store, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]


class Pixel:
    """The ``/p.gif`` handler: the GIF always, with ``x-tracker-error`` when rejected."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def hit(self, request: Request) -> Response:
        intake = self._intake
        started = time.perf_counter()
        context, minted = intake.context(request)
        headers = list(NO_CACHE_HEADERS)
        try:
            event = parse_event(validation.query(request), context, intake.rules)
        except InvalidEvent as exc:
            query = request.scope["query_string"]
            await intake.reject(request, "pixel", query, exc.reasons, context)
            headers.append((b"x-tracker-error", str(exc).encode("ascii", "replace")[:512]))
            return Response(GIF, 400, b"image/gif", headers)
        await intake.deliver(request, "pixel", [event])
        headers += intake.cookie_headers(request, minted, [event])
        intake.metrics.took["pixel"].observe(time.perf_counter() - started)
        return Response(GIF, 200, b"image/gif", headers)


__all__ = ["GIF", "NO_CACHE_HEADERS", "Pixel"]
