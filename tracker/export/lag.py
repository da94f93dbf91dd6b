"""Kafka's end offsets of the events topic, for consumer lag on each scrape."""

from __future__ import annotations

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from tracker.settings import Settings

log = structlog.get_logger(__name__)


class EndOffsets:
    """Reads the next offset Kafka will write on each partition of the events topic."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        # No group: this consumer never joins the workers' group, it only asks.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap, request_timeout_ms=5000
        )
        try:
            await self._consumer.start()
        except KafkaError as exc:
            log.warning("kafka unavailable at start; lag will be missing", error=repr(exc))

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def read(self) -> dict[int, int] | None:
        """partition -> end offset; None while Kafka does not answer."""
        consumer = self._consumer
        if consumer is None:
            return None
        topic = self._settings.events_topic
        try:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer.topics()  # refresh metadata
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            ends = await consumer.end_offsets(tps) if tps else {}
        except KafkaError as exc:
            log.warning("kafka end offsets unavailable", error=repr(exc))
            return None
        return {tp.partition: int(offset) for tp, offset in ends.items()}
