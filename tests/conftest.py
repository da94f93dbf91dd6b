from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from redis.asyncio import Redis

from tests import services
from tracker.settings import Settings
from tracker.store import Keys

T = TypeVar("T")

_RUNS: set[str] = set()
"""The ``<kind>-<random>`` names this session gave topics and keys: deleted at its end."""


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap, Redis URL) of real servers, shared by the session."""
    with services.all_services() as found:
        yield found
        services.forget(*found, _RUNS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def isolated_settings(servers: tuple[str, str], kind: str = "test") -> Settings:
    """What the ``settings`` fixture gives, for fixtures of a wider scope and benchmarks.

    Topics, consumer group and keys are named ``<kind>-<random>``.
    """
    bootstrap, redis = servers
    run = f"{kind}-{uuid.uuid4().hex[:10]}"
    _RUNS.add(run)
    return Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis,
        redis_prefix=run,
        events_topic=f"{run}.events",
        dead_letter_topic=f"{run}.dead-letters",
        audit_topic=f"{run}.audit",
        app_id=run,
        collector_port=free_port(),
        exporter_port=free_port(),
        worker_port=free_port(),
        log_format="json",
    )
