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

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from collector import segment, snowplow, validation
from collector.batch import Batch
from collector.cookieless import Salts
from collector.intake import Intake
from collector.metrics import AllWorkers, Metrics
from collector.pixel import GIF, NO_CACHE_HEADERS, Pixel
from collector.postback import Postback
from collector.producer import BatchingProducer
from collector.redirect import Redirect
from collector.snippet import Snippet
from tracker import asgi, goals
from tracker.asgi import Handler, HTTPError, Request, Response
from tracker.kafka import ensure_topics
from tracker.openapi import Description
from tracker.redis_clients import async_client
from tracker.rulebook import Rulebook
from tracker.settings import Settings
from tracker.store import Keys
from tracker.suppression import Suppressions

log = structlog.get_logger(__name__)

REFRESH_S = 5.0
"""How often the collector reads the suppression list, the day's cookieless salt and the
goal rules from Redis: an erased person's events reach Kafka for at most this long (the
worker drops them all the same), and saved goal rules apply at most this long after."""


class Collector:
    """The collector's app and what it starts. ``metrics_dir``: where each of several
    worker processes serving it writes its metrics for the others' scrapes
    (:class:`~collector.metrics.AllWorkers`); None for one process."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        metrics_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.all_workers = AllWorkers(self.registry, metrics_dir) if metrics_dir else None
        self.producer = BatchingProducer(settings, on_flushed=self.metrics.flushed)
        self.metrics.buffered.set_function(lambda: self.producer.buffered)
        self.redis = async_client(settings)
        keys = Keys(settings.key_prefix)
        self.salts = Salts(self.redis, keys)
        self.suppressions = Suppressions(keys)
        self.goal_rules = Rulebook(self.redis, keys.goals)
        self.intake = Intake(
            settings,
            self.metrics,
            self.producer,
            validation.rules(settings),
            self.salts,
            self.suppressions,
        )
        self._refreshing: asyncio.Task[None] | None = None

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
        await self.refresh()
        self._refreshing = asyncio.create_task(self._refresh_forever())
        if self.all_workers:
            self.all_workers.start()
        log.info("collector started", kafka=self.settings.kafka_bootstrap)

    async def stop(self) -> None:
        if self._refreshing:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refreshing
        await self.producer.stop()
        if self.all_workers:  # after the last acknowledgement, so every answer is counted
            await self.all_workers.stop()
        await self.redis.aclose()
        log.info("collector stopped", buffered=self.producer.buffered)

    async def refresh(self) -> None:
        """Read what the collector keeps from Redis; on failure, keep what it has.

        Redis is not on any request's path: without it, the suppression list stays as
        last read, and cookieless events are refused (dead-lettered, with the reason)
        once a day's salt is missing.
        """
        try:
            await self.salts.refresh(time.time_ns() // 1_000_000)
            await self.suppressions.refresh(self.redis)
            await self._refresh_goals()
        except (RedisError, OSError) as exc:
            log.warning(
                "redis unreachable: salt, suppressions and goals not refreshed", error=str(exc)
            )

    async def _refresh_goals(self) -> None:
        """Take the goal rules in force; a new version applies to the requests after it."""
        document = await self.goal_rules.current()
        rules = self.intake.rules
        if document["version"] != (rules.goals.version if rules.goals else 0):
            found = goals.load(document)
            self.intake.rules = dataclasses.replace(rules, goals=found)
            self.metrics.goals_version.set(found.version)
            log.info("goal rules taken", version=found.version, goals=len(found.goals))

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await self.refresh()

    async def healthz(self, request: Request) -> Response:
        return Response.json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.producer.ready:
            return Response.json({"status": "ready"})
        return Response.json({"status": "kafka unavailable"}, 503)

    async def metrics_page(self, request: Request) -> Response:
        exposed = self.all_workers or self.registry
        return Response(generate_latest(exposed), content_type=CONTENT_TYPE_LATEST.encode())


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
