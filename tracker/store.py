"""The Redis key layout of the KPI store, and its reads.

Layout (``P`` is the configured prefix, on a Redis Cluster as a hash tag, ``{P}``, so
that every key is in one slot; ``SEP`` is ``\\x1f``):

- ``P:b:<window>:<bucket start ms>:<dimension>``: hash, one dimension (``total``,
  ``channel``, ``campaign``, ``goal``, ``campaigns``) of one bucket of a window (``1m``, ``1h``,
  ``1d``; ``all:0`` holds all-time totals); fields ``<dimension>SEP<value>SEP<metric>``
  with integer values (money in micro-units of the base currency). Expires after the
  window's retention.
- ``P:src:<topic>:<partition>``: JSON ``{"offset", "watermark", "newest"}``: the
  last Kafka offset applied to the buckets, written in the same transaction as
  them, which is what makes replays apply nothing twice.
- ``P:dedup:<generation>``: hash ``{ids, buckets}`` of the event ids counted in one day
  (:data:`GENERATION_S`), and ``P:dedup:<generation>:<bucket>``: hashes whose fields are
  their 128-bit digests. An id counted is recognised for 48 hours at least
  (:func:`read_with_seen` says why this shape, and what it costs). Not under a
  partition's hash tag: the partition follows the device, and a retried event can
  come with another device (a cookie minted anew, the next day's cookieless id) or
  to a topic with more partitions.
- ``P:spend:<campaign>SEP<period>``: ``<report ts>:<micros>``, the standing figure.
- ``P:u:<window>:<bucket start>:<dimension>SEP<value>``: HyperLogLog of the people
  seen (unique users; standard error 0.81%), expiring with its bucket.
- ``P:order:<order id>``: JSON of a counted conversion and its credits, kept for the
  attribution lookback so re-fires are dropped and refunds reversed.
- ``P:click:<click id>``: JSON ``[ts, campaign, channel, person]``, for the lookback.
- ``P:path:<person>``: JSON list of the person's recent touches, for the lookback.
- ``P:cust:<person>``: JSON ``[campaign, channel]`` that acquired the customer.
- ``P:link:<device>``: JSON ``[[user or null, since ms], ...]``, the device's link
  segments (who it belonged to from when), oldest first; kept 400 days.
- ``P:devices:<user>``: JSON list of the devices (anonymous ids) linked to the user.
- ``P:recent:<person>``: JSON ``[[order id, ts], ...]``, a device's or user's last
  orders, so a link that arrives after them can re-credit them; for the lookback.
- ``P:salt:<YYYY-MM-DD>``: the key of that UTC day's cookieless visitor ids (32
  random bytes), expiring when the day ends (tracker/consent.py).
- ``P:goals``, ``P:targets``: JSON of the goal rules and the KPI targets in force,
  with their version; ``P:goals:versions`` and ``P:targets:versions`` hold every
  version ever saved (tracker/rulebook.py).
- ``P:rank:spend``: sorted set of campaigns by all-time spend, and in every bucket
  the row ``campaigns``/``all`` summing all campaign rows: together they let
  ``/metrics`` read the top campaigns and fold the rest into ``other`` without
  reading every campaign.
- ``P:erased:<hash>``: epoch ms when the person whose id hashes to ``<hash>``
  (:func:`tracker.suppression.erased_hash`) was erased; the worker drops their events.
- ``P:erasures``: list of those hashes in the order they were erased, append-only, so
  a collector or worker reads only what is new since its last read; ``P:erasures:count``
  its length, changed in the same transaction, which a worker reads (and watches) with
  its offsets. None of them ever expires.
- ``P:health``: hash of pipeline counters (events, duplicates, late, bots, suppressed).
- ``P:sources``: set of the ``src`` keys, to find every partition's progress.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tracker.redis_clients import async_client
from tracker.settings import Settings
from tracker.types import EpochMs

T = TypeVar("T")

SEP = "\x1f"
"""Separates parts of a Redis name; validation keeps control characters out of dimensions."""

Buckets = dict[EpochMs, dict[tuple[str, str], dict[str, int]]]
"""bucket start -> (dimension, value) -> metric -> amount."""

SEEN_TTL_S = 48 * 3600
"""How long a counted event id is recognised as a duplicate, at least."""
CAMPAIGN_SUM = ("campaigns", "all")
"""The (dimension, value) of the row that sums every campaign row of a bucket."""
DIMENSIONS = ("total", "channel", "campaign", "goal", CAMPAIGN_SUM[0])
"""Every dimension a bucket is stored under, each in a hash of its own."""


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def bucket(self, window: str, start: EpochMs, dimension: str) -> str:
        return f"{self.prefix}:b:{window}:{start}:{dimension}"

    def source(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:src:{topic}:{partition}"

    def seen(self, generation: int) -> str:
        # Not under "seen:": there, the layout before this one kept a string per event
        # id, and an id such as "20790" would have named a generation.
        return f"{self.prefix}:dedup:{generation}"

    def legacy_seen(self, event_id: str) -> str:
        """A key per counted id, as the layout before generations kept them for 48 hours:
        still read, so an upgrade forgets no id (:data:`_READ`)."""
        return f"{self.prefix}:seen:{event_id}"

    def seen_bucket(self, generation: int, bucket: int) -> str:
        """As the scripts name a bucket: after its generation, ``:``, its number."""
        return f"{self.seen(generation)}:{bucket}"

    def spend(self, campaign: str, period: str) -> str:
        return f"{self.prefix}:spend:{campaign}{SEP}{period}"

    def uniques(self, window: str, start: EpochMs, dimension: str, value: str) -> str:
        return f"{self.prefix}:u:{window}:{start}:{dimension}{SEP}{value}"

    def order(self, order_id: str) -> str:
        return f"{self.prefix}:order:{order_id}"

    def click(self, click_id: str) -> str:
        return f"{self.prefix}:click:{click_id}"

    def path(self, person: str) -> str:
        return f"{self.prefix}:path:{person}"

    def customer(self, person: str) -> str:
        return f"{self.prefix}:cust:{person}"

    def link(self, device: str) -> str:
        return f"{self.prefix}:link:{device}"

    def devices(self, user: str) -> str:
        return f"{self.prefix}:devices:{user}"

    def recent(self, person: str) -> str:
        return f"{self.prefix}:recent:{person}"

    def salt(self, day: str) -> str:
        return f"{self.prefix}:salt:{day}"

    def erased(self, hashed: str) -> str:
        return f"{self.prefix}:erased:{hashed}"

    def field(self, dimension: str, value: str, metric: str) -> str:
        """The hash field of one metric of one dimension value in a bucket."""
        return f"{dimension}{SEP}{value}{SEP}{metric}"

    @property
    def rank(self) -> str:
        return f"{self.prefix}:rank:spend"

    @property
    def erasures(self) -> str:
        return f"{self.prefix}:erasures"

    @property
    def erasure_count(self) -> str:
        return f"{self.prefix}:erasures:count"

    @property
    def goals(self) -> str:
        """The goal rules (:mod:`tracker.rulebook`); ``goals:versions`` keeps every version."""
        return f"{self.prefix}:goals"

    @property
    def targets(self) -> str:
        """The KPI targets, versioned as the goals are."""
        return f"{self.prefix}:targets"

    @property
    def health(self) -> str:
        return f"{self.prefix}:health"

    @property
    def sources(self) -> str:
        return f"{self.prefix}:sources"


def parse_bucket(raw: Mapping[bytes | str, bytes | str]) -> dict[tuple[str, str], dict[str, int]]:
    """A bucket hash as (dimension, value) -> metric -> amount."""
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for name, amount in raw.items():
        text = name.decode() if isinstance(name, bytes) else name
        dimension, value, metric = text.split(SEP)
        rows[dimension, value][metric] = int(amount)
    return rows


async def read_buckets(
    redis: Redis,
    window: str,
    starts: list[EpochMs],
    keys: Keys,
    dimensions: Sequence[str] = DIMENSIONS,
) -> Buckets:
    """``dimensions`` of every bucket of ``window`` at ``starts``, in one round trip.

    Each dimension is a hash of its own, so asking for channels never reads the
    (possibly ten thousand) campaigns.
    """
    wanted = [(start, dimension) for start in starts for dimension in dimensions]
    async with redis.pipeline(transaction=False) as pipe:
        for start, dimension in wanted:
            pipe.hgetall(keys.bucket(window, start, dimension))
        raw = await pipe.execute()
    found: Buckets = {}
    for (start, _), item in zip(wanted, raw, strict=True):
        if item:
            found.setdefault(start, {}).update(parse_bucket(item))
    return found


async def read_uniques(
    redis: Redis, audiences: list[tuple[str, EpochMs, str, str]], keys: Keys
) -> list[int]:
    """Approximate unique people of each (window, bucket, dimension, value), one round trip."""
    if not audiences:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for audience in audiences:
            pipe.pfcount(keys.uniques(*audience))
        return [int(n) for n in await pipe.execute()]


class StoreUnavailable(RuntimeError):
    """Redis did not answer; the message names its URL and why."""


def read_once(settings: Settings, read: Callable[[Redis], Awaitable[T]]) -> T:
    """``read`` on a client of its own, closed after: one command's reads, from sync code.

    Raises :class:`StoreUnavailable` for any Redis error; ``read``'s own errors pass.
    """

    async def main() -> T:
        client = async_client(settings)
        try:
            return await read(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except RedisError as exc:
        raise StoreUnavailable(f"Redis at {settings.redis_url} did not answer: {exc}") from exc


GENERATION_S = 24 * 3600
"""Event ids counted within one such span (UTC days) share a seen generation."""
SEEN_LOAD = 96
"""Digests per seen bucket on average: a generation adds a bucket every this many ids."""
_CLOCK_SLACK_S = 3600
"""Generations outlive their last use by this much: Redis expires them by its own clock,
the workers pick them by theirs."""


def seen_digest(event_id: str) -> bytes:
    """What the seen buckets hold for ``event_id``: its 128-bit BLAKE2b.

    Two of the n ids of a generation share a digest with probability about
    n^2 / 2^129: below 10^-20 for the 10^9 ids of a busy day. A real event is so taken
    for a duplicate far less often than it is lost to a hardware fault, which is what
    makes the layout exact, as a filter (of a few bits an id) is not.
    """
    return hashlib.blake2b(event_id.encode(), digest_size=16).digest()


def seen_generations(now_s: int) -> range:
    """The generations a lookup at ``now_s`` (epoch s) searches: every one that holds an
    id counted in the last ``SEEN_TTL_S``, and the next, which a worker whose clock
    runs ahead may be writing already."""
    return range((now_s - SEEN_TTL_S) // GENERATION_S, now_s // GENERATION_S + 2)


def seen_expiry(generation: int) -> int:
    """When a generation's keys expire (epoch s): once no lookup searches it."""
    return (generation + 1) * GENERATION_S + SEEN_TTL_S + _CLOCK_SLACK_S


# Linear hashing (Litwin, 1980): a generation of n buckets addresses a digest by its
# first 32 bits modulo the power of two `half` <= n, or modulo 2 * half below
# n - half, where the buckets have been split already. Growing by one bucket splits
# one, so every generation keeps about SEEN_LOAD digests a bucket, whatever the traffic.
_BUCKETS = (
    f"local LOAD = {SEEN_LOAD}\n"
    + """
local function level(n)
  local half = 1
  while half * 2 <= n do half = half * 2 end
  return half
end
local function home(d)
  local b1, b2, b3, b4 = string.byte(d, 1, 4)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end
local function bucket_of(h, n, half)
  local at = h % half
  if at < n - half then at = h % (2 * half) end
  return at
end
"""
)

_READ = (
    _BUCKETS
    + """
-- KEYS: read as MGET reads them. ARGV: how many generations, their names, the digests,
-- then each id's key of the layout before generations (Keys.legacy_seen), in order.
local found = {}
for i = 1, #KEYS, 1000 do  -- unpack() takes some thousands of values at most
  local part = redis.call('MGET', unpack(KEYS, i, math.min(i + 999, #KEYS)))
  for j = 1, #part do found[#found + 1] = part[j] end
end
local generations, first = {}, tonumber(ARGV[1]) + 2
for j = 2, first - 1 do
  local n = tonumber(redis.call('HGET', ARGV[j], 'buckets'))
  if n then generations[#generations + 1] = {ARGV[j] .. ':', n, level(n)} end
end
local counted, ids = {}, (#ARGV - first + 1) / 2
for i = first, first + ids - 1 do
  local d, hit = ARGV[i], 0
  local h = home(d)
  for _, g in ipairs(generations) do
    if redis.call('HEXISTS', g[1] .. bucket_of(h, g[2], g[3]), d) == 1 then hit = 1; break end
  end
  if hit == 0 then hit = redis.call('EXISTS', ARGV[i + ids]) end
  counted[i - first + 1] = hit
end
return {found, counted}
"""
)


async def read_with_seen(
    client: Any, keys: Keys, names: Sequence[str], event_ids: Sequence[str], now_s: int
) -> tuple[list[Any], list[str]]:
    """The values of ``names`` (an ``MGET``), and those of ``event_ids`` counted in the
    ``SEEN_TTL_S`` before ``now_s`` (epoch s), in one round trip. ``client`` may be a
    pipeline in ``WATCH``, whose reads run at once.

    A counted id is kept as its 16-byte digest (:func:`seen_digest`), a field of a small
    hash, ``P:dedup:<generation>:<bucket>``. The ids counted in one ``GENERATION_S`` form
    a generation, ``P:dedup:<generation>`` (``{ids, buckets}``), whose buckets grow by
    linear hashing to about ``SEEN_LOAD`` digests each, whatever the traffic, and which
    expires whole once no lookup searches it (:func:`seen_expiry`). A lookup searches
    the generations of the last 48 hours and the next one, so an id is kept 48 to 73
    hours: at a steady rate, Redis holds 1 to 1.5 times the ids of 48 hours.

    Measured on Redis 7.0 (2-core machine, ids of three days):

    - 21.9 MiB per million ids by ``MEMORY USAGE`` (``make bench`` prints it; a test
      holds it under 24), where a key per id with a 48 h TTL took 99.2 in the same run;
      counting the ~64 bytes a key that ``MEMORY USAGE`` leaves out, 22.4 against 160.
      A bucket is a listpack, 20 bytes a digest, while it holds fewer fields than
      ``hash-max-listpack-entries`` (512 by default; the fullest bucket of 400,000 ids
      held 2.3 times ``SEEN_LOAD``, 221); a hash table would take 4 times as much.
    - Redis time for 500 new ids against three days of 100,000: 3.8 ms to look them up
      (three ``HEXISTS`` each, one per generation) and 2.0 ms to write them, where a key
      per id took 0.3 ms (one ``MGET``) and 0.9 ms. One worker of ``make bench`` went
      from 28,200 to 21,300 events/s, in back-to-back runs.
    - Digests packed into strings took 18 MiB per million, but a lookup then copies a
      whole bucket into Lua: 6.3 ms for the same 500 ids.
    """
    # Newest first: a duplicate is most often a retry of minutes ago, found at once.
    generations = [keys.seen(g) for g in reversed(seen_generations(now_s))]
    found, counted = await client.eval(
        _READ,
        len(names),
        *names,
        len(generations),
        *generations,
        *map(seen_digest, event_ids),
        # Until 48 hours after an upgrade from a key per id, those keys hold what was
        # counted before it. Costs one EXISTS a new id; goes with that layout's last key.
        *map(keys.legacy_seen, event_ids),
    )
    return found, [event_id for event_id, hit in zip(event_ids, counted, strict=True) if hit]


_APPLY = (
    _BUCKETS
    + """
local a, i = ARGV, 1
local function take() local v = a[i]; i = i + 1; return v end
local function add(key, fields, expire_at)
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIREAT', key, expire_at)
end
local function split(base, n, expire_at)
  local from, half = n - level(n), level(n + 1)
  local moving, fields = {}, {}
  for _, d in ipairs(redis.call('HKEYS', base .. from)) do
    if bucket_of(home(d), n + 1, half) == n then
      moving[#moving + 1] = d
      fields[#fields + 1] = d
      fields[#fields + 1] = ''
    end
  end
  if #moving > 0 then
    redis.call('HDEL', base .. from, unpack(moving))
    add(base .. n, fields, expire_at)
  end
end
for _ = 1, tonumber(take()) do
  local key, expire_at, n = take(), tonumber(take()), tonumber(take())
  for _ = 1, n do redis.call('HINCRBY', key, take(), take()) end
  if expire_at > 0 then redis.call('EXPIREAT', key, expire_at) end
end
for _ = 1, tonumber(take()) do
  local key, value, ttl = take(), take(), tonumber(take())
  if ttl > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
end
for _ = 1, tonumber(take()) do
  local targets = {}
  for j = 1, tonumber(take()) do targets[j] = {take(), tonumber(take())} end
  local n, chunk = tonumber(take()), {}
  for m = 1, n do
    chunk[#chunk + 1] = take()
    if #chunk == 1000 or m == n then
      for _, t in ipairs(targets) do redis.call('PFADD', t[1], unpack(chunk)) end
      chunk = {}
    end
  end
  for _, t in ipairs(targets) do
    if t[2] > 0 then redis.call('EXPIREAT', t[1], t[2]) end
  end
end
for _ = 1, tonumber(take()) do
  local name, expire_at, count = take(), tonumber(take()), tonumber(take())
  local meta = redis.call('HMGET', name, 'ids', 'buckets')
  local ids, n = (tonumber(meta[1]) or 0) + count, tonumber(meta[2]) or 1
  local base = name .. ':'
  -- Grown before the digests go in, so that none lands in an overfull bucket: past
  -- hash-max-listpack-entries a hash turns into a hash table for good, at 4x the memory.
  while ids > LOAD * n do split(base, n, expire_at); n = n + 1 end
  redis.call('HSET', name, 'ids', ids, 'buckets', n)
  redis.call('EXPIREAT', name, expire_at)
  local half, names, added = level(n), {}, {}
  for _ = 1, count do
    local d = take()
    local key = base .. bucket_of(home(d), n, half)
    if not added[key] then names[#names + 1] = key; added[key] = {} end
    local fields = added[key]
    fields[#fields + 1] = d
    fields[#fields + 1] = ''
  end
  for _, key in ipairs(names) do add(key, added[key], expire_at) end
end
local key = take()
for _ = 1, tonumber(take()) do redis.call('ZINCRBY', key, take(), take()) end
key = take()
for _ = 1, tonumber(take()) do redis.call('SADD', key, take()) end
"""
)


class Writes:
    """Every write of one batch, sent as a single script call inside its transaction.

    A worker writes hundreds of thousands of small values a second (sums, seen ids,
    state); as separate commands, redis-py's per-command packing and reply parsing
    cost more than Redis itself. Flattened into one ``EVAL``, they cost one round
    trip and one reply, and stay inside the ``MULTI`` that makes them atomic with
    the source offsets. (Like the transaction, this needs every key on one Redis, or
    on a Redis Cluster in one slot: :attr:`Settings.key_prefix`.)
    """

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._sums: dict[str, dict[str, int]] = {}
        self._expiry: dict[str, int] = {}
        self._strings: list[tuple[str, bytes | str, int]] = []
        self._people: dict[str, set[str]] = {}
        self._ranked: dict[str, int] = {}
        self._sources: list[str] = []
        self._seen: dict[int, list[bytes]] = {}

    def add(self, key: str, field: str, amount: int, expire_at: int = 0) -> None:
        fields = self._sums.setdefault(key, {})
        fields[field] = fields.get(field, 0) + amount
        if expire_at:
            self._expiry[key] = expire_at

    def put(self, key: str, value: bytes | str, ttl_s: int = 0) -> None:
        self._strings.append((key, value, ttl_s))

    def count_people(self, key: str, people: set[str], expire_at: int = 0) -> None:
        self._people.setdefault(key, set()).update(people)
        if expire_at:
            self._expiry[key] = expire_at

    def seen(self, event_ids: Iterable[str], now_s: int) -> None:
        """Remember event ids counted at ``now_s`` (epoch s), for ``SEEN_TTL_S`` at least."""
        self._seen.setdefault(now_s // GENERATION_S, []).extend(map(seen_digest, event_ids))

    def rank(self, campaign: str, spend: int) -> None:
        self._ranked[campaign] = self._ranked.get(campaign, 0) + spend

    def source(self, key: str) -> None:
        self._sources.append(key)

    def queue(self, pipe: Any) -> None:
        """Queue the script call on ``pipe`` (a pipeline in ``MULTI`` mode)."""
        args: list[bytes | str | int] = [len(self._sums)]
        for key, fields in self._sums.items():
            args += [key, self._expiry.get(key, 0), len(fields)]
            for field, amount in fields.items():
                args += [field, amount]
        args.append(len(self._strings))
        for key, value, ttl in self._strings:
            args += [key, value, ttl]
        # A person lands in a dozen HyperLogLogs (windows x dimensions); grouped by
        # the keys they share, each person is sent once, not once per key.
        keys_of: dict[str, list[str]] = {}
        for key, people in self._people.items():
            for person in people:
                keys_of.setdefault(person, []).append(key)
        groups: dict[tuple[str, ...], list[str]] = {}
        for person, targets in keys_of.items():
            groups.setdefault(tuple(targets), []).append(person)
        args.append(len(groups))
        for hlls, members in groups.items():
            args.append(len(hlls))
            for key in hlls:
                args += [key, self._expiry.get(key, 0)]
            args += [len(members), *members]
        args.append(len(self._seen))
        for generation, digests in self._seen.items():
            args += [self._keys.seen(generation), seen_expiry(generation), len(digests)]
            args += digests
        args += [self._keys.rank, len(self._ranked)]
        for campaign, spend in self._ranked.items():
            args += [spend, campaign]
        args += [self._keys.sources, len(self._sources), *self._sources]
        pipe.eval(_APPLY, 0, *args)
