"""The seen buckets on a real Redis, with the clock passed in: an id counted is a
duplicate for 48 hours across midnight, every id is kept as buckets split, and a
million of them fit in 24 MiB."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from tests.conftest import with_redis
from tracker.ids import new_id
from tracker.settings import Settings
from tracker.store import (
    GENERATION_S,
    SEEN_LOAD,
    SEEN_TTL_S,
    Keys,
    Writes,
    read_with_seen,
    seen_expiry,
)

pytestmark = pytest.mark.services

MIDNIGHT = (int(time.time()) // GENERATION_S + 1) * GENERATION_S
"""The next generation boundary: ahead of the real clock, so that what a test writes
expires after it, not while it runs."""
UNCOUNTED_PER_KEY = 64
"""Bytes of each key that ``MEMORY USAGE`` leaves out: its entry in the expiry table and
its slots in both hash tables. Measured: ``MEMORY USAGE`` plus this came within 2% of
the ``used_memory`` delta of writing the ids on an otherwise idle Redis."""


async def count(redis: Redis, keys: Keys, ids: Sequence[str], now_s: int, batch: int = 500) -> None:
    """Remember ``ids`` as counted at ``now_s``, as the sink does: a transaction a batch."""
    for start in range(0, len(ids), batch):
        writes = Writes(keys)
        writes.seen(ids[start : start + batch], now_s)
        async with redis.pipeline(transaction=True) as pipe:
            writes.queue(pipe)
            await pipe.execute()


async def counted(redis: Redis, keys: Keys, ids: Sequence[str], now_s: int) -> set[str]:
    _, found = await read_with_seen(redis, keys, [], ids, now_s)
    return set(found)


async def buckets(redis: Redis, keys: Keys, generation: int) -> list[str]:
    """The names of the generation's buckets, as its hash counts them."""
    number = int(await redis.hget(keys.seen(generation), "buckets") or 0)
    return [keys.seen_bucket(generation, bucket) for bucket in range(number)]


def test_an_id_is_a_duplicate_across_midnight_and_forgotten_only_after_48_hours(
    settings: Settings,
) -> None:
    async def body(redis: Redis, keys: Keys) -> None:
        await count(redis, keys, ["late"], MIDNIGHT - 1)  # a day's last second
        await count(redis, keys, ["early"], MIDNIGHT)  # the next day's first
        both = ["late", "early"]
        for now in (MIDNIGHT, MIDNIGHT + GENERATION_S, MIDNIGHT - 1 + SEEN_TTL_S):
            assert await counted(redis, keys, both, now) == {"late", "early"}
        # Kept by the day it was counted: "late" 48 hours, "early" until its own day is
        # 48 hours past.
        assert await counted(redis, keys, both, MIDNIGHT + SEEN_TTL_S) == {"early"}
        forgotten = MIDNIGHT + GENERATION_S + SEEN_TTL_S
        assert await counted(redis, keys, both, forgotten - 1) == {"early"}
        assert await counted(redis, keys, both, forgotten) == set()

    with_redis(settings, body)


def test_an_id_counted_before_the_upgrade_is_still_a_duplicate(settings: Settings) -> None:
    """Ids the layout of a key per id counted (for 48 hours) are read until they expire,
    and an id that names a day, as a generation's key once did, is just an id."""

    async def body(redis: Redis, keys: Keys) -> None:
        generation = str(MIDNIGHT // GENERATION_S)
        for old in ("before-upgrade", generation):
            await redis.set(keys.legacy_seen(old), "1", ex=SEEN_TTL_S)
        await count(redis, keys, ["after-upgrade"], MIDNIGHT)
        ids = ["before-upgrade", generation, "after-upgrade", "new"]
        assert await counted(redis, keys, ids, MIDNIGHT) == set(ids[:3])

    with_redis(settings, body)


def test_the_same_read_returns_the_values_of_thousands_of_names_in_order(
    settings: Settings,
) -> None:
    """Past the thousand values Lua's unpack() is given at once, and with gaps."""

    async def body(redis: Redis, keys: Keys) -> None:
        names = [keys.order(f"o{i}") for i in range(2_500)]
        await redis.mset({name: str(i) for i, name in enumerate(names) if i % 7})
        await count(redis, keys, ["e"], MIDNIGHT)
        values, found = await read_with_seen(redis, keys, names, ["e", "f"], MIDNIGHT)
        assert values == [None if i % 7 == 0 else str(i).encode() for i in range(2_500)]
        assert found == ["e"]

    with_redis(settings, body)


def test_a_worker_whose_clock_is_behind_finds_what_one_ahead_counted(settings: Settings) -> None:
    async def body(redis: Redis, keys: Keys) -> None:
        await count(redis, keys, ["e"], MIDNIGHT + 5)
        assert await counted(redis, keys, ["e"], MIDNIGHT - 5) == {"e"}

    with_redis(settings, body)


def test_a_generation_expires_whole_once_no_lookup_searches_it(settings: Settings) -> None:
    generation = MIDNIGHT // GENERATION_S

    async def body(redis: Redis, keys: Keys) -> None:
        await count(redis, keys, [f"e{i}" for i in range(10 * SEEN_LOAD)], MIDNIGHT)
        names = [keys.seen(generation), *await buckets(redis, keys, generation)]
        assert len(names) == 11
        assert {await redis.expiretime(name) for name in names} == {seen_expiry(generation)}

    with_redis(settings, body)


def test_a_generation_grows_bucket_by_bucket_and_keeps_every_id(settings: Settings) -> None:
    generation = MIDNIGHT // GENERATION_S
    ids = [f"id-{i}" for i in range(30_000)]

    async def body(redis: Redis, keys: Keys) -> None:
        # One large batch first: the buckets grow before it goes in, not after.
        await count(redis, keys, ids[:5_000], MIDNIGHT, batch=5_000)
        await count(redis, keys, ids[5_000:], MIDNIGHT)
        assert await counted(redis, keys, ids, MIDNIGHT + 60) == set(ids)
        others = [f"other-{i}" for i in range(30_000)]
        assert await counted(redis, keys, others, MIDNIGHT + 60) == set()
        assert await redis.hget(keys.seen(generation), "ids") == b"30000"
        names = await buckets(redis, keys, generation)
        assert len(names) == math.ceil(30_000 / SEEN_LOAD)
        sizes = [await redis.hlen(name) for name in names]
        assert sum(sizes) == len(ids)
        for name in names:  # a hash table would take 4x the memory of the listpack
            assert await redis.object("encoding", name) == b"listpack"
        assert max(sizes) <= 3 * SEEN_LOAD

    with_redis(settings, body)


def test_a_million_ids_take_at_most_24_mib(settings: Settings) -> None:
    """Sized on 100,000 ids (UUIDv7, as the collector makes them) and scaled: a size,
    which does not depend on how busy the machine is."""
    ids = [new_id() for _ in range(100_000)]

    async def body(redis: Redis, keys: Keys) -> None:
        await count(redis, keys, ids, MIDNIGHT, batch=5_000)
        generation = MIDNIGHT // GENERATION_S
        names = [keys.seen(generation), *await buckets(redis, keys, generation)]
        used = sum([await redis.memory_usage(name, samples=0) or 0 for name in names])
        per_million = (used + len(names) * UNCOUNTED_PER_KEY) * 1_000_000 / len(ids) / 2**20
        assert per_million <= 24, f"{per_million:.1f} MiB per million ids"

    with_redis(settings, body)
