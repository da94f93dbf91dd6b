"""A minimal ASGI toolkit shared by the collector and the exporter, and their server.

The collector answers thousands of requests a second on one core. A framework's
per-request routing, middleware and objects would add to each: starlette on the same
server answers the bare GIF with 33 against 22 us of CPU a request, 11 us on top of
the pixel's own 72 us (``bench/collector``, one run). Its few endpoints need none of
it, so both HTTP services run on this small layer, served by granian (see :func:`serve`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from granian import Granian
from granian.constants import Interfaces, Loops
from granian.log import LogLevels

from tracker import heap, logs

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_TARGET_BYTES = 16 * 1024
"""Path and query of a request at most; longer answers 414 before any handler runs."""
MAX_HEADER_BYTES = 32 * 1024
"""All header names and values of a request at most; more answers 431.

uvicorn's httptools parser has no limit of its own: without this, a megabyte of
User-Agent would travel into every event. Put a proxy with its own (smaller) limits in
front of the collector to keep such requests from being buffered at all.
"""


class HTTPError(Exception):
    """An answer other than success; the handler's message goes to the client."""

    def __init__(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


@dataclass(slots=True)
class Request:
    scope: Scope
    receive: Receive

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lowercase), if the request has it."""
        return self.headers(name)[0]

    def headers(self, *names: bytes) -> list[str | None]:
        """The first value of each of ``names``, in one pass over the request's headers."""
        found: list[str | None] = [None] * len(names)
        for key, value in self.scope["headers"]:
            if key in names and found[at := names.index(key)] is None:
                found[at] = value.decode("latin-1")
        return found

    @property
    def client_ip(self) -> str | None:
        client = self.scope.get("client")
        return str(client[0]) if client else None

    @property
    def secure(self) -> bool:
        return self.scope.get("scheme") == "https" or self.header(b"x-forwarded-proto") == "https"

    async def body(self, limit: int) -> bytes:
        """The request body; 413 as soon as it grows past ``limit`` bytes."""
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"body larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


@dataclass(slots=True)
class Response:
    body: bytes = b""
    status: int = 200
    content_type: bytes = b"text/plain; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(orjson.dumps(data), status, b"application/json")

    async def send(self, send: Send) -> None:
        if self.status == 304:  # a 304's length would have to be the 200's (RFC 9110 8.6)
            headers = [(b"content-type", self.content_type), *self.headers]
        else:
            length = b"%d" % len(self.body)
            headers = [(b"content-type", self.content_type), (b"content-length", length)]
            headers += self.headers
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


Handler = Callable[[Request], Awaitable[Response]]
Hook = Callable[[], Awaitable[None]]


class App:
    """Routes (method, path) to handlers, runs startup and shutdown hooks."""

    def __init__(self, on_startup: Hook | None = None, on_shutdown: Hook | None = None):
        self._routes: dict[str, dict[str, Handler]] = {}
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown

    def route(self, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)) -> None:
        for method in methods:
            self._routes.setdefault(path, {})[method] = handler
        if "GET" in methods:
            self._routes[path]["HEAD"] = handler

    @property
    def routes(self) -> dict[str, frozenset[str]]:
        """Each path served, with its methods (``HEAD`` comes with every ``GET``)."""
        return {path: frozenset(handlers) for path, handlers in self._routes.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self._dispatch(Request(scope, receive))
            await response.send(send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _dispatch(self, request: Request) -> Response:
        scope = request.scope
        if len(scope.get("raw_path") or b"") + len(scope["query_string"]) > MAX_TARGET_BYTES:
            return Response.json({"error": f"URL longer than {MAX_TARGET_BYTES} bytes"}, 414)
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            return Response.json({"error": f"headers larger than {MAX_HEADER_BYTES} bytes"}, 431)
        handlers = self._routes.get(request.path)
        if handlers is None:
            return Response.json({"error": f"no such endpoint: {request.path}"}, 404)
        handler = handlers.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(handlers)).encode()
            response = Response.json({"error": f"{request.method} not allowed"}, 405)
            response.headers.append((b"allow", allowed))
            return response
        try:
            return await handler(request)
        except HTTPError as exc:
            response = Response.json({"error": exc.reason}, exc.status)
            response.headers.extend(exc.headers)
            return response
        except Exception:
            log.exception("handler failed", path=request.path)
            return Response.json({"error": "internal error"}, 500)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup:
                        await self._on_startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                heap.settle()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._on_shutdown:
                    await self._on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def serve(
    app: ASGIApp,
    host: str,
    port: int,
    log_format: str = "auto",
    log_level: str = "info",
    workers: int = 1,
) -> None:
    """Serve until SIGINT or SIGTERM, then finish open requests and run shutdown hooks.

    granian, chosen by ``bench/collector``: its Rust HTTP layer answers the bare GIF
    faster than uvicorn with httptools (which writes a response's head and body in
    two system calls), and the gap carries over to the collector. It runs the app in
    ``workers`` processes forked from this one, all on the one port, so ``app`` is
    built here and handed over as is: it must hold nothing a process cannot share
    (no connection, no task; each worker's lifespan startup makes its own). The
    parent only watches the workers and forwards signals to them; each drains on its
    own. With several, granian starts a new worker in place of one that dies, the
    others serving meanwhile (one dying again within 5.5 s of that is a crash loop:
    the server exits); with one, the server exits at once, for whatever supervises it
    to start it again.
    """
    config = logs.logging_config(log_format, log_level)
    # granian's own loggers join ours instead of printing plain text to stdout.
    config["loggers"] = {name: {"propagate": True} for name in ("_granian", "granian.access")}
    server = Granian(
        target="tracker.asgi",  # only a name: the loader below hands each worker ``app``
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        respawn_failed_workers=workers > 1,
        loop=Loops.uvloop,
        websockets=False,
        log_dictconfig=config,
        log_level=LogLevels(log_level.lower()),
        # Open requests and Kafka's acknowledgements get this long, all workers together
        # (they are stopped at once and drain side by side).
        workers_kill_timeout=30,
    )
    parent = os.getpid()
    server.serve(target_loader=lambda target: _in_worker(app, parent))


_PR_SET_PDEATHSIG = 1


def _in_worker(app: ASGIApp, parent: int) -> ASGIApp:
    """Run by granian in each worker before serving: the worker's life ends with the parent's.

    A parent stopped by SIGKILL (or a crash) forwards nothing; the kernel then sends
    the worker SIGTERM, so it stops taking requests and drains instead of serving on
    unsupervised, holding the port.
    """
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before the line above
            os.kill(os.getpid(), signal.SIGTERM)
    return app
