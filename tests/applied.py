"""How far the store has applied the events topic, against what Kafka holds.

The store, not Kafka's committed offsets, says what was applied (tracker/stream/sink.py):
after it lost writes, the group's offsets stand at the end while the worker reads the
lost records again. Tests wait on this to know every record is counted. Spread over a
Redis Cluster (``TRACKER_REDIS_SPREAD_SUMS``), a partition's sums land a moment after
its offset, under a hash tag of their own, with an offset of their own: a partition is
done when both are.
"""

from __future__ import annotations

import orjson

from tests.kafka import end_offsets
from tracker.redis_clients import sync_client
from tracker.settings import Settings
from tracker.store import Keys, tally_prefix


def behind(settings: Settings) -> dict[int, tuple[int, int]]:
    """Partition -> (records applied, records in Kafka) of the partitions not done."""
    topic = settings.events_topic
    ends = end_offsets(settings.kafka_bootstrap, topic)
    keys = Keys(settings.key_prefix)
    with sync_client(settings) as store:
        raw = store.mget([keys.source(topic, partition) for partition in ends])
    applied = [orjson.loads(value)["offset"] + 1 if value else 0 for value in raw]
    for at, partition in enumerate(ends):
        tag = tally_prefix(keys.prefix, partition)
        if settings.redis_spread_sums and tag != keys.prefix and applied[at]:
            with sync_client(settings, following=tag) as tally:
                held = tally.get(Keys(tag).source(topic, partition))
            applied[at] = min(applied[at], int(held) + 1 if held else 0)
    return {
        partition: (done, end)
        for (partition, end), done in zip(ends.items(), applied, strict=True)
        if done < end
    }
