"""Spend events into Kafka's events topic, the way the collector's events go.

Through the collector's own :class:`collector.producer.BatchingProducer`: the one
producer configuration (``acks=all``, idempotence, compression), the wire format of
:func:`tracker.records.encode_records` and the partitioner of
:func:`tracker.records.partition_of`. A spend event may land on any partition: the
worker reads spend figures across partitions, and the newest report wins wherever it
is counted. One producer per import: imports are rare, and nothing should hold a Kafka
connection open between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka.errors import KafkaError

from collector.producer import BatchingProducer, Unavailable
from tracker.events import Event
from tracker.kafka import KafkaUnavailable
from tracker.settings import Settings


async def deliver(settings: Settings, events: Sequence[Event]) -> None:
    """Return once Kafka has acknowledged every event.

    Raises :class:`KafkaUnavailable` when it did not; some may have arrived then, which
    a repeated import makes good (the same figures, reported again, replace them).
    """
    producer = BatchingProducer(settings)
    try:
        await asyncio.wait_for(producer.start(), settings.produce_timeout_s)
        step = settings.buffer_max_events  # what the producer holds at once
        for start in range(0, len(events), step):
            await producer.send(events[start : start + step])
    except (KafkaError, Unavailable, TimeoutError) as exc:
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap} did not take the spend events: {exc!r}"
        ) from exc
    finally:
        await producer.stop()


__all__ = ["deliver"]
