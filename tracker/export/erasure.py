"""``POST /v1/erasure``: what is held about a person is erased, and stays erased.

The body names the person, ``{"user_id": "..."}`` or ``{"anonymous_id": "..."}``.
Erased from Redis (the keys of :mod:`tracker.store`):

- a user's devices list, and the link, touch path, customer record and recent orders
  of the user and of each of their devices; an anonymous id's own four, and the id is
  taken out of the devices list of every other user its link names;
- clicks (``P:click:*``) made by one of the erased ids: deleted; spread over a Redis
  Cluster (``TRACKER_REDIS_SPREAD_CLICKS``), each click shard is first marked, so that
  no worker sets a click of the person there again (one may still hold one in an
  outbox), and then walked; the touch paths spread there
  (``TRACKER_REDIS_SPREAD_PATHS``) are deleted by name after the marks too;
- orders (``P:order:*``) placed by one of them: kept, so a refund by order id still
  reverses the revenue, but without who placed them (device, user and click id
  cleared);
- and every erased id joins the suppression list (:mod:`tracker.suppression`): the
  workers drop the person's later events, those already in Kafka included.

Aggregates stay (they hold no person), and so do the unique-user HyperLogLogs: they
keep registers of hash bits, not their members, and cannot give one up.

Orders and clicks are kept by id, not by person, so they are found by ``SCAN``: each
erasure walks every key of the Redis once, for both. Measured on a store of 3.6 million
keys: 1.6 us per key (5.8 s), Redis busy 1.6 ms per ``SCAN`` call of ``SCAN_COUNT``
keys, in which the workers' transactions wait. Erasures are rare; an index by person
would cost every click and conversion one more write.

Everything is written in one ``MULTI``, under ``WATCH`` of everything read: the
person's keys (present or not), the orders it rewrites, the erased keys. A worker
transaction touching the person meanwhile fails either this one (then the reads are
done again) or its own, which watches the list of erasures this one appends to (the
worker then finds the person erased, :mod:`tracker.stream.sink`).

Then an audit record (:mod:`tracker.export.audit`) is written: action, kind, the
person's hash, time, counts, ``already_erased``; no id. If Kafka does not take it the
answer is 503: the erasure stands, and a retry (answered ``already_erased``, which
changes nothing) writes the record. A person nothing is held about answers 404, and is
not suppressed.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from tracker.asgi import HTTPError, Request, Response
from tracker.export.audit import AuditLog
from tracker.export.people import parse_person
from tracker.kafka import KafkaUnavailable
from tracker.redis_clients import Reader, replicated
from tracker.settings import Settings
from tracker.store import Keys, click_prefixes, path_prefix, tag_of_its_own
from tracker.stream.state import (
    Click,
    Order,
    dump_devices,
    dump_order,
    load_click,
    load_devices,
    load_link,
    load_order,
)
from tracker.suppression import KINDS, erased_hash
from tracker.types import EpochMs

log = structlog.get_logger(__name__)

REMOVED: Final = (
    "devices",
    "links",
    "paths",
    "customers",
    "recent",
    "orders_anonymised",
    "clicks",
)
"""What an answer counts. ``devices``: device lists deleted, or edited to drop an erased
device; ``orders_anonymised``: orders kept without who placed them; the rest: keys
deleted."""
MAX_BODY_BYTES: Final = 4096
SPREAD_MARK_S: Final = 7 * 86_400
"""How long a click shard keeps an erasure's mark: longer than any worker holds a
batch's clicks between its transaction and their shards."""
SCAN_COUNT: Final = 1000
"""Keys ``SCAN`` walks per call. 10,000 walked the 3.6 million keys in 4.2 s instead of
5.8, but held Redis 11 ms a call, a stall in every worker's transaction meanwhile."""
MGET_CHUNK: Final = 1000
ATTEMPTS: Final = 20
"""Transactions tried before answering 503: each fails only if the person's state
changed meanwhile, which a burst of their events can do a few times."""
_BAD_BODY: Final = 'the body must be a JSON object: {"user_id": "..."} or {"anonymous_id": "..."}'
_GLOB: Final = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def parse_erasure(body: bytes) -> tuple[str, str]:
    """``(kind, id)`` from a request body naming exactly one of :data:`KINDS`; HTTP 400 else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HTTPError(400, _BAD_BODY) from None
    if not isinstance(data, dict):
        raise HTTPError(400, _BAD_BODY)
    for name, value in data.items():
        if name not in KINDS:
            raise HTTPError(400, f"unknown field {name[:64]!r}: give user_id or anonymous_id")
        if not isinstance(value, str):
            raise HTTPError(400, f"{name} must be a string")
    return parse_person(data)


def anonymised(order: Order) -> Order:
    """``order`` without who placed it; its figures, for refunds to reverse, kept."""
    return dataclasses.replace(order, device=None, user=None, click_id=None, customer=None)


@dataclass(frozen=True, slots=True)
class Erased:
    """What one erasure did."""

    removed: dict[str, int]
    """Counts of :data:`REMOVED`."""
    suppressed: list[str]
    """The kind of each id newly suppressed, the asked one first; no id."""
    already_erased: bool = False


class ErasureApi:
    """Erases a person from Redis, then writes the audit record."""

    def __init__(self, redis: Redis, reader: Reader, settings: Settings, audit: AuditLog) -> None:
        """``reader`` reaches every primary (the click shards'), ``redis`` the store's."""
        self._redis = redis
        self._reader = reader
        self._keys = Keys(settings.key_prefix)
        self._audit = audit

    async def erasure(self, request: Request) -> Response:
        kind, person = parse_erasure(await request.body(MAX_BODY_BYTES))
        hashed = erased_hash(kind, person)
        now = time.time_ns() // 1_000_000
        try:
            erased = await self.erase(kind, person, now)
        except RedisError as exc:
            raise HTTPError(503, f"the store (Redis) did not answer: {exc}") from exc
        if erased is None:
            raise HTTPError(404, f"nothing is held about {kind} {person[:64]!r}")
        record = {
            "action": "erasure",
            "kind": kind,
            "hash": hashed,
            "at": now,
            "removed": erased.removed,
            "already_erased": erased.already_erased,
        }
        try:
            await self._audit.write(hashed, record)
        except KafkaUnavailable as exc:
            log.error("erasure done, audit record not written", error=str(exc), **record)
            raise HTTPError(
                503,
                "the erasure was done, but its audit record was not written (Kafka did not "
                "take it): retry the request, which changes nothing more and writes the record",
            ) from exc
        log.info("person erased", **record)
        return Response.json(
            {
                kind: person,
                "removed": erased.removed,
                "suppressed": erased.suppressed,
                "already_erased": erased.already_erased,
            }
        )

    async def erase(self, kind: str, person: str, now: EpochMs) -> Erased | None:
        """Erase ``person``; None when nothing is held about them and they are not erased.

        Raises :class:`HTTPError` 503 when the person's state kept changing through
        :data:`ATTEMPTS` transactions, and redis errors as they come.
        """
        swept = _Swept()
        async with replicated(self._redis) as redis:
            for _ in range(ATTEMPTS):
                async with redis.pipeline(transaction=True) as pipe:
                    try:
                        return await self._attempt(pipe, kind, person, now, swept)
                    except WatchError:
                        continue
        raise HTTPError(503, "the person's data kept changing while it was erased: retry")

    async def _attempt(
        self, pipe: Any, kind: str, person: str, now: EpochMs, swept: _Swept
    ) -> Erased | None:
        keys = self._keys
        asked = keys.erased(erased_hash(kind, person))
        users = [person] if kind == "user_id" else []
        await pipe.watch(asked, *map(keys.devices, users))
        already, *listed = await pipe.mget(asked, *map(keys.devices, users))
        if already:
            return Erased(dict.fromkeys(REMOVED, 0), [], already_erased=True)
        # A user's devices are those listed for them; an anonymous id is a device itself.
        devices = (load_devices(listed[0]) if listed[0] else []) if users else [person]
        ids = [("user_id", user) for user in users] + [("anonymous_id", d) for d in devices]
        removed: Counter[str] = Counter()
        # Before the transaction: a worker that credits one of these clicks meanwhile
        # credits it before the erasure, as one that read it earlier would.
        await self._erase_spread([who for who in ids if who not in swept.ids], swept)
        removed["clicks"] = swept.clicks
        deletes: list[str] = []
        puts: dict[str, bytes] = {}

        # The person's own keys, present or not: watched, a worker writing one fails us.
        holders = users + devices
        own = {
            "devices": list(map(keys.devices, users)),
            "links": list(map(keys.link, devices)),
            "paths": list(map(keys.path, holders)),
            "customers": list(map(keys.customer, holders)),
            "recent": list(map(keys.recent, holders)),
        }
        names = [name for group in own.values() for name in group]
        flags = [keys.erased(erased_hash(*who)) for who in ids]
        values = await _read(pipe, [*names, *flags])
        present = dict(zip(names, values[: len(names)], strict=True))
        for what, group in own.items():
            found = [name for name in group if present[name] is not None]
            removed[what] += len(found)
            deletes += found
        # A path kept both in the store's slot and spread counts once.
        removed["paths"] += len(swept.paths - {h for h in holders if present[keys.path(h)]})
        fresh = [who for who, flag in zip(ids, values[len(names) :], strict=True) if not flag]

        # Other users whose devices lists name an erased device.
        others = {
            segment.user
            for device in devices
            if (raw := present[keys.link(device)]) is not None
            for segment in load_link(raw)
            if segment.user and segment.user not in users
        }
        lists = [keys.devices(user) for user in sorted(others)]
        for name, raw in zip(lists, await _read(pipe, lists), strict=True):
            if raw is None:
                continue
            listed_devices = load_devices(raw)
            kept = [d for d in listed_devices if d not in devices]
            if kept != listed_devices:
                removed["devices"] += 1
                if kept:
                    puts[name] = dump_devices(kept)
                else:
                    deletes.append(name)

        # Clicks and orders are kept by id: found by their values naming an erased id.
        needles = [orjson.dumps(identifier) for _, identifier in ids]
        clicks, candidates = [], []
        async for name, raw in _scan(pipe, _orders_and_clicks(keys), needles):
            if name.startswith(keys.order("")):
                candidates.append(name)
            elif name.startswith(keys.click("")) and _placed(load_click(raw), devices, users):
                clicks.append(name)
        removed["clicks"] += len(clicks)
        deletes += clicks
        # Read again, watched: a refund applied since the scan must not be overwritten.
        for name, raw in zip(candidates, await _read(pipe, candidates), strict=True):
            order = load_order(raw) if raw is not None else None
            if order is not None and _placed(order, devices, users):
                puts[name] = dump_order(anonymised(order))
                removed["orders_anonymised"] += 1

        if not (deletes or puts or removed["clicks"]):
            return None
        pipe.multi()
        if deletes:
            pipe.unlink(*deletes)
        for name, value in puts.items():
            pipe.set(name, value, keepttl=True)
        # Never empty (the asked id is not erased yet): the workers watch the count, so
        # bumping it fails any batch in flight that read the person as not erased.
        hashes = [erased_hash(*who) for who in fresh]
        for hashed in hashes:
            pipe.set(keys.erased(hashed), now)
        pipe.rpush(keys.erasures, *hashes)
        pipe.incrby(keys.erasure_count, len(hashes))
        await pipe.execute()
        return Erased({what: removed[what] for what in REMOVED}, [kind for kind, _ in fresh])

    async def _erase_spread(self, ids: list[tuple[str, str]], swept: _Swept) -> None:
        """Mark every click shard against the clicks and paths of ``ids``, then delete
        those the shards hold, noting them in ``swept``. Nothing off a Redis Cluster,
        where none is spread, or for no id: each walk reads every key of every primary."""
        shards = click_prefixes(self._keys.prefix)[1:]
        if not (shards and ids):
            return
        devices = [identifier for kind, identifier in ids if kind == "anonymous_id"]
        users = [identifier for kind, identifier in ids if kind == "user_id"]
        reader, hashes = self._reader, [erased_hash(*who) for who in ids]
        async with reader.pipeline(transaction=False) as marks:  # one round trip a primary
            for shard in shards:
                for hashed in hashes:
                    marks.set(Keys(shard).erased(hashed), 1, ex=SPREAD_MARK_S)
            await marks.execute()
        needles = [orjson.dumps(identifier) for _, identifier in ids]
        match = tag_of_its_own(self._keys.prefix.translate(_GLOB), "c[0-9]*")
        clicks = [
            name
            async for name, raw in _scan(
                reader, f"{match}:click:*", needles, getattr(reader, "mget_nonatomic", None)
            )
            if _placed(load_click(raw), devices, users)
        ]
        if clicks:
            await reader.unlink(*clicks)
        names = [name for _, name in ids]
        async with reader.pipeline(transaction=False) as paths:  # one UNLINK each: which were
            for name in names:
                # Not .unlink(): a cluster pipeline splits that one by slot, unqueued.
                paths.execute_command(
                    "UNLINK", Keys(path_prefix(self._keys.prefix, name)).path(name)
                )
            found = [name for name, gone in zip(names, await paths.execute(), strict=True) if gone]
        swept.ids.update(ids)
        swept.clicks += len(clicks)
        swept.paths.update(found)


@dataclass(slots=True)
class _Swept:
    """The ids whose spread clicks and paths one erasure deleted, over its attempts, and
    what it deleted: an attempt that failed on a watched key walks the shards again only
    for new ids."""

    ids: set[tuple[str, str]] = field(default_factory=set)
    clicks: int = 0
    paths: set[str] = field(default_factory=set)
    """The holders whose spread paths it deleted."""


def _placed(made: Click | Order, devices: Collection[str], users: Collection[str]) -> bool:
    """Whether a click or an order was made by one of ``devices`` or ``users``, or an
    order is theirs as a customer (a postback naming only the click they made)."""
    whose = {made.device, made.user, made.customer if isinstance(made, Order) else None}
    return any(who in devices or who in users for who in whose - {None})


async def _read(pipe: Any, names: Sequence[str]) -> list[Any]:
    """The values of ``names`` (None for a missing key), watched from now on."""
    if not names:
        return []
    await pipe.watch(*names)
    return list(await pipe.mget(*names))


def _orders_and_clicks(keys: Keys) -> str:
    """A glob of the order and click keys, so one walk of the keyspace finds both.

    Its character classes take ``order`` and ``click``, and mixes of their letters
    (``crdek``), which name no key kind; the caller tells the names apart by prefix.
    """
    order, click = (name[len(keys.prefix) + 1 : -1] for name in (keys.order(""), keys.click("")))
    letters = "".join(f"[{a}{b}]" for a, b in zip(order, click, strict=True))
    return f"{keys.prefix.translate(_GLOB)}:{letters}:*"


async def _scan(
    pipe: Any, match: str, needles: Collection[bytes], mget: Any = None
) -> AsyncIterator[tuple[str, bytes]]:
    """(name, value) of the keys matching the glob ``match`` whose value holds a needle.

    A needle is an id as JSON writes it (quoted), so the values that cannot name the
    person are not even parsed; the caller checks the others field by field. ``mget``
    reads a chunk of names (``pipe.mget``, unless told: keys of many slots need
    ``RedisCluster.mget_nonatomic``).
    """
    chunk: list[bytes] = []
    mget = mget or pipe.mget

    async def matching() -> list[tuple[str, bytes]]:
        values = await mget(chunk)
        found = [
            (name.decode(), raw)
            for name, raw in zip(chunk, values, strict=True)
            if raw is not None and any(needle in raw for needle in needles)
        ]
        chunk.clear()
        return found

    async for name in pipe.scan_iter(match=match, count=SCAN_COUNT):
        chunk.append(name)
        if len(chunk) == MGET_CHUNK:
            for item in await matching():
                yield item
    if chunk:
        for item in await matching():
            yield item
