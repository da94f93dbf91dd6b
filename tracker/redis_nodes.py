"""The Redis servers the store is on, checked to keep every key until it expires.

The figures rest on Redis keeping what the workers wrote: the ids counted in the last
48 hours (an evicted one lets its duplicate count again), each partition's offset, the
sums and the state. Redis evicts keys, silently, once it reaches ``maxmemory`` under
any ``maxmemory-policy`` but ``noeviction``: the ``volatile-*`` ones, managed
services' default, choose among keys with an expiry, which the counted ids are. So
the worker refuses a store with a node that may evict, whatever memory is left
(``maxmemory`` can be set at any time): it will not start, and while it runs it stops
applying until the policy is fixed, rechecking every :data:`CHECK_EVERY_S`. So does
the forwarder, whose sent marks expire too. A number that is missing is better than
one that is wrong.

Under ``noeviction`` a full Redis refuses writes instead (``OOM``): a batch's
transaction, and each script before the first write it makes, are refused whole, and
the worker applies the batch again until Redis has room. The figures stop, they do
not go wrong, and Kafka keeps the events meanwhile.

The exporter reports each node's memory, limit, policy, evictions and append-only file
(``tracker_store_*``) for the alerts ``StoreMayEvict``, ``StoreMemoryHigh`` and
``StoreFillingUp``. On a Redis Cluster every node is checked, and under Redis Sentinel
the primary and the replicas the Sentinels name: a replica promoted in a failover keeps
its own policy. A node that does not answer is left out (it evicts nothing while it is
down; logged each time), and so is one that refuses ``INFO`` (renamed or denied, as
hardened servers do: its operator chose so; logged once).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.asyncio.sentinel
import structlog
from redis.exceptions import RedisError, ResponseError

from tracker.redis_clients import async_client, async_node_client
from tracker.settings import Settings

log = structlog.get_logger(__name__)

KEEPS_EVERY_KEY = "noeviction"
CHECK_EVERY_S = 60
_ASK_TIMEOUT_S = 2.0
_SECTIONS = ("memory", "stats", "replication", "persistence")
_UNREAD = "could not read whether a node of the store may evict keys: see it is noeviction"
_REFUSED_INFO: set[str] = set()


class MayEvict(RedisError):
    """A node of the store may evict keys: nothing is applied until it may not."""


@dataclass(frozen=True, slots=True)
class Node:
    """What one Redis server says of its memory."""

    address: str
    primary: bool
    used_bytes: int
    max_bytes: int
    """``maxmemory``; 0: no limit."""
    policy: str
    evicted_keys: int
    """Keys evicted since the server started."""
    append_only: bool
    """It writes an append-only file (``appendonly yes``): a restart keeps what it
    acknowledged (all of it with ``appendfsync always``, which ``INFO`` does not tell)."""

    @property
    def may_evict(self) -> bool:
        return self.policy != KEEPS_EVERY_KEY


def node(address: str, info: Mapping[str, Any]) -> Node:
    """A node from its ``INFO`` (:data:`_SECTIONS`)."""
    return Node(
        address,
        info.get("role") == "master",
        int(info["used_memory"]),
        int(info["maxmemory"]),
        str(info["maxmemory_policy"]),
        int(info["evicted_keys"]),
        bool(int(info.get("aof_enabled", 0))),
    )


def refusal(nodes: Iterable[Node]) -> str | None:
    """Why the store cannot be trusted with the figures, or None when it can."""
    evicting = [n for n in nodes if n.may_evict]
    if not evicting:
        return None
    named = ", ".join(f"{n.address} has maxmemory-policy {n.policy}" for n in evicting)
    return (
        f"Redis may evict the store's keys ({named}): an evicted counted id lets its "
        f"duplicate count again. Set maxmemory-policy {KEEPS_EVERY_KEY} on every node "
        f"(CONFIG SET maxmemory-policy {KEEPS_EVERY_KEY}, and in its configuration)"
    )


def cluster_addresses(reply: str) -> list[str]:
    """The ``host:port`` of every node ``CLUSTER NODES`` names that is not known to be
    failing or without an address."""
    addresses = []
    for line in reply.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        flags = set(fields[2].split(","))
        if flags & {"fail", "noaddr", "handshake"}:
            continue
        addresses.append(fields[1].split("@")[0])
    return sorted(addresses)


class NodeClients:
    """A client of each node of a Redis Cluster (or replica under Sentinel), kept from
    one :func:`read` to the next.

    The exporter reads every node at each scrape: a client made for each read connected
    anew each time, over TLS with a handshake. Six nodes over TLS took 9.7-11.0 ms a
    read that way against 1.2-1.3 ms kept (8.3-8.5x; medians of 120 reads each,
    alternated, three runs). A node the cluster no longer names has its client closed.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, redis.asyncio.Redis] = {}

    async def of(self, addresses: list[str]) -> dict[str, redis.asyncio.Redis]:
        """A client of each of ``addresses``; the clients of any other closed."""
        for gone in self._clients.keys() - set(addresses):
            await self._clients.pop(gone).aclose()
        for address in addresses:
            if address not in self._clients:
                self._clients[address] = async_node_client(self._settings, address, _ASK_TIMEOUT_S)
        return dict(self._clients)

    async def aclose(self) -> None:
        await self.of([])


async def read(
    settings: Settings, client: redis.asyncio.Redis, kept: NodeClients | None = None
) -> list[Node]:
    """Every node of the store that answers: ``client``'s server and, under Sentinel,
    the replicas they name; on a Redis Cluster each node it knows of (``client``
    follows the store's slot, as :func:`tracker.redis_clients.async_client` makes it).
    Other nodes than ``client``'s are asked with ``kept``'s clients, or else with
    clients made for this read."""
    if settings.redis_is_cluster:
        # As Redis sends it, unparsed: named so, redis-py would parse it into a dict.
        reply = await client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        return await _each(settings, cluster_addresses(text), kept)
    try:
        answer = await client.info(*_SECTIONS)  # first: it connects, asking Sentinels
        found = [node(_address(client), answer)]
    except ResponseError as exc:
        _unread(_address(client), exc)
        found = []
    pool = client.connection_pool
    if not isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool):
        return found
    # A replica they promote keeps its own policy, as a cluster's does.
    replicas = await pool.sentinel_manager.discover_slaves(pool.service_name)
    return found + await _each(settings, [f"{host}:{port}" for host, port in replicas], kept)


async def _each(settings: Settings, addresses: list[str], kept: NodeClients | None) -> list[Node]:
    """The nodes at ``addresses`` that answer, asked with ``kept``'s clients or with
    clients made for this read."""
    clients = kept or NodeClients(settings)
    try:
        asked = await clients.of(addresses)
        answers = await asyncio.gather(*(_ask(address, asked[address]) for address in addresses))
    finally:
        if clients is not kept:
            await clients.aclose()
    return [n for n in answers if n is not None]


def _address(client: redis.asyncio.Redis) -> str:
    """Where ``client``'s server is; under Sentinel, the primary they named last."""
    pool = client.connection_pool
    if isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool) and pool.master_address:
        host, port = pool.master_address
    else:
        host, port = pool.connection_kwargs.get("host"), pool.connection_kwargs.get("port")
    return f"{host}:{port}"


async def _ask(address: str, client: redis.asyncio.Redis) -> Node | None:
    try:
        return node(address, await client.info(*_SECTIONS))
    except (RedisError, OSError) as exc:
        _unread(address, exc)
        return None


def forgetful(nodes: Iterable[Node]) -> str | None:
    """What a restart of nodes without an append-only file loses, or None when none is."""
    named = ", ".join(n.address for n in nodes if not n.append_only)
    if not named:
        return None
    return (
        f"Redis writes no append-only file on {named}: a restart there loses what it "
        "acknowledged since its last snapshot. The workers read those events from Kafka "
        "again (within its retention), but erasures and saved goals and targets are lost. "
        "Set appendonly yes and appendfsync always"
    )


async def store_nodes(settings: Settings) -> list[Node]:
    """:func:`read`, on a client of its own."""
    client = async_client(settings)
    try:
        return await read(settings, client)
    finally:
        await client.aclose()


def _unread(address: str, error: Exception) -> None:
    # INFO renamed or denied is a choice, said once (the exporter asks every scrape);
    # a node away may be back next time, and is said each time.
    if isinstance(error, ResponseError):
        if address in _REFUSED_INFO:
            return
        _REFUSED_INFO.add(address)
    log.warning(_UNREAD, node=address, error=str(error))


class Guard:
    """Refuses a store with a node that may evict, read again every ``every_s``."""

    def __init__(
        self, settings: Settings, client: redis.asyncio.Redis, every_s: float = CHECK_EVERY_S
    ) -> None:
        self._settings = settings
        self._client = client
        self._every_s = every_s
        self._checked = float("-inf")
        self._refused: str | None = None

    async def check(self) -> None:
        """Raise :class:`MayEvict` while a node may evict, as last read."""
        now = time.monotonic()
        if now - self._checked >= self._every_s:
            self._refused = refusal(await read(self._settings, self._client))
            self._checked = now
        if self._refused:
            raise MayEvict(self._refused)
