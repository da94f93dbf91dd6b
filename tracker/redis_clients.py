"""Redis clients that outlive a Redis restart or failover: every process makes its clients here.

redis-py keeps connections in a pool. After Redis restarts (a failover, a deploy),
each pooled connection is dead, and without a retry policy naming connection errors
the next pipeline on it fails even though Redis answers again: the exporter answered
one 500 per dead connection that way (tests/e2e/test_faults.py restarts Redis). A
command that failed on a closed connection is sent again on a fresh one, up to three
times with a short jittered backoff; errors Redis itself answers are never retried.
A transaction under ``WATCH`` is not sent again: redis-py raises ``WatchError`` for it
instead, and its caller reads and decides again, as it does when a key moved.

On a Redis Cluster (``TRACKER_REDIS_CLUSTER`` or a ``redis+cluster://`` URL) every key
of a deployment but the deduplication shards' and the partitions' sums is under one hash
tag (:attr:`Settings.key_prefix`), so one slot, one primary, holds them, and the store's
transactions, scripts and scans run there as on a single Redis; each shard
(:mod:`tracker.seen`) and each partition's sums (:func:`tracker.store.tally_prefix`) have
a hash tag of their own, written through a :class:`Script` and read through
:func:`async_reader`. A client is a plain one
whose connections go to the primary that serves its slot now, asked of the cluster each
time one connects: after a failover, a dead or demoted primary's connections fail (or
answer ``MOVED``), are dropped, and the retry connects to the promoted replica.
redis-py's ``RedisCluster`` routes by key instead, and its transactions run each command
read under ``WATCH`` in a thread of its own: the sink reads most of its state that way.

Over TLS (``rediss://``, ``rediss+cluster://``) every connection made here speaks TLS,
with what the URL says of it (:func:`_seeds`): those to the slot's primary, those that
ask a node where a slot is, the readers' and those to one node.

Under Redis Sentinel (a ``redis+sentinel://`` URL) a client's connections go to the
primary the Sentinels name, asked each time one connects (redis-py's
``SentinelConnectionPool``): after a failover the old primary's connections fail, or
answer that it is a replica now, and the retry connects to the one promoted. One
primary holds every key, as a single Redis does; what it had not yet passed to its
replica is lost with it, and the worker reads those batches again from Kafka.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
import structlog
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    TimeoutError,
    TryAgainError,
)
from redis.retry import Retry

from tracker.settings import (
    CLUSTER_SCHEME,
    SENTINEL_PASSWORD,
    SENTINEL_PORT,
    SENTINEL_SCHEME,
    TLS_CLUSTER_SCHEME,
    TLS_SENTINEL_SCHEME,
    Settings,
    sentinel_service,
)

log = structlog.get_logger(__name__)
_RETRIED = [ConnectionError, TimeoutError]
_ATTEMPTS = 3
_MOVED = (AskError, ClusterDownError, ReadOnlyError, TryAgainError)
"""Answers of a node that no longer serves the slot (``MovedError`` is an ``AskError``),
or of a cluster between primaries: the connection is dropped and the command retried."""
_ASK_TIMEOUT_S = 1.0
REPLICATED_WITHIN_MS = 2000
"""How long a write that must outlive a failover waits for a replica to confirm it."""


class NotReplicated(RedisError):
    """The primary applied a write that no replica confirmed in time: a failover now
    could lose it. Retry once the cluster has a replica again."""


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=0.05, cap=1.0)


def async_client(settings: Settings, following: str | None = None) -> redis.asyncio.Redis:
    """A client of the store; on a Redis Cluster, of the primary of the slot of
    ``following`` (a key or hash tag), by default the one every key of
    :attr:`Settings.key_prefix` is in; under Sentinel, of the primary they name."""
    retry = AsyncRetry(_backoff(), _ATTEMPTS)
    if settings.redis_is_sentinel:
        client: redis.asyncio.Redis = _watched(
            settings, redis.asyncio.sentinel.Sentinel, _AsyncWatched, retry
        )
        return client
    url, extra = _connection(settings, following)
    return redis.asyncio.Redis.from_url(
        url,
        retry=retry,
        retry_on_error=_RETRIED,
        **_primary_of((_AsyncPrimary, _AsyncTLSPrimary), extra),
    )


def sync_client(settings: Settings, following: str | None = None) -> redis.Redis:
    """:func:`async_client`'s synchronous twin."""
    retry = Retry(_backoff(), _ATTEMPTS)
    if settings.redis_is_sentinel:
        client: redis.Redis = _watched(settings, redis.sentinel.Sentinel, _SyncWatched, retry)
        return client
    url, extra = _connection(settings, following)
    return redis.Redis.from_url(
        url,
        retry=retry,
        retry_on_error=_RETRIED,
        **_primary_of((_SyncPrimary, _SyncTLSPrimary), extra),
    )


def _watched(
    settings: Settings, sentinel: Callable[..., Any], client: type[Any], retry: Any
) -> Any:
    """A ``client`` of the primary the URL's Sentinels name, asked through ``sentinel``
    (redis-py's ``Sentinel``, asynchronous or not). The Sentinels are asked with the
    URL's login and TLS too, or with ``?sentinel_password=`` (empty: none) where theirs
    differs."""
    sentinels, options = _seeds(settings, SENTINEL_PORT)
    given = dict(parse_qsl(urlsplit(settings.redis_url).query, keep_blank_values=True))
    asking = {}
    if SENTINEL_PASSWORD in given:
        asking = {"username": None, "password": given[SENTINEL_PASSWORD] or None}
    service, db = sentinel_service(settings.redis_url)
    quick = {"socket_timeout": _ASK_TIMEOUT_S, "socket_connect_timeout": _ASK_TIMEOUT_S}
    return sentinel(
        sentinels, sentinel_kwargs={**options, **asking, **quick}, **options
    ).master_for(service, redis_class=client, db=db, retry=retry, retry_on_error=_RETRIED)


class _AsyncWatched(redis.asyncio.Redis):
    """A client of the primary Sentinels name that, closed, closes its connections to
    the Sentinels too: redis-py's leaves them open."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            await sentinel.aclose()


class _SyncWatched(redis.Redis):
    """:class:`_AsyncWatched`'s synchronous twin."""

    def close(self) -> None:
        super().close()
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            sentinel.close()


Reader = redis.asyncio.Redis | redis.asyncio.RedisCluster
"""A client that reads the sums wherever they are (:func:`async_reader`)."""


def async_reader(settings: Settings) -> Reader:
    """A client for reads of the sums, which on a Redis Cluster are under every
    partition's hash tag (:func:`tracker.store.tally_prefix`): there, redis-py's
    ``RedisCluster``, whose pipelines send each command to its slot's primary; off one,
    :func:`async_client`. For reads and scratch keys only: writes that must outlive a
    failover go through :func:`async_client` and :func:`replicated`."""
    if not settings.redis_is_cluster:
        return async_client(settings)
    seeds, options = _seeds(settings)
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in seeds]
    return _AsyncClusterReader(startup_nodes=nodes, **options)


class _AsyncClusterReader(redis.asyncio.RedisCluster):
    """redis-py's ``RedisCluster``, whose failure to reach any node is a
    ``ConnectionError``, as every other client's: callers catch ``RedisError``, and
    redis-py raises ``RedisClusterUnreachableError``, which is none (``tracker report``
    printed a traceback where, on one Redis, it says the store did not answer)."""

    async def initialize(self, *args: Any, **kwargs: Any) -> redis.asyncio.RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise ConnectionError(str(exc)) from exc


def sync_reader(settings: Settings) -> redis.Redis | redis.RedisCluster:
    """:func:`async_reader`'s synchronous twin; it reaches the cluster when made."""
    if not settings.redis_is_cluster:
        return sync_client(settings)
    seeds, options = _seeds(settings)
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in seeds]  # type: ignore[no-untyped-call]
    try:
        return redis.RedisCluster(startup_nodes=nodes, **options)
    except RedisClusterException as exc:  # as _AsyncClusterReader says
        raise ConnectionError(str(exc)) from exc


@asynccontextmanager
async def replicated(client: redis.asyncio.Redis) -> AsyncIterator[redis.asyncio.Redis]:
    """A client whose writes in the block, on a Redis Cluster, a replica holds too when
    the block ends, or :class:`NotReplicated` is raised.

    A primary acknowledges a write before its replica has it, and a failover in between
    promotes a replica without it. The worker's batches are read again from Kafka then
    (:class:`tracker.stream.app.Rewinds`); nothing would redo what a person asked for (an
    erasure, goals saved), so those wait for a replica (``WAIT``). ``WAIT`` counts the
    writes of its own connection: the block gets one connection of its own, never
    retried on a new one, where ``WAIT`` would count no write. Under Sentinel the same, as
    its primary passes writes to its replicas as a cluster's does. Off both (one Redis,
    no replica) ``client`` itself is given.
    """
    pool = client.connection_pool
    failing_over = (_AsyncFollowing, redis.asyncio.sentinel.SentinelManagedConnection)
    if not issubclass(pool.connection_class, failing_over):
        yield client
        return
    own = redis.asyncio.Redis.from_pool(
        redis.asyncio.ConnectionPool(
            max_connections=1,
            **{**pool.connection_kwargs, "retry": AsyncRetry(NoBackoff(), 0)},
            connection_class=pool.connection_class,
        )
    )
    try:
        yield own
        confirmed = await own.wait(1, REPLICATED_WITHIN_MS)
    finally:
        await own.aclose()
    if confirmed < 1:
        raise NotReplicated(
            f"no replica confirmed the write within {REPLICATED_WITHIN_MS} ms; "
            "it may not outlive a failover: retry"
        )


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a :class:`Script`: under which hash tag, on what, and what it is."""

    prefix: str
    """A prefix holding the hash tag whose slot's primary runs the call."""
    keys: list[str]
    args: list[Any]
    what: str
    """What it writes, for messages: ``deduplication shard 3``."""


class Primaries:
    """Clients of the primaries that serve hash tags of their own; on a Redis Cluster,
    commands for many tags go one pipeline a primary.

    Which primary serves a slot is asked of the cluster (``CLUSTER SLOTS``) once, and
    again after a pipeline failed: a pipeline goes on the connection of one of its
    commands' slots, which follows that slot's primary, so a failover (a replica takes
    over all of its primary's slots) moves the pipeline whole; a slot moved alone
    (resharding) answers ``MOVED``, which fails the pipeline: the commands are sent once
    more, after asking again. Off a cluster (one Redis) the store's client reaches every
    tag.
    """

    def __init__(self, settings: Settings, client: redis.asyncio.Redis) -> None:
        """``client`` reaches every slot off a cluster; on one, each slot gets its own."""
        self._settings = settings
        self._client = client
        self._cluster = settings.redis_is_cluster
        self._clients: dict[str, redis.asyncio.Redis] = {}
        self._owners: _Owners | None = None
        self._leaders: dict[str, str] = {}
        """Each primary's node id -> the prefix whose client's connection reaches it."""

    def client(self, prefix: str) -> redis.asyncio.Redis:
        """A client of the primary of ``prefix``'s slot (the store's, off a cluster)."""
        if not self._cluster:
            return self._client
        if prefix not in self._clients:
            self._clients[prefix] = async_client(self._settings, following=prefix)
        return self._clients[prefix]

    async def mget(self, reads: Sequence[tuple[str, list[str]]]) -> list[list[Any]]:
        """The values of each read's keys, all under its prefix's hash tag."""
        if not reads:
            return []
        if not self._cluster:
            values = iter(await self._client.mget([k for _, keys in reads for k in keys]))
            return [[next(values) for _ in keys] for _, keys in reads]

        async def send(node: str, ats: list[int]) -> list[Any]:
            async with self._leader(node, reads[ats[0]][0]).pipeline(transaction=False) as pipe:
                for at in ats:
                    pipe.mget(reads[at][1])
                return list(await pipe.execute())

        return await self._each_primary([prefix for prefix, _ in reads], send)

    async def aclose(self) -> None:
        """Close the clients made for the slots."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def _each_primary(
        self, prefixes: Sequence[str], send: Callable[[str, list[int]], Awaitable[list[Any]]]
    ) -> list[Any]:
        """The answers ``send`` gives, for each primary's node id, to the positions of
        ``prefixes`` whose slots it serves, put back in order."""
        for again in (False, True):
            if self._owners is None:
                self._owners = _Owners.of(await self._client.cluster("SLOTS"))
            by_node: dict[str, list[int]] = {}
            for at, prefix in enumerate(prefixes):
                by_node.setdefault(self._owners.node(prefix), []).append(at)
            try:
                answered = await asyncio.gather(*(send(n, ats) for n, ats in by_node.items()))
                break
            except (ConnectionError, TimeoutError):
                self._owners = None
                if again:
                    raise
        answers: list[Any] = [None] * len(prefixes)
        for ats, answer in zip(by_node.values(), answered, strict=True):
            for at, one in zip(ats, answer, strict=True):
                answers[at] = one
        return answers

    def _leader(self, node: str, prefix: str) -> redis.asyncio.Redis:
        """The client of a prefix whose slot ``node`` serves: the one used before, if the
        cluster still says so (a run of other commands then opens no new connection),
        else ``prefix``'s."""
        assert self._owners is not None
        leader = self._leaders.get(node)
        if leader is None or self._owners.node(leader) != node:
            leader = self._leaders[node] = prefix
        return self.client(leader)


class Script(Primaries):
    """A Lua script run under hash tags of their own, each call on its slot's primary and
    on a replica too before it counts.

    Off a cluster (one Redis, no replica) every call goes in one pipeline on the store's
    client. On one, the calls whose slots one primary serves go in one pipeline, on one
    connection: ``ROLE``, an ``EVALSHA`` a call, and one ``WAIT`` for them all (it counts
    every write of its connection). A connection error makes redis-py send the pipeline
    again on a new one, so ``WAIT`` always counts the calls' writes, and the scripts run
    here are safe to run twice. A primary with no replica (its own died, it took over
    from it) has none to fail over to: its writes are as safe as they can be, are taken
    unconfirmed, and its next ``WAIT`` does not wait.

    One pipeline a primary (:class:`Primaries`) rather than one a call: for the
    deduplication shards' 64 calls a batch, on three primaries, the worker's CPU went
    from 6.4 to 1.7 ms a batch of 64 ids and from 17 to 7 ms for 2,000 (same run,
    alternated).

    A call is sent by the script's digest alone (``EVALSHA``), and the script loaded and
    the pipeline sent again only when the node answers that it lacks it (a node new to
    the cluster, a replica just promoted): redis-py's own pipelines ask ``SCRIPT EXISTS``
    first, a round trip more for every call, 64 a batch for the deduplication shards.
    """

    def __init__(self, settings: Settings, client: redis.asyncio.Redis, source: str) -> None:
        super().__init__(settings, client)
        self._replicas: dict[str, int] = {}
        """Each primary's replicas (by node id), as its last pipeline saw them."""
        self._source = source
        # The name Redis gives a script (EVALSHA), not a safeguard.
        self._sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def run(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's answer, in order.

        Raises :class:`NotReplicated` on a Redis Cluster when a replica did not confirm a
        call's writes: running the calls again is safe.
        """
        if not calls:
            return []
        if not self._cluster:

            def queue(pipe: Any) -> None:
                for call in calls:
                    self._queue(pipe, call)

            return await self._pipelined(self._client, queue)
        return await self._each_primary(
            [call.prefix for call in calls],
            lambda node, ats: self._replicated(node, [calls[at] for at in ats]),
        )

    def _queue(self, pipe: Any, call: Call) -> None:
        pipe.evalsha(self._sha, len(call.keys), *call.keys, *call.args)

    async def _pipelined(
        self, client: redis.asyncio.Redis, queue: Callable[[Any], None]
    ) -> list[Any]:
        """The answers of what ``queue`` puts in a pipeline of ``client``'s; sent again once
        the script is loaded, if the node lacked it (then none of its calls ran)."""
        try:
            return await _sent(client, queue)
        except NoScriptError:
            await client.script_load(self._source)
            return await _sent(client, queue)

    async def _replicated(self, node: str, calls: list[Call]) -> list[Any]:
        """The answers of ``calls``, all on the primary ``node``, once a replica has them."""
        waited = REPLICATED_WITHIN_MS if self._replicas.get(node, 1) else 1
        what = calls[0].what + (f" and {len(calls) - 1} more" if len(calls) > 1 else "")

        def queue(pipe: Any) -> None:
            pipe.execute_command("ROLE")
            for call in calls:
                self._queue(pipe, call)
            pipe.wait(1, waited)

        leader = self._leader(node, calls[0].prefix)
        role, *answers, confirmed = await self._pipelined(leader, queue)
        replicas = len(role[2])
        if replicas == 0 and self._replicas.get(node, 1):
            log.warning("no replica; its primary alone keeps its writes", of=what)
        self._replicas[node] = replicas
        if confirmed < 1 and replicas:
            raise NotReplicated(f"no replica of {what} confirmed its writes within {waited} ms")
        return answers


async def _sent(client: redis.asyncio.Redis, queue: Callable[[Any], None]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        queue(pipe)
        return list(await pipe.execute())


def _primary_of(classes: tuple[type, type], topology: Topology | None) -> dict[str, Any]:
    """redis-py's arguments for connections to the slot's primary, of ``classes``' first
    or over TLS its second; none off a cluster."""
    if topology is None:
        return {}
    return {"connection_class": classes[topology.tls], "topology": topology}


@dataclass(frozen=True, slots=True)
class _Owners:
    """Which primary (by node id) serves each slot, from a ``CLUSTER SLOTS`` reply."""

    starts: list[int]
    ends: list[int]
    nodes: list[str]

    @classmethod
    def of(cls, reply: Sequence[Any]) -> _Owners:
        ranges = sorted(
            (int(start), int(end), _text(served[0][2])) for start, end, *served in reply
        )
        return cls([r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges])

    def node(self, prefix: str) -> str:
        """The node id of the primary of ``prefix``'s slot; ``""`` for a slot none serves."""
        slot = key_slot(prefix.encode())
        at = bisect.bisect_right(self.starts, slot) - 1
        return self.nodes[at] if at >= 0 and slot <= self.ends[at] else ""


@dataclass(slots=True)
class Topology:
    """Where the primary of a deployment's slot is, as the cluster's nodes tell."""

    slot: int
    nodes: list[tuple[str, int]]
    """Nodes to ask, the URL's first, then every node the last answer named."""
    options: dict[str, Any] = field(default_factory=dict, repr=False)  # a password too
    """Of every connection, as :func:`_seeds` reads them from the URL."""

    @property
    def tls(self) -> bool:
        return bool(self.options.get("ssl"))

    def asking(self, node: tuple[str, int]) -> dict[str, Any]:
        """Arguments of a connection that asks ``node`` where the slot is."""
        timeout = {"socket_timeout": _ASK_TIMEOUT_S, "socket_connect_timeout": _ASK_TIMEOUT_S}
        options = {name: value for name, value in self.options.items() if name != "ssl"}
        return {"host": node[0], "port": node[1], **timeout, **options}

    def learn(self, asked: tuple[str, int], reply: Sequence[Any]) -> tuple[str, int]:
        """The primary of :attr:`slot` in a ``CLUSTER SLOTS`` reply from ``asked``; every
        node it names is remembered, to ask when ``asked`` is gone."""
        primary = None
        for start, end, *served in reply:
            hosts = [(_text(node[0]) or asked[0], int(node[1])) for node in served]
            self.nodes += [node for node in hosts if node not in self.nodes]
            if int(start) <= self.slot <= int(end):
                primary = hosts[0]
        if primary is None:
            raise ConnectionError(f"no node of the cluster at {asked} serves slot {self.slot}")
        return primary


def _connection(settings: Settings, following: str | None = None) -> tuple[str, Topology | None]:
    """The URL redis-py reads, and where a cluster's slot is asked, for a cluster.

    A cluster's URL may name several nodes, ``redis+cluster://h1:7001,h2:7002/0``: a
    client starting while one of them is down asks the next.
    """
    if not settings.redis_is_cluster:
        return settings.redis_url, None
    parts = urlsplit(settings.redis_url)
    userinfo = parts.netloc.rpartition("@")[0]
    seeds, options = _seeds(settings)
    first = f"{userinfo}@" * bool(userinfo) + f"{seeds[0][0]}:{seeds[0][1]}"
    url = urlunsplit((_scheme(parts.scheme), first, parts.path, parts.query, parts.fragment))
    slot = key_slot((following or settings.key_prefix).encode())
    return url, Topology(slot, seeds, options)


def async_node_client(settings: Settings, address: str, timeout_s: float) -> redis.asyncio.Redis:
    """A client of the one node of a Redis Cluster at ``address`` (``host:port``),
    authenticated as the URL says: for what only that node can tell, as its memory."""
    host, port = _node(address)
    return redis.asyncio.Redis(
        host=host, port=port, socket_timeout=timeout_s, **_seeds(settings)[1]
    )


def _seeds(settings: Settings, port: int = 6379) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The nodes a cluster's (or Sentinels') URL names, ``port`` where it names none, and
    what it says of every connection but where it goes: the user name and password and,
    for ``rediss+cluster`` (or ``rediss`` with the flag), TLS with redis-py's ``ssl_*``
    query arguments (``?ssl_ca_certs=<file>``), read by redis-py's own parser as one
    node's URL."""
    parts = urlsplit(settings.redis_url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    # Where is the seeds', not this URL's: its host is only there to make it a URL.
    netloc = f"{userinfo}@" * bool(userinfo) + "node"
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = urlencode([(name, value) for name, value in query if name != SENTINEL_PASSWORD])
    one = urlunsplit((_scheme(parts.scheme), netloc, "", kept, ""))
    options: dict[str, Any] = redis.connection.parse_url(one)  # type: ignore[no-untyped-call]
    for where in ("host", "port", "db"):
        options.pop(where, None)
    if issubclass(options.pop("connection_class", redis.Connection), redis.SSLConnection):
        options["ssl"] = True  # as redis-py's clients of a cluster, and of one node, take it
    return [_node(host, port) for host in hosts.split(",")], options


_ONE_NODE = {
    CLUSTER_SCHEME: "redis",
    TLS_CLUSTER_SCHEME: "rediss",
    SENTINEL_SCHEME: "redis",
    TLS_SENTINEL_SCHEME: "rediss",
}


def _scheme(scheme: str) -> str:
    """The scheme redis-py knows for one node of a cluster (or one Sentinel) named with
    ``scheme``."""
    return _ONE_NODE.get(scheme, scheme)


def _node(text: str, default_port: int = 6379) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if port.isdigit():
        return host or "127.0.0.1", int(port)
    return text or "127.0.0.1", default_port


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _AsyncFollowing(redis.asyncio.connection.AbstractConnection):
    """A connection to the primary that serves the topology's slot now, asked each time
    it connects (:class:`_AsyncPrimary`, or over TLS :class:`_AsyncTLSPrimary`)."""

    def __init__(self, *, topology: Topology, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._topology = topology

    async def _connect(self) -> None:
        failures = []
        asking_class = (
            redis.asyncio.SSLConnection if self._topology.tls else redis.asyncio.Connection
        )
        for node in list(self._topology.nodes):
            asking = asking_class(**self._topology.asking(node))
            try:
                await asking.send_command("CLUSTER", "SLOTS")
                self.host, self.port = self._topology.learn(node, await asking.read_response())
                break
            except (ConnectionError, TimeoutError, OSError) as exc:
                failures.append(f"{node[0]}:{node[1]}: {exc}")
            finally:
                await asking.disconnect()
        else:
            raise _unanswered(failures)
        # The connection class after this one in the MRO connects (plain or TLS).
        await super()._connect()  # type: ignore[safe-super,no-untyped-call]

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except _MOVED as exc:
            await self.disconnect()
            raise _gone(self, exc) from exc


class _AsyncPrimary(_AsyncFollowing, redis.asyncio.Connection):
    pass


class _AsyncTLSPrimary(_AsyncFollowing, redis.asyncio.SSLConnection):
    pass


# redis-py leaves its synchronous connection untyped.
class _SyncFollowing(redis.connection.AbstractConnection):
    """:class:`_AsyncFollowing`'s synchronous twin."""

    def __init__(self, *, topology: Topology, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._topology = topology

    def _connect(self) -> Any:
        failures = []
        asking_class = redis.SSLConnection if self._topology.tls else redis.Connection
        for node in list(self._topology.nodes):
            asking = asking_class(**self._topology.asking(node))
            try:
                asking.send_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
                self.host, self.port = self._topology.learn(node, asking.read_response())
                break
            except (ConnectionError, TimeoutError, OSError) as exc:
                failures.append(f"{node[0]}:{node[1]}: {exc}")
            finally:
                asking.disconnect()  # type: ignore[no-untyped-call]
        else:
            raise _unanswered(failures)
        return super()._connect()  # type: ignore[safe-super,no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except _MOVED as exc:
            self.disconnect()  # type: ignore[no-untyped-call]
            raise _gone(self, exc) from exc


class _SyncPrimary(_SyncFollowing, redis.Connection):
    pass


class _SyncTLSPrimary(_SyncFollowing, redis.SSLConnection):
    pass


def _unanswered(failures: list[str]) -> ConnectionError:
    return ConnectionError(f"no node of the Redis Cluster told its slots: {'; '.join(failures)}")


def _gone(connection: Any, answer: Exception) -> ConnectionError:
    return ConnectionError(f"{connection.host}:{connection.port} serves the slot no more: {answer}")


__all__ = [
    "REPLICATED_WITHIN_MS",
    "Call",
    "NotReplicated",
    "Primaries",
    "Reader",
    "Script",
    "Topology",
    "async_client",
    "async_reader",
    "replicated",
    "sync_client",
    "sync_reader",
]
