"""Reading Kafka's own view of progress, to wait on it in tests."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def _caught_up(bootstrap: str, group: str, topic: str) -> bool:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group)
        return bool(partitions) and all(
            tp in committed and committed[tp].offset >= ends[tp] for tp in partitions if ends[tp]
        )
    finally:
        await consumer.stop()
        await admin.close()


def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """True once ``group`` has committed every record of ``topic`` that exists now."""
    return asyncio.run(_caught_up(bootstrap, group, topic))
