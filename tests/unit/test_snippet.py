from __future__ import annotations

import asyncio
from typing import Any

import pytest

from collector.snippet import MAX_AGE_S, Snippet
from tracker.asgi import Message, Request, Response


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def serve(snippet: Snippet, if_none_match: str | None = None) -> Response:
    headers = [(b"if-none-match", if_none_match.encode())] if if_none_match else []
    scope: dict[str, Any] = {"method": "GET", "path": "/t.js", "headers": headers}
    return asyncio.run(snippet.serve(Request(scope, _no_body)))


def sent(response: Response) -> list[Message]:
    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    asyncio.run(response.send(send))
    return messages


def test_the_packaged_script_is_served_as_javascript_with_a_short_public_cache() -> None:
    snippet = Snippet()
    response = serve(snippet)
    assert response.status == 200
    assert response.body == snippet.source
    assert b"navigator.sendBeacon" in response.body
    assert response.content_type == b"application/javascript; charset=utf-8"
    headers = dict(response.headers)
    assert headers[b"cache-control"] == f"public, max-age={MAX_AGE_S}".encode()
    assert headers[b"etag"] == snippet.etag.encode()


def test_the_script_stays_small() -> None:
    # It is served to every page; consent (Consent Mode, TCF, GPC) took it from 3 to 5 KiB
    # (2.2 KiB gzipped).
    assert len(Snippet().source) < 5.5 * 1024


def test_the_etag_follows_the_content() -> None:
    assert Snippet(b"a").etag == Snippet(b"a").etag != Snippet(b"b").etag


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"other", {etag}', "*"],
)
def test_a_cached_copy_is_revalidated_with_304(if_none_match: str) -> None:
    snippet = Snippet(b"console.log(1)")
    response = serve(snippet, if_none_match.format(etag=snippet.etag))
    assert response.status == 304
    assert response.body == b""
    assert dict(response.headers)[b"etag"] == snippet.etag.encode()
    start = sent(response)[0]
    # A 304 carries no length of its own (RFC 9110 8.6): it describes the 200's body.
    assert b"content-length" not in dict(start["headers"])


def test_a_stale_copy_gets_the_script() -> None:
    snippet = Snippet(b"console.log(2)")
    assert serve(snippet, '"stale"').status == 200
    assert dict(sent(serve(snippet))[0]["headers"])[b"content-length"] == b"14"
