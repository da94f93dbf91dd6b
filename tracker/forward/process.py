"""``tracker forward``: conversions from the events topic to every configured ad platform.

One :class:`~tracker.forward.lane.Lane` per destination that is set up, sharing one HTTP
client, one Kafka producer (the dead letters) and one Redis client (the sent marks).
The process serves, on ``forward_host:forward_port``:

- ``/metrics``: :mod:`tracker.forward.metrics`;
- ``/healthz``: 200 while every lane runs; 503 once one ended on an error (a bug: the
  process should be restarted);
- ``/readyz``: 200 while every destination accepts its setup; 503 naming those that
  refuse it (they send nothing until an operator fixes them; alert ForwardingFailing).

It runs on the same server as the collector and the exporter (:func:`tracker.asgi.serve`):
SIGTERM ends every lane's waits, lets a request in flight finish and leaves what was
read and not yet done uncommitted, for the next start.
"""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.asyncio import Redis

from collector.producer import kafka_producer
from tracker import asgi
from tracker.asgi import Request, Response
from tracker.forward import dead
from tracker.forward.destinations import Destination
from tracker.forward.lane import Lane
from tracker.forward.metrics import Metrics
from tracker.forward.transport import HttpTransport
from tracker.kafka import ensure_topics
from tracker.redis_clients import async_client
from tracker.settings import Settings

log = structlog.get_logger(__name__)


class Forwarder:
    """The lanes of ``destinations`` and what they share; :meth:`app` serves them."""

    def __init__(self, settings: Settings, destinations: list[Destination]) -> None:
        self.settings = settings
        self.destinations = destinations
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, [d.name for d in destinations])
        self.lanes: list[Lane] = []
        self._redis: Redis | None = None
        self._producer: AIOKafkaProducer | None = None
        self._transport: HttpTransport | None = None

    async def start(self) -> None:
        names = [d.name for d in self.destinations]
        await ensure_topics(self.settings, dead.topics(self.settings, names))
        self._redis = async_client(self.settings)
        self._producer = kafka_producer(self.settings)
        await self._producer.start()
        self._transport = HttpTransport(self.settings)
        for destination in self.destinations:
            lane = Lane(
                destination,
                self.settings,
                self._redis,
                self._producer,
                self._transport,
                self.metrics,
            )
            self.lanes.append(lane)
            await lane.start()
        log.info("forwarder started", destinations=names)

    async def stop(self) -> None:
        await asyncio.gather(*(lane.stop() for lane in self.lanes))
        if self._transport is not None:
            await self._transport.aclose()
        if self._producer is not None:
            await self._producer.stop()
        if self._redis is not None:
            await self._redis.aclose()
        log.info("forwarder stopped")

    def app(self) -> asgi.App:
        app = asgi.App(on_startup=self.start, on_shutdown=self.stop)
        app.route("/metrics", self.metrics_page)
        app.route("/healthz", self.healthz)
        app.route("/readyz", self.readyz)
        return app

    async def metrics_page(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.encode())

    async def healthz(self, request: Request) -> Response:
        ended = [lane.name for lane in self.lanes if not lane.alive]
        if ended:
            return Response.json({"status": "lanes ended", "destinations": ended}, 503)
        return Response.json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        lanes = {lane.name: lane.status() for lane in self.lanes}
        ready = bool(lanes) and all(state["status"] == "ok" for state in lanes.values())
        body = {"status": "ready" if ready else "not ready", "destinations": lanes}
        return Response.json(body, 200 if ready else 503)


def serve(settings: Settings, destinations: list[Destination]) -> None:
    """Run the forwarder until SIGTERM or SIGINT."""
    app = Forwarder(settings, destinations).app()
    asgi.serve(
        app, settings.forward_host, settings.forward_port, settings.log_format, settings.log_level
    )


__all__ = ["Forwarder", "serve"]
