"""The store over TLS, as managed Redis services serve it: every client tracker makes
speaks TLS to a redis-server, to a Redis Cluster and to Redis Sentinels and their
primary, that serve TLS only, trusting the authority the URL names
(``?ssl_ca_certs=``), and refuses a server it cannot trust."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from redis.exceptions import ConnectionError

from harness import redis_sentinel
from harness.processes import command
from harness.redis_servers import Certificates, certificates, redis_server, tls_cluster
from tracker import redis_nodes
from tracker.events import Event
from tracker.redis_clients import (
    async_client,
    async_reader,
    replicated,
    sync_client,
    sync_reader,
)
from tracker.seen import shard_prefix
from tracker.settings import TLS_CLUSTER_SCHEME, Settings
from tracker.store import Keys, read_buckets
from tracker.stream.sink import Record, Sink
from tracker.windows import ALL_TIME

pytestmark = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("openssl")),
    reason="no redis-server or openssl",
)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module", params=["single", "cluster", "sentinel"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls: Certificates
) -> Iterator[tuple[Settings, int]]:
    """Settings of a store that speaks TLS only, and how many nodes it has."""
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "single":
        with redis_server(folder, tls=tls) as (url, _):
            yield Settings(redis_url=url), 1
    elif request.param == "cluster":
        with tls_cluster(folder, tls) as ports:
            url = f"{TLS_CLUSTER_SCHEME}://127.0.0.1:{ports[0]}/0?ssl_ca_certs={tls.ca}"
            yield Settings(redis_url=url), len(ports)
    else:
        with redis_sentinel.running(folder, redis_sentinel.Access(tls=tls)) as sentinels:
            yield Settings(redis_url=sentinels.url), 2  # the primary and its replica


def click(event_id: str) -> Event:
    return Event(event_id=event_id, type="click", ts=60_000, received_at=60_000, channel="search")


def test_the_worker_counts_over_tls(store: tuple[Settings, int]) -> None:
    """The sink's transaction, scripts and shards (on a cluster each on its primary,
    confirmed by a replica) and the readers' fan-out, all over TLS."""
    settings, _ = store

    async def applied() -> int:
        client, reader = async_client(settings), async_reader(settings)
        sink = Sink(client, settings)
        try:
            events = [click(f"e{i % 150}") for i in range(200)]  # 50 sent twice
            await sink.apply([Record("t", 0, offset, [e]) for offset, e in enumerate(events)])
            rows = await read_buckets(reader, ALL_TIME, [0], Keys(settings.key_prefix), ("total",))
            return rows[0][("total", "total")]["clicks"]
        finally:
            await sink.aclose()
            await client.aclose()
            await reader.aclose()

    assert asyncio.run(applied()) == 150


def test_every_client_speaks_tls(store: tuple[Settings, int]) -> None:
    settings, nodes = store
    key, elsewhere = f"{settings.key_prefix}:tls", f"{shard_prefix(settings.key_prefix, 3)}:tls"
    sync_client(settings).set(key, "sync")
    assert sync_reader(settings).get(key) == b"sync"

    async def main() -> tuple[object, object, int]:
        client, reader = async_client(settings), async_reader(settings)
        try:
            async with replicated(client) as confirmed:  # a replica has it, on a cluster
                await confirmed.set(key, "async")
            await reader.set(elsewhere, "shard")  # on a cluster, maybe another primary's
            read = await reader.get(key), await client.get(key)
            return *read, len(await redis_nodes.read(settings, client))
        finally:
            await client.aclose()
            await reader.aclose()

    assert asyncio.run(main()) == (b"async", b"async", nodes)
    assert sync_reader(settings).get(elsewhere) == b"shard"


@pytest.mark.services
def test_tracker_check_reads_every_node_over_tls(
    store: tuple[Settings, int], settings: Settings
) -> None:
    store_settings, nodes = store
    checked = dataclasses.replace(settings, redis_url=store_settings.redis_url)
    done = command(checked, "check", timeout=120)
    assert done.returncode == 0, done.stdout  # a risk said (WARN) does not fail
    said = [line for line in done.stdout.splitlines() if line.startswith("store: ")]
    assert said[0].endswith(f"{nodes} node{'s' * (nodes > 1)} answered")
    roles = [line.split(", ")[0].split()[-1] for line in said[1 : 1 + nodes]]
    assert sorted(roles) == sorted(["primary"] * (nodes // 2 or 1) + ["replica"] * (nodes // 2))
    assert said[-1].startswith("store: WARN Redis writes no append-only file")  # test servers'


def untrusting(settings: Settings) -> Settings:
    """``settings`` with the URL's trust in the test's authority left out."""
    parts = urlsplit(settings.redis_url)
    return Settings(redis_url=urlunsplit((*parts[:3], "", "")))


def test_a_server_the_url_does_not_trust_is_refused(store: tuple[Settings, int]) -> None:
    settings, _ = store
    for make in (sync_client, sync_reader):
        with pytest.raises(ConnectionError, match="certificate verify failed"):
            make(untrusting(settings)).ping()
    first = urlsplit(settings.redis_url).netloc.split(",")[0]  # a seed, or a Sentinel
    with pytest.raises(ConnectionError):  # and no one speaks plain text to it
        redis.Redis(port=int(first.rpartition(":")[2]), socket_timeout=2).ping()


@pytest.mark.parametrize("store", ["cluster"], indirect=True)  # one Redis: its own client
def test_kept_node_clients_connect_once_for_many_reads(store: tuple[Settings, int]) -> None:
    """The exporter reads every node at each scrape: kept clients connect (and shake
    hands) once, not at each read."""
    settings, nodes = store
    query = urlsplit(settings.redis_url).query
    addresses = [n.address for n in asyncio.run(redis_nodes.store_nodes(settings))]

    def received() -> int:
        """Connections the nodes took so far, this count's own included."""
        total = 0
        for address in addresses:
            with redis.Redis.from_url(f"rediss://{address}/0?{query}") as node:
                total += int(node.info("stats")["total_connections_received"])
        return total

    async def read(times: int) -> None:
        client, kept = async_client(settings), redis_nodes.NodeClients(settings)
        try:
            for _ in range(times):
                assert len(await redis_nodes.read(settings, client, kept)) == nodes
        finally:
            await kept.aclose()
            await client.aclose()

    before = received()
    asyncio.run(read(5))
    made = received() - before - len(addresses)  # less the second count's own
    assert nodes <= made < 2 * nodes  # a client a node, and the store's; not 5 x 6
