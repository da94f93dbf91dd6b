"""The two servers the collector benchmark measures the collector against.

- ``ceiling``: the collector's server (granian, through :func:`tracker.asgi.serve`)
  answering the pixel's GIF and doing nothing else: no validation, no Kafka. No
  collector on this stack can be faster; the ratio to it is what our own code costs.
- ``uvicorn``: the same GIF on uvicorn with httptools and uvloop, the other server
  considered (and the issue's reference ceiling).
- ``starlette``: the same GIF through starlette (its routing, middleware stack,
  ``Request`` and ``Response``) on the ceiling's server: what a framework would add to
  every request, which :mod:`tracker.asgi` does without.
- ``baseline``: what one would write first. An aiohttp app (with uvloop, to be
  fair) that validates each hit with the same :func:`parse_event` and hands it to
  Kafka as one record per event, ``acks=all``, awaiting the acknowledgement.

Run one with ``python -m bench.references {ceiling,uvicorn,starlette,baseline} --port N``; the
baseline reads its Kafka settings from ``TRACKER_*`` variables like the collector.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
import uvloop
from aiohttp import web
from aiokafka import AIOKafkaProducer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector import bots
from collector.pixel import GIF, NO_CACHE_HEADERS
from tracker import asgi
from tracker import settings as settings_module
from tracker.asgi import Message, Receive, Scope, Send
from tracker.events import Context, Event, InvalidEvent, Rules, parse_event
from tracker.ids import new_id
from tracker.kafka import ensure_topics
from tracker.records import encode_events, partition_key
from tracker.settings import Settings

_GIF_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(GIF)).encode()),
    *NO_CACHE_HEADERS,
]
_NO_CACHE = {k.decode(): v.decode() for k, v in NO_CACHE_HEADERS}


async def ceiling(scope: Scope, receive: Receive, send: Send) -> None:
    """Every request gets the pixel's GIF: the bare server's own cost."""
    if scope["type"] != "http":
        return
    start: Message = {"type": "http.response.start", "status": 200, "headers": _GIF_HEADERS}
    await send(start)
    await send({"type": "http.response.body", "body": GIF})


def serve_ceiling(host: str, port: int) -> None:
    """The ceiling on the collector's own server settings, so only the handler differs."""
    asgi.serve(ceiling, host, port)


def serve_uvicorn(host: str, port: int) -> None:
    """The GIF on uvicorn, tuned as one would: httptools, uvloop, no access log."""
    uvicorn.run(
        ceiling,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


def serve_starlette(host: str, port: int) -> None:
    """The GIF as a starlette endpoint, on the ceiling's server and settings."""

    async def pixel(request: Request) -> Response:
        return Response(GIF, media_type="image/gif", headers=_NO_CACHE)

    asgi.serve(Starlette(routes=[Route("/p.gif", pixel)]), host, port)


def baseline(settings: Settings) -> web.Application:
    """Validate like the collector, then one ``send_and_wait`` per event."""
    rules = Rules(
        currencies=frozenset(settings.rates()),
        default_currency=settings.base_currency.upper(),
        is_bot=bots.is_bot,
    )
    producer_key = web.AppKey("producer", AIOKafkaProducer)

    def context(request: web.Request) -> Context:
        return Context(
            ip=request.remote,
            user_agent=request.headers.get("user-agent"),
            referrer=request.headers.get("referer"),
            anonymous_id=request.cookies.get("tid") or new_id(),
        )

    def record(event: Event) -> dict[str, Any]:
        return {
            "topic": settings.events_topic,
            "value": encode_events([event]),
            "key": partition_key(event).encode(),
        }

    async def pixel(request: web.Request) -> web.Response:
        try:
            event = parse_event(dict(request.query), context(request), rules)
        except InvalidEvent:
            return web.Response(body=GIF, status=400, content_type="image/gif")
        await request.app[producer_key].send_and_wait(**record(event))
        response = web.Response(body=GIF, content_type="image/gif", headers=_NO_CACHE)
        if "tid" not in request.cookies:
            response.set_cookie("tid", event.anonymous_id or "", max_age=365 * 86_400)
        return response

    async def batch(request: web.Request) -> web.Response:
        items = orjson.loads(await request.read())
        events, results = [], []
        shared = context(request)
        for index, item in enumerate(items):
            try:
                event = parse_event(item, shared, rules)
            except InvalidEvent as exc:
                results.append({"index": index, "status": "rejected", "reasons": exc.reasons})
                continue
            events.append(event)
            results.append({"index": index, "status": "accepted", "event_id": event.event_id})
        producer = request.app[producer_key]
        await asyncio.gather(*[await producer.send(**record(event)) for event in events])
        body = {"accepted": len(events), "rejected": len(items) - len(events), "results": results}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def kafka(app: web.Application) -> AsyncIterator[None]:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        app[producer_key] = producer
        yield
        await producer.stop()

    app = web.Application(client_max_size=settings.max_body_bytes)
    app.cleanup_ctx.append(kafka)
    app.router.add_get("/p.gif", pixel)
    app.router.add_post("/v1/events", batch)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("server", choices=["ceiling", "uvicorn", "starlette", "baseline"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.server == "ceiling":
        serve_ceiling(args.host, args.port)
    elif args.server == "uvicorn":
        serve_uvicorn(args.host, args.port)
    elif args.server == "starlette":
        serve_starlette(args.host, args.port)
    else:
        app = baseline(settings_module.load())
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            access_log=None,
            print=None,
            loop=uvloop.new_event_loop(),
        )


if __name__ == "__main__":
    main()
