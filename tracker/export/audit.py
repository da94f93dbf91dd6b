"""The audit log of erasures: one Kafka record per erasure answered, acknowledged by all
in-sync replicas before the answer.

Records are JSON, keyed by the person's hash so that one person's records stay in
order, and carry no id (:mod:`tracker.export.erasure` says what they hold). The
producer is the collector's (:func:`collector.producer.kafka_producer`: ``acks=all``,
idempotent), started at the first erasure rather than with the exporter: erasures are
rare, and ``/metrics`` is served whether Kafka answers or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from collector.producer import kafka_producer
from tracker.kafka import KafkaUnavailable
from tracker.settings import Settings


class AuditLog:
    """Writes audit records to ``TRACKER_AUDIT_TOPIC``; :meth:`stop` at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def write(self, key: str, record: Mapping[str, Any]) -> None:
        """Return once Kafka acknowledged ``record``.

        Raises :class:`KafkaUnavailable` when it did not within ``produce_timeout_s``
        (starting the producer included); the record may then still arrive, so a reader
        of the log must take a record twice as once.
        """
        timeout = self._settings.produce_timeout_s
        try:
            await asyncio.wait_for(self._send(key.encode(), orjson.dumps(record)), timeout)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(
                f"Kafka at {self._settings.kafka_bootstrap} did not take the audit record "
                f"within {timeout} s: {exc!r}"
            ) from exc

    async def _send(self, key: bytes, value: bytes) -> None:
        async with self._starting:
            if self._producer is None:
                producer = kafka_producer(self._settings)
                try:
                    await producer.start()
                except BaseException:  # refused, or cancelled by the timeout
                    await producer.stop()
                    raise
                self._producer = producer
        await self._producer.send_and_wait(self._settings.audit_topic, value, key=key)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


__all__ = ["AuditLog"]
