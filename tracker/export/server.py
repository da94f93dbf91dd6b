"""The exporter process: ``/metrics`` for Prometheus and ``/v1/kpis`` for people."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tracker import asgi
from tracker.asgi import Request, Response
from tracker.export.api import KpiApi
from tracker.export.decisions import DecisionApi
from tracker.export.lag import EndOffsets
from tracker.export.metrics import StoreCollector
from tracker.export.people import PeopleApi
from tracker.openapi import Description
from tracker.settings import Settings


def build(settings: Settings) -> asgi.App:
    redis_async = redis.asyncio.Redis.from_url(settings.redis_url)
    redis_sync = redis.Redis.from_url(settings.redis_url)
    registry = CollectorRegistry()
    store = StoreCollector(redis_sync, settings)
    registry.register(store)
    api = KpiApi(redis_async, settings)
    decisions = DecisionApi(redis_async, settings)
    people = PeopleApi(redis_async, settings)
    ends = EndOffsets(settings)

    async def metrics(request: Request) -> Response:
        store.end_offsets = ends.latest
        # collect() talks to Redis synchronously: keep it off the event loop.
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, content_type=CONTENT_TYPE_LATEST.encode())

    async def healthz(request: Request) -> Response:
        return Response.json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await redis_async.ping()
        except redis.RedisError as exc:
            return Response.json({"status": f"redis unavailable: {exc}"}, 503)
        return Response.json({"status": "ready"})

    async def shutdown() -> None:
        await ends.stop()
        await redis_async.aclose()
        redis_sync.close()

    app = asgi.App(on_startup=ends.start, on_shutdown=shutdown)
    app.route("/metrics", metrics)
    app.route("/v1/kpis", api.kpis)
    app.route("/v1/clv", api.clv)
    app.route("/v1/trends", decisions.trends)
    app.route("/v1/attribution", decisions.attribution)
    app.route("/v1/recommendations", decisions.recommendations)
    app.route("/v1/people", people.people)
    app.route("/healthz", healthz)
    app.route("/readyz", readyz)
    app.route("/openapi.yaml", Description("tracker.export").serve)
    return app
