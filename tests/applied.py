"""How far the store has applied the events topic, against what Kafka holds.

The store, not Kafka's committed offsets, says what was applied (tracker/stream/sink.py):
after it lost writes, the group's offsets stand at the end while the worker reads the
lost records again. Tests wait on this to know every record is counted.
"""

from __future__ import annotations

import orjson

from tests.kafka import end_offsets
from tracker.redis_clients import sync_client
from tracker.settings import Settings
from tracker.store import Keys


def behind(settings: Settings) -> dict[int, tuple[int, int]]:
    """Partition -> (records applied, records in Kafka) of the partitions not done."""
    topic = settings.events_topic
    ends = end_offsets(settings.kafka_bootstrap, topic)
    keys = Keys(settings.key_prefix)
    with sync_client(settings) as store:
        raw = store.mget([keys.source(topic, partition) for partition in ends])
    applied = [orjson.loads(value)["offset"] + 1 if value else 0 for value in raw]
    return {
        partition: (done, end)
        for (partition, end), done in zip(ends.items(), applied, strict=True)
        if done < end
    }
