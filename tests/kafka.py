"""Reading Kafka's own view of progress, to wait on it in tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType


@asynccontextmanager
async def _topic(
    bootstrap: str, topic: str, **consumer_options: Any
) -> AsyncIterator[tuple[AIOKafkaConsumer, AIOKafkaAdminClient, list[TopicPartition]]]:
    """A started consumer and admin client, and the partitions ``topic`` has now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **consumer_options)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        yield (
            consumer,
            admin,
            [TopicPartition(topic, p["partition"]) for p in described["partitions"]],
        )
    finally:
        await consumer.stop()
        await admin.close()


async def _caught_up(bootstrap: str, group: str, topic: str) -> bool:
    async with _topic(bootstrap, topic) as (consumer, admin, partitions):
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group)
        return bool(partitions) and all(
            tp in committed and committed[tp].offset >= ends[tp] for tp in partitions if ends[tp]
        )


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    async with _topic(bootstrap, topic) as (consumer, _, partitions):
        return {tp.partition: end for tp, end in (await consumer.end_offsets(partitions)).items()}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> the offset the next record of ``topic`` will have."""
    return asyncio.run(_end_offsets(bootstrap, topic))


def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """True once ``group`` has committed every record of ``topic`` that exists now."""
    return asyncio.run(_caught_up(bootstrap, group, topic))


async def _records(bootstrap: str, topic: str) -> list[tuple[int, int, bytes]]:
    reading = _topic(bootstrap, topic, enable_auto_commit=False, auto_offset_reset="earliest")
    async with reading as (consumer, _, partitions):
        if not partitions:
            return []
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        # Explicit offsets: seek_to_beginning() can lose a race against assign()'s reset.
        for tp, start in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, start)
        found: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + 30
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic} not read to its end within 30 s")
                fetched = await consumer.getmany(tp, timeout_ms=1000)
                found += [
                    (r.partition, r.offset, r.value)
                    for r in fetched.get(tp, [])
                    if r.offset < ends[tp]
                ]
        return sorted(found)


def records(bootstrap: str, topic: str) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record ``topic`` holds now, in order."""
    return asyncio.run(_records(bootstrap, topic))


async def _replicas(bootstrap: str, topic: str) -> dict[int, tuple[list[int], list[int]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return {p["partition"]: (p["replicas"], p["isr"]) for p in described["partitions"]}
    finally:
        await admin.close()


def replicas(bootstrap: str, topic: str) -> dict[int, tuple[list[int], list[int]]]:
    """Partition -> (its replicas' broker ids, those of them in sync), as Kafka has it now."""
    return asyncio.run(_replicas(bootstrap, topic))


async def _configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        ((_, _, _, _, entries),) = response.resources
        # DescribeConfigs v1 and later: name, value, read only, source, sensitive, synonyms.
        return {name: value for name, value, *_ in entries if value is not None}
    finally:
        await admin.close()


def configs(bootstrap: str, topic: str) -> dict[str, str]:
    """Every config of ``topic`` in force, its own or the broker's default."""
    return asyncio.run(_configs(bootstrap, topic))


async def _group(bootstrap: str, group_id: str) -> tuple[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group_id])
        # DescribeGroups: per group error code, id, state, protocol type, protocol, members.
        ((_, _, state, _, _, members, *_),) = response.groups
        return state, len(members)
    finally:
        await admin.close()


def group(bootstrap: str, group_id: str) -> tuple[str, int]:
    """The state of the consumer group ``group_id`` as its coordinator has it now
    (``Stable`` once every member has its partitions), and how many members it has."""
    return asyncio.run(_group(bootstrap, group_id))
