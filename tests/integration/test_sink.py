"""The sink on a real Redis: each record counts once, whatever Kafka redelivers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import orjson
import pytest
from hypothesis import example, given
from hypothesis import settings as settings_of
from hypothesis import strategies as st
from redis.asyncio import Redis

from harness.isolation import isolated_settings
from tracker.attribution import Touch
from tracker.events import Event
from tracker.seen import (
    GENERATION_S,
    SEEN_TTL_S,
    SHARDS,
    seen_digest,
    seen_expiry,
    shard_prefix,
)
from tracker.settings import Settings
from tracker.store import (
    TOUCHES,
    Keys,
    Writes,
    click_prefix,
    parse_bucket,
    path_prefix,
    people_prefix,
    read_buckets,
    read_uniques,
    tally_prefix,
)
from tracker.stream.conversions import joined, trimmed
from tracker.stream.sink import Record, Rewind, Sink, WatchError, unpacked
from tracker.stream.state import Lookups, dump_path, load_path
from tracker.windows import ALL_TIME

pytestmark = pytest.mark.services
T = TypeVar("T")
NOW = int(time.time() * 1000) - 3 * 3_600_000
MINUTE = NOW - NOW % 60_000


def click(event_id: str, ts: int = MINUTE, campaign: str = "spring", cost: int = 250_000) -> Event:
    return Event(event_id=event_id, type="click", ts=ts, received_at=ts, channel="search",
                 campaign=campaign, cost=cost)  # fmt: skip


def run(
    settings: Settings,
    body: Callable[[Redis, Sink], Awaitable[T]],
    clock: Callable[[], float] = time.time,
) -> T:
    async def main() -> T:
        redis = Redis.from_url(settings.redis_url)
        try:
            return await body(redis, Sink(redis, settings, clock))
        finally:
            await redis.aclose()

    return asyncio.run(main())


async def campaign(redis: Redis, settings: Settings, window: str, start: int) -> dict[str, int]:
    raw = await redis.hgetall(Keys(settings.redis_prefix).bucket(window, start, "campaign"))
    return parse_bucket(raw).get(("campaign", "spring"), {})


@pytest.fixture
def settings(servers: tuple[str, str]) -> Settings:
    return isolated_settings(servers)


def test_a_redelivered_record_is_skipped_and_changes_nothing(settings: Settings) -> None:
    records = [
        Record("t", 0, 10, [click("a"), click("b")]),
        Record("t", 1, 3, [click("c")]),
    ]

    async def body(redis: Redis, sink: Sink) -> None:
        first = await sink.apply(records)
        assert first["events"] == 3
        after_first = await campaign(redis, settings, "1m", MINUTE)
        again = await sink.apply(records)  # e.g. a crash before the offset commit
        assert again["skipped_records"] == 2
        assert again["events"] == 0
        assert await campaign(redis, settings, "1m", MINUTE) == after_first
        # 3 clicks at 0.25 = 750_000 micros
        assert after_first == {"clicks": 3, "spend": 750_000}

    run(settings, body)


def test_records_past_the_stored_offset_are_read_again_not_skipped(settings: Settings) -> None:
    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 10, [click("a")]), Record("t", 1, 4, [click("b")])])
        # The store lost offsets 11-13 of partition 0 (a failover): nothing is applied.
        later = [Record("t", 0, 14, [click("c")]), Record("t", 1, 5, [click("d")])]
        with pytest.raises(Rewind) as rewind:
            await sink.apply(later)
        assert rewind.value.offsets == {("t", 0): 11}
        assert await campaign(redis, settings, "1m", MINUTE) == {"clicks": 2, "spend": 500_000}
        # Read again from 11, everything counts once.
        again = [Record("t", 0, offset, [click(f"r{offset}")]) for offset in (11, 12, 13)]
        await sink.apply([*again, *later])
        assert (await campaign(redis, settings, "1m", MINUTE))["clicks"] == 7
        # One record lost is read again as three are.
        with pytest.raises(Rewind) as rewind:
            await sink.apply([Record("t", 1, 7, [click("g")])])
        assert rewind.value.offsets == {("t", 1): 6}
        await sink.apply([Record("t", 1, 6, [click("f")]), Record("t", 1, 7, [click("g")])])
        assert (await campaign(redis, settings, "1m", MINUTE))["clicks"] == 9
        # Gone from Kafka too: let through when the worker says so.
        await sink.apply([Record("t", 0, 20, [click("e")])], gaps={("t", 0)})
        assert (await campaign(redis, settings, "1m", MINUTE))["clicks"] == 10

    run(settings, body)


def test_campaigns_are_ranked_by_their_spend_alone(settings: Settings) -> None:
    """The exporter names the top campaigns of this ranking in /metrics."""

    async def body(redis: Redis, sink: Sink) -> None:
        events = [click("a"), click("b")] + [
            click(f"s{i}", campaign="summer", cost=10_000) for i in range(3)
        ]
        await sink.apply([Record("t", 0, 0, events)])
        rank = Keys(settings.redis_prefix).rank
        scores = [await redis.zscore(rank, name) for name in ("spring", "summer")]
        assert scores == [500_000, 30_000]

    run(settings, body)


def test_the_same_event_in_a_later_record_is_a_duplicate(settings: Settings) -> None:
    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 1, [click("a")])])
        health = await sink.apply([Record("t", 2, 7, [click("a"), click("b")])])
        assert health["duplicates"] == 1
        assert (await campaign(redis, settings, "all", 0))["clicks"] == 2

    run(settings, body)


def test_one_event_in_two_partitions_of_one_batch_counts_once(settings: Settings) -> None:
    async def body(redis: Redis, sink: Sink) -> None:
        records = [Record("t", 0, 4, [click("a")]), Record("t", 1, 9, [click("a"), click("b")])]
        health = await sink.apply(records)
        assert (health["events"], health["duplicates"]) == (2, 1)
        assert (await campaign(redis, settings, "all", 0))["clicks"] == 2

    run(settings, body)


class FailingSink(Sink):
    """A sink whose transactions fail, after it claimed the batch's ids, until told not to."""

    failing = True

    def _write_lookups(
        self, writes: Writes, lookups: Lookups
    ) -> tuple[dict[str, list[Any]], set[str]]:
        if self.failing:
            raise ConnectionError("the worker died before its transaction")
        return super()._write_lookups(writes, lookups)


def test_a_batch_whose_transaction_never_landed_counts_once_when_applied_again(
    settings: Settings,
) -> None:
    async def body(redis: Redis, sink: Sink) -> None:
        failing = FailingSink(redis, settings)
        records = [Record("t", 0, 0, [click("a"), click("b")]), Record("t", 0, 1, [click("a")])]
        with pytest.raises(ConnectionError):
            await failing.apply(records)
        assert await campaign(redis, settings, "all", 0) == {}
        health = await sink.apply(records)  # another worker, or the same one restarted
        assert (health["events"], health["duplicates"]) == (2, 1)
        assert (await campaign(redis, settings, "all", 0))["clicks"] == 2
        again = await sink.apply([Record("t", 0, 2, [click("b")])])
        assert again["duplicates"] == 1

    run(settings, body)


class RacedSink(Sink):
    """A sink that another worker overtakes with each of ``rivals`` in turn, right after
    its reads and before its ``EXEC``: a partition that moved in a rebalance."""

    def __init__(self, redis: Redis, settings: Settings, rivals: list[Record]) -> None:
        super().__init__(redis, settings)
        self.rival, self.rivals = Sink(redis, settings), rivals

    async def _read(self, pipe: Any, events: list[Event], now_s: int, unsharded: bool) -> Lookups:
        lookups = await super()._read(pipe, events, now_s, unsharded)
        if self.rivals:
            await self.rival.apply([self.rivals.pop(0)])
        return lookups


def test_transactions_applied_again_after_a_conflict_are_counted(settings: Settings) -> None:
    mine = [Record("t", 0, offset, [click(name)]) for offset, name in enumerate("rsm")]

    async def body(redis: Redis, sink: Sink) -> None:
        raced = RacedSink(redis, settings, rivals=mine[:2])
        for _ in range(2):  # as the worker does after a WatchError
            with pytest.raises(WatchError):
                await raced.apply(mine)
        health = await raced.apply(mine)
        assert (health["redis_conflicts"], health["skipped_records"], health["events"]) == (2, 2, 1)
        stored = await redis.hget(Keys(settings.redis_prefix).health, "redis_conflicts")
        assert int(stored or 0) == 2
        later = await raced.apply([Record("t", 0, 3, [click("n")])])
        assert later["redis_conflicts"] == 0  # counted once, not again with each batch
        assert (await campaign(redis, settings, "all", 0))["clicks"] == 4

    run(settings, body)


def test_a_batch_the_store_lost_in_a_failover_counts_once_when_read_again(
    settings: Settings,
) -> None:
    """The primary of the store's slot lost a batch (the replica that took over had not
    received it), but not the shards its ids were claimed in: read again, it counts."""
    keys = Keys(settings.key_prefix)

    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 0, [click("a")])])
        shards = tuple(f"{shard_prefix(keys.prefix, shard)}:".encode() for shard in range(SHARDS))
        names = [n async for n in redis.scan_iter(f"{keys.prefix}:*") if not n.startswith(shards)]
        before = {name: await redis.dump(name) for name in names}
        await sink.apply([Record("t", 0, 1, [click("b"), click("c")])])
        # The failover: the store's own keys as they were, the shards as they are.
        await redis.delete(
            *[n async for n in redis.scan_iter(f"{keys.prefix}:*") if not n.startswith(shards)]
        )
        for name, value in before.items():
            assert value is not None
            await redis.restore(name, 0, value)
        health = await sink.apply([Record("t", 0, 1, [click("b"), click("c"), click("a")])])
        assert (health["events"], health["duplicates"]) == (2, 1)
        assert (await campaign(redis, settings, "all", 0))["clicks"] == 3

    run(settings, body)


def test_ids_counted_before_the_shards_are_duplicates_until_they_expire(settings: Settings) -> None:
    """A store upgraded from ids under its own prefix (the layout before the shards, in
    which a worker also wrote its partitions' offsets) reads them as long as they are kept;
    a store that began with shards never looks."""
    keys = Keys(settings.key_prefix)
    now = int(time.time())
    generation = now // GENERATION_S

    async def body(redis: Redis, sink: Sink) -> None:
        await redis.sadd(keys.sources, keys.source("t", 0))
        await redis.hset(keys.seen(generation), mapping={"ids": 1, "buckets": 1})
        await redis.hset(keys.seen_bucket(generation, 0), seen_digest("before"), "")
        health = await sink.apply([Record("t", 0, 0, [click("before"), click("after")])])
        assert (health["events"], health["duplicates"]) == (1, 1)
        assert int(await redis.get(keys.sharded_since) or 0) == now
        # Once no worker before the shards can have written ids still kept, none is read.
        until = seen_expiry(generation + 1)
        await redis.hset(keys.seen(until // GENERATION_S), mapping={"ids": 1, "buckets": 1})
        for old in ("old", "older"):
            await redis.hset(keys.seen_bucket(until // GENERATION_S, 0), seen_digest(old), "")
        record = Record("t", 0, 1, [click("old")])
        assert (await Sink(redis, settings, lambda: until - 1).apply([record]))["duplicates"] == 1
        record = Record("t", 0, 2, [click("older")])
        assert (await Sink(redis, settings, lambda: until).apply([record]))["events"] == 1

    run(settings, body, clock=lambda: now)


def test_a_store_that_began_with_shards_reads_no_ids_under_its_prefix(settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    generation = int(time.time()) // GENERATION_S

    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 0, [click("a")])])
        assert await redis.get(keys.sharded_since) == b"0"
        await redis.hset(keys.seen(generation), mapping={"ids": 1, "buckets": 1})
        await redis.hset(keys.seen_bucket(generation, 0), seen_digest("b"), "")
        assert (await sink.apply([Record("t", 0, 1, [click("b")])]))["events"] == 1

    run(settings, body)


def test_an_event_counted_before_midnight_is_a_duplicate_for_48_hours(settings: Settings) -> None:
    """Seen ids are kept by the day they were counted (:mod:`tracker.store`): one counted
    in a day's last second is a duplicate in the next day, and 48 hours on."""
    midnight = (int(time.time()) // GENERATION_S + 1) * GENERATION_S
    now = [midnight - 1]

    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 0, [click("a")])])
        for offset, later in enumerate([midnight, midnight - 1 + SEEN_TTL_S], start=1):
            now[0] = later
            health = await sink.apply([Record("t", 0, offset, [click("a")])])
            assert (health["events"], health["duplicates"]) == (0, 1)

    run(settings, body, clock=lambda: now[0])


def test_events_behind_the_stored_watermark_by_more_than_grace_are_late_and_counted(
    settings: Settings,
) -> None:
    hour = 3_600_000

    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 0, [click("new", ts=MINUTE + 2 * hour)])])
        health = await sink.apply(
            [Record("t", 0, 1, [click("late", ts=MINUTE), click("ok", ts=MINUTE + hour + 1)])]
        )
        assert health["late"] == 1
        assert (await campaign(redis, settings, "all", 0))["clicks"] == 3
        assert (await campaign(redis, settings, "1m", MINUTE))["clicks"] == 1

    run(settings, body)


def test_a_late_event_updates_only_the_buckets_still_kept(settings: Settings) -> None:
    day = 86_400_000
    old = MINUTE - 5 * day  # minutes are kept 2 days, hours 90, days 1,100

    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 0, [click("now"), click("old", ts=old)])])
        keys = Keys(settings.redis_prefix)
        assert not await redis.exists(keys.bucket("1m", old, "campaign"))
        assert (await campaign(redis, settings, "1h", old - old % 3_600_000))["clicks"] == 1
        assert (await campaign(redis, settings, "1d", old - old % day))["clicks"] == 1
        assert (await campaign(redis, settings, "all", 0))["clicks"] == 2

    run(settings, body)


def test_minute_buckets_expire_after_their_retention(settings: Settings) -> None:
    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 0, [click("a")])])
        keys = Keys(settings.redis_prefix)
        expire_at = await redis.expiretime(keys.bucket("1m", MINUTE, "campaign"))
        assert expire_at == MINUTE // 1000 + settings.retention_1m_days * 86_400
        assert await redis.ttl(keys.bucket("all", 0, "total")) == -1  # all-time totals stay

    run(settings, body)


def test_a_sign_in_on_one_partition_credits_an_order_on_another(settings: Settings) -> None:
    """The device's click and sign-in on partition 0, the user's order on partition 1: the
    identity state is read across partitions, and the order gets the anonymous click."""
    touch = click("c", ts=MINUTE - 60_000)
    touch = Event(**{**msgspec.structs.asdict(touch), "anonymous_id": "a1", "click_id": "k1"})
    sign_in = Event(event_id="i", type="identify", ts=MINUTE - 30_000, received_at=MINUTE,
                    channel="direct", anonymous_id="a1", user_id="u1")  # fmt: skip
    order = Event(event_id="o", type="conversion", ts=MINUTE, received_at=MINUTE,
                  channel="direct", user_id="u1", order_id="o1", value=5_000_000)  # fmt: skip

    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 0, [touch, sign_in])])
        health = await sink.apply([Record("t", 1, 0, [order])])
        assert health["events"] == 1
        spring = await campaign(redis, settings, "all", 0)
        assert spring["conversions@last_click"] == 1_000_000
        assert spring["revenue@last_click"] == 5_000_000
        keys = Keys(settings.redis_prefix)
        assert await redis.get(keys.devices("u1")) == b'["a1"]'
        assert await redis.get(keys.recent("u1")) == f'[["o1",{MINUTE}]]'.encode()

    run(settings, body)


# A prefix holding a hash tag lays the store out as on a Redis Cluster, on one Redis:
# with TRACKER_REDIS_SPREAD_SUMS, each partition's sums under a tag of its own, given
# through the outbox.


@pytest.fixture
def tagged(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings, redis_prefix=f"{{{settings.redis_prefix}}}", redis_spread_sums=True
    )


async def clicks_and_people(redis: Redis, settings: Settings) -> tuple[int, int]:
    keys = Keys(settings.key_prefix)
    rows = await read_buckets(redis, ALL_TIME, [0], keys, ("total",))
    (people,) = await read_uniques(redis, [(ALL_TIME, 0, "total", "total")], keys)
    return rows.get(0, {}).get(("total", "total"), {}).get("clicks", 0), people


def by(person: str, event_id: str) -> Event:
    return msgspec.structs.replace(click(event_id), anonymous_id=person)


def test_each_partitions_sums_are_under_its_own_tag_and_read_together(tagged: Settings) -> None:
    keys = Keys(tagged.key_prefix)

    async def body(redis: Redis, sink: Sink) -> None:
        # "anna" on two partitions (two devices of hers would be): one person, not two.
        await sink.apply([Record("t", 0, 0, [by("anna", "a"), by("ben", "b")])])
        await sink.apply([Record("t", 1, 0, [by("anna", "c")]), Record("t", 2, 5, [click("d")])])
        held = {name.decode() for name in await redis.smembers(keys.tallies)}  # type: ignore[union-attr]
        assert held == {tally_prefix(keys.prefix, p) for p in (0, 1, 2)}
        assert not await redis.exists(keys.bucket(ALL_TIME, 0, "total"))
        for partition, clicks in ((0, 2), (1, 1), (2, 1)):
            tally = Keys(tally_prefix(keys.prefix, partition))
            raw = await redis.hgetall(tally.bucket(ALL_TIME, 0, "total"))
            assert parse_bucket(raw)["total", "total"]["clicks"] == clicks
        assert await clicks_and_people(redis, tagged) == (4, 2)

    run(tagged, body)


def test_the_people_of_every_partition_are_in_one_hyperloglog_under_its_own_tag(
    tagged: Settings,
) -> None:
    """Not in one a partition, as stores spread before kept them: those still count."""
    keys = Keys(tagged.key_prefix)
    audience = (ALL_TIME, 0, "total", "total")
    own = Keys(people_prefix(keys.prefix, "total", "total"))

    async def body(redis: Redis, sink: Sink) -> None:
        # Left by a worker of the version before, under partition 3's tag.
        old = Keys(tally_prefix(keys.prefix, 3))
        await redis.pfadd(old.uniques(*audience), "anna", "dora")
        await redis.sadd(keys.tallies, old.prefix)
        await sink.apply([Record("t", 0, 0, [by("anna", "a"), by("ben", "b")])])
        await sink.apply(
            [Record("t", 1, 0, [by("anna", "c")]), Record("t", 2, 5, [by("carl", "d")])]
        )
        assert own.prefix not in {keys.prefix, old.prefix}
        assert await redis.pfcount(own.uniques(*audience)) == 3
        for partition in (0, 1, 2):
            assert not await redis.exists(
                Keys(tally_prefix(keys.prefix, partition)).uniques(*audience)
            )
        assert await clicks_and_people(redis, tagged) == (4, 4)

    run(tagged, body)


class UntalliedSink(Sink):
    """A sink that dies after its transaction, before its outboxes were delivered (the
    partition's tally took its sums, the click shards its clicks)."""

    async def _give(self, boxes: dict[tuple[str, int], Any]) -> None:
        raise ConnectionError("the worker died before delivering its outboxes")


def test_sums_a_worker_died_before_giving_its_tally_count_once_from_the_outbox(
    tagged: Settings,
) -> None:
    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 0, [by("anna", "a")])])
        with pytest.raises(ConnectionError):
            await UntalliedSink(redis, tagged).apply([Record("t", 0, 1, [by("ben", "b")])])
        assert await clicks_and_people(redis, tagged) == (1, 1)  # not in the tally yet
        # The next worker to apply the partition gives the tally its outbox first.
        health = await Sink(redis, tagged).apply([Record("t", 0, 2, [by("carl", "c")])])
        assert health["events"] == 1
        assert await clicks_and_people(redis, tagged) == (3, 3)
        # The sink that applied the first batch, and a redelivery: nothing twice.
        again = await sink.apply([Record("t", 0, 1, [by("ben", "b")])])
        assert again["skipped_records"] == 1
        assert await clicks_and_people(redis, tagged) == (3, 3)

    run(tagged, body)


def test_an_outbox_a_worker_of_the_version_before_left_as_json_counts_once(
    tagged: Settings,
) -> None:
    """Outboxes were JSON before they were deflated (:func:`packed`): one left so by a
    worker that died is given to the tally all the same."""

    async def body(redis: Redis, sink: Sink) -> None:
        outbox = Keys(tagged.key_prefix).outbox("t", 0)
        with pytest.raises(ConnectionError):
            await UntalliedSink(redis, tagged).apply([Record("t", 0, 0, [by("anna", "a")])])
        raw = await redis.get(outbox)
        assert isinstance(raw, bytes)
        assert len(raw) < len(orjson.dumps(unpacked(raw)))
        await redis.set(outbox, orjson.dumps(unpacked(raw)), keepttl=True)
        await sink.apply([Record("t", 0, 1, [by("ben", "b")])])
        assert await clicks_and_people(redis, tagged) == (2, 2)

    run(tagged, body)


def test_a_worker_keeping_the_sums_in_the_store_counts_what_one_spreading_them_left(
    tagged: Settings,
) -> None:
    """The setting changed, or workers of both kinds during a rolling restart."""
    still = dataclasses.replace(tagged, redis_spread_sums=False)

    async def body(redis: Redis, sink: Sink) -> None:
        with pytest.raises(ConnectionError):
            await UntalliedSink(redis, tagged).apply([Record("t", 0, 0, [by("anna", "a")])])
        await Sink(redis, still).apply([Record("t", 0, 1, [by("ben", "b")])])
        assert await clicks_and_people(redis, still) == (2, 2)
        await Sink(redis, tagged).apply([Record("t", 0, 2, [by("carl", "c")])])  # and back
        assert await clicks_and_people(redis, still) == (3, 3)

    run(tagged, body)


# With TRACKER_REDIS_SPREAD_CLICKS, each click under one of 16 tags of its own, by id,
# given through the outbox; a conversion on any partition reads it there.


@pytest.fixture
def clicks_spread(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings, redis_prefix=f"{{{settings.redis_prefix}}}", redis_spread_clicks=True
    )


def clicked(event_id: str, click_id: str, device: str) -> Event:
    return msgspec.structs.replace(click(event_id), anonymous_id=device, click_id=click_id)


def postback(event_id: str, click_id: str) -> Event:
    """A network's conversion naming only the click: it is the clicker's."""
    return Event(event_id=event_id, type="conversion", ts=MINUTE, received_at=MINUTE,
                 channel="affiliate", click_id=click_id, order_id=event_id,
                 value=2_000_000)  # fmt: skip


async def where(redis: Redis, settings: Settings, click_id: str) -> tuple[bool, bool]:
    """Whether the click is under its own tag, and under the store's prefix."""
    keys = Keys(settings.key_prefix)
    shard = Keys(click_prefix(keys.prefix, click_id))
    assert shard.prefix != keys.prefix
    return bool(await redis.exists(shard.click(click_id))), bool(
        await redis.exists(keys.click(click_id))
    )


def test_spread_clicks_are_under_their_own_tags_and_credited_from_any_partition(
    clicks_spread: Settings,
) -> None:
    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply(
            [Record("t", 0, 0, [clicked("c1", "k1", "a1"), clicked("c2", "k2", "a2")])]
        )
        for click_id in ("k1", "k2"):
            assert await where(redis, clicks_spread, click_id) == (True, False)
        assert len({click_prefix("{x}", k) for k in ("k1", "k2")}) == 2  # two shards
        await Sink(redis, clicks_spread).apply([Record("t", 1, 0, [postback("o1", "k2")])])
        spring = await campaign(redis, clicks_spread, "all", 0)
        assert spring["conversions@last_click"] == 1_000_000
        assert spring["revenue@last_click"] == 2_000_000

    run(clicks_spread, body)


def test_clicks_a_worker_died_before_giving_their_shards_are_given_from_the_outbox(
    clicks_spread: Settings,
) -> None:
    async def body(redis: Redis, sink: Sink) -> None:
        with pytest.raises(ConnectionError):
            await UntalliedSink(redis, clicks_spread).apply(
                [Record("t", 0, 0, [clicked("c1", "k1", "a1")])]
            )
        assert await where(redis, clicks_spread, "k1") == (False, False)  # in the outbox only
        await sink.apply([Record("t", 0, 1, [clicked("c2", "k2", "a2")])])
        assert await where(redis, clicks_spread, "k1") == (True, False)
        await sink.apply([Record("t", 1, 0, [postback("o1", "k1")])])
        spring = await campaign(redis, clicks_spread, "all", 0)
        assert spring["conversions@last_click"] == 1_000_000

    run(clicks_spread, body)


# With TRACKER_REDIS_SPREAD_PATHS, each person's touch path under the click shard their id
# hashes to, given through their partition's outbox and joined with the path there.


@pytest.fixture
def paths_spread(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings, redis_prefix=f"{{{settings.redis_prefix}}}", redis_spread_paths=True
    )


def touched(event_id: str, device: str, ts: int, campaign: str) -> Event:
    return msgspec.structs.replace(click(event_id, ts, campaign), anonymous_id=device)


def bought(event_id: str, device: str, ts: int) -> Event:
    return Event(event_id=event_id, type="conversion", ts=ts, received_at=ts, channel="search",
                 anonymous_id=device, order_id=event_id, value=2_000_000)  # fmt: skip


async def path_of(redis: Redis, settings: Settings, holder: str) -> tuple[list[Touch], bool]:
    """The path spread under the holder's tag, and whether the store's slot has one."""
    keys = Keys(settings.key_prefix)
    shard = Keys(path_prefix(keys.prefix, holder))
    assert shard.prefix != keys.prefix
    raw = await redis.get(shard.path(holder))
    return (load_path(raw) if raw else []), bool(await redis.exists(keys.path(holder)))


def test_spread_paths_are_under_their_own_tags_and_credit_conversions(
    paths_spread: Settings,
) -> None:
    async def body(redis: Redis, sink: Sink) -> None:
        await sink.apply([Record("t", 0, 0, [touched("t1", "a1", MINUTE, "spring")])])
        await sink.apply([Record("t", 0, 1, [touched("t2", "a1", MINUTE + 1, "summer")])])
        both = [Touch(MINUTE, "spring", "search"), Touch(MINUTE + 1, "summer", "search")]
        assert await path_of(redis, paths_spread, "a1") == (both, False)
        await Sink(redis, paths_spread).apply([Record("t", 0, 2, [bought("o1", "a1", MINUTE + 2)])])
        spring = await campaign(redis, paths_spread, "all", 0)
        assert spring["conversions@first_click"] == 1_000_000
        assert "conversions@last_click" not in spring  # the summer click was last

    run(paths_spread, body)


def test_a_spread_path_given_late_from_an_old_outbox_loses_no_touch(
    paths_spread: Settings,
) -> None:
    """A worker that lost its partition may deliver its last outbox after the next owner
    delivered newer ones: the path is joined, not overwritten."""

    async def body(redis: Redis, sink: Sink) -> None:
        keys = Keys(paths_spread.key_prefix)
        with pytest.raises(ConnectionError):
            await UntalliedSink(redis, paths_spread).apply(
                [Record("t", 0, 0, [touched("t1", "a1", MINUTE, "spring")])]
            )
        assert await path_of(redis, paths_spread, "a1") == ([], False)  # in the outbox only
        raw = await redis.get(keys.outbox("t", 0))
        assert isinstance(raw, bytes)
        old = unpacked(raw)
        await sink.apply([Record("t", 0, 1, [touched("t2", "a1", MINUTE + 1, "summer")])])
        await Sink(redis, paths_spread)._deliver({("t", 0): old})  # the zombie, late
        got, _ = await path_of(redis, paths_spread, "a1")
        assert got == [Touch(MINUTE, "spring", "search"), Touch(MINUTE + 1, "summer", "search")]

    run(paths_spread, body)


def test_paths_spread_and_then_not_are_read_joined(paths_spread: Settings) -> None:
    """Workers told to spread paths, then not (a rolling restart either way): each reads
    the store's copy and the spread one joined, so no touch is lost between them."""
    still = dataclasses.replace(paths_spread, redis_spread_paths=False)

    async def body(redis: Redis, sink: Sink) -> None:
        await Sink(redis, still).apply([Record("t", 0, 0, [touched("t1", "a1", MINUTE, "spring")])])
        await sink.apply([Record("t", 0, 1, [touched("t2", "a1", MINUTE + 1, "summer")])])
        await Sink(redis, still).apply([Record("t", 0, 2, [touched("t3", "a1", MINUTE + 2, "x")])])
        spread, in_store = await path_of(redis, paths_spread, "a1")
        assert in_store
        assert [t.campaign for t in spread] == ["spring", "summer"]
        stored = load_path(await redis.get(Keys(paths_spread.key_prefix).path("a1")) or b"[]")
        assert [t.campaign for t in stored] == ["spring", "summer", "x"]

    run(paths_spread, body)


touches = st.builds(
    Touch,
    st.integers(MINUTE, MINUTE + 3),
    st.sampled_from([None, "", "spring", "Spring", "sprïng", "spring2", "été"]),
    st.sampled_from(["search", "social", "email"]),
)


@settings_of(max_examples=60, deadline=None)
@given(
    ours=st.lists(touches, max_size=8),
    theirs=st.lists(touches, max_size=8),
    most=st.integers(1, 6),
)
@example(ours=[Touch(MINUTE, "", "search")], theirs=[Touch(MINUTE, None, "search")], most=2)
def test_the_paths_script_joins_as_the_worker_does(
    servers: tuple[str, str], ours: list[Touch], theirs: list[Touch], most: int
) -> None:
    """:data:`tracker.store.TOUCHES` in Redis gives :func:`joined`'s path, touch for touch,
    with equal milliseconds, campaigns told apart by case, accent, null and blank."""
    ours = trimmed(ours, most)

    async def main() -> list[Touch]:
        redis = Redis.from_url(servers[1])
        key = f"test-paths-{uuid.uuid4().hex}"
        try:
            if theirs:
                await redis.set(key, dump_path(theirs))
            path: list[str | int] = [key, dump_path(ours).decode(), 1, f"{key}:mark"]
            await redis.eval(TOUCHES, 0, 60, most, 0, *path)
            raw = await redis.get(key)
            return load_path(raw) if raw else []
        finally:
            await redis.delete(key)
            await redis.aclose()

    assert asyncio.run(main()) == joined(ours, theirs, most)
