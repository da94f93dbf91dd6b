"""The counted ids on a real Redis, with the clock passed in: an id counted is a
duplicate for 48 hours across midnight, claims make a batch applied again count once
and another record's copy never, every id is kept as buckets split, and a million of
them fit in 24 MiB."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import pytest
from redis.asyncio import Redis

from tests.conftest import with_redis
from tracker.ids import new_id
from tracker.seen import (
    CLAIMS_KEPT_S,
    GENERATION_S,
    SEEN_LOAD,
    SEEN_TTL_S,
    SHARDS,
    Claim,
    Claims,
    read_with_seen,
    seen_digest,
    seen_expiry,
    shard_of,
)
from tracker.settings import Settings
from tracker.store import Keys

pytestmark = pytest.mark.services
T = TypeVar("T")

MIDNIGHT = (int(time.time()) // GENERATION_S + 1) * GENERATION_S
"""The next generation boundary: ahead of the real clock, so that what a test writes
expires after it, not while it runs."""
UNCOUNTED_PER_KEY = 64
"""Bytes of each key that ``MEMORY USAGE`` leaves out: its entry in the expiry table and
its slots in both hash tables. Measured: ``MEMORY USAGE`` plus this came within 2% of
the ``used_memory`` delta of writing the ids on an otherwise idle Redis."""


def with_claims(settings: Settings, body: Callable[[Redis, Claims], Awaitable[T]]) -> T:
    async def run(redis: Redis, _: Keys) -> T:
        claims = Claims(settings, redis)
        try:
            return await body(redis, claims)
        finally:
            await claims.aclose()

    return with_redis(settings, run)


async def count(claims: Claims, ids: Sequence[str], now_s: int, batch: int = 500) -> None:
    """Count ``ids`` at ``now_s``, as the sink claims them: a record an id, in batches."""
    for start in range(0, len(ids), batch):
        firsts = {event_id: start + i for i, event_id in enumerate(ids[start : start + batch])}
        await claims.claim([Claim("t", 0, start - 1, firsts)], now_s)


def in_shards(claims: Claims, ids: Sequence[str]) -> dict[int, int]:
    """How many of ``ids`` each shard holds."""
    sizes: dict[int, int] = {}
    for event_id in ids:
        shard = shard_of(seen_digest(event_id))
        sizes[shard] = sizes.get(shard, 0) + 1
    return sizes


async def buckets(redis: Redis, keys: Keys, generation: int) -> list[str]:
    """The names of the generation's buckets, as its hash counts them."""
    number = int(await redis.hget(keys.seen(generation), "buckets") or 0)
    return [keys.seen_bucket(generation, bucket) for bucket in range(number)]


def test_an_id_is_a_duplicate_across_midnight_and_forgotten_only_after_48_hours(
    settings: Settings,
) -> None:
    async def body(redis: Redis, claims: Claims) -> None:
        await count(claims, ["late"], MIDNIGHT - 1)  # a day's last second
        await count(claims, ["early"], MIDNIGHT)  # the next day's first
        both = ["late", "early"]
        for now in (MIDNIGHT, MIDNIGHT + GENERATION_S, MIDNIGHT - 1 + SEEN_TTL_S):
            assert await claims.counted(both, now) == {"late", "early"}
        # Kept by the day it was counted: "late" 48 hours, "early" until its own day is
        # 48 hours past.
        assert await claims.counted(both, MIDNIGHT + SEEN_TTL_S) == {"early"}
        forgotten = MIDNIGHT + GENERATION_S + SEEN_TTL_S
        assert await claims.counted(both, forgotten - 1) == {"early"}
        assert await claims.counted(both, forgotten) == set()

    with_claims(settings, body)


def test_a_batch_claimed_again_counts_once_and_another_record_never(settings: Settings) -> None:
    async def body(redis: Redis, claims: Claims) -> None:
        first = Claim("t", 0, 9, {"a": 10, "b": 11})
        assert await claims.claim([first], MIDNIGHT) == [set()]
        # Applied again (its transaction failed, or never ran): still its own claims.
        assert await claims.claim([first], MIDNIGHT) == [set()]
        # From a later record, as from another partition: duplicates.
        later = Claim("t", 0, 9, {"a": 12, "c": 13})
        elsewhere = Claim("t", 1, -1, {"b": 0, "d": 1})
        assert await claims.claim([later, elsewhere], MIDNIGHT) == [{"a"}, {"b"}]
        # Two partitions bringing one new id in one call: the first takes it.
        both = [Claim("t", 2, -1, {"e": 0}), Claim("t", 3, -1, {"e": 0})]
        assert await claims.claim(both, MIDNIGHT) == [set(), {"e"}]

    with_claims(settings, body)


def test_the_duplicates_of_a_batch_are_exactly_the_ids_counted_before(settings: Settings) -> None:
    """Ids of many records in every shard, some counted before and some not, mixed within
    each record: each id is told apart, whichever record and shard it is in."""
    rng = random.Random(5)
    ids = [f"mix-{n}" for n in range(4_000)]
    counted = set(rng.sample(ids, 1_500))
    rng.shuffle(ids)

    async def body(redis: Redis, claims: Claims) -> None:
        before = Claim(
            "t", 0, -1, {event_id: n // 50 for n, event_id in enumerate(sorted(counted))}
        )
        assert await claims.claim([before], MIDNIGHT) == [set()]
        half = len(ids) // 2
        batch = [
            Claim("t", 1, -1, {event_id: n // 40 for n, event_id in enumerate(ids[:half])}),
            Claim("t", 2, -1, {event_id: n // 40 for n, event_id in enumerate(ids[half:])}),
        ]
        found = await claims.claim(batch, MIDNIGHT)
        assert found == [counted & set(ids[:half]), counted & set(ids[half:])]

    with_claims(settings, body)


def test_a_shards_thousands_of_ids_in_one_call_are_each_claimed_and_read(
    settings: Settings,
) -> None:
    """More ids of one partition in one shard than the script reads or claims in one
    command (1,000): applied again, the batch still counts every one of them once."""
    ids = [f"id-{n}" for n in range(200_000)]
    ids = [i for i in ids if shard_of(seen_digest(i)) == 0][:2_500]

    async def body(redis: Redis, claims: Claims) -> None:
        batch = Claim("t", 0, -1, {event_id: 7 for event_id in ids})
        assert await claims.claim([batch], MIDNIGHT) == [set()]
        assert await claims.claim([batch], MIDNIGHT) == [set()]
        again = await claims.claim([Claim("t", 0, 7, {event_id: 8 for event_id in ids})], MIDNIGHT)
        assert again == [set(ids)]

    assert len(ids) == 2_500
    with_claims(settings, body)


def test_claims_are_dropped_once_the_store_held_their_offset_long_enough(
    settings: Settings,
) -> None:
    """A claim is kept while its batch may be applied again; read from Redis' clock, so
    the test dates a note of the stored offset back by hand."""

    async def body(redis: Redis, claims: Claims) -> None:
        batch = Claim("t", 0, -1, {"a": 0, "b": 5})
        await claims.claim([batch], MIDNIGHT)
        for shard in {shard_of(seen_digest(i)) for i in "ab"}:
            name = claims.keys(shard).claims("t", 0)
            now = int((await redis.time())[0])
            await redis.lpush(f"{name}:marks", f"{now - CLAIMS_KEPT_S} 0")
        # The store held offset 0 a minute ago: the claim at 0 goes, the one at 5 stays.
        assert await claims.claim([Claim("t", 0, 0, {"a": 0, "b": 5})], MIDNIGHT) == [{"a"}]

    with_claims(settings, body)


def test_ids_counted_before_the_shards_are_still_duplicates(settings: Settings) -> None:
    """Under the store's prefix, ids the layout of a key per id counted (for 48 hours)
    and those of generations before the shards are read until they expire, and an id
    that names a day, as a generation's key once did, is just an id."""

    async def body(redis: Redis, keys: Keys) -> None:
        generation = MIDNIGHT // GENERATION_S
        for old in ("before-upgrade", str(generation)):
            await redis.set(keys.legacy_seen(old), "1", ex=SEEN_TTL_S)
        await redis.hset(keys.seen(generation), mapping={"ids": 1, "buckets": 1})
        await redis.hset(keys.seen_bucket(generation, 0), seen_digest("in-generation"), "")
        ids = ["before-upgrade", str(generation), "in-generation", "new"]
        names = [keys.order(f"o{i}") for i in range(2_500)]  # past unpack()'s limit
        await redis.mset({name: str(i) for i, name in enumerate(names) if i % 7})
        values, found = await read_with_seen(redis, keys, names, ids, MIDNIGHT)
        assert values == [None if i % 7 == 0 else str(i).encode() for i in range(2_500)]
        assert found == ids[:3]

    with_redis(settings, body)


def test_a_worker_whose_clock_is_behind_finds_what_one_ahead_counted(settings: Settings) -> None:
    async def body(redis: Redis, claims: Claims) -> None:
        await count(claims, ["e"], MIDNIGHT + 5)
        assert await claims.counted(["e"], MIDNIGHT - 5) == {"e"}

    with_claims(settings, body)


def test_a_generation_expires_whole_once_no_lookup_searches_it(settings: Settings) -> None:
    generation = MIDNIGHT // GENERATION_S
    ids = [f"e{i}" for i in range(10 * SEEN_LOAD * SHARDS)]

    async def body(redis: Redis, claims: Claims) -> None:
        await count(claims, ids, MIDNIGHT)
        for shard in range(SHARDS):
            keys = claims.keys(shard)
            names = [keys.seen(generation), *await buckets(redis, keys, generation)]
            assert len(names) > 5
            assert {await redis.expiretime(name) for name in names} == {seen_expiry(generation)}

    with_claims(settings, body)


def test_a_generation_grows_bucket_by_bucket_and_keeps_every_id(settings: Settings) -> None:
    generation = MIDNIGHT // GENERATION_S
    ids = [f"id-{i}" for i in range(30_000)]

    async def body(redis: Redis, claims: Claims) -> None:
        # One large batch first: the buckets grow before it goes in, not after.
        await count(claims, ids[:5_000], MIDNIGHT, batch=5_000)
        await count(claims, ids[5_000:], MIDNIGHT)
        assert await claims.counted(ids, MIDNIGHT + 60) == set(ids)
        others = [f"other-{i}" for i in range(30_000)]
        assert await claims.counted(others, MIDNIGHT + 60) == set()
        for shard, size in in_shards(claims, ids).items():
            keys = claims.keys(shard)
            assert await redis.hget(keys.seen(generation), "ids") == str(size).encode()
            names = await buckets(redis, keys, generation)
            assert len(names) == math.ceil(size / SEEN_LOAD)
            sizes = [await redis.hlen(name) for name in names]
            assert sum(sizes) == size
            for name in names:  # a hash table would take 4x the memory of the listpack
                assert await redis.object("encoding", name) == b"listpack"
            assert max(sizes) <= 3 * SEEN_LOAD

    with_claims(settings, body)


def test_a_million_ids_take_at_most_24_mib(settings: Settings) -> None:
    """Sized on 100,000 ids (UUIDv7, as the collector makes them) and scaled: a size,
    which does not depend on how busy the machine is. The claims, a minute of traffic
    whatever the day holds, are left out."""
    ids = [new_id() for _ in range(100_000)]

    async def body(redis: Redis, claims: Claims) -> None:
        await count(claims, ids, MIDNIGHT, batch=5_000)
        generation = MIDNIGHT // GENERATION_S
        names = []
        for shard in range(SHARDS):
            keys = claims.keys(shard)
            names += [keys.seen(generation), *await buckets(redis, keys, generation)]
        used = sum([await redis.memory_usage(name, samples=0) or 0 for name in names])
        per_million = (used + len(names) * UNCOUNTED_PER_KEY) * 1_000_000 / len(ids) / 2**20
        assert per_million <= 24, f"{per_million:.1f} MiB per million ids"

    with_claims(settings, body)
