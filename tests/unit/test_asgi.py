from __future__ import annotations

from tracker.asgi import Message, Request, Scope

UA = b"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


def _request(headers: list[tuple[bytes, bytes]]) -> Request:
    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    return Request(scope, _receive)


def test_headers_gives_the_first_value_of_each_name_asked() -> None:
    request = _request(
        [
            (b"host", b"shop.example"),
            (b"user-agent", UA),
            (b"cookie", b"tid=abc"),
            (b"user-agent", b"second"),  # repeated: the first wins, as with header()
            (b"referer", b"https://shop.example/\xe9"),  # latin-1, as header() decodes
        ]
    )
    names = (b"referer", b"cookie", b"x-missing", b"user-agent")
    assert request.header(b"user-agent") == UA.decode()
    assert request.header(b"x-missing") is None
    assert request.headers(*names) == [
        "https://shop.example/\xe9",
        "tid=abc",
        None,
        UA.decode(),
    ]


def test_headers_of_a_request_without_any() -> None:
    assert _request([]).headers(b"cookie", b"user-agent") == [None, None]
