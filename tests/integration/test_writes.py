"""A batch's writes (:class:`tracker.store.Writes`) as the one script call a worker makes,
on a real Redis: what each key holds after."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from harness.isolation import isolated_settings
from tracker.redis_clients import Call, Script
from tracker.settings import Settings
from tracker.store import Keys, Writes

pytestmark = pytest.mark.services


@pytest.fixture
def settings(servers: tuple[str, str]) -> Settings:
    return isolated_settings(servers)


def test_each_person_lands_in_every_hyperloglog_named_for_them_each_key_expiring_once(
    settings: Settings,
) -> None:
    """People in groups of keys that overlap, one key with more people than a script's
    call takes at once (1,000), and keys kept for ever and not."""
    keys = Keys(settings.key_prefix)
    later = int(time.time()) + 86_400
    crowd = {f"p{n}" for n in range(2_500)}
    wanted = {
        keys.uniques("1m", 0, "campaign", "a"): ({"anna", "ben"} | crowd, later),
        keys.uniques("1h", 0, "campaign", "a"): ({"anna", "ben", "carl"}, later + 60),
        keys.uniques("all", 0, "campaign", "a"): ({"anna", "carl"}, 0),
        keys.uniques("all", 0, "total", "total"): ({"dora"}, 0),
    }
    writes = Writes(keys)
    for key, (people, expire_at) in wanted.items():
        writes.count_people(((key, expire_at),), people)
    # Crowds that overlap: anna and ben counted again, in two keys they are in already.
    writes.count_people(tuple((k, wanted[k][1]) for k in list(wanted)[:2]), {"anna", "ben"})

    async def main() -> dict[str, tuple[int, int]]:
        redis = Redis.from_url(settings.redis_url)
        try:
            async with redis.pipeline(transaction=True) as pipe:
                writes.queue(pipe)
                await pipe.execute()
            return {k: (await redis.pfcount(k), await redis.expiretime(k)) for k in wanted}
        finally:
            await redis.aclose()

    found = asyncio.run(main())
    for key, (people, expire_at) in wanted.items():
        count, expiry = found[key]
        assert abs(count - len(people)) <= len(people) * 0.02, (key, count, len(people))
        assert expiry == (expire_at or -1), key


def test_a_script_call_on_a_redis_that_lacks_the_script_loads_it_and_runs_once(
    settings: Settings,
) -> None:
    """:class:`tracker.redis_clients.Script` sends the digest alone; a Redis that does not
    know it (a script of this test's own here, as any script on a node new to the
    cluster) gets it loaded, and the calls sent again run once each."""
    key = Keys(settings.key_prefix).beat
    source = f"-- {uuid.uuid4()}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"

    async def main() -> tuple[list[Any], list[bool], int]:
        redis = Redis.from_url(settings.redis_url)
        script = Script(settings, redis, source)
        try:
            calls = [Call(settings.key_prefix, [key], [n], "a count") for n in (1, 2, 3)]
            known = await redis.script_exists(
                hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
            )
            answers = await script.run(calls[:2])
            answers += await script.run(calls[2:])
            return answers, known, int(await redis.get(key) or 0)
        finally:
            await redis.aclose()

    assert asyncio.run(main()) == ([1, 3, 6], [False], 6)


def test_sums_values_and_ranks_are_written_exactly_however_large(settings: Settings) -> None:
    """The arguments go as MessagePack, whose numbers reach the script as doubles: sums
    of 10^14 and more (which Lua's own ``tostring`` writes with an exponent) and past
    2^53 (which a double does not hold) land to the unit, and JSON values as given."""
    keys = Keys(settings.key_prefix)
    amounts = {"small": 7, "negative": -3, "wide": 10**15 + 1, "huge": 2**60 + 1}
    value = b'{"path":[["spring","search",1]],"note":"\xc3\xa9t\xc3\xa9"}'
    writes = Writes(keys)
    for name, amount in amounts.items():
        writes.add(keys.health, name, amount)
        writes.add(keys.health, name, amount)  # summed before it is sent
    odd = 2**53 + 1  # the first integer a double does not hold
    writes.add(keys.health, "odd", odd)
    writes.put(keys.path("anna"), value, 3_600)
    writes.rank("spring", 2**60 + 1)

    async def main() -> tuple[dict[Any, Any], Any, int, float | None]:
        redis = Redis.from_url(settings.redis_url)
        try:
            async with redis.pipeline(transaction=True) as pipe:
                writes.queue(pipe)
                await pipe.execute()
            return (
                await redis.hgetall(keys.health),
                await redis.get(keys.path("anna")),
                await redis.ttl(keys.path("anna")),
                await redis.zscore(keys.rank, "spring"),
            )
        finally:
            await redis.aclose()

    sums, stored, ttl, rank = asyncio.run(main())
    assert {k.decode(): int(v) for k, v in sums.items()} == {
        "odd": odd,
        **{name: 2 * amount for name, amount in amounts.items()},
    }
    assert stored == value
    assert 0 < ttl <= 3_600
    assert rank == float(2**60 + 1)
