"""``POST /v1/erasure`` on a real Redis and Kafka: state written in the worker's own
forms is erased or anonymised, the audit record lands in Kafka, and the sink drops the
erased person's events, also when the erasure lands in the middle of its batch."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from redis.asyncio import Redis

from harness.isolation import free_port, isolated_settings
from tests.conftest import with_redis
from tests.integration.test_people import T0, ask, stored
from tests.integration.test_sink import UntalliedSink
from tests.kafka import records
from tracker.asgi import HTTPError, Message, Request
from tracker.attribution import Touch
from tracker.events import Event
from tracker.export import erasure
from tracker.export.audit import AuditLog
from tracker.export.erasure import MAX_BODY_BYTES, REMOVED, ErasureApi
from tracker.kafka import ensure_topics
from tracker.settings import Settings
from tracker.store import Keys, click_prefix, path_prefix
from tracker.stream import state
from tracker.stream.identity import Segment
from tracker.stream.sink import Record, Sink, WatchError
from tracker.stream.state import Click, Lookups, Order
from tracker.suppression import erased_hash

pytestmark = pytest.mark.services
HOUR_S = 3600

T = TypeVar("T")


@pytest.fixture
def settings(servers: tuple[str, str]) -> Settings:
    """Isolated settings whose topics, the audit topic included, exist."""
    isolated = isolated_settings(servers)
    asyncio.run(ensure_topics(isolated))
    return isolated


async def post(redis: Redis, settings: Settings, body: bytes) -> tuple[int, dict[str, Any]]:
    """``POST /v1/erasure`` with ``body``, as the exporter answers it."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    scope: dict[str, Any] = {"method": "POST", "path": "/v1/erasure", "headers": []}
    audit = AuditLog(settings)
    try:
        response = await ErasureApi(redis, redis, settings, audit).erasure(Request(scope, receive))
    except HTTPError as exc:
        return exc.status, {"error": exc.reason}
    finally:
        await audit.stop()
    return response.status, orjson.loads(response.body)


def erase(settings: Settings, **person: str) -> tuple[int, dict[str, Any]]:
    return with_redis(settings, lambda redis, _: post(redis, settings, orjson.dumps(person)))


def audited(settings: Settings) -> list[dict[str, Any]]:
    """The audit records written so far, oldest first."""
    found = records(settings.kafka_bootstrap, settings.audit_topic)
    return [orjson.loads(value) for _, _, value in found]


def loaded(load: Callable[[bytes | str], T], raw: bytes | str | None) -> T:
    """``load(raw)`` of a value that must be there."""
    assert raw is not None
    return load(raw)


def order(
    device: str | None, user: str | None, click_id: str | None = None, customer: str | None = None
) -> Order:
    return Order(ts=T0, goal="purchase", revenue=20_000_000, credits={}, acquisition=None,
                 device=device, user=user, click_id=click_id, customer=customer)  # fmt: skip


def world(keys: Keys) -> dict[str, bytes]:
    """test_people's u-1 (laptop l-1, phone p-1 shared with u-2), and u-2 on their own
    m-2; u-1 clicked k-1 on the phone and ordered o-1 there, o-3 signed in without a
    device, and o-4 is a postback naming only k-1, u-1's as a customer; u-2 clicked k-2
    and ordered o-2."""
    touch = Touch(T0, "spring", "search")
    return {
        **stored(keys),
        keys.devices("u-2"): state.dump_devices(["p-1", "m-2"]),
        keys.link("m-2"): state.dump_link([Segment("u-2", T0)]),
        keys.path("m-2"): state.dump_path([touch]),
        keys.click("k-1"): state.dump_click(Click(touch, "p-1")),
        keys.click("k-2"): state.dump_click(Click(touch, "m-2", "u-2")),
        keys.order("o-2"): state.dump_order(order("m-2", "u-2", "k-2")),
        keys.order("o-3"): state.dump_order(order(None, "u-1")),
        keys.order("o-4"): state.dump_order(order(None, None, "k-1", customer="u-1")),
    }


def write(settings: Settings, values: dict[str, bytes]) -> None:
    async def body(redis: Redis, keys: Keys) -> None:
        await redis.mset(values)
        await redis.expire(keys.order("o-1"), HOUR_S)  # the worker's orders expire

    with_redis(settings, body)


def test_a_user_is_erased_with_their_devices_and_their_orders_are_anonymised(
    settings: Settings,
) -> None:
    keys = Keys(settings.redis_prefix)
    before = world(keys)
    write(settings, before)

    status, body = erase(settings, user_id="u-1")

    assert status == 200, body
    assert body == {
        "user_id": "u-1",
        # devices: u-1's list, and u-2's without p-1; paths of l-1, p-1, u-1; recent of u-1, p-1.
        "removed": {
            "devices": 2,
            "links": 2,
            "paths": 3,
            "customers": 1,
            "recent": 2,
            "orders_anonymised": 3,
            "clicks": 1,
        },
        "suppressed": ["user_id", "anonymous_id", "anonymous_id"],
        "already_erased": False,
    }

    async def check(redis: Redis, _: Keys) -> None:
        left = dict(zip(before, await redis.mget(list(before)), strict=True))
        gone = {name for name, value in left.items() if value is None}
        assert gone == {
            keys.devices("u-1"), keys.link("l-1"), keys.link("p-1"), keys.path("l-1"),
            keys.path("p-1"), keys.path("u-1"), keys.customer("u-1"), keys.recent("u-1"),
            keys.recent("p-1"), keys.click("k-1"),
        }  # fmt: skip
        assert loaded(state.load_devices, left[keys.devices("u-2")]) == ["m-2"]
        for untouched in (keys.link("m-2"), keys.path("m-2"), keys.click("k-2"), keys.order("o-2")):
            assert left[untouched] == before[untouched]
        # Kept for refunds, without who placed them, and expiring as before.
        sale = loaded(state.load_order, left[keys.order("o-1")])
        assert sale == dataclasses.replace(
            state.load_order(before[keys.order("o-1")]), device=None, user=None, click_id=None
        )
        assert 0 < await redis.ttl(keys.order("o-1")) <= HOUR_S
        assert loaded(state.load_order, left[keys.order("o-3")]).user is None
        postback = loaded(state.load_order, left[keys.order("o-4")])
        assert (postback.customer, postback.click_id) == (None, None)
        hashes = [erased_hash("user_id", "u-1")]
        hashes += [erased_hash("anonymous_id", device) for device in ("l-1", "p-1")]
        assert await redis.lrange(keys.erasures, 0, -1) == [h.encode() for h in hashes]
        assert all(await redis.mget([keys.erased(h) for h in hashes]))

    with_redis(settings, check)
    assert ask(settings, {}, user_id="u-1")[0] == 404
    assert ask(settings, {}, anonymous_id="p-1")[0] == 404
    assert ask(settings, {}, user_id="u-2")[0] == 200

    (record,) = audited(settings)
    assert record.pop("at") > T0
    assert record == {
        "action": "erasure",
        "kind": "user_id",
        "hash": erased_hash("user_id", "u-1"),
        "removed": body["removed"],
        "already_erased": False,
    }


def test_an_anonymous_id_is_erased_and_taken_out_of_its_users_devices_lists(
    settings: Settings,
) -> None:
    keys = Keys(settings.redis_prefix)
    write(settings, world(keys))

    status, body = erase(settings, anonymous_id="p-1")

    assert status == 200, body
    assert body["removed"] == {"devices": 2, "links": 1, "paths": 1, "customers": 0,
                               "recent": 1, "orders_anonymised": 1, "clicks": 1}  # fmt: skip
    assert body["suppressed"] == ["anonymous_id"]

    async def check(redis: Redis, _: Keys) -> None:
        lists = await redis.mget(keys.devices("u-1"), keys.devices("u-2"))
        assert [loaded(state.load_devices, raw) for raw in lists] == [["l-1"], ["m-2"]]
        assert await redis.get(keys.path("u-1")) is not None  # u-1 is not erased
        assert await redis.lrange(keys.erasures, 0, -1) == [
            erased_hash("anonymous_id", "p-1").encode()
        ]

    with_redis(settings, check)
    assert ask(settings, {}, anonymous_id="p-1")[0] == 404
    status, u1 = ask(settings, {}, user_id="u-1")
    assert status == 200
    assert [d["anonymous_id"] for d in u1["devices"]] == ["l-1"]


def test_erasing_again_answers_already_erased_changes_nothing_and_audits_again(
    settings: Settings,
) -> None:
    keys = Keys(settings.redis_prefix)
    write(settings, world(keys))
    assert erase(settings, user_id="u-1")[0] == 200
    # State the worker may not write for an erased person: were it there, it would stay.
    write(settings, {keys.path("u-1"): state.dump_path([Touch(T0, "x", "email")])})

    status, body = erase(settings, user_id="u-1")

    assert status == 200, body
    assert body == {
        "user_id": "u-1",
        "removed": dict.fromkeys(REMOVED, 0),
        "suppressed": [],
        "already_erased": True,
    }
    assert with_redis(settings, lambda redis, keys: redis.llen(keys.erasures)) == 3
    assert [r["already_erased"] for r in audited(settings)] == [False, True]


def test_a_person_nothing_is_held_about_answers_404_and_is_not_suppressed(
    settings: Settings,
) -> None:
    keys = Keys(settings.redis_prefix)
    write(settings, world(keys))
    assert erase(settings, user_id="u-9") == (404, {"error": "nothing is held about user_id 'u-9'"})
    assert with_redis(settings, lambda redis, keys: redis.exists(keys.erasures)) == 0
    assert audited(settings) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "the body must be a JSON object"),
        (b"u-1", "the body must be a JSON object"),
        (b'["u-1"]', "the body must be a JSON object"),
        (b"{}", "give user_id or anonymous_id (one of them)"),
        (b'{"user_id": "u-1", "anonymous_id": "a-1"}', "give user_id or anonymous_id (not both)"),
        (b'{"email": "a@b.example"}', "unknown field 'email'"),
        (b'{"user_id": "u-1", "why": "asked"}', "unknown field 'why'"),
        (b'{"user_id": 7}', "user_id must be a string"),
        (b'{"anonymous_id": null}', "anonymous_id must be a string"),
        (b'{"user_id": ""}', "user_id must not be empty"),
        (orjson.dumps({"user_id": "u" * 257}), "user_id is longer than 256 characters"),
    ],
)
def test_a_bad_body_answers_400_with_its_reason(
    settings: Settings, body: bytes, reason: str
) -> None:
    status, answer = with_redis(settings, lambda redis, _: post(redis, settings, body))
    assert status == 400
    assert answer["error"].startswith(reason)


def test_a_body_too_large_answers_413(settings: Settings) -> None:
    body = orjson.dumps({"user_id": "u" * MAX_BODY_BYTES})
    assert with_redis(settings, lambda redis, _: post(redis, settings, body))[0] == 413


def test_an_audit_record_kafka_does_not_take_answers_503_and_a_retry_writes_it(
    settings: Settings,
) -> None:
    keys = Keys(settings.redis_prefix)
    write(settings, world(keys))
    away = dataclasses.replace(
        settings, kafka_bootstrap=f"127.0.0.1:{free_port()}", produce_timeout_s=2.0
    )

    status, body = erase(away, user_id="u-1")

    assert status == 503
    assert body["error"].startswith("the erasure was done, but its audit record was not written")
    assert ask(settings, {}, user_id="u-1")[0] == 404  # done indeed
    assert audited(settings) == []
    status, body = erase(settings, user_id="u-1")
    assert (status, body["already_erased"]) == (200, True)
    assert [(r["hash"], r["already_erased"]) for r in audited(settings)] == [
        (erased_hash("user_id", "u-1"), True)
    ]


NOW = int(time.time() * 1000) - 3 * 3_600_000
MINUTE = NOW - NOW % 60_000


def hit(event_id: str, kind: str = "click", **fields: Any) -> Event:
    return Event(event_id=event_id, type=kind, ts=MINUTE, received_at=MINUTE, channel="search",
                 campaign="spring", **fields)  # fmt: skip


def test_the_sink_drops_and_counts_an_erased_persons_events(settings: Settings) -> None:
    keys = Keys(settings.redis_prefix)
    write(settings, world(keys))
    assert erase(settings, user_id="u-1")[0] == 200
    batch = [
        hit("a", anonymous_id="l-1"),  # an erased device
        hit("b", anonymous_id="new-1", user_id="u-1"),  # the erased user on a new device
        hit("c", "identify", anonymous_id="p-1", user_id="u-7"),  # a device of theirs
        hit("d", anonymous_id="d-7", click_id="k-7"),  # someone else
    ]

    async def body(redis: Redis, _: Keys) -> None:
        sink = Sink(redis, settings)
        health = await sink.apply([Record("t", 0, 0, batch[:2]), Record("t", 1, 0, batch[2:])])
        assert (health["suppressed"], health["events"]) == (3, 1)
        assert int(await redis.hget(keys.health, "suppressed") or 0) == 3
        written = await redis.mget(
            keys.path("l-1"), keys.path("new-1"), keys.link("new-1"), keys.devices("u-1"),
            keys.link("p-1"), keys.devices("u-7"), keys.path("d-7"), keys.click("k-7"),
        )  # fmt: skip
        assert [value is not None for value in written] == [False] * 6 + [True] * 2
        clicks = keys.field("campaign", "spring", "clicks")
        assert await redis.hget(keys.bucket("all", 0, "campaign"), clicks) == b"1"
        again = await sink.apply([Record("t", 0, 0, batch[:2])])  # the offset moved on
        assert (again["skipped_records"], again["suppressed"]) == (1, 0)

    with_redis(settings, body)


class ErasingSink(Sink):
    """A sink that has the person erased right after its reads, before its ``EXEC``:
    the race between a worker's batch and an erasure, made certain."""

    def __init__(self, redis: Redis, settings: Settings, **person: str) -> None:
        super().__init__(redis, settings)
        self.settings, self.person, self.erasures = settings, person, 0

    async def _read(self, pipe: Any, events: list[Event], now_s: int, unsharded: bool) -> Lookups:
        lookups = await super()._read(pipe, events, now_s, unsharded)
        if not self.erasures:
            self.erasures += 1
            async with Redis.from_url(self.settings.redis_url) as other:
                assert (await post(other, self.settings, orjson.dumps(self.person)))[0] == 200
        return lookups


def test_an_erasure_during_a_batch_of_the_person_fails_it_and_the_retry_drops_them(
    settings: Settings,
) -> None:
    keys = Keys(settings.redis_prefix)
    write(settings, world(keys))

    async def body(redis: Redis, _: Keys) -> None:
        sink = ErasingSink(redis, settings, anonymous_id="m-2")
        batch = [Record("t", 0, 0, [hit("a", anonymous_id="m-2")])]
        with pytest.raises(WatchError):
            await sink.apply(batch)
        health = await sink.apply(batch)  # as the worker does after a WatchError
        assert (health["suppressed"], health["events"]) == (1, 0)
        assert await redis.get(keys.path("m-2")) is None

    with_redis(settings, body)


def test_an_erasure_during_a_batch_crediting_the_persons_click_fails_it(
    settings: Settings,
) -> None:
    """k-1 was clicked on p-1; d-8 converts naming it. Nothing of p-1 that the batch
    reads is written by the erasure but the click itself: watched, it fails the batch."""
    keys = Keys(settings.redis_prefix)
    touch = Touch(MINUTE - 1, "spring", "search")
    write(
        settings,
        {
            keys.click("k-1"): state.dump_click(Click(touch, "p-1")),
            keys.path("p-1"): state.dump_path([touch]),
        },
    )
    sale = hit("v", "conversion", anonymous_id="d-8", click_id="k-1", order_id="o-8", value=1)

    async def body(redis: Redis, _: Keys) -> None:
        sink = ErasingSink(redis, settings, anonymous_id="p-1")
        with pytest.raises(WatchError):
            await sink.apply([Record("t", 0, 0, [sale])])
        health = await sink.apply([Record("t", 0, 0, [sale])])
        assert (health["suppressed"], health["events"]) == (0, 1)
        # Credited to nobody's click: nothing is written under the erased device.
        left = await redis.mget(keys.customer("p-1"), keys.recent("p-1"), keys.click("k-1"))
        assert left == [None] * 3
        assert loaded(state.load_order, await redis.get(keys.order("o-8"))).device == "d-8"

    with_redis(settings, body)


def test_a_batch_of_the_person_applied_during_an_erasure_fails_it_and_the_retry_erases_all(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker writes a new touch of p-1 while the erasure walks the keyspace: the
    erasure's transaction fails on it, and the next attempt erases that touch too."""
    keys = Keys(settings.redis_prefix)
    write(settings, world(keys))
    scans = 0
    walk = erasure._scan

    async def scan_racing_a_worker(pipe: Any, match: str, needles: Any) -> Any:
        nonlocal scans
        scans += 1
        if scans == 1:
            async with Redis.from_url(settings.redis_url) as other:
                touch = hit("late", anonymous_id="p-1", click_id="k-9")
                await Sink(other, settings).apply([Record("t", 0, 0, [touch])])
        async for item in walk(pipe, match, needles):
            yield item

    monkeypatch.setattr(erasure, "_scan", scan_racing_a_worker)
    status, body = erase(settings, anonymous_id="p-1")

    assert status == 200, body
    assert scans == 2
    assert body["removed"]["clicks"] == 2  # k-1, and k-9 of the batch

    async def check(redis: Redis, _: Keys) -> None:
        assert await redis.mget(keys.path("p-1"), keys.click("k-9")) == [None, None]

    with_redis(settings, check)


async def topic_configs(settings: Settings, *names: str) -> dict[str, dict[str, str]]:
    """Each topic's configs set on the topic itself (not defaults)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
        return {
            resource[3]: {entry[0]: entry[1] for entry in resource[4] if entry[3] == 1}
            for resource in described.resources
        }
    finally:
        await admin.close()


async def set_configs(settings: Settings, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)])
    finally:
        await admin.close()


def test_kafka_keeps_events_for_the_configured_days_and_the_audit_log_for_good(
    settings: Settings,
) -> None:
    topics = (settings.events_topic, settings.dead_letter_topic, settings.audit_topic)
    week, three_days = str(7 * 86_400_000), str(3 * 86_400_000)
    assert asyncio.run(topic_configs(settings, *topics)) == {
        settings.events_topic: {"retention.ms": week},
        settings.dead_letter_topic: {"retention.ms": week},
        settings.audit_topic: {"retention.ms": "-1"},
    }
    # An operator's own setting on the events topic survives a change of retention.
    own = {"retention.ms": week, "max.message.bytes": "2000000"}
    asyncio.run(set_configs(settings, settings.events_topic, own))
    shorter = dataclasses.replace(settings, events_retention_days=3)

    asyncio.run(ensure_topics(shorter))

    assert asyncio.run(topic_configs(settings, *topics)) == {
        settings.events_topic: {"retention.ms": three_days, "max.message.bytes": "2000000"},
        settings.dead_letter_topic: {"retention.ms": three_days},
        settings.audit_topic: {"retention.ms": "-1"},
    }


def test_spread_clicks_and_paths_are_erased_and_those_still_in_an_outbox_never_set(
    settings: Settings,
) -> None:
    """TRACKER_REDIS_SPREAD_CLICKS and TRACKER_REDIS_SPREAD_PATHS (a tagged prefix lays the
    store out as on a Redis Cluster, on one Redis): p-5's first click and their path
    reached their shards, their second click and path were in an outbox when they were
    erased; the worker settling that outbox after must not set them."""
    spread = dataclasses.replace(
        settings,
        redis_prefix=f"{{{settings.redis_prefix}}}",
        redis_spread_clicks=True,
        redis_spread_paths=True,
    )
    keys = Keys(spread.key_prefix)
    shard = {k: Keys(click_prefix(keys.prefix, k)).click(k) for k in ("k-5", "k-6", "k-7")}
    paths = {h: Keys(path_prefix(keys.prefix, h)).path(h) for h in ("p-5", "d-7")}
    first = hit("a", anonymous_id="p-5", click_id="k-5")
    second = hit("b", anonymous_id="p-5", click_id="k-6")
    other = hit("c", anonymous_id="d-7", click_id="k-7")

    async def body(redis: Redis, _: Keys) -> None:
        await Sink(redis, spread).apply([Record("t", 0, 0, [first, other])])
        with pytest.raises(ConnectionError):
            await UntalliedSink(redis, spread).apply([Record("t", 0, 1, [second])])
        assert await redis.exists(*paths.values()) == 2
        status, answer = await post(redis, spread, b'{"anonymous_id": "p-5"}')
        assert (status, answer["removed"]["clicks"], answer["removed"]["paths"]) == (200, 1, 1)
        await Sink(redis, spread).apply([Record("t", 1, 0, [hit("d", anonymous_id="d-8")])])
        await Sink(redis, spread).apply([Record("t", 0, 2, [hit("e", anonymous_id="d-9")])])
        five, six, seven = await redis.mget(*shard.values())
        assert (five, six) == (None, None)
        assert loaded(state.load_click, seven).device == "d-7"
        assert await redis.exists(paths["p-5"], keys.path("p-5")) == 0
        assert loaded(state.load_path, await redis.get(paths["d-7"]))

    with_redis(spread, body)


def test_a_spread_click_of_an_erased_person_left_in_its_shard_is_never_credited(
    settings: Settings,
) -> None:
    """A click of p-5 still in its shard after their erasure (its mark lost with a
    primary, say): a conversion naming it reads it there, unwatched, and leaves it out
    by the suppression list, writing nothing under the erased device."""
    spread = dataclasses.replace(
        settings, redis_prefix=f"{{{settings.redis_prefix}}}", redis_spread_clicks=True
    )
    keys = Keys(spread.key_prefix)
    shard = Keys(click_prefix(keys.prefix, "k-5")).click("k-5")
    sale = hit("v", "conversion", click_id="k-5", order_id="o-5", value=1)

    async def body(redis: Redis, _: Keys) -> None:
        await Sink(redis, spread).apply(
            [Record("t", 0, 0, [hit("a", anonymous_id="p-5", click_id="k-5")])]
        )
        left = await redis.get(shard)
        assert left is not None
        assert (await post(redis, spread, b'{"anonymous_id": "p-5"}'))[0] == 200
        await redis.set(shard, left)
        health = await Sink(redis, spread).apply([Record("t", 1, 0, [sale])])
        assert health["events"] == 1
        assert await redis.mget(keys.customer("p-5"), keys.recent("p-5")) == [None, None]
        assert loaded(state.load_order, await redis.get(keys.order("o-5"))).device is None

    with_redis(spread, body)
