from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from redis.asyncio import Redis

from harness import services
from harness.isolation import forgotten, isolated_settings
from tracker.settings import Settings
from tracker.store import Keys

T = TypeVar("T")


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap, Redis URL) of real servers, shared by the session."""
    with services.all_services() as found, forgotten(found):
        yield found


@pytest.fixture
def settings(servers: tuple[str, str]) -> Settings:
    """Settings isolated from every other test: own topics, consumer group, keys, ports."""
    return isolated_settings(servers)


def with_redis(settings: Settings, body: Callable[[Redis, Keys], Awaitable[T]]) -> T:
    """``body`` run on a client of the Redis of ``settings``, with its key names."""

    async def main() -> T:
        redis = Redis.from_url(settings.redis_url)
        try:
            return await body(redis, Keys(settings.redis_prefix))
        finally:
            await redis.aclose()

    return asyncio.run(main())
