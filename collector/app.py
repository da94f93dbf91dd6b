"""The collector's routes: each protocol an adapter, one intake behind them all.

Requests flow: adapter (pixel, batch, redirect, postback, Segment, Snowplow) reads
its input into events -> :class:`~collector.intake.Intake` delivers them to Kafka or
keeps the rejected as dead letters -> the answer tells the truth about which.

Event routes are admitted by their client address's rate limit before their adapter
runs (:func:`admitting`); postbacks and Segment's calls admit themselves, once they know
the partner or write key that may have a limit of its own. Health, readiness, metrics,
the snippet and the description are never limited.
"""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from collector import segment, snowplow, validation
from collector.batch import Batch
from collector.intake import Intake
from collector.metrics import Metrics
from collector.pixel import GIF, NO_CACHE_HEADERS, Pixel
from collector.postback import Postback
from collector.producer import BatchingProducer
from collector.redirect import Redirect
from collector.snippet import Snippet
from tracker import asgi
from tracker.asgi import Handler, HTTPError, Request, Response
from tracker.kafka import ensure_topics
from tracker.openapi import Description
from tracker.settings import Settings

log = structlog.get_logger(__name__)


class Collector:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.producer = BatchingProducer(settings, on_flushed=self.metrics.flushed)
        self.metrics.buffered.set_function(lambda: self.producer.buffered)
        self.intake = Intake(settings, self.metrics, self.producer, validation.rules(settings))

    def app(self) -> asgi.App:
        intake = self.intake
        app = asgi.App(on_startup=self.start, on_shutdown=self.stop)
        app.route("/p.gif", admitting(intake, "pixel", Pixel(intake).hit, image=True))
        app.route("/v1/events", admitting(intake, "batch", Batch(intake).receive), ("POST",))
        app.route("/r", admitting(intake, "redirect", Redirect(intake).click))
        app.route("/v1/postback", Postback(intake).receive, methods=("GET", "POST"))
        segment.Segment(intake).routes(app)
        snowplow.Snowplow(intake).routes(
            app, lambda handler, image: admitting(intake, "snowplow", handler, image)
        )
        app.route("/t.js", Snippet().serve)
        app.route("/healthz", self.healthz)
        app.route("/readyz", self.readyz)
        app.route("/metrics", self.metrics_page)
        app.route("/openapi.yaml", Description("collector").serve)
        return app

    async def start(self) -> None:
        await ensure_topics(self.settings)
        await self.producer.start()
        log.info("collector started", kafka=self.settings.kafka_bootstrap)

    async def stop(self) -> None:
        await self.producer.stop()
        log.info("collector stopped", buffered=self.producer.buffered)

    async def healthz(self, request: Request) -> Response:
        return Response.json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.producer.ready:
            return Response.json({"status": "ready"})
        return Response.json({"status": "kafka unavailable"}, 503)

    async def metrics_page(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.encode())


def admitting(intake: Intake, endpoint: str, handler: Handler, image: bool = False) -> Handler:
    """``handler`` behind its client address's rate limit; itself when that limit is off.

    An image's refusal (a pixel in a page) is the GIF, with 429 and ``Retry-After``,
    so the page shows no broken image; other refusals are JSON.
    """
    if intake.limits.address is None:
        return handler
    admit = intake.admit

    async def admitted(request: Request) -> Response:
        try:
            admit(request, endpoint)
        except HTTPError as exc:
            if not image:
                raise
            error = (b"x-tracker-error", exc.reason.encode())
            return Response(GIF, exc.status, b"image/gif", [*NO_CACHE_HEADERS, *exc.headers, error])
        return await handler(request)

    return admitted
