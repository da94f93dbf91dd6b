"""The exporter process: ``/metrics`` for Prometheus and ``/v1/*`` for people.

Every ``/v1/*`` route is registered through one table, with the role its token needs
(:mod:`tracker.export.access`); ``/healthz``, ``/readyz`` and ``/openapi.yaml`` are
open, ``/metrics`` too unless ``TRACKER_METRICS_AUTH``.
"""

from __future__ import annotations

import asyncio
import functools

import redis
import redis.asyncio
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tracker import asgi, redis_nodes
from tracker.asgi import Handler, Request, Response
from tracker.export.access import ADMIN, READ, Access
from tracker.export.api import KpiApi
from tracker.export.audit import AuditLog
from tracker.export.decisions import DecisionApi
from tracker.export.erasure import ErasureApi
from tracker.export.lag import EndOffsets
from tracker.export.metrics import StoreCollector
from tracker.export.people import PeopleApi
from tracker.export.rules import GOALS, TARGETS, RulesApi
from tracker.export.spend import SpendApi
from tracker.openapi import Description
from tracker.redis_clients import async_client, async_reader, sync_reader
from tracker.redis_nodes import Node
from tracker.settings import Settings

log = structlog.get_logger(__name__)
NODES_WITHIN_S = 5.0
"""A scrape waits this long for the store's nodes to say how full they are."""


def build(settings: Settings) -> asgi.App:
    redis_async = async_client(settings)
    # The sums may be under many hash tags (a Redis Cluster): their readers fan out.
    reader = async_reader(settings)
    registry = CollectorRegistry()
    # Made at the first scrape that reaches the store, and kept (a failure is not).
    reader_sync = functools.cache(lambda: sync_reader(settings))
    store = StoreCollector(reader_sync, settings)
    registry.register(store)
    api = KpiApi(reader, settings)
    decisions = DecisionApi(reader, settings)
    people = PeopleApi(redis_async, reader, settings)
    audit = AuditLog(settings)
    erasure = ErasureApi(redis_async, reader, settings, audit)
    spend = SpendApi(settings)
    goals = RulesApi(redis_async, settings, GOALS)
    targets = RulesApi(redis_async, settings, TARGETS)
    ends = EndOffsets(settings)
    node_clients = redis_nodes.NodeClients(settings)

    async def metrics(request: Request) -> Response:
        store.end_offsets = ends.latest
        store.nodes = await nodes()
        # collect() talks to Redis synchronously: keep it off the event loop.
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, content_type=CONTENT_TYPE_LATEST.encode())

    async def nodes() -> list[Node] | None:
        try:
            read = redis_nodes.read(settings, redis_async, node_clients)
            return await asyncio.wait_for(read, NODES_WITHIN_S)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            log.warning("could not read the store's nodes", error=str(exc))
            return None

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
        await audit.stop()
        await redis_async.aclose()
        await reader.aclose()
        await node_clients.aclose()
        if reader_sync.cache_info().currsize:
            reader_sync().close()

    # Aggregates are read, targets too (they are drawn next to them); what is held about
    # one person is personal data, spend imports change every spend KPI, and goals
    # decide what a conversion is: admin.
    get, post, put = ("GET",), ("POST",), ("PUT",)
    queries: list[tuple[str, Handler, str, tuple[str, ...]]] = [
        ("/v1/kpis", api.kpis, READ, get),
        ("/v1/clv", api.clv, READ, get),
        ("/v1/trends", decisions.trends, READ, get),
        ("/v1/attribution", decisions.attribution, READ, get),
        ("/v1/recommendations", decisions.recommendations, READ, get),
        ("/v1/people", people.people, ADMIN, get),
        ("/v1/erasure", erasure.erasure, ADMIN, post),
        ("/v1/spend", spend.spend, ADMIN, post),
        ("/v1/goals", goals.get, ADMIN, get),
        ("/v1/goals", goals.put, ADMIN, put),
        ("/v1/targets", targets.get, READ, get),
        ("/v1/targets", targets.put, ADMIN, put),
    ]
    access = Access(settings.api_token_roles())
    access.warn_if_open()
    app = asgi.App(on_startup=ends.start, on_shutdown=shutdown)
    app.route("/metrics", access.guard(metrics, READ) if settings.metrics_auth else metrics)
    for path, handler, role, methods in queries:
        app.route(path, access.guard(handler, role), methods)
    app.route("/healthz", healthz)
    app.route("/readyz", readyz)
    app.route("/openapi.yaml", Description("tracker.export").serve)
    return app
