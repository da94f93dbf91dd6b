"""A Redis Cluster of three primaries with one replica each loses a primary to SIGKILL.

Writes that ``WAIT`` saw reach the replica are all there once the replica has taken
over, read through a fresh cluster client; the lost primary, started again, comes back
as its successor's replica with the same data. The cluster has ports and a folder of its
own (22101-22106, .run/test-redis-cluster), apart from every other Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from structlog.testing import capture_logs

from collector.cookieless import Salts, day_of
from harness import redis_cluster
from harness.isolation import free_port
from harness.processes import http_get, wait_for
from harness.redis_cluster import Cluster
from harness.services import ROOT
from tests.exporter import exporter
from tracker import redis_nodes
from tracker.events import Event
from tracker.export.audit import AuditLog
from tracker.export.erasure import ErasureApi
from tracker.export.people import PeopleApi
from tracker.redis_clients import NotReplicated, Primaries, async_client, async_reader
from tracker.redis_nodes import Guard, MayEvict
from tracker.rulebook import Rulebook
from tracker.seen import GENERATION_S, SHARDS, Claim, Claims, seen_digest, shard_of, shard_prefix
from tracker.settings import Settings
from tracker.store import (
    CLICK_SHARDS,
    Keys,
    click_prefix,
    path_prefix,
    people_prefix,
    read_buckets,
    read_uniques,
    tally_prefix,
)
from tracker.stream.sink import Record, Sink
from tracker.windows import ALL_TIME

WHY_NOT = redis_cluster.unstartable()
pytestmark = [pytest.mark.services, pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))]

ENVIRONMENT = {
    "TRACKER_REDIS_CLUSTER_PORT": "22101",
    "TRACKER_REDIS_CLUSTER_DIR": str(ROOT / ".run/test-redis-cluster"),
}
SLOTS = 16384
KEYS = 200
FAILOVER_WITHIN_S = 15.0
"""From the SIGKILL until every slot is served again: node timeout 2 s, then the
primaries' vote; about 4 s measured."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with redis_cluster.running(ENVIRONMENT) as started:
        yield started


def node_client(cluster: Cluster, node: int) -> Redis:
    """A plain client of node ``node`` alone."""
    return Redis(host="127.0.0.1", port=cluster.port(node), decode_responses=True)


def text(value: bytes | str | None) -> str | None:
    """A reply of a client with ``decode_responses``: never bytes."""
    assert not isinstance(value, bytes), value
    return value


async def shards(cluster: Cluster, node: int) -> list[dict[str, Any]]:
    """CLUSTER SHARDS as node ``node`` sees it."""
    client = node_client(cluster, node)
    try:
        seen: list[dict[str, Any]] = await client.cluster("shards")
        return seen
    finally:
        await client.aclose()


def test_three_primaries_each_with_one_replica_serve_every_slot(cluster: Cluster) -> None:
    for node in range(1, len(cluster.ports) + 1):
        seen = asyncio.run(shards(cluster, node))
        assert len(seen) == 3, (node, seen)
        served: list[int] = []
        for shard in seen:
            roles = sorted(member["role"] for member in shard["nodes"])
            assert roles == ["master", "replica"], (node, shard)
            bounds = shard["slots"]
            for first, last in zip(bounds[::2], bounds[1::2], strict=True):
                served += range(first, last + 1)
        assert sorted(served) == list(range(SLOTS)), f"node {node}: slots missing or served twice"
        members = {member["port"] for shard in seen for member in shard["nodes"]}
        assert members == set(cluster.ports), node


def test_every_node_may_stop_the_workers_a_replica_too(cluster: Cluster) -> None:
    """A replica's policy is checked as a primary's: a failover would promote it."""
    settings = Settings(redis_url=cluster.url, redis_prefix=f"test-{uuid.uuid4().hex[:10]}")

    async def main() -> None:
        client = async_client(settings)
        try:
            nodes = await redis_nodes.read(settings, client)
            assert sorted(n.address for n in nodes) == [f"127.0.0.1:{p}" for p in cluster.ports]
            assert sorted(n.primary for n in nodes) == [False] * 3 + [True] * 3
            assert all(n.append_only for n in nodes)  # as deploy/local/redis-cluster.sh runs them
            await Guard(settings, client).check()
            replica = next(n for n in nodes if not n.primary)
            plain = Redis.from_url(f"redis://{replica.address}")
            await plain.config_set("maxmemory-policy", "allkeys-lfu")
            try:
                with pytest.raises(MayEvict, match=f"{replica.address} has maxmemory-policy"):
                    await Guard(settings, client).check()
            finally:
                await plain.config_set("maxmemory-policy", "noeviction")
                await plain.aclose()
            await Guard(settings, client).check()
        finally:
            await client.aclose()

    asyncio.run(main())


async def write(cluster: Cluster, values: dict[str, str], primary: int, fence: str) -> int:
    """Set ``values`` through a cluster client, then ``fence`` on ``primary`` itself and
    ``WAIT`` there; the number of the replica that acknowledged them all."""
    client = cluster.client()
    direct = node_client(cluster, primary)
    try:
        for key, value in values.items():
            assert await client.set(key, value)
        owner = client.get_node_from_key(fence)
        assert owner is not None
        assert cluster.node(int(owner.port)) == primary, owner  # as the script says
        # WAIT counts the replicas that have the writes of its own connection, and the
        # cluster client's are on connections of its own. So one more write, in the same
        # slot, on this one: the replication stream is in order, so a replica that has
        # acknowledged it has every write before it too.
        assert await direct.set(fence, "fence")
        assert await direct.wait(1, 2000) == 1
        replication = await direct.info("replication")
        assert replication["connected_slaves"] == 1, replication
        return cluster.node(int(replication["slave0"]["port"]))
    finally:
        await client.aclose()
        await direct.aclose()


async def read(cluster: Cluster, keys: list[str]) -> dict[str, str | None]:
    """``keys`` read through a fresh cluster client."""
    client = cluster.client()
    try:
        return {key: text(await client.get(key)) for key in keys}
    finally:
        await client.aclose()


async def replica_state(cluster: Cluster, node: int, keys: list[str]) -> tuple[Any, ...]:
    """Role, primary's port and link of node ``node``, and its copy of ``keys``."""
    client = node_client(cluster, node)
    try:
        replication = await client.info("replication")
        assert await client.readonly()  # a replica serves reads of its slots
        copy = {key: text(await client.get(key)) for key in keys}
        return (
            replication["role"],
            replication.get("master_port"),
            replication.get("master_link_status"),
            copy,
        )
    finally:
        await client.aclose()


async def forget(cluster: Cluster, keys: list[str]) -> None:
    client = cluster.client()
    try:
        await client.delete(*keys)
    finally:
        await client.aclose()


def test_primary_killed_its_replica_takes_over_with_every_acknowledged_write(
    cluster: Cluster,
) -> None:
    tag = f"{{failover-{uuid.uuid4().hex[:10]}}}"  # one slot for every key
    values = {f"{tag}:{i}": f"value-{i}" for i in range(KEYS)}
    fence = f"{tag}:fence"
    expected = {**values, fence: "fence"}
    primary = redis_cluster.primary_of(ENVIRONMENT, fence)

    replica = asyncio.run(write(cluster, values, primary, fence))
    assert replica != primary

    redis_cluster.kill_node(ENVIRONMENT, primary)
    killed_at = time.monotonic()
    redis_cluster.wait_ok(ENVIRONMENT, FAILOVER_WITHIN_S)
    print(f"failover: every slot served again {time.monotonic() - killed_at:.1f} s after SIGKILL")
    assert redis_cluster.primary_of(ENVIRONMENT, fence) == replica
    assert asyncio.run(read(cluster, list(expected))) == expected

    started_at = time.monotonic()
    redis_cluster.start_node(ENVIRONMENT, primary)
    print(f"rejoin: node {primary} a replica in sync {time.monotonic() - started_at:.1f} s")
    assert asyncio.run(replica_state(cluster, primary, list(expected))) == (
        "slave",
        cluster.port(replica),
        "up",
        expected,
    )
    assert redis_cluster.primary_of(ENVIRONMENT, fence) == replica
    asyncio.run(forget(cluster, list(expected)))


@contextmanager
def stopped(node: int) -> Iterator[None]:
    """Node ``node`` SIGSTOPped: alive to the kernel, silent to the cluster."""
    pid = int(
        (Path(ENVIRONMENT["TRACKER_REDIS_CLUSTER_DIR"]) / f"node-{node}/redis.pid").read_text()
    )
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def save(settings: Settings, rules: dict[str, Any]) -> int:
    """Save ``rules`` as the goals of ``settings``' deployment; the version saved."""
    client = async_client(settings)
    try:
        document, _ = await Rulebook(client, Keys(settings.key_prefix).goals).save(rules)
        return int(document["version"])
    finally:
        await client.aclose()


async def replica_of(cluster: Cluster, primary: int) -> int:
    """The number of the replica of node ``primary``."""
    client = node_client(cluster, primary)
    try:
        replication = await client.info("replication")
        return cluster.node(int(replication["slave0"]["port"]))
    finally:
        await client.aclose()


async def held_by(cluster: Cluster, node: int, key: str) -> int | None:
    """The version of the rules at ``key`` that node ``node`` holds, replica or not."""
    client = node_client(cluster, node)
    try:
        assert await client.readonly()
        raw = await client.get(key)
        return None if raw is None else int(orjson.loads(raw)["version"])
    finally:
        await client.aclose()


def test_a_save_returns_once_a_replica_holds_it_and_fails_plainly_when_none_does(
    cluster: Cluster,
) -> None:
    """What a person saves (goals, an erasure) is redone by nothing if a failover loses
    it: it is acknowledged only once a replica has it too (WAIT)."""
    settings = Settings(redis_url=cluster.url, redis_prefix=f"test-{uuid.uuid4().hex[:10]}")
    key = Keys(settings.key_prefix).goals
    primary = redis_cluster.primary_of(ENVIRONMENT, key)
    replica = asyncio.run(replica_of(cluster, primary))

    assert asyncio.run(save(settings, {"goals": ["first"]})) == 1
    assert asyncio.run(held_by(cluster, replica, key)) == 1  # already there when it returned

    with stopped(replica), pytest.raises(NotReplicated, match="no replica confirmed"):
        asyncio.run(save(settings, {"goals": ["second"]}))
    assert asyncio.run(held_by(cluster, primary, key)) == 2  # applied, not confirmed

    wait_for(lambda: asyncio.run(held_by(cluster, replica, key)) == 2, 30, "replica caught up")
    assert asyncio.run(save(settings, {"goals": ["third"]})) == 3
    assert asyncio.run(held_by(cluster, replica, key)) == 3
    redis_cluster.forget_keys(settings)


async def applied(settings: Settings, records: list[Record]) -> int:
    """Apply ``records`` with a sink of their own; the clicks the store then holds."""
    client, reader = async_client(settings), async_reader(settings)
    sink = Sink(client, settings)
    try:
        await sink.apply(records)
        rows = await read_buckets(reader, ALL_TIME, [0], Keys(settings.key_prefix), ("total",))
        return rows.get(0, {}).get(("total", "total"), {}).get("clicks", 0)
    finally:
        await sink.aclose()
        await client.aclose()
        await reader.aclose()


def click(event_id: str) -> Event:
    return Event(event_id=event_id, type="click", ts=60_000, received_at=60_000, channel="search")


def test_counted_ids_spread_over_every_primary_and_are_on_a_replica_before_they_count(
    cluster: Cluster,
) -> None:
    """The counted ids, most of the store, are shared by the primaries; a batch counts
    only once every shard it claimed ids in has them on a replica too."""
    settings = Settings(redis_url=cluster.url, redis_prefix=f"test-{uuid.uuid4().hex[:10]}")
    ids = [f"e{i}" for i in range(2_000)]
    sizes = Counter(shard_of(seen_digest(i)) for i in ids)
    generation = int(time.time()) // GENERATION_S
    written = [Keys(shard_prefix(settings.key_prefix, s)).seen(generation) for s in range(SHARDS)]
    owners = {redis_cluster.primary_of(ENVIRONMENT, name) for name in written}
    assert len(owners) == 3

    assert asyncio.run(applied(settings, [Record("t", 0, 0, [click(i) for i in ids])])) == 2_000
    for shard, name in enumerate(written):
        primary = redis_cluster.primary_of(ENVIRONMENT, name)
        replica = asyncio.run(replica_of(cluster, primary))
        assert asyncio.run(ids_on(cluster, replica, name)) == sizes[shard]  # when it returned

    # A shard on another primary than the store's and partition 0's sums': their
    # replicas stay up.
    others = {
        redis_cluster.primary_of(ENVIRONMENT, prefix)
        for prefix in (settings.key_prefix, tally_prefix(settings.key_prefix, 0))
    }
    late_id = next(
        late_id
        for late_id in (f"late{i}" for i in range(1_000))
        if redis_cluster.primary_of(ENVIRONMENT, written[shard_of(seen_digest(late_id))])
        not in others
    )
    shard = shard_of(seen_digest(late_id))
    replica = asyncio.run(
        replica_of(cluster, redis_cluster.primary_of(ENVIRONMENT, written[shard]))
    )
    late = [Record("t", 0, 1, [click(late_id), click("e1")])]
    with stopped(replica), pytest.raises(NotReplicated, match="no replica of deduplication shard"):
        asyncio.run(applied(settings, late))
    assert asyncio.run(applied(settings, [])) == 2_000  # nothing counted meanwhile
    caught_up = sizes[shard] + 1
    wait_for(
        lambda: asyncio.run(ids_on(cluster, replica, written[shard])) == caught_up,
        30,
        "replica caught up",
    )
    assert asyncio.run(applied(settings, late)) == 2_001  # claimed before, counted once now

    # With no replica at all, nothing can fail over: the claims are taken unconfirmed.
    redis_cluster.kill_node(ENVIRONMENT, replica)
    try:
        with capture_logs() as logs:
            same = next(f"a{i}" for i in range(1_000) if shard_of(seen_digest(f"a{i}")) == shard)
            alone = [Record("t", 0, 2, [click(same)])]
            assert asyncio.run(applied(settings, alone)) == 2_002
        assert any(e.get("of", "").startswith("deduplication shard") for e in logs)
    finally:
        redis_cluster.start_node(ENVIRONMENT, replica)
    redis_cluster.forget_keys(settings)


async def ids_on(cluster: Cluster, node: int, generation: str) -> int:
    """How many ids node ``node`` holds in a generation, replica or not."""
    client = node_client(cluster, node)
    try:
        assert await client.readonly()
        return int(await client.hget(generation, "ids") or 0)
    finally:
        await client.aclose()


async def make_salts(settings: Settings, now: int) -> bytes | None:
    """The cookieless salt of ``now``'s day, made by a collector's :class:`Salts` if new."""
    client = async_client(settings)
    try:
        salts = Salts(client, Keys(settings.key_prefix))
        await salts.refresh(now)
        return salts.today(now)
    finally:
        await client.aclose()


async def raw_on(cluster: Cluster, node: int, key: str) -> bytes | None:
    """The value node ``node`` holds at ``key``, replica or not."""
    client = Redis(host="127.0.0.1", port=cluster.port(node))
    try:
        assert await client.readonly()
        value = await client.get(key)
        assert not isinstance(value, str), value  # no decode_responses
        return value
    finally:
        await client.aclose()


def test_a_new_cookieless_salt_is_on_a_replica_when_collectors_start_using_it(
    cluster: Cluster,
) -> None:
    """A salt lost in a failover would be made again, different, and a visitor counted
    twice that day; with no replica to confirm it (none to fail over to), it is used."""
    settings = Settings(redis_url=cluster.url, redis_prefix=f"test-{uuid.uuid4().hex[:10]}")
    keys = Keys(settings.key_prefix)
    day = day_of(int(time.time() * 1000)) + 3  # ahead: a past day's salt expires at once
    noon = day * 86_400_000 + 12 * 3_600_000
    key = keys.salt(time.strftime("%Y-%m-%d", time.gmtime(day * 86_400)))
    primary = redis_cluster.primary_of(ENVIRONMENT, key)
    replica = asyncio.run(replica_of(cluster, primary))

    salt = asyncio.run(make_salts(settings, noon))
    assert salt is not None
    assert asyncio.run(raw_on(cluster, replica, key)) == salt  # there when it returned

    later = noon + 2 * 86_400_000  # a day whose salt (and the next one's) is new
    later_key = keys.salt(time.strftime("%Y-%m-%d", time.gmtime(later // 1000)))
    assert redis_cluster.primary_of(ENVIRONMENT, later_key) == primary  # one hash tag
    with stopped(replica), capture_logs() as logs:
        unconfirmed = asyncio.run(make_salts(settings, later))
    assert unconfirmed is not None
    assert [e["key"] for e in logs if e["log_level"] == "warning"] == [
        later_key,
        keys.salt(time.strftime("%Y-%m-%d", time.gmtime(later // 1000 + 86_400))),
    ]
    assert asyncio.run(raw_on(cluster, primary, later_key)) == unconfirmed
    redis_cluster.forget_keys(settings)


def test_ports_where_outgoing_connections_may_land_are_refused() -> None:
    """A node whose bus port (port + 10000) an outgoing connection holds aborts at start,
    which failed CI once: the script refuses such ports before starting anything."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    refused = redis_cluster._run(
        {**ENVIRONMENT, "TRACKER_REDIS_CLUSTER_PORT": str(low - 10000)}, "status"
    )
    assert refused.returncode != 0
    assert "ephemeral range" in refused.stderr
    assert "ephemeral range" not in redis_cluster._run(ENVIRONMENT, "status").stderr


async def tally_on(cluster: Cluster, node: int, settings: Settings, partition: int) -> int | None:
    """The offset whose sums node ``node`` holds for ``partition``, replica or not."""
    tally = Keys(tally_prefix(settings.key_prefix, partition))
    client = node_client(cluster, node)
    try:
        assert await client.readonly()
        raw = await client.get(tally.source("t", partition))
        return None if raw is None else int(raw)
    finally:
        await client.aclose()


async def unconfirmed(
    settings: Settings,
    earlier: Record,
    records: list[Record],
    replica: int,
    what: str = "the sums of partition",
) -> None:
    """Apply ``records`` with ``replica`` stopped, on a sink that applied ``earlier`` before
    (so saw its tally take it): the ``WAIT`` of ``what`` fails, and the sink says so.

    A sink new to a partition would fail before, as it does: the tally it must find
    holding its partition's last batch is one a replica must hold too, or a failover
    could take it back.
    """
    client = async_client(settings)
    sink = Sink(client, settings)
    try:
        await sink.apply([earlier])
        with stopped(replica), pytest.raises(NotReplicated, match=re.escape(what)):
            await sink.apply(records)
    finally:
        await sink.aclose()
        await client.aclose()


def by_anna(event_id: str) -> Event:
    return msgspec.structs.replace(click(event_id), anonymous_id="anna")


async def people(settings: Settings) -> int:
    reader = async_reader(settings)
    try:
        audience = (ALL_TIME, 0, "total", "total")
        (found,) = await read_uniques(reader, [audience], Keys(settings.key_prefix))
        return found
    finally:
        await reader.aclose()


def test_each_partitions_sums_are_on_its_primary_and_a_replica_before_the_batch_counts(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The sums, the rest of the store's writes, are shared by the primaries too; read
    through ``RedisCluster`` they add up (``/metrics`` too), and a person in two
    partitions is one."""
    settings = Settings(redis_url=cluster.url, redis_prefix="test-tallies", redis_spread_sums=True)
    redis_cluster.forget_keys(settings)  # of a run that failed before its end
    partitions = range(8)
    owners = {p: redis_cluster.primary_of(ENVIRONMENT, tally_prefix(settings.key_prefix, p))
              for p in partitions}  # fmt: skip
    assert len(set(owners.values())) == 3  # under this prefix; other prefixes differ
    records = [Record("t", p, 0, [click(f"p{p}-{i}") for i in range(50)]) for p in partitions]
    records[1] = Record("t", 1, 0, [*records[1].events, by_anna("anna-0")])
    assert asyncio.run(applied(settings, records)) == 401
    for p, primary in owners.items():  # on a replica when apply returned
        replica = asyncio.run(replica_of(cluster, primary))
        assert asyncio.run(tally_on(cluster, replica, settings, p)) == 0
    assert asyncio.run(people(settings)) == 1  # clicks without a person count none

    # A partition whose sums are on a primary of their own: not the store's, nor that of
    # the shard of the id it brings.
    store = redis_cluster.primary_of(ENVIRONMENT, settings.key_prefix)
    partition = next(p for p, primary in owners.items() if primary != store)
    event_id = next(
        event_id
        for event_id in (f"x{i}" for i in range(1_000))
        if owners[partition]
        != redis_cluster.primary_of(
            ENVIRONMENT, shard_prefix(settings.key_prefix, shard_of(seen_digest(event_id)))
        )
    )
    replica = asyncio.run(replica_of(cluster, owners[partition]))
    # Nobody in it: people go to hash tags of their own, which may be that primary's.
    late = [Record("t", partition, 1, [click(event_id)])]
    asyncio.run(unconfirmed(settings, records[partition], late, replica))
    wait_for(
        lambda: asyncio.run(tally_on(cluster, replica, settings, partition)) == 1,
        30,
        "replica caught up",
    )
    assert asyncio.run(applied(settings, late)) == 402  # taken once, confirmed now
    assert asyncio.run(people(settings)) == 1

    serving = dataclasses.replace(settings, exporter_port=free_port())
    with exporter(serving, tmp_path / "exporter.log") as running:
        status, body = http_get(f"{running.base}/metrics")
    assert status == 200
    assert 'tracker_channel_clicks_total{channel="search"} 402.0' in body.decode()

    # People under a primary serving neither the store, nor the partition's sums, nor
    # the shard of the event's id: their WAIT fails, and they count once after.
    tag = people_prefix(settings.key_prefix, "total", "total")
    holder = redis_cluster.primary_of(ENVIRONMENT, tag)
    assert holder != store  # under this prefix
    partition = next(p for p, primary in owners.items() if primary != holder)
    event_id = next(
        event_id
        for event_id in (f"y{i}" for i in range(1_000))
        if holder
        != redis_cluster.primary_of(
            ENVIRONMENT, shard_prefix(settings.key_prefix, shard_of(seen_digest(event_id)))
        )
    )
    ben = [
        Record("t", partition, 2, [msgspec.structs.replace(click(event_id), anonymous_id="ben")])
    ]
    replica = asyncio.run(replica_of(cluster, holder))
    asyncio.run(unconfirmed(settings, Record("t", partition, 1, []), ben, replica, tag))
    wait_for(lambda: asyncio.run(people(settings)) == 2, 30, "ben counted, once")
    assert asyncio.run(applied(settings, ben)) == 403
    redis_cluster.forget_keys(settings)


def test_a_tallys_primary_killed_mid_stream_its_replica_takes_over_and_each_sum_counts_once(
    cluster: Cluster,
) -> None:
    """The sums spread: the primary of a partition's tally (not the store's) SIGKILLed
    between two batches; the sink retries, as a worker does, until the replica serves."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    settings = Settings(redis_url=cluster.url, redis_prefix=prefix, redis_spread_sums=True)
    store = redis_cluster.primary_of(ENVIRONMENT, settings.key_prefix)
    owners = {p: redis_cluster.primary_of(ENVIRONMENT, tally_prefix(settings.key_prefix, p))
              for p in range(8)}  # fmt: skip
    victim = next(primary for primary in owners.values() if primary != store)
    # Ids whose shards the victim does not hold: their claims go through, so the kill
    # falls between a batch's transaction and its tally.
    spared = {
        shard
        for shard in range(SHARDS)
        if redis_cluster.primary_of(ENVIRONMENT, shard_prefix(settings.key_prefix, shard)) != victim
    }
    ids = (f"e{n}" for n in itertools.count() if shard_of(seen_digest(f"e{n}")) in spared)

    def batch(offset: int) -> list[Record]:
        return [Record("t", p, offset, [click(next(ids)) for _ in range(20)]) for p in range(8)]

    first, second = batch(0), batch(1)

    async def stream() -> int:
        client = async_client(settings)
        sink = Sink(client, settings)
        retries = 0
        try:
            await sink.apply(first)
            redis_cluster.kill_node(ENVIRONMENT, victim)
            deadline = time.monotonic() + FAILOVER_WITHIN_S
            while True:
                try:
                    await sink.apply(second)
                    await sink.apply(second)  # redelivered: nothing twice
                    return retries
                except RedisError:
                    assert time.monotonic() < deadline, "the sink never got through"
                    retries += 1
                    await asyncio.sleep(0.2)
        finally:
            await sink.aclose()
            await client.aclose()

    try:
        assert asyncio.run(stream()) > 0  # the kill was felt
        assert asyncio.run(applied(settings, [])) == 320
    finally:
        redis_cluster.start_node(ENVIRONMENT, victim)
    assert asyncio.run(applied(settings, second)) == 320
    redis_cluster.forget_keys(settings)


def test_spread_clicks_and_paths_are_on_their_primaries_and_a_replica_and_an_erasure_finds_them(
    cluster: Cluster,
) -> None:
    """With ``TRACKER_REDIS_SPREAD_CLICKS`` and ``TRACKER_REDIS_SPREAD_PATHS``, clicks and
    paths under their own tags on more than one primary, each on a replica when ``apply``
    returned, and ``GET /v1/people`` finds a path there; ``POST /v1/erasure`` deletes one
    person's from every primary (through ``RedisCluster``) and leaves the others'."""
    settings = Settings(
        redis_url=cluster.url,
        redis_prefix="test-clicks",
        redis_spread_clicks=True,
        redis_spread_paths=True,
    )
    redis_cluster.forget_keys(settings)  # of a run that failed before its end
    keys = Keys(settings.key_prefix)
    ids = [f"k{i}" for i in range(24)]
    devices = [f"d{i}" for i in range(6)]
    clicks = [
        msgspec.structs.replace(click(f"c{i}"), anonymous_id=f"d{i % 6}", click_id=click_id)
        for i, click_id in enumerate(ids)
    ]
    assert asyncio.run(applied(settings, [Record("t", 0, 0, clicks)])) == 24
    where = {k: Keys(click_prefix(keys.prefix, k)).click(k) for k in ids}
    where |= {d: Keys(path_prefix(keys.prefix, d)).path(d) for d in devices}
    owners = {k: redis_cluster.primary_of(ENVIRONMENT, name) for k, name in where.items()}
    assert len({owners[k] for k in ids}) == 3
    assert len({owners[d] for d in devices}) > 1
    for k, name in where.items():
        replica = asyncio.run(replica_of(cluster, owners[k]))
        assert asyncio.run(raw_on(cluster, replica, name)) is not None

    async def path_shown(device: str) -> list[dict[str, Any]]:
        client, reader = async_client(settings), async_reader(settings)
        try:
            found = await PeopleApi(client, reader, settings)._device(device, 0)
            assert found is not None
            return list(found["path"])
        finally:
            await client.aclose()
            await reader.aclose()

    assert len(asyncio.run(path_shown("d1"))) == 4

    async def erase() -> dict[str, Any]:
        client, reader = async_client(settings), async_reader(settings)
        try:
            api = ErasureApi(client, reader, settings, AuditLog(settings))
            erased = await api.erase("anonymous_id", "d0", 0)
            assert erased is not None
            return erased.removed
        finally:
            await client.aclose()
            await reader.aclose()

    removed = asyncio.run(erase())
    assert (removed["clicks"], removed["paths"]) == (4, 1)

    async def left() -> list[str]:
        reader = async_reader(settings)
        try:
            return [k for k, name in where.items() if await reader.get(name) is not None]
        finally:
            await reader.aclose()

    assert asyncio.run(left()) == [k for k in ids if int(k[1:]) % 6] + devices[1:]
    redis_cluster.forget_keys(settings)


def test_isolate_leaves_a_primary_serving_one_slot_of_the_keys_given(cluster: Cluster) -> None:
    """What ``make bench-shards`` relies on to measure the store's slot alone; the keys
    of the slots it moves go with them."""
    run = uuid.uuid4().hex[:8]
    keep, others = f"{{{run}}}:store", [f"{{{run}:{n}}}:x" for n in range(60)]
    primary = redis_cluster.primary_of(ENVIRONMENT, keep)
    assert Counter(redis_cluster.primary_of(ENVIRONMENT, k) for k in others)[primary] > 0

    async def on_cluster(write: bool) -> list[str | None]:
        client = cluster.client()
        try:
            for name in [keep, *others] if write else []:
                await client.set(name, name, ex=60)
            return [text(await client.get(name)) for name in [keep, *others]]
        finally:
            await client.aclose()

    assert asyncio.run(on_cluster(write=True)) == [keep, *others]
    assert redis_cluster.isolate(cluster, keep, others) == primary
    assert redis_cluster.primary_of(ENVIRONMENT, keep) == primary
    assert all(redis_cluster.primary_of(ENVIRONMENT, k) != primary for k in others)
    assert redis_cluster.isolate(cluster, keep, others) == primary  # nothing more to move
    redis_cluster.wait_ok(ENVIRONMENT)  # every slot still served
    assert asyncio.run(on_cluster(write=False)) == [keep, *others]


def test_a_scripts_calls_go_one_pipeline_a_primary_and_follow_a_slot_moved_alone(
    cluster: Cluster,
) -> None:
    """64 deduplication shards' calls wait for a replica once a primary, not once a shard;
    a shard's slot moved to another primary (resharding) after the script learnt where
    the slots were still gets its calls, with the ids it held before."""
    settings = Settings(redis_url=cluster.url, redis_prefix=f"test-{uuid.uuid4().hex[:10]}")
    ids = [f"e{i}" for i in range(2_000)]
    first, second = ids[:1_000], ids[1_000:]
    prefixes = [shard_prefix(settings.key_prefix, s) for s in range(SHARDS)]
    assert {shard_of(seen_digest(i)) for i in first} == set(range(SHARDS))

    async def run() -> None:
        client = async_client(settings)
        claims = Claims(settings, client)
        try:
            now = int(time.time())
            # Each primary loads the script on its first call (NOSCRIPT, then once more).
            await claims.claim([Claim("t", 9, -1, {f"warm{i}": 1 for i in range(1_000)})], now)
            before = await waits(cluster)
            assert await claims.claim([Claim("t", 0, -1, dict.fromkeys(first, 1))], now) == [set()]
            after = await waits(cluster)
            assert {node: after[node] - before[node] for node in after} == dict.fromkeys(after, 1)

            move_alone(cluster, prefixes[shard_of(seen_digest(first[0]))], prefixes)

            again = [
                Claim("t", 1, -1, dict.fromkeys(first, 5)),
                Claim("t", 2, -1, dict.fromkeys(second, 5)),
            ]
            assert await claims.claim(again, now) == [set(first), set()]
        finally:
            await claims.aclose()
            await client.aclose()

    try:
        asyncio.run(run())
    finally:
        redis_cluster.forget_keys(settings)


def test_spread_reads_go_one_pipeline_a_primary_and_follow_a_slot_moved_alone(
    cluster: Cluster,
) -> None:
    """Keys under the 16 click shards, on three primaries, are read with a connection a
    primary, not a shard; a shard's slot moved to another primary after the reader learnt
    where the slots were is still read, with what it held."""
    settings = Settings(redis_url=cluster.url, redis_prefix=f"test-{uuid.uuid4().hex[:10]}")
    root = settings.key_prefix
    by_prefix: dict[str, list[str]] = {}
    for n in itertools.count():
        by_prefix.setdefault(click_prefix(root, f"c{n}"), []).append(f"c{n}")
        if len(by_prefix) == CLICK_SHARDS and min(map(len, by_prefix.values())) > 1:
            break
    reads = [
        (p, [Keys(p).click(c) for c in ids] + [Keys(p).click("none")])
        for p, ids in by_prefix.items()
    ]
    wanted = [[c.encode() for c in ids] + [None] for ids in by_prefix.values()]
    primaries = {redis_cluster.primary_of(ENVIRONMENT, p) for p in by_prefix}
    assert len(primaries) == 3
    shards = [shard_prefix(root, s) for s in range(SHARDS)]  # to keep one where it is

    async def run() -> None:
        reader = async_reader(settings)
        for (_, keys), ids in zip(reads, by_prefix.values(), strict=True):
            for key, c in zip(keys, ids, strict=False):
                await reader.set(key, c)
        await reader.aclose()
        client = async_client(settings)
        spread = Primaries(settings, client)
        try:
            before = await connected(cluster)
            assert await spread.mget(reads) == wanted
            assert await connected(cluster) - before == len(primaries) + 1  # and the store's

            move_alone(cluster, next(iter(by_prefix)), [*by_prefix, *shards])
            assert await spread.mget(reads) == wanted
        finally:
            await spread.aclose()
            await client.aclose()

    try:
        asyncio.run(run())
    finally:
        redis_cluster.forget_keys(settings)


def move_alone(cluster: Cluster, moving: str, others: list[str]) -> None:
    """``moving``'s slot to another primary, as resharding moves one, with one of
    ``others`` that shares its primary kept there."""
    home = redis_cluster.primary_of(ENVIRONMENT, moving)
    keep = next(
        p for p in others if p != moving and redis_cluster.primary_of(ENVIRONMENT, p) == home
    )
    redis_cluster.isolate(cluster, keep, [moving])
    assert redis_cluster.primary_of(ENVIRONMENT, moving) != home


async def connected(cluster: Cluster) -> int:
    """The connections the primaries hold open, the asking one's apart."""
    total = 0
    for node in range(1, len(cluster.ports) + 1):
        client = node_client(cluster, node)
        try:
            if (await client.info("replication"))["role"] == "master":
                total += int((await client.info("clients"))["connected_clients"]) - 1
        finally:
            await client.aclose()
    return total


async def waits(cluster: Cluster) -> dict[int, int]:
    """Each primary's number -> the ``WAIT`` commands it has answered."""
    counts = {}
    for node in range(1, len(cluster.ports) + 1):
        client = node_client(cluster, node)
        try:
            if (await client.info("replication"))["role"] == "master":
                stats = await client.info("commandstats")
                counts[node] = int(stats.get("cmdstat_wait", {}).get("calls", 0))
        finally:
            await client.aclose()
    return counts
