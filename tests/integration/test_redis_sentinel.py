"""The store under Redis Sentinel: every client tracker makes reaches the primary the
Sentinels name, with or without passwords (the Sentinels' own or the primary's), follows
it through a failover, and waits for its replica where a write must outlive one."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError

from harness import redis_sentinel
from harness.processes import command, wait_for
from harness.redis_sentinel import Access, Sentinels
from tracker import redis_nodes
from tracker.redis_clients import (
    NotReplicated,
    async_client,
    async_reader,
    replicated,
    sync_client,
    sync_reader,
)
from tracker.settings import Settings

pytestmark = pytest.mark.skipif(redis_sentinel.unstartable() is not None, reason="no redis-server")

ACCESSES = {
    "no-passwords": lambda: Access(),
    "one-password": lambda: Access(
        password=(shared := secrets.token_urlsafe(12)), sentinel_password=shared
    ),
    "passwords-of-their-own": lambda: Access(
        password=secrets.token_urlsafe(12) + "@:/", sentinel_password=secrets.token_urlsafe(12)
    ),
}


@pytest.fixture(scope="module", params=list(ACCESSES))
def sentinels(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sentinels]:
    with redis_sentinel.running(
        tmp_path_factory.mktemp(request.param), ACCESSES[request.param]()
    ) as setup:
        yield setup


def test_every_client_reaches_the_primary_the_sentinels_name(sentinels: Sentinels) -> None:
    settings = Settings(redis_url=sentinels.url)
    primary = sentinels.primary()
    (replica,) = set(sentinels.nodes) - {primary}
    key = f"{settings.key_prefix}:sentinel"
    sync_client(settings).set(key, "sync")
    assert sync_reader(settings).get(key) == b"sync"

    async def main() -> tuple[object, object, list[tuple[str, bool]]]:
        client, reader = async_client(settings), async_reader(settings)
        try:
            async with replicated(client) as confirmed:  # its replica has it
                await confirmed.set(key, "async")
            nodes = await redis_nodes.read(settings, client)
            return (
                await reader.get(key),
                await client.get(key),
                [(n.address, n.primary) for n in nodes],
            )
        finally:
            await client.aclose()
            await reader.aclose()

    read = [(f"127.0.0.1:{primary}", True), (f"127.0.0.1:{replica}", False)]
    assert asyncio.run(main()) == (b"async", b"async", read)
    assert sentinels.nodes[primary].client.get(key) == "async"


@pytest.mark.services
def test_tracker_check_names_the_primary_its_replica_and_whether_sentinels_can_fail_over(
    sentinels: Sentinels, settings: Settings
) -> None:
    settings = dataclasses.replace(settings, redis_url=sentinels.url)
    primary = sentinels.primary()
    (replica,) = set(sentinels.nodes) - {primary}

    def checked() -> list[str]:
        done = command(settings, "check", timeout=120)
        assert done.returncode == 0, done.stdout  # a risk said (WARN) does not fail
        return [line for line in done.stdout.splitlines() if line.startswith("store: ")]

    said = checked()
    assert said[0].endswith(
        f": the primary Redis Sentinels call '{redis_sentinel.SERVICE}', 2 nodes answered"
    )
    assert said[1].startswith(f"store: 127.0.0.1:{primary} primary")
    assert said[2].startswith(f"store: 127.0.0.1:{replica} replica")
    assert said[3] == "store: Sentinels: 3 of 3 answered, 3 can fail the primary over (CKQUORUM)"
    assert ":***@" in said[0] or "@" not in said[0]  # no password shown
    # Two of the three away: the one left may not fail the primary over alone.
    away = [sentinel.process.pid for sentinel in sentinels.sentinels[:2] if sentinel.process]
    for pid in away:
        os.kill(pid, signal.SIGSTOP)
    try:
        alone = "store: WARN Sentinels: 1 of 3 answered, none can fail the primary over"
        found = wait_for(
            lambda: next((line for line in checked() if line.startswith(alone)), None),
            60,
            "the Sentinel left to hold the others down",
        )
        assert found.endswith("one lost now stays lost")
    finally:
        for pid in away:
            os.kill(pid, signal.SIGCONT)


def test_a_replica_that_may_evict_is_named_before_it_is_promoted(sentinels: Sentinels) -> None:
    """A replica keeps its own maxmemory-policy when promoted: the worker's guard reads
    it too, as it reads a cluster's replicas."""
    settings = Settings(redis_url=sentinels.url)
    (replica,) = set(sentinels.nodes) - {sentinels.primary()}
    node = sentinels.nodes[replica].client

    async def refused() -> str | None:
        client = async_client(settings)
        try:
            return redis_nodes.refusal(await redis_nodes.read(settings, client))
        finally:
            await client.aclose()

    assert asyncio.run(refused()) is None
    node.config_set("maxmemory-policy", "volatile-lru")
    try:
        assert f"127.0.0.1:{replica} has maxmemory-policy volatile-lru" in (
            asyncio.run(refused()) or ""
        )
    finally:
        node.config_set("maxmemory-policy", "noeviction")


def test_a_write_that_must_last_waits_for_the_replica(sentinels: Sentinels) -> None:
    """An erasure or goals saved is answered once the replica holds it: with the replica
    stopped, the primary's write is refused as unconfirmed, not taken as safe."""
    settings = Settings(redis_url=sentinels.url)
    (replica,) = set(sentinels.nodes) - {sentinels.primary()}

    async def save() -> None:
        client = async_client(settings)
        try:
            async with replicated(client) as confirmed:
                await confirmed.set(f"{settings.key_prefix}:goals", "saved")
        finally:
            await client.aclose()

    os.kill(sentinels.pid(replica), signal.SIGSTOP)
    try:
        with pytest.raises(NotReplicated, match="no replica confirmed"):
            asyncio.run(save())
    finally:
        os.kill(sentinels.pid(replica), signal.SIGCONT)
    asyncio.run(save())


def test_clients_made_before_a_failover_reach_the_promoted_primary(tmp_path: Path) -> None:
    with redis_sentinel.running(tmp_path) as setup:
        settings = Settings(redis_url=setup.url)
        key = f"{settings.key_prefix}:failover"
        old = setup.primary()
        blocking = sync_client(settings)
        blocking.set(key, "before")

        async def main() -> tuple[str, str]:
            client = async_client(settings)
            try:
                await client.set(key, "before")  # a connection to the old primary, pooled
                setup.kill(old)
                new = setup.failed_over(old)

                async def written() -> bool:
                    try:
                        return bool(await client.set(key, "after"))
                    except ConnectionError:  # while the Sentinels still name the dead one
                        return False

                deadline = asyncio.get_running_loop().time() + 30
                while not await written():
                    assert asyncio.get_running_loop().time() < deadline, "no write took"
                    await asyncio.sleep(0.1)
                nodes = await redis_nodes.read(settings, client)
                return f"127.0.0.1:{new}", nodes[0].address
            finally:
                await client.aclose()

        promoted, read_at = asyncio.run(main())
        assert read_at == promoted != f"127.0.0.1:{old}"
        assert wait_for(lambda: blocking.get(key), 30, "the blocking client's read") == b"after"
        blocking.close()
        setup.start(old)  # back as the promoted one's replica
        assert setup.nodes[old].client.role()[0] == "slave"
