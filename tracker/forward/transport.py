"""The forwarder's HTTP client: :class:`~tracker.forward.delivery.Transport` over httpx.

One pooled client for every destination, with keep-alive connections and one timeout
(``forward_timeout_s``) for connecting, writing, reading and waiting for a connection.
httpx's errors stop here: a request that got no answer raises
:class:`~tracker.forward.delivery.Unreachable`, whose message names the error but
never the request's headers or body (they hold the platforms' tokens). Redirects are
not followed: a platform's API answers, it does not redirect.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from tracker.forward.delivery import Answer, Unreachable
from tracker.forward.exchange import HttpRequest
from tracker.settings import Settings

USER_AGENT: Final = "tracker-forward"


class HttpTransport:
    """Sends requests to the ad platforms; :meth:`aclose` when done."""

    def __init__(self, settings: Settings) -> None:
        self._client = httpx.AsyncClient(
            timeout=settings.forward_timeout_s,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    async def send(self, request: HttpRequest) -> Answer:
        try:
            response = await self._client.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                content=request.content(),
            )
        except httpx.HTTPError as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from None
        return Answer(
            response.status_code,
            response.content,
            retry_after_s(response.headers.get("retry-after")),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def retry_after_s(header: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header in seconds from ``now`` (epoch seconds): delay-seconds or an
    HTTP date (RFC 9110 10.2.3); None when absent or unreadable."""
    if header is None:
        return None
    text = header.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # not an HTTP date, which is always GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


__all__ = ["USER_AGENT", "HttpTransport", "retry_after_s"]
