"""Kafka's end offsets of the events topic, for consumer lag on each scrape.

A background task refreshes them every ``REFRESH_S``, so a scrape never waits on
Kafka: lag is at most that old, and absent while Kafka does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from tracker.kafka import client_options
from tracker.settings import Settings

log = structlog.get_logger(__name__)

PARTITIONS_TTL_S = 60.0
"""How long the events topic's partition list is trusted before it is read again."""
REFRESH_S = 2.0
STALE_S = 30.0
"""End offsets older than this are not served: better no lag than a wrong one."""


class EndOffsets:
    """Reads the next offset Kafka will write on each partition of the events topic."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._partitions: list[TopicPartition] = []
        self._partitions_read = 0.0
        self._latest: dict[int, int] | None = None
        self._latest_read = 0.0
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # No group: this consumer never joins the workers' group, it only asks.
        options = client_options(self._settings)
        self._consumer = AIOKafkaConsumer(**options, request_timeout_ms=5000)
        self._admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
        try:
            await self._consumer.start()
            await self._admin.start()
        except KafkaError as exc:
            log.warning("kafka unavailable at start; lag will be missing", error=repr(exc))
        self._refresher = asyncio.create_task(self._refresh(), name="end-offsets")

    @property
    def latest(self) -> dict[int, int] | None:
        """partition -> end offset, as last read; None when that is too old or failed."""
        if time.monotonic() - self._latest_read > STALE_S:
            return None
        return self._latest

    async def _refresh(self) -> None:
        while True:
            ends = await self.read()
            if ends is not None:
                self._latest, self._latest_read = ends, time.monotonic()
            await asyncio.sleep(REFRESH_S)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def _topic_partitions(self, admin: AIOKafkaAdminClient) -> list[TopicPartition]:
        """The events topic's partitions; empty until the topic exists.

        A consumer without a subscription never learns a topic's partitions
        (``partitions_for_topic`` stays None), so the admin client lists them. It asks
        for every topic: asking for one by name would let the broker auto-create it.
        """
        if self._partitions and time.monotonic() - self._partitions_read < PARTITIONS_TTL_S:
            return self._partitions
        topic = self._settings.events_topic
        described = await admin.describe_topics()
        self._partitions = [
            TopicPartition(topic, p["partition"])
            for t in described
            if t["topic"] == topic
            for p in sorted(t["partitions"], key=lambda p: int(p["partition"]))
        ]
        self._partitions_read = time.monotonic()
        return self._partitions

    async def read(self) -> dict[int, int] | None:
        """partition -> end offset; None while Kafka does not answer."""
        consumer, admin = self._consumer, self._admin
        if consumer is None or admin is None:
            return None
        try:
            tps = await self._topic_partitions(admin)
            ends = await consumer.end_offsets(tps) if tps else {}
        except KafkaError as exc:
            log.warning("kafka end offsets unavailable", error=repr(exc))
            return None
        return {tp.partition: int(offset) for tp, offset in ends.items()}
