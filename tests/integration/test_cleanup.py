"""A test session deletes the topics and keys it named, and nothing else."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from harness import services


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _create(bootstrap: str, redis_url: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{name}.events", 1, 1) for name in names])
    finally:
        await admin.close()
    redis = Redis.from_url(redis_url)
    try:
        for name in names:
            await redis.set(f"{name}:cust:someone", 1)
    finally:
        await redis.aclose()


async def _keys(redis_url: str, names: list[str]) -> list[int]:
    redis = Redis.from_url(redis_url)
    try:
        return [int(await redis.exists(f"{name}:cust:someone")) for name in names]
    finally:
        await redis.aclose()


def test_forget_deletes_the_runs_topics_and_keys_only(servers: tuple[str, str]) -> None:
    bootstrap, redis_url = servers
    gone, kept = f"test-{uuid.uuid4().hex[:10]}", f"test-{uuid.uuid4().hex[:10]}"
    asyncio.run(_create(bootstrap, redis_url, [gone, kept]))
    assert {f"{gone}.events", f"{kept}.events"} <= asyncio.run(_topics(bootstrap))

    services.forget(bootstrap, redis_url, {gone})

    # Deleting is asynchronous on the broker's side: wait for the metadata to say so.
    deadline = time.monotonic() + 10
    while f"{gone}.events" in (topics := asyncio.run(_topics(bootstrap))):
        assert time.monotonic() < deadline, "the run's topic was not deleted"
        time.sleep(0.1)
    assert f"{kept}.events" in topics
    assert asyncio.run(_keys(redis_url, [gone, kept])) == [0, 1]
    services.forget(bootstrap, redis_url, {kept})
