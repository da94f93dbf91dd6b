"""The JS snippet at ``GET /t.js``: pageviews and conversions from a web page.

The script (``collector/snippet/t.js``) is read once, when the collector's routes
are built, and served with a short public cache lifetime and an ETag: browsers
and CDNs keep it for a few minutes, then revalidate with a cheap 304, so a new
version reaches every page within ``MAX_AGE_S`` of a deploy.

The snippet posts its events to ``/v1/events`` with ``navigator.sendBeacon`` and
a ``text/plain`` body: a CORS "simple" request, sent without a preflight and in
``no-cors`` mode, whose answer the page never reads. So the collector needs no
CORS headers for it (an ``access-control-allow-origin`` would only serve readers
of the answer, and with cookies ``*`` is not allowed anyway).
"""

from __future__ import annotations

import hashlib
from importlib import resources

from tracker.asgi import Request, Response

MAX_AGE_S = 300
CONTENT_TYPE = b"application/javascript; charset=utf-8"


def _read() -> bytes:
    return resources.files("collector").joinpath("snippet", "t.js").read_bytes()


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match asks: ``W/`` prefixes do not matter."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip().removeprefix("W/")
        if tag in ("*", etag):
            return True
    return False


class Snippet:
    """The ``/t.js`` handler; ``source`` defaults to the packaged ``t.js``."""

    def __init__(self, source: bytes | None = None) -> None:
        self.source = _read() if source is None else source
        self.etag = f'"{hashlib.sha256(self.source).hexdigest()[:20]}"'
        self._headers = [
            (b"cache-control", f"public, max-age={MAX_AGE_S}".encode()),
            (b"etag", self.etag.encode()),
        ]

    async def serve(self, request: Request) -> Response:
        if _matches(request.header(b"if-none-match"), self.etag):
            return Response(b"", 304, CONTENT_TYPE, list(self._headers))
        return Response(self.source, 200, CONTENT_TYPE, list(self._headers))
