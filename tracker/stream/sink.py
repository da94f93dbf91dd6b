"""Applies batches of Kafka records to Redis exactly once.

Each call reads, under ``WATCH``, the last applied offset of every partition in the
batch, skips records at or below it, claims the ids of the rest in the shards of counted
ids (:mod:`tracker.seen`: an id counted before is a duplicate, one this very record
claimed before is not), reads the state the fold needs (spend figures, orders, clicks,
touch paths, customers, who is who), folds the rest (:func:`aggregate.fold`) and writes
the sums, the changed state and the new offsets in one ``MULTI``. So a record counts
once however often Kafka redelivers it (restart, rebalance, crash before the offset
commit), and a worker that lost its partition to another (a zombie) fails its ``EXEC``
instead of double counting.
State that batches of other partitions may also change (spend figures, orders,
customers, a user's devices and recent orders) is read under ``WATCH`` too: a
concurrent change fails the ``EXEC``, and the batch is applied again on fresh state.
This relies on Redis keeping acknowledged writes across its own restarts
(``appendfsync always``), and every key until it expires: the sink applies nothing to
a store with a node that may evict (:mod:`tracker.redis_nodes`).

Spread over a Redis Cluster (``TRACKER_REDIS_SPREAD_SUMS``), a partition's sums (its
buckets, most of the writes) are under the partition's own hash tag
(:func:`tracker.store.tally_prefix`), so that the cluster's primaries share them, and
the ``MULTI`` cannot write them: it writes them to the partition's outbox instead, with
its offset and state, and once a replica holds the transaction the sink applies them to
the partition's tally, whose offset makes applying them twice harmless
(:meth:`Sink._settle` says why that is exact). The batch's unique people go the same
way, to HyperLogLogs under hash tags by dimension and value
(:func:`tracker.store.people_prefix`), where adding them twice changes nothing.
Otherwise, the default, the sums go in the ``MULTI``. With
``TRACKER_REDIS_SPREAD_CLICKS`` the batch's new clicks go the same way, to one of 16
hash tags by their id (:func:`tracker.store.click_prefix`): a click is written once, by
the batch of its own click, and only read after, so setting it again is harmless and
nothing needs watching but erasures (:meth:`Sink._spread`). With
``TRACKER_REDIS_SPREAD_PATHS`` the changed touch paths go to the click shard of their
holder's id (:func:`tracker.store.path_prefix`), through the outbox of the partition
whose events touched them (their partition key), which a worker settles before it reads
them: there each is joined with the path it finds (:data:`tracker.store.TOUCHES`), so a
late or repeated delivery loses no touch and counts none twice. Readers join the
store's copy, left from before, with it. Paths are read by other partitions unwatched,
as they were: a person's touch on one device and their conversion on another may race.

The store, not Kafka's committed offsets, says what was applied. A Redis Cluster
replica promoted after its primary died may lack the primary's last writes (replication
is asynchronous), while the worker committed those records' offsets to Kafka: its next
records then start past the stored offset plus one. The sink checks every partition's
records against that and raises :class:`Rewind` instead of applying them, and the
worker reads the partition again from the stored offset, so a lost write is redone
with the state it was made on, not skipped.

An erased person's events are dropped before the fold and counted as ``suppressed``,
exactly. The worker keeps the suppression list in memory (:mod:`tracker.suppression`)
and reads the count of erasures with the offsets, in the same ``MGET``, watched: when
the count is ahead of its copy it reads the new entries first, and an erasure
committed meanwhile (each one bumps the count in its transaction) fails the ``EXEC``,
so the batch is applied again without the person. One watched key, not one per
person: reading an erased key per distinct id cost 25% of the worker's time with
every id new (38.8 against 48.4 us an event), and Redis 7.0 checks each key ``WATCH``
adds against those already watched (4,000 keys took 140 ms). The clicks a conversion
reads are watched too: an erasure deletes its person's clicks, and a conversion must
not credit a click (and write its clicker's state) that is gone.
"""

from __future__ import annotations

import asyncio
import base64
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import WatchError

from tracker.attribution import Touch
from tracker.channels import CHANNELS
from tracker.events import Event
from tracker.redis_clients import Call, Script
from tracker.redis_nodes import Guard
from tracker.seen import GENERATION_S, Claim, Claims, read_with_seen, seen_expiry
from tracker.settings import Settings
from tracker.store import (
    CAMPAIGN_SUM,
    PEOPLE,
    TALLY,
    TOUCHES,
    Audience,
    Keys,
    Writes,
    click_prefix,
    group_people,
    path_prefix,
    people_args,
    people_by_prefix,
    tally_prefix,
)
from tracker.stream import state
from tracker.stream.aggregate import LINKS, convertible, fold, holder_of, is_touch, spend_key
from tracker.stream.conversions import joined
from tracker.stream.delta import Delta, Policy
from tracker.stream.state import Click, Lookups
from tracker.suppression import KINDS, Suppressions, erased_hash, person_ids
from tracker.types import EpochMs
from tracker.windows import ALL_TIME

log = structlog.get_logger(__name__)
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record of events, with where it came from."""

    topic: str
    partition: int
    offset: int
    events: Sequence[Event]


class Rewind(Exception):
    """The store is behind the records of some partitions: read them again from
    :attr:`offsets`, (topic, partition) -> the first offset not in the store."""

    def __init__(self, offsets: dict[tuple[str, int], int]) -> None:
        super().__init__(f"the store lost the writes of records from {offsets}")
        self.offsets = offsets


@dataclass(frozen=True, slots=True)
class SourceState:
    offset: int = -1
    watermark: EpochMs = 0
    newest: EpochMs = 0


def policy_of(settings: Settings) -> Policy:
    day = 86_400_000
    overrides = settings.lookback_overrides()
    return Policy(
        grace_ms=settings.grace_s * 1000,
        calendar=settings.calendar(),
        rates=settings.rates(),
        lookback_ms=lambda channel: int(overrides.get(channel, settings.lookback_days) * day),
        half_life_ms=int(settings.half_life_days * day),
        path_max=settings.path_max_touches,
        skew_ms=settings.clock_skew_s * 1000,
        max_ids=settings.max_ids_per_user,
    )


class Sink:
    def __init__(
        self, redis: Redis, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        """``clock`` (epoch s) dates what the sink remembers: which ids it counted when."""
        self._redis = redis
        self._clock = clock
        self._keys = Keys(settings.key_prefix)
        self._policy = policy_of(settings)
        self._ttl = {
            "1m": settings.retention_1m_days * 86_400,
            "1h": settings.retention_1h_days * 86_400,
            "1d": settings.retention_1d_days * 86_400,
        }
        self._last_write_us = 0
        self._conflicts = 0
        """Transactions of this sink that failed on a watched key since its last landed."""
        self._lookback_s = int(max(self._policy.lookback_ms(c) for c in CHANNELS) / 1000)
        self._suppressions = Suppressions(self._keys)
        self._claims = Claims(settings, redis)
        self._unsharded_until: int | None = None
        self._outboxes = tally_prefix(self._keys.prefix, 0) != self._keys.prefix
        """The store may hold outboxes: it is on a Redis Cluster, where workers may spread
        the sums (or did, before they were told not to)."""
        self._split = settings.redis_spread_sums and self._outboxes
        """The sums are under each partition's hash tag (asked for, on a Redis Cluster),
        not in the store's transaction."""
        self._spread_clicks = settings.redis_spread_clicks and self._outboxes
        """New clicks go under hash tags of their own (:func:`click_prefix`), through the
        outbox (asked for, on a Redis Cluster)."""
        self._spread_paths = settings.redis_spread_paths and self._outboxes
        """Changed touch paths go under the click shards (:func:`path_prefix`), through the
        outbox, joined with what is there (asked for, on a Redis Cluster)."""
        self._paths_spread = False
        """Paths may be spread (the store says a worker spread one): read there too. The
        reads cost a sink 5-8% of its time, so a store that never spread pays none."""
        self._boxed = self._split or self._spread_clicks or self._spread_paths
        """Every batch writes its partitions' outboxes."""
        self._tally = Script(settings, redis, TALLY)
        self._touches = Script(settings, redis, TOUCHES)
        self._people = Script(settings, redis, PEOPLE)
        self._beat = Script(settings, redis, _BEAT)
        self._tallied: dict[tuple[str, int], int] = {}
        """Each partition's offset whose outbox this sink saw delivered (sums, clicks, people)."""
        self._guard = Guard(settings, redis)

    async def aclose(self) -> None:
        """Close the clients the sink made itself (the shards' on a Redis Cluster)."""
        for made in (
            self._claims,
            self._tally,
            self._touches,
            self._people,
            self._beat,
        ):
            await made.aclose()

    async def apply(
        self, records: Sequence[Record], gaps: Collection[tuple[str, int]] = ()
    ) -> Counter[str]:
        """Apply ``records`` once; returns the health counters of what was new.

        Raises :class:`WatchError` when another worker moved a partition's offset
        meanwhile (the partition is no longer ours), or state the batch read changed,
        or a person was erased: nothing was written, and applying again is safe.

        Raises :class:`tracker.redis_nodes.MayEvict` while a node of the store may evict
        keys, and Redis's ``OutOfMemoryError`` while it is full: nothing was written.

        Raises :class:`Rewind` when a partition's records start past the one after its
        stored offset: the store lost writes that Kafka's committed offsets had counted
        on (a failover to a replica that had not received them, a store restored from a
        backup), and the records between must be read again. Nothing was written. The
        partitions of ``gaps`` are let through: their missing records are gone from
        Kafka too (past its retention). So is a partition the store holds nothing of: a
        new store does not replay what the topic retains.
        """
        keys = self._keys
        by_source: dict[tuple[str, int], list[Record]] = {}
        for record in records:
            by_source.setdefault((record.topic, record.partition), []).append(record)
        source_keys = [keys.source(topic, partition) for topic, partition in by_source]
        suppressions = self._suppressions
        now_s = int(self._clock())
        await self._guard.check()

        async with self._redis.pipeline(transaction=True) as pipe:
            # Offsets and the count of erasures in one read, watched (module docstring);
            # so is whether paths were spread: a path spread meanwhile fails this batch.
            await pipe.watch(*source_keys, keys.erasure_count, keys.paths_spread)
            raw = await pipe.mget(*source_keys, keys.erasure_count, keys.paths_spread)
            states = [_source_state(item) for item in raw[:-2]]
            erasures = int(raw[-2] or 0)
            self._paths_spread = self._paths_spread or raw[-1] is not None
            if erasures != suppressions.known:
                await suppressions.catch_up(pipe, erasures)
            fresh = [
                [r for r in batch if r.offset > st.offset]
                for st, batch in zip(states, by_source.values(), strict=True)
            ]
            behind = {
                source: st.offset + 1
                for source, st, batch in zip(by_source, states, fresh, strict=True)
                if batch
                and st.offset >= 0
                and batch[0].offset > st.offset + 1
                and source not in gaps
            }
            if behind:
                raise Rewind(behind)
            if self._outboxes:
                await self._settle(pipe, dict(zip(by_source, states, strict=True)))
            unsuppressed = [
                [(r.offset, [e for e in r.events if not suppressions.suppressed(e)]) for r in batch]
                for batch in fresh
            ]
            kept = [[e for _, some in batch for e in some] for batch in unsuppressed]
            events = [e for batch in kept for e in batch]
            duplicates = await self._claim(by_source, states, unsuppressed, now_s)
            lookups = await self._read(pipe, events, now_s, await self._unsharded(now_s))
            health: Counter[str] = Counter(
                skipped_records=len(records) - sum(map(len, fresh)),
                suppressed=sum(len(r.events) for batch in fresh for r in batch) - len(events),
            )
            deltas: list[tuple[tuple[str, int], SourceState, Delta]] = []
            for source, st, batch, batch_events, dropped in zip(
                by_source, states, fresh, kept, duplicates, strict=True
            ):
                if batch:  # even with every event suppressed: its offset moves on
                    lookups.seen |= dropped
                    delta = fold(batch_events, lookups, watermark=st.watermark, policy=self._policy)
                    newest = max(st.newest, delta.newest)
                    new_state = SourceState(batch[-1].offset, delta.watermark, newest)
                    deltas.append((source, new_state, delta))
                    health.update(delta.health)
                    if delta.unconvertible:
                        log.error(
                            "events skipped: their currency has no rate on this worker; "
                            "configure TRACKER_CURRENCY_RATES as on the collector, then replay",
                            events=delta.unconvertible[:20],
                            count=len(delta.unconvertible),
                        )
            pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            writes = Writes(keys)
            boxes: dict[tuple[str, int], dict[str, Any]] = {}
            people: dict[tuple[tuple[Audience, int], ...], set[str]] | None = (
                {} if self._split else None
            )
            for source, new_state, delta in deltas:
                source_key, tag = keys.source(*source), tally_prefix(keys.prefix, source[1])
                tally = Writes(Keys(tag)) if self._split else writes
                self._write_delta(writes, tally, delta, now_s, people)
                writes.put(source_key, orjson.dumps(new_state))
                writes.member(keys.sources, source_key)
                if self._boxed:
                    boxes[source] = {"offset": new_state.offset}
                if self._split:
                    boxes[source]["args"] = tally.args()
                    writes.member(keys.tallies, tag)
            spread, paths = self._write_lookups(writes, lookups)
            if paths and not self._paths_spread:
                writes.put(keys.paths_spread, b"1")
            if spread:  # the batch's clicks, whichever partition made them, in one outbox
                next(iter(boxes.values()))["clicks"] = spread
            if paths:  # each path in its partition's, which settles it before reading it
                for source, holders in _owners(by_source, kept, paths, next(iter(boxes))).items():
                    boxes[source]["paths"] = self._path_args(lookups, holders)
            if people:  # and its people, each once, with the audiences they are in
                next(iter(boxes.values()))["people"] = group_people(people)
            for source, box in boxes.items():
                writes.put(keys.outbox(*source), packed(box))
            # The previous transaction's duration rides along with this one: a
            # transaction cannot record how long it took itself, nor one that failed
            # that it did.
            health["redis_write_us"] += self._last_write_us
            health["redis_writes"] += 1 if self._last_write_us else 0
            health["redis_conflicts"] += self._conflicts
            for name, amount in health.items():
                if amount:
                    writes.add(keys.health, name, amount)
            writes.queue(pipe)
            started = time.perf_counter()
            try:
                await pipe.execute()
            except WatchError:
                self._conflicts += 1
                raise
            self._last_write_us = int((time.perf_counter() - started) * 1e6)
            self._conflicts = 0
        await self._give(boxes)
        return health

    async def _settle(self, pipe: Any, states: dict[tuple[str, int], SourceState]) -> None:
        """Give each partition's tally the sums of its last batch, and the click and people
        shards its clicks and people, where this sink did not see them taken (its first
        batch here, a failed try, another worker's).

        Spread over a Redis Cluster, a partition's sums are under its own hash tag, so the
        batch's transaction cannot write them: it writes them to the partition's outbox, with the
        offset and the state, and the sink then applies them to the tally, where the
        tally's own offset makes applying them twice harmless. A batch's transaction
        overwrites the outbox its predecessor left, so it runs only once the tally took
        that: the offset it read (and watched) is the one this sink saw taken.

        Only what a replica holds is applied: a failover could lose a transaction, whose
        batch is then applied anew, on the state before it, and must not find its first
        sums in the tally. And the tally confirms on its replica before the next
        transaction, so a failover there cannot lose sums their outbox no longer holds.

        A sink that writes no outboxes settles each partition once, the first time it
        applies it: what a worker that spread the sums left in the outbox (the
        setting changed, workers of both kinds during a rolling restart) count too.

        Clicks are set, not added: setting one twice changes nothing, and an erasure
        marks each click shard first, so that a click of the person it settles late is
        not set again; paths are joined, and those marks keep them out alike
        (:data:`tracker.store.TOUCHES`).
        """
        unsettled = [
            source
            for source, st in states.items()
            if st.offset >= 0
            and (
                self._tallied.get(source) != st.offset
                if self._boxed
                else source not in self._tallied
            )
        ]
        if not unsettled:
            return
        raw = await pipe.mget(*(self._keys.outbox(*source) for source in unsettled))
        boxes: dict[tuple[str, int], dict[str, Any]] = {}
        for source, box in zip(unsettled, raw, strict=True):
            if box is None:  # a store written before outboxes: its sums are under P
                self._tallied[source] = states[source].offset
            else:
                boxes[source] = unpacked(box)
        await self._deliver(boxes)

    async def _give(self, boxes: dict[tuple[str, int], dict[str, Any]]) -> None:
        """Deliver the outboxes of a transaction that landed."""
        await self._deliver(boxes)

    async def _deliver(self, boxes: dict[tuple[str, int], dict[str, Any]]) -> None:
        """Once a replica holds the transaction that wrote ``boxes``, give each tally its
        sums and each click and people shard its clicks and people; the partitions count
        as settled then."""
        if not boxes:
            return
        await self._confirm()
        tallies = [
            self._tally_call(source, box["offset"], box["args"])
            for source, box in boxes.items()
            if "args" in box
        ]
        # One call a click shard, for the clicks and paths of every box.
        shards: dict[str, tuple[list[Any], list[Any]]] = {}
        for box in boxes.values():
            for kind, made in enumerate(("clicks", "paths")):
                for prefix, args in box.get(made, {}).items():
                    shards.setdefault(prefix, ([], []))[kind].extend(args)
        most = self._policy.path_max
        touches = [
            Call(
                prefix,
                [],
                [self._lookback_s, most, len(clicks), *clicks, *paths],
                f"the clicks and paths under {prefix}",
            )
            for prefix, (clicks, paths) in shards.items()
        ]
        people = [
            Call(prefix, [], people_args(groups), f"the people under {prefix}")
            for box in boxes.values()
            for prefix, groups in people_by_prefix(self._keys.prefix, box.get("people", [])).items()
        ]
        await asyncio.gather(
            self._tally.run(tallies),
            self._touches.run(touches),
            self._people.run(people),
        )
        for source, box in boxes.items():
            self._tallied[source] = box["offset"]

    def _tally_call(self, source: tuple[str, int], offset: int, args: list[Any]) -> Call:
        tally = Keys(tally_prefix(self._keys.prefix, source[1]))
        what = f"the sums of partition {source[1]}"
        return Call(tally.prefix, [tally.source(*source)], [offset, *args], what)

    async def _confirm(self) -> None:
        """Return once a replica holds every write the store's primary took so far, or
        raise :class:`NotReplicated`: ``WAIT`` after a write of its own, later than them."""
        await self._beat.run([Call(self._keys.prefix, [self._keys.beat], [], "the store")])

    async def _claim(
        self,
        by_source: dict[tuple[str, int], list[Record]],
        states: list[SourceState],
        unsuppressed: list[list[tuple[int, list[Event]]]],
        now_s: int,
    ) -> list[set[str]]:
        """Claim the ids of each partition's (offset, events) that no erasure suppressed
        (:mod:`tracker.seen`); each partition's duplicates.

        Those whose currency has no rate here yet are not claimed: the fold leaves them
        uncounted, and they count once it has one.
        """
        claims = []
        for (topic, partition), st, batch in zip(by_source, states, unsuppressed, strict=True):
            firsts: dict[str, int] = {}
            for offset, events in batch:
                for e in events:
                    if convertible(e, self._policy):
                        firsts.setdefault(e.event_id, offset)
            claims.append(Claim(topic, partition, st.offset, firsts))
        return await self._claims.claim(claims, now_s)

    async def _unsharded(self, now_s: int) -> bool:
        """Whether ids counted before the shards may still be kept under the store's prefix.

        The first worker to shard a store notes when (``P:dedup:sharded``; 0 for a store
        with no partition applied yet, which has none). Those ids are read until the last
        generation a worker of the version before may have written, that day's or the
        next, has expired: stop those workers before starting these.
        """
        if self._unsharded_until is None:
            key, redis = self._keys.sharded_since, self._redis
            if (since := await redis.get(key)) is None:
                fresh = not await redis.exists(self._keys.sources)
                await redis.set(key, 0 if fresh else now_s, nx=True)
                since = await redis.get(key)
            began = int(since or 0)
            self._unsharded_until = seen_expiry(began // GENERATION_S + 1) if began else 0
        return now_s < self._unsharded_until

    async def _read(self, pipe: Any, events: list[Event], now_s: int, unsharded: bool) -> Lookups:
        """Everything the fold may consult for ``events``, in as few round trips as the
        identity state allows: two for a batch without identity, up to four with it.

        Each round reads what the state read so far shows is needed (a conversion's
        device's owner, that user's devices, their links and touches; the recent
        orders a link may re-credit), until nothing new is.
        """
        calendar = self._policy.calendar
        wanted = _Wanted()
        if unsharded:
            wanted.seen |= {e.event_id for e in events}
        wanted.spend |= {spend_key(e, calendar) for e in events if e.type == "spend"}
        linking: set[str] = set()  # devices and users whose links this batch may change
        for e in events:
            both = e.anonymous_id and e.user_id
            if e.bot or e.type == "spend" or (e.type == "impression" and not both):
                continue  # nothing of who is who to read for these
            if not both and e.type not in LINKS and e.type != "conversion":
                if is_touch(e) and (holder := holder_of(e)):
                    wanted.paths.add(holder)  # to add the touch to
                continue  # nothing else: most traffic, and what is not read is not watched
            wanted.person(e.anonymous_id, e.user_id)
            if e.type == "conversion":
                if e.order_id:
                    wanted.orders.add(e.order_id)
                if e.click_id:
                    wanted.clicks.add(e.click_id)
                wanted.customer(e.anonymous_id, e.user_id)
            if e.anonymous_id and (e.user_id or e.type in LINKS):
                linking |= {e.anonymous_id, *([e.user_id] if e.user_id else [])}
                wanted.customer(e.anonymous_id, e.user_id)
        lookups = Lookups()
        loaded = _Wanted()
        while True:  # ends: each round reads only keys not read before, of finite state
            await self._fetch(pipe, wanted.minus(loaded), lookups, now_s)
            loaded.add(wanted)
            for click in lookups.clicks.values():
                wanted.customer(click.device, click.user)
            for holder in linking:
                for order_id, _ts in lookups.recent.get(holder, ()):
                    wanted.orders.add(order_id)
            for order in lookups.orders.values():
                wanted.customer(order.device, order.user)
                if order.customer:
                    wanted.customers.add(order.customer)
                if order.click_id:
                    wanted.clicks.add(order.click_id)
            for device in list(wanted.customer_devices):
                for segment in lookups.links.get(device, ()):
                    if segment.user:
                        wanted.customer(None, segment.user)
            for user in list(wanted.customer_users):
                for device in lookups.devices.get(user, ()):
                    wanted.person(device, None)
            if not wanted.minus(loaded):
                return lookups

    async def _fetch(self, pipe: Any, wanted: _Wanted, lookups: Lookups, now_s: int) -> None:
        """Read ``wanted`` into ``lookups``, watching what another partition may write.

        Spend figures, orders, customers, a user's devices and recent orders can be
        changed by batches of other partitions (a spend report lands on any partition,
        a refund or a user's other device on another one), and clicks by an erasure:
        watched, a concurrent change fails this transaction, and the worker applies the
        batch again on fresh state.
        """
        if not wanted:
            return
        keys = self._keys
        ids, spends = list(wanted.seen), list(wanted.spend)
        orders, clicks = list(wanted.orders), list(wanted.clicks)
        devices, users = list(wanted.devices), list(wanted.users)
        people = devices + users
        holders = people + list(wanted.paths - wanted.devices - wanted.users)
        customers = list(wanted.customer_devices | wanted.customer_users | wanted.customers)
        shared = [
            *(keys.spend(*k) for k in spends),
            *map(keys.order, orders),
            *map(keys.click, clicks),
            *map(keys.recent, people),
            *map(keys.devices, users),
            *map(keys.customer, customers),
        ]
        if shared:
            await pipe.watch(*shared)
        values, counted = await read_with_seen(
            pipe,
            keys,
            [
                *(keys.spend(*k) for k in spends),
                *map(keys.order, orders),
                *map(keys.click, clicks),
                *map(keys.path, holders),
                *map(keys.customer, customers),
                *map(keys.recent, people),
                *map(keys.link, devices),
                *map(keys.devices, users),
            ],
            ids,
            now_s,
        )
        found = iter(values)
        lookups.seen.update(counted)
        lookups.spend |= _loaded(spends, found, state.load_spend)
        lookups.orders |= _loaded(orders, found, state.load_order)
        lookups.clicks |= _loaded(clicks, found, state.load_click)
        lookups.paths |= _loaded(holders, found, state.load_path)
        if self._outboxes:  # on a Redis Cluster: clicks and paths may be spread
            spread, paths = await self._spread(
                [c for c in clicks if c not in lookups.clicks],
                holders if self._paths_spread else [],
            )
            lookups.clicks |= spread
            most = self._policy.path_max
            for holder, path in paths.items():
                lookups.paths[holder] = joined(lookups.paths.get(holder, []), path, most)
        lookups.customers |= _loaded(customers, found, state.load_customer)
        lookups.recent |= _loaded(people, found, state.load_recent)
        lookups.links |= _loaded(devices, found, state.load_link)
        lookups.devices |= _loaded(users, found, state.load_devices)

    async def _spread(
        self, click_ids: list[str], holders: list[str]
    ) -> tuple[dict[str, Click], dict[str, list[Touch]]]:
        """The clicks of ``click_ids`` and the paths of ``holders`` found under the click
        shards, by id: one ``MGET`` a shard, one pipeline a primary.

        Not watched (another slot): an erasure deletes them just before its transaction,
        which bumps the count of erasures this batch watches, so a batch that read one of
        them fails its ``EXEC``; applied again, it leaves out a click whose clicker the
        suppression list (caught up before the read) names, and finds no path of theirs.
        """
        root = self._keys.prefix
        wanted = [(Keys(click_prefix(root, c)), "click", c) for c in click_ids]
        wanted += [(Keys(path_prefix(root, h)), "path", h) for h in holders]
        by_prefix: dict[str, list[tuple[str, str, str]]] = {}
        for shard, kind, name in wanted:
            if shard.prefix != root:
                key = shard.click(name) if kind == "click" else shard.path(name)
                by_prefix.setdefault(shard.prefix, []).append((kind, name, key))
        answers = await self._touches.mget(
            [(prefix, [key for _, _, key in names]) for prefix, names in by_prefix.items()]
        )
        clicks: dict[str, Click] = {}
        paths: dict[str, list[Touch]] = {}
        for names, values in zip(by_prefix.values(), answers, strict=True):
            for (kind, name, _), raw in zip(names, values, strict=True):
                if raw is None:
                    continue
                if kind == "path":
                    paths[name] = state.load_path(raw)
                else:
                    click = state.load_click(raw)
                    if not self._suppressions.erased(click.device, click.user):
                        clicks[name] = click
        return clicks, paths

    def _write_delta(
        self,
        writes: Writes,
        tally: Writes,
        delta: Delta,
        now_s: int,
        people: dict[tuple[tuple[Audience, int], ...], set[str]] | None,
    ) -> None:
        """``delta``'s sums to ``tally``, its unique people too unless ``people`` takes
        them (the sums spread: :func:`tracker.store.people_prefix` says why), the rest to
        ``writes``."""
        keys = tally.keys
        for (window, start, dimension, value, metric), amount in delta.sums.items():
            expire_at = self._expiry(window, start, now_s)
            if not amount or expire_at is None:
                continue
            bucket = keys.bucket(window, start, dimension)
            tally.add(bucket, keys.field(dimension, value, metric), amount, expire_at)
            if dimension == "campaign":
                summed = keys.bucket(window, start, CAMPAIGN_SUM[0])
                tally.add(summed, keys.field(*CAMPAIGN_SUM, metric), amount, expire_at)
                if window == ALL_TIME:  # every campaign is ranked, by spend
                    writes.rank(value, amount if metric == "spend" else 0)
        for audiences, who in delta.crowds.items():
            kept = tuple(
                (audience, expire_at)
                for audience in audiences
                if (expire_at := self._expiry(audience[0], audience[1], now_s)) is not None
            )
            if not kept:
                continue
            if people is None:
                tally.count_people(tuple((keys.uniques(*a), at) for a, at in kept), who)
            else:
                people.setdefault(kept, set()).update(who)
        for (campaign, period), figure in delta.spend.items():
            writes.put(self._keys.spend(campaign, period), state.dump_spend(figure))

    def _write_lookups(
        self, writes: Writes, lookups: Lookups
    ) -> tuple[dict[str, list[Any]], set[str]]:
        """The changed state to ``writes``; the new clicks and the changed paths too, unless
        spread: those are returned, for the outbox, the clicks as :data:`tracker.store.TOUCHES`
        arguments by hash tag, the paths as their holders."""
        keys, ttl = self._keys, self._lookback_s
        spread: dict[str, list[Any]] = {}
        for click_id in lookups.dirty_clicks:
            click = lookups.clicks[click_id]
            value = state.dump_click(click)
            if not self._spread_clicks:
                writes.put(keys.click(click_id), value, ttl)
                continue
            shard = Keys(click_prefix(keys.prefix, click_id))
            clicker = person_ids(click.device, click.user)
            marks = [shard.erased(erased_hash(*who)) for who in clicker]
            spread.setdefault(shard.prefix, []).extend(
                [shard.click(click_id), value.decode(), len(marks), *marks]
            )
        for order_id in lookups.dirty_orders:
            writes.put(keys.order(order_id), state.dump_order(lookups.orders[order_id]), ttl)
        if not self._spread_paths:
            for person in lookups.dirty_paths:
                writes.put(keys.path(person), state.dump_path(lookups.paths[person]), ttl)
        for person in lookups.dirty_customers:
            # Lifetime value is for the customer's lifetime: no expiry.
            writes.put(keys.customer(person), state.dump_customer(lookups.customers[person]))
        for device in lookups.dirty_links:
            writes.put(keys.link(device), state.dump_link(lookups.links[device]), _LINK_TTL_S)
        for user in lookups.dirty_devices:
            writes.put(keys.devices(user), state.dump_devices(lookups.devices[user]), _LINK_TTL_S)
        for holder in lookups.dirty_recent:
            writes.put(keys.recent(holder), state.dump_recent(lookups.recent[holder]), ttl)
        return spread, lookups.dirty_paths if self._spread_paths else set()

    def _path_args(
        self, lookups: Lookups, holders: Iterable[tuple[str, Sequence[str]]]
    ) -> dict[str, list[Any]]:
        """The paths of ``holders`` (each with the kinds of id it may be) as
        :data:`tracker.store.TOUCHES` arguments by hash tag."""
        by_prefix: dict[str, list[Any]] = {}
        for holder, kinds in holders:
            shard = Keys(path_prefix(self._keys.prefix, holder))
            marks = [shard.erased(erased_hash(kind, holder)) for kind in kinds]
            value = state.dump_path(lookups.paths[holder]).decode()
            by_prefix.setdefault(shard.prefix, []).extend(
                [shard.path(holder), value, len(marks), *marks]
            )
        return by_prefix

    def _expiry(self, window: str, start: EpochMs, now_s: int) -> int | None:
        """When a bucket of ``window`` expires (epoch s); 0 (never) for all-time totals;
        ``None`` when it is past its retention already, so it is not written.

        Retention counts from the bucket's own time, so a late event updates exactly
        the buckets still kept (minutes of the last two days, hours of 90, days of
        1,100, by default) and none that would only flicker into being and expire.
        """
        if window == ALL_TIME:
            return 0
        expire_at = start // 1000 + self._ttl[window]
        return expire_at if expire_at > now_s else None


_BEAT = "return redis.call('INCR', KEYS[1])"
_LINK_TTL_S = 400 * 86_400
"""Who a device belongs to is kept 400 days after it last changed: a returning visitor's
cookie outlives the attribution lookback."""


@dataclass(slots=True)
class _Wanted:
    """Keys the fold may consult, by kind: what one round trip reads."""

    seen: set[str] = field(default_factory=set)
    spend: set[tuple[str, str]] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    clicks: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    customer_devices: set[str] = field(default_factory=set)
    """Devices whose owners' touches a conversion may need."""
    customer_users: set[str] = field(default_factory=set)
    """Users whose devices' touches a conversion may need."""
    customers: set[str] = field(default_factory=set)
    """Customers whose records a refund or a re-credit of their order changes."""
    paths: set[str] = field(default_factory=set)
    """Devices and users whose touch paths alone a touch of theirs needs."""

    def person(self, device: str | None, user: str | None) -> None:
        if device:
            self.devices.add(device)
        if user:
            self.users.add(user)

    def customer(self, device: str | None, user: str | None) -> None:
        self.person(device, user)
        if device:
            self.customer_devices.add(device)
        if user:
            self.customer_users.add(user)

    def minus(self, other: _Wanted) -> _Wanted:
        pairs = zip(self._sets(), other._sets(), strict=True)
        return _Wanted(*(mine - theirs for mine, theirs in pairs))

    def add(self, other: _Wanted) -> None:
        for mine, theirs in zip(self._sets(), other._sets(), strict=True):
            mine |= theirs

    def __bool__(self) -> bool:
        return any(self._sets())

    def _sets(self) -> list[set[Any]]:
        return [getattr(self, f.name) for f in fields(self)]


def _loaded(names: list[K], found: Iterator[Any], load: Callable[[Any], V]) -> dict[K, V]:
    """The next ``len(names)`` values of ``found``, those present loaded, by name."""
    values = [next(found) for _ in names]
    return {name: load(raw) for name, raw in zip(names, values, strict=True) if raw}


def _owners(
    by_source: dict[tuple[str, int], list[Record]],
    kept: list[list[Event]],
    holders: set[str],
    fallback: tuple[str, int],
) -> dict[tuple[str, int], list[tuple[str, Sequence[str]]]]:
    """``holders`` by the partition whose events touched them (their partition key,
    :func:`tracker.records.partition_key`, puts a device's, or a user's, there), each with
    the kind of id it is there, whose erasure marks keep its path out. One no event names
    (none should be) goes to ``fallback``, kept out by the marks of either kind."""
    owner: dict[str, tuple[tuple[str, int], Sequence[str]]] = {}
    for source, events in zip(by_source, kept, strict=True):
        for event in events:
            if (holder := holder_of(event)) in holders:
                owner[holder] = (source, ("anonymous_id" if event.anonymous_id else "user_id",))
    found: dict[tuple[str, int], list[tuple[str, Sequence[str]]]] = {}
    for holder in holders:
        source, kinds = owner.get(holder, (fallback, KINDS))
        found.setdefault(source, []).append((holder, kinds))
    return found


def packed(box: dict[str, Any]) -> bytes:
    """An outbox as the store keeps it: JSON, deflated (zlib, level 1), in base64 as the
    writes script takes text. Its sums repeat their keys' and fields' names, so it takes
    about a quarter of the bytes, and the store's slot, which takes eight a transaction,
    0.56-0.59x the Redis CPU (``make bench-shards``' traffic, everything spread)."""
    return base64.b64encode(zlib.compress(orjson.dumps(box), 1))


def unpacked(raw: bytes) -> dict[str, Any]:
    """An outbox as :func:`packed` made it, or as JSON, as workers wrote them before."""
    box: dict[str, Any] = orjson.loads(
        raw if raw[:1] == b"{" else zlib.decompress(base64.b64decode(raw))
    )
    return box


def _source_state(raw: bytes | str | None) -> SourceState:
    return SourceState(**orjson.loads(raw)) if raw else SourceState()


__all__ = ["Record", "Rewind", "Sink", "WatchError"]
