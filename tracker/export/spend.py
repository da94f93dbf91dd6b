"""``POST /v1/spend``: an ad platform's spend export (the CSV as the body) into the events topic.

``tracker import-spend`` over HTTP (:mod:`tracker.spend`): the same reading, summing
and placing, answered as JSON (:meth:`tracker.spend.importer.Summary.as_json`). The
query names the ``platform`` (default ``auto``), the accounts' ``timezone`` (default
the reporting zone), the ``channel`` (default the platform's) and ``dry_run``. The
campaign map is the file ``TRACKER_CAMPAIGN_MAP`` names, read at each import, so an
edit needs no restart. Admin only: an import changes every spend KPI.

Reading a large export takes CPU for a while: it runs in a thread, so ``/metrics``
keeps being served meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import structlog

from tracker.asgi import HTTPError, Request, Response
from tracker.export.api import known_query
from tracker.kafka import KafkaUnavailable
from tracker.settings import Settings, env_name
from tracker.spend import campaigns, delivery
from tracker.spend.importer import Import, Options, Refused, Source, plan

log = structlog.get_logger(__name__)

PARAMETERS: Final = ("platform", "timezone", "channel", "dry_run")
MAX_BODY_BYTES: Final = 32 * 1024 * 1024
"""An export at most: a year of daily rows of a few thousand campaigns."""
SOURCE: Final = "request body"
_BOOLEANS: Final = {"true": True, "false": False}


class SpendApi:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def spend(self, request: Request) -> Response:
        query = known_query(request, PARAMETERS)
        dry_run = _BOOLEANS.get(query.get("dry_run", "false"))
        if dry_run is None:
            raise HTTPError(400, "dry_run must be true or false")
        body = await request.body(MAX_BODY_BYTES)
        if not body.strip():
            raise HTTPError(400, "the body must be a spend export: the CSV file as it is")
        now = time.time_ns() // 1_000_000
        planned = await asyncio.to_thread(self._plan, body, query, now)
        summary = planned.summary
        if dry_run:
            return Response.json(summary.as_json(None))
        try:
            await delivery.deliver(self._settings, planned.events)
        except KafkaUnavailable as exc:
            raise HTTPError(503, f"{exc}; nothing or part was sent: import again") from exc
        log.info("spend imported", figures=summary.figures, rows=summary.rows)
        return Response.json(summary.as_json(self._settings.events_topic))

    def _plan(self, body: bytes, query: dict[str, str], now: int) -> Import:
        try:
            mapping = campaigns.load(self._settings.campaign_map)
        except (OSError, ValueError) as exc:
            raise HTTPError(500, f"{env_name('campaign_map')}: {exc}") from None
        options = Options(
            platform=query.get("platform", "auto"),
            account_timezone=query.get("timezone"),
            channel=query.get("channel"),
            campaigns=mapping,
        )
        try:
            return plan([Source(SOURCE, body)], options, self._settings, now)
        except Refused as exc:
            raise HTTPError(400, str(exc)) from None


__all__ = ["SpendApi"]
