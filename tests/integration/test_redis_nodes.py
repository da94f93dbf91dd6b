"""A store that may evict keys is refused, and a full one stops the figures, not skews
them: on a real Redis server of the test's own, whose memory settings it changes."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError
from structlog.testing import capture_logs

from harness.isolation import isolated_settings
from harness.processes import command, http_get
from harness.redis_servers import redis_server
from tests.exporter import exporter
from tracker.events import Event
from tracker.forward.marks import SENT, Marks
from tracker.redis_nodes import Guard, MayEvict
from tracker.settings import Settings
from tracker.store import Keys, parse_bucket
from tracker.stream.sink import Record, Sink
from tracker.windows import ALL_TIME

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server"),
]
T = TypeVar("T")
NOW = int(time.time() * 1000) - 3_600_000


def clicks(prefix: str, count: int) -> list[Event]:
    return [
        Event(
            event_id=f"{prefix}{i}",
            type="click",
            ts=NOW,
            received_at=NOW,
            channel="search",
            campaign="spring",
            cost=250_000,
            anonymous_id=f"v{prefix}{i}",
        )
        for i in range(count)
    ]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as (url, _):
        yield url


@pytest.fixture
def settings(servers: tuple[str, str], own_redis: str) -> Settings:
    return dataclasses.replace(isolated_settings(servers, "nodes"), redis_url=own_redis)


def run(settings: Settings, body: Callable[[Redis, Sink], Awaitable[T]]) -> T:
    async def main() -> T:
        client = Redis.from_url(settings.redis_url)
        sink = Sink(client, settings)
        try:
            return await body(client, sink)
        finally:
            await sink.aclose()
            await client.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("name", ["worker", "forward"])
def test_no_command_that_relies_on_the_store_starts_on_one_that_may_evict(
    settings: Settings, name: str
) -> None:
    """The worker's counted ids, the forwarder's sent marks: both expire, so both are
    what volatile-lru evicts first."""
    stand_in = "stand-in"  # a destination set up: the forwarder's start goes that far
    settings = dataclasses.replace(settings, meta_pixel_id="1", meta_access_token=stand_in)
    redis.Redis.from_url(settings.redis_url).config_set("maxmemory-policy", "volatile-lru")
    done = command(settings, name, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"tracker {name}: Redis may evict" in done.stderr
    # The test's server writes no append-only file, as Redis by default: said, not refused.
    assert "writes no append-only file on 127.0.0.1:" in done.stdout + done.stderr
    port = settings.redis_url.rsplit(":", 1)[1].split("/")[0]
    assert f"127.0.0.1:{port} has maxmemory-policy volatile-lru" in done.stderr
    assert "CONFIG SET maxmemory-policy noeviction" in done.stderr


def test_a_sink_applies_nothing_while_a_node_may_evict(settings: Settings) -> None:
    keys = Keys(settings.key_prefix)

    async def body(client: Redis, sink: Sink) -> None:
        await client.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(MayEvict, match="allkeys-lru"):
            await sink.apply([Record("t", 0, 0, clicks("a", 5))])
        assert await client.dbsize() == 0  # nothing at all was written
        # Fixed, a sink applies the batch, once: the refusal was read at its first batch
        # and is read again every minute.
        await client.config_set("maxmemory-policy", "noeviction")
        fresh = Sink(client, settings)
        try:
            assert (await fresh.apply([Record("t", 0, 0, clicks("a", 5))]))["events"] == 5
        finally:
            await fresh.aclose()
        assert await client.hget(keys.health, "events") == b"5"

    run(settings, body)


def test_the_forwarder_sends_nothing_while_a_node_may_evict(settings: Settings) -> None:
    conversion = Event(
        event_id="c1", type="conversion", ts=NOW, received_at=NOW, channel="search", order_id="o1"
    )

    async def body(client: Redis, sink: Sink) -> None:
        marks = Marks(client, settings, "meta")
        await marks.mark([conversion], SENT)
        assert await marks.states([conversion]) == [SENT]
        await client.config_set("maxmemory-policy", "volatile-ttl")
        later = Marks(client, settings, "meta")  # as a forwarder started now reads them
        with pytest.raises(MayEvict, match="volatile-ttl"):
            await later.states([conversion])

    run(settings, body)


def test_a_running_guard_reads_the_policy_again(settings: Settings) -> None:
    async def main() -> None:
        client = Redis.from_url(settings.redis_url)
        try:
            every_time, hourly = Guard(settings, client, every_s=0), Guard(settings, client, 3600)
            await every_time.check()
            await hourly.check()
            await client.config_set("maxmemory-policy", "volatile-ttl")
            with pytest.raises(MayEvict, match="volatile-ttl"):
                await every_time.check()
            await hourly.check()  # read an hour ago at most: not yet
            await client.config_set("maxmemory-policy", "noeviction")
            await every_time.check()
        finally:
            await client.aclose()

    asyncio.run(main())


def test_a_server_that_refuses_info_is_not_taken_for_one_that_may_evict(
    settings: Settings, tmp_path: Path
) -> None:
    """Hardened servers rename INFO away: their operator chose so, and is told."""
    with redis_server(tmp_path, "--rename-command", "INFO", "") as (url, _):
        hardened = dataclasses.replace(settings, redis_url=url)
        with capture_logs() as logs:
            for offset in (0, 1):  # a sink each, each reading the nodes: said once

                async def body(_: Redis, sink: Sink, offset: int = offset) -> Counter[str]:
                    return await sink.apply([Record("t", 0, offset, clicks(f"h{offset}", 3))])

                assert run(hardened, body)["events"] == 3
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "could not read whether a node of the store may evict keys: see it is noeviction"
    ]


def test_a_full_store_applies_nothing_then_everything_once(settings: Settings) -> None:
    keys = Keys(settings.key_prefix)

    async def body(client: Redis, sink: Sink) -> None:
        first = Record("t", 0, 0, clicks("a", 20))
        assert (await sink.apply([first]))["events"] == 20
        before = sorted(await client.keys("*"))
        stored = {key: await client.dump(key) for key in before}
        # Full: under noeviction Redis refuses writes that need memory, and the batch
        # (its ids' claims, its transaction) is refused whole, however often tried.
        await client.config_set("maxmemory", "1")
        second = [first, Record("t", 0, 1, clicks("b", 30)), Record("t", 1, 0, clicks("c", 10))]
        for _ in range(3):
            with pytest.raises(OutOfMemoryError):
                await sink.apply(second)
        assert sorted(await client.keys("*")) == before
        assert {key: await client.dump(key) for key in before} == stored
        # Room again: the same batch (Kafka redelivers it) counts each event once.
        await client.config_set("maxmemory", "0")
        applied = await sink.apply(second)
        assert (applied["events"], applied["skipped_records"]) == (40, 1)
        assert await client.hget(keys.health, "events") == b"60"
        cells = parse_bucket(await client.hgetall(keys.bucket(ALL_TIME, 0, "campaign")))
        assert cells[("campaign", "spring")] == {"clicks": 60, "spend": 60 * 250_000}

    run(settings, body)


def test_the_exporter_reports_the_stores_memory_and_policy(
    settings: Settings, tmp_path: Path
) -> None:
    plain = redis.Redis.from_url(settings.redis_url)
    plain.config_set("maxmemory", str(1 << 30))
    plain.config_set("maxmemory-policy", "allkeys-lru")
    address = settings.redis_url.removeprefix("redis://").split("/")[0]
    with exporter(settings, tmp_path / "exporter.log") as running:
        status, body = http_get(f"{running.base}/metrics")
    assert status == 200
    lines = body.decode().splitlines()
    used = f'tracker_store_memory_used_bytes{{node="{address}"}} '
    assert [float(line.removeprefix(used)) > 0 for line in lines if line.startswith(used)] == [True]
    assert f'tracker_store_memory_max_bytes{{node="{address}"}} 1.073741824e+09' in lines
    assert f'tracker_store_may_evict{{node="{address}",policy="allkeys-lru"}} 1.0' in lines
    assert f'tracker_store_evicted_keys_total{{node="{address}"}} 0.0' in lines
    assert f'tracker_store_append_only{{node="{address}"}} 0.0' in lines
