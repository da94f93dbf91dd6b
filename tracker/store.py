"""The Redis key layout of the KPI store, and its reads.

Layout (``P`` is the configured prefix, on a Redis Cluster as a hash tag, ``{P}``, so
that the keys a transaction needs share one slot; ``SEP`` is ``\\x1f``; ``T`` is where a
partition's sums are: ``P`` itself, or spread over a Redis Cluster
(``TRACKER_REDIS_SPREAD_SUMS``) the partition's own hash tag, ``{P:p3}``, :func:`tally_prefix`):

- ``T:b:<window>:<bucket start ms>:<dimension>``: hash, one dimension (``total``,
  ``channel``, ``campaign``, ``goal``, ``campaigns``) of one bucket of a window (``1m``, ``1h``,
  ``1d``; ``all:0`` holds all-time totals); fields ``<dimension>SEP<value>SEP<metric>``
  with integer values (money in micro-units of the base currency). Expires after the
  window's retention. A reader sums a bucket over ``P`` and every ``T`` of ``P:tallies``.
- ``P:src:<topic>:<partition>``: JSON ``{"offset", "watermark", "newest"}``: the
  last Kafka offset applied to the store, written in the same transaction as the
  state and the sums, which is what makes replays apply nothing twice.
- ``P:outbox:<topic>:<partition>`` and ``T:src:<topic>:<partition>``, with the sums or
  the clicks spread only: the sums and clicks of the partition's last batch, written
  with its offset and state, and the last offset whose sums ``T`` holds
  (:mod:`tracker.stream.sink` says why).
- ``P:tallies``: set of the ``T`` that hold sums, with the sums spread.
- ``P:dedup:<generation>``, ``P:dedup:<generation>:<bucket>`` and ``P:seen:<id>``: the
  event ids counted before they were claimed in shards; read until they expire, so an
  upgrade forgets no id (:func:`tracker.seen.read_with_seen`), as ``P:dedup:sharded``
  (when the shards began) tells.
- ``S:dedup:<generation>``, ``S:dedup:<generation>:<bucket>`` and
  ``S:claims:<topic>:<partition>`` (``S`` a shard's prefix, :func:`tracker.seen.shard_prefix`,
  on a Redis Cluster a hash tag of its own): the digests of the event ids counted,
  spread over :data:`tracker.seen.SHARDS` shards by digest, and who claimed them lately
  (:mod:`tracker.seen` says how, and why not under a partition's hash tag).
- ``P:spend:<campaign>SEP<period>``: ``<report ts>:<micros>``, the standing figure.
- ``U:u:<window>:<bucket start>:<dimension>SEP<value>``: HyperLogLog of the people
  seen (unique users; standard error 0.81%), expiring with its bucket. ``U`` is ``P``,
  or with the sums spread one of 16 hash tags by dimension and value
  (:func:`people_prefix`), given through the outbox; stores spread before that have a
  copy under each ``T`` too, which readers merge.
- ``P:order:<order id>``: JSON of a counted conversion and its credits, kept for the
  attribution lookback so re-fires are dropped and refunds reversed.
- ``P:click:<click id>``: JSON ``[ts, campaign, channel, person]``, for the lookback;
  spread over a Redis Cluster (``TRACKER_REDIS_SPREAD_CLICKS``) ``C:click:<click id>``
  instead, ``C`` one of 16 hash tags by the click's id (:func:`click_prefix`), given
  through the outbox, and ``C:erased:<hash>``, an erasure's mark that no click of the
  person is written there again (a week).
- ``P:path:<person>``: JSON list of the person's recent touches, for the lookback;
  spread over a Redis Cluster (``TRACKER_REDIS_SPREAD_PATHS``) ``C:path:<person>``
  instead, under the click shard the person's id hashes to (:func:`path_prefix`), given
  through the outbox and joined with what is there (:data:`TOUCHES`); readers join both
  once ``P:paths:spread`` says a worker spread one.
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
import re
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, TypeVar

import msgspec
from redis.exceptions import RedisError

from tracker.redis_clients import Reader
from tracker.settings import Settings
from tracker.types import EpochMs

_MSGPACK = msgspec.msgpack.Encoder()

T = TypeVar("T")
C = TypeVar("C", bound=Reader)

SEP = "\x1f"
"""Separates parts of a Redis name; validation keeps control characters out of dimensions."""

Buckets = dict[EpochMs, dict[tuple[str, str], dict[str, int]]]
"""bucket start -> (dimension, value) -> metric -> amount."""

_TAG = re.compile(r"\{([^}]+)\}")

CAMPAIGN_SUM = ("campaigns", "all")
"""The (dimension, value) of the row that sums every campaign row of a bucket."""
DIMENSIONS = ("total", "channel", "campaign", "goal", CAMPAIGN_SUM[0])
"""Every dimension a bucket is stored under, each in a hash of its own."""


def tag_of_its_own(prefix: str, name: str) -> str | None:
    """On a Redis Cluster, where ``prefix`` holds a hash tag (``{P}``), a prefix under a
    hash tag of its own, ``{P:<name>}``, which the cluster may give another primary;
    None off a cluster."""
    if not _TAG.search(prefix):
        return None
    return _TAG.sub(lambda tag: f"{{{tag[1]}:{name}}}", prefix, count=1)


CLICK_SHARDS = 16
"""Hash tags the clicks are spread over (``TRACKER_REDIS_SPREAD_CLICKS``), and the
unique-people HyperLogLogs with the sums spread: enough for 16 primaries, few enough
that a batch's clicks, or people, take at most 16 script calls."""


def _spread_prefix(prefix: str, kind: str, name: str) -> str:
    """On a Redis Cluster, the hash tag of its own, of :data:`CLICK_SHARDS` of ``kind``,
    that ``name`` hashes to; on one Redis the store's ``prefix``."""
    shard = zlib.crc32(name.encode()) % CLICK_SHARDS
    return tag_of_its_own(prefix, f"{kind}{shard}") or prefix


def _spread_prefixes(prefix: str, kind: str) -> list[str]:
    """Every prefix :func:`_spread_prefix` gives for ``kind``, the store's first."""
    spread = [tag_of_its_own(prefix, f"{kind}{shard}") for shard in range(CLICK_SHARDS)]
    return [prefix, *(shard for shard in spread if shard)]


def click_prefix(prefix: str, click_id: str) -> str:
    """Where a click is kept when spread: on a Redis Cluster under one of
    :data:`CLICK_SHARDS` hash tags of its own, by its id, so the primaries share the
    clicks (of all state, the most: one per click, kept for the lookback); on one Redis
    under the store's ``prefix``."""
    return _spread_prefix(prefix, "c", click_id)


def path_prefix(prefix: str, holder: str) -> str:
    """Where a person's touch path is kept when spread (``TRACKER_REDIS_SPREAD_PATHS``):
    on a Redis Cluster under the click shard (:func:`click_prefix`) their id hashes to,
    where an erasure's marks keep out their clicks and paths alike; on one Redis under
    the store's ``prefix``. Of the state left in the store's slot, paths are the most:
    one per person or device with a touch, kept for the lookback."""
    return _spread_prefix(prefix, "c", holder)


def click_prefixes(prefix: str) -> list[str]:
    """Every prefix a click may be under (the store's first): where readers look."""
    return _spread_prefixes(prefix, "c")


def people_prefix(prefix: str, dimension: str, value: str) -> str:
    """Where the unique-people HyperLogLogs of a dimension's value are kept with the sums
    spread: on a Redis Cluster under one of :data:`CLICK_SHARDS` hash tags by dimension
    and value, every window's together; on one Redis under the store's ``prefix``.

    Not under a partition's tag, as the sums are: adding a person again changes nothing,
    so they need no partition's offset to count once, and one copy takes a batch's
    people, grouped by the keys they share, where a copy for each partition took each
    partition's (2.38 ``PFADD`` calls an event against 0.30, and 8 copies to merge)."""
    return _spread_prefix(prefix, "u", f"{dimension}{SEP}{value}")


Audience = tuple[str, EpochMs, str, str]
"""Of a unique-people count: window, bucket start, dimension and value."""
PeopleGroup = tuple[list[tuple[str, int]], list[str]]
"""HyperLogLogs, each with when it expires (epoch s, 0 never), and the people to add to
every one of them."""


def people_by_prefix(
    prefix: str, groups: Iterable[tuple[Sequence[tuple[Audience, int]], list[str]]]
) -> dict[str, list[PeopleGroup]]:
    """``groups`` of people and the audiences they are in, each with when it expires, as
    the :data:`PEOPLE` groups of each hash tag the audiences' HyperLogLogs are under
    (:func:`people_prefix`)."""
    found: dict[str, list[PeopleGroup]] = {}
    # An audience is in many groups: its tag and key are made once.
    placed: dict[tuple[Any, ...], tuple[str, str]] = {}
    for audiences, members in groups:
        split: dict[str, list[tuple[str, int]]] = {}
        for audience, expire_at in audiences:
            named = tuple(audience)
            if (place := placed.get(named)) is None:
                under = people_prefix(prefix, audience[2], audience[3])
                place = placed[named] = (under, Keys(under).uniques(*audience))
            split.setdefault(place[0], []).append((place[1], expire_at))
        for under, targets in split.items():
            found.setdefault(under, []).append((targets, members))
    return found


def people_prefixes(prefix: str) -> list[str]:
    """Every prefix :func:`people_prefix` may give, the store's first."""
    return _spread_prefixes(prefix, "u")


def tally_prefix(prefix: str, partition: int) -> str:
    """Where the sums of ``partition``'s events are when spread: on a Redis Cluster under
    the partition's own hash tag, so that the cluster's primaries share them; on one
    Redis (nothing to spread over) under the store's ``prefix``."""
    return tag_of_its_own(prefix, f"p{partition}") or prefix


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def bucket(self, window: str, start: EpochMs, dimension: str) -> str:
        return f"{self.prefix}:b:{window}:{start}:{dimension}"

    def source(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:src:{topic}:{partition}"

    def outbox(self, topic: str, partition: int) -> str:
        """The sums of a partition's last batch, until its tally holds them."""
        return f"{self.prefix}:outbox:{topic}:{partition}"

    @property
    def tallies(self) -> str:
        """The prefixes other than this one that hold sums (:func:`tally_prefix`)."""
        return f"{self.prefix}:tallies"

    @property
    def beat(self) -> str:
        """Written to learn, by ``WAIT``, that a replica holds everything before it."""
        return f"{self.prefix}:beat"

    def seen(self, generation: int) -> str:
        # Not under "seen:": there, the layout before this one kept a string per event
        # id, and an id such as "20790" would have named a generation.
        return f"{self.prefix}:dedup:{generation}"

    @property
    def sharded_since(self) -> str:
        """When the counted ids moved to shards (epoch s; 0: a store that began so)."""
        return f"{self.prefix}:dedup:sharded"

    @property
    def paths_spread(self) -> str:
        """Set once a worker spread a path (``TRACKER_REDIS_SPREAD_PATHS``): from then on
        every worker reads the spread paths too."""
        return f"{self.prefix}:paths:spread"

    def legacy_seen(self, event_id: str) -> str:
        """A key per counted id, as the layout before generations kept them for 48 hours:
        still read, so an upgrade forgets no id (:func:`tracker.seen.read_with_seen`)."""
        return f"{self.prefix}:seen:{event_id}"

    def claims(self, topic: str, partition: int) -> str:
        """A shard's recent claims of one partition's events (:mod:`tracker.seen`)."""
        return f"{self.prefix}:claims:{topic}:{partition}"

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


async def tallies(redis: Any, keys: Keys) -> list[Keys]:
    """The keys of every prefix that holds sums: the store's, and on a Redis Cluster each
    partition's (``redis`` a ``RedisCluster`` there, which reaches each)."""
    return tally_keys(keys, await redis.smembers(keys.tallies))


def tally_keys(keys: Keys, members: Iterable[bytes]) -> list[Keys]:
    """The store's keys and those of each prefix of ``P:tallies`` (its ``members``)."""
    found = sorted(name.decode() for name in members)
    return [keys, *(Keys(prefix) for prefix in found if prefix != keys.prefix)]


async def read_buckets(
    redis: Any,
    window: str,
    starts: list[EpochMs],
    keys: Keys,
    dimensions: Sequence[str] = DIMENSIONS,
) -> Buckets:
    """``dimensions`` of every bucket of ``window`` at ``starts``, summed over every prefix
    holding sums (:func:`tallies`), in two round trips.

    Each dimension is a hash of its own, so asking for channels never reads the
    (possibly ten thousand) campaigns.
    """
    wanted = [
        (tally, start, dimension)
        for tally in await tallies(redis, keys)
        for start in starts
        for dimension in dimensions
    ]
    async with redis.pipeline(transaction=False) as pipe:
        for tally, start, dimension in wanted:
            pipe.hgetall(tally.bucket(window, start, dimension))
        raw = await pipe.execute()
    found: Buckets = {}
    for (_, start, _), item in zip(wanted, raw, strict=True):
        if item:
            rows = found.setdefault(start, {})
            for row, metrics in parse_bucket(item).items():
                summed = rows.setdefault(row, {})
                for metric, amount in metrics.items():
                    summed[metric] = summed.get(metric, 0) + amount
    return found


async def read_uniques(
    redis: Any, audiences: list[tuple[str, EpochMs, str, str]], keys: Keys
) -> list[int]:
    """Approximate unique people of each (window, bucket, dimension, value).

    Two round trips (where the sums are, then the counts), three when the sums are spread
    over a Redis Cluster: a person's events are then in the HyperLogLog under the tag of
    its dimension and value (:func:`people_prefix`), and in a store spread before that
    also in several partitions', which are merged, not added: each is read, and one
    script under the store's hash tag writes them next to each other, counts them
    together (``PFCOUNT`` of several keys merges them, as Redis does it) and deletes them.
    """
    if not audiences:
        return []
    where = await tallies(redis, keys)
    if len(where) == 1:  # in a script: RedisCluster's pipelines refuse PFCOUNT
        names = [keys.uniques(*audience) for audience in audiences]
        return [int(n) for n in await redis.eval(_COUNTS, len(names), *names)]
    held = [
        [*where, Keys(people_prefix(keys.prefix, audience[2], audience[3]))]
        for audience in audiences
    ]
    async with redis.pipeline(transaction=False) as pipe:
        for audience, places in zip(audiences, held, strict=True):
            for place in places:
                pipe.get(place.uniques(*audience))
        raw = iter(await pipe.execute())
    parts = [[part for _ in places if (part := next(raw))] for places in held]
    width = max(map(len, parts))
    if not width:
        return [0] * len(audiences)
    # Scripts run one at a time: readers at once never meet in these.
    scratch = [f"{keys.prefix}:merging:{n}" for n in range(width)]
    args = [item for some in parts for item in (len(some), *some)]
    return [int(n) for n in await redis.eval(_MERGED_COUNT, width, *scratch, *args)]


_COUNTS = """
local counts = {}
for i, name in ipairs(KEYS) do counts[i] = redis.call('PFCOUNT', name) end
return counts
"""
_MERGED_COUNT = """
local counts, i = {}, 1
while i <= #ARGV do
  local n, names = tonumber(ARGV[i]), {}
  i = i + 1
  for j = 1, n do
    redis.call('SET', KEYS[j], ARGV[i])
    names[j] = KEYS[j]
    i = i + 1
  end
  counts[#counts + 1] = n > 0 and redis.call('PFCOUNT', unpack(names)) or 0
end
redis.call('DEL', unpack(KEYS))
return counts
"""
"""Each audience's HyperLogLogs (``ARGV``: how many, then each), counted together in
``KEYS``, which are left as they were found: absent."""


class StoreUnavailable(RuntimeError):
    """Redis did not answer; the message names its URL and why."""


def read_once(settings: Settings, read: Callable[[C], Awaitable[T]], make: Callable[..., C]) -> T:
    """``read`` on a client of its own, ``make(settings)``, closed after: one command's
    reads, from sync code.

    Raises :class:`StoreUnavailable` for any Redis error; ``read``'s own errors pass.
    """

    async def main() -> T:
        client = make(settings)
        try:
            return await read(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except RedisError as exc:
        raise StoreUnavailable(f"Redis at {settings.redis_shown} did not answer: {exc}") from exc


_TAKE = """
local function take() local v = a[i]; i = i + 1; return v end
"""
_PEOPLE = """
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
"""
"""People in HyperLogLogs, given as :func:`people_args`."""
_APPLIED = (
    _TAKE
    + """
for _ = 1, tonumber(take()) do
  local key, expire_at, n = take(), tonumber(take()), tonumber(take())
  for _ = 1, n do redis.call('HINCRBY', key, take(), take()) end
  if expire_at > 0 then redis.call('EXPIREAT', key, expire_at) end
end
for _ = 1, tonumber(take()) do
  local key, value, ttl = take(), take(), tonumber(take())
  if ttl > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
end
"""
    + _PEOPLE
    + """
local key = take()
for _ = 1, tonumber(take()) do redis.call('ZINCRBY', key, take(), take()) end
for _ = 1, tonumber(take()) do
  key = take()
  for _ = 1, tonumber(take()) do redis.call('SADD', key, take()) end
end
"""
)
_APPLY = "local a, i = cmsgpack.unpack(ARGV[1]), 1" + _APPLIED
PEOPLE = "local a, i = ARGV, 1" + _TAKE + _PEOPLE
"""People in the HyperLogLogs of one hash tag (:func:`people_prefix`), ``ARGV`` as
:func:`people_args` gives. Adding a person again changes nothing: applying twice is
harmless."""
TALLY = (
    """
local applied = tonumber(redis.call('GET', KEYS[1]) or '-1')
if applied >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
local a, i = ARGV, 2"""
    + _APPLIED
    + "return 1"
)
"""A partition's sums of one batch, given as :meth:`Writes.args` after the batch's last
offset, applied unless its tally (``KEYS[1]``, ``T:src:...``) holds that offset already."""

TOUCHES = """
local a, written = ARGV, 0
local ttl, most, paths = tonumber(a[1]), tonumber(a[2]), 4 + tonumber(a[3])
local null = cjson.null
-- By bytes, as Python orders str (code points, UTF-8): Lua's < uses strcoll, and Redis
-- takes LC_COLLATE from its environment.
local function before(x, y)
  for k = 1, math.min(#x, #y) do
    local p, q = string.byte(x, k), string.byte(y, k)
    if p ~= q then return p < q end
  end
  return #x < #y
end
local function older(t, u)  -- tracker.stream.conversions.touch_order
  if t[1] ~= u[1] then return t[1] < u[1] end
  local c, d = t[2] == null and '' or t[2], u[2] == null and '' or u[2]
  if c ~= d then return before(c, d) end
  if t[3] ~= u[3] then return before(t[3], u[3]) end
  return t[2] == null and u[2] ~= null
end
local function name(t)
  return t[1] .. '\31' .. (t[2] == null and '\0' or '\1' .. t[2]) .. '\31' .. t[3]
end
local function joined(value, old)  -- tracker.stream.conversions.joined
  local path, ours, theirs = cjson.decode(value), {}, {}
  for _, t in ipairs(path) do
    local n = name(t)
    ours[n] = (ours[n] or 0) + 1
  end
  local all = {unpack(path)}
  for _, t in ipairs(cjson.decode(old)) do
    local n = name(t)
    theirs[n] = (theirs[n] or 0) + 1
    if theirs[n] > (ours[n] or 0) then all[#all + 1] = t end
  end
  if #all == #path then return value end
  table.sort(all, older)
  local kept = {}
  for k = math.max(1, #all - most + 1), #all do kept[#kept + 1] = all[k] end
  return cjson.encode(kept)
end
local i = 4
while i <= #a do
  local key, value, marks = a[i], a[i + 1], tonumber(a[i + 2])
  local erased = false
  for j = i + 3, i + 2 + marks do
    if redis.call('EXISTS', a[j]) == 1 then erased = true end
  end
  local path = i >= paths
  i = i + 3 + marks
  if not erased then
    local old = path and redis.call('GET', key)
    redis.call('SET', key, old and joined(value, old) or value, 'EX', ttl)
    written = written + 1
  end
end
return written
"""
"""Clicks and paths of one click shard: ``ARGV`` the lookback (s), the most touches a
path keeps and how many arguments the clicks take, then per click, then per path, its
key, value and the erasure marks (``C:erased:<hash>``) of its clicker's or holder's ids,
any of which keeps it out.

A click is set: setting it again sets the same value. A path
(:func:`tracker.stream.state.dump_path`) is joined with the one there, as
:func:`tracker.stream.conversions.joined` does: a batch's path holds what the one
before had, so joining it again, late (a worker that lost its partition delivering its
outbox after the next owner), or from another partition, loses no touch and counts none
twice. Either way applying twice is harmless."""


H = TypeVar("H", bound=Hashable)


def group_people(crowds: Mapping[tuple[H, ...], set[str]]) -> list[tuple[tuple[H, ...], list[str]]]:
    """``crowds`` (the HyperLogLogs some people are counted in -> those people) as
    groups of people with every HyperLogLog each is in, each person once: a person lands
    in a dozen (windows x dimensions), and grouped so is named once, not once a
    HyperLogLog or a crowd.

    A crowd is the people of a minute's events of one campaign and channel, and most
    people are in one crowd of a batch: theirs is their group as it is, and only the
    others' HyperLogLogs are joined. Finding each person's HyperLogLogs one by one cost
    the worker 19% of its samples in a drain (py-spy)."""
    crowds_of: dict[str, list[tuple[H, ...]]] = {}
    for targets, people in crowds.items():
        for person in people:
            if (theirs := crowds_of.get(person)) is None:
                crowds_of[person] = [targets]
            else:
                theirs.append(targets)
    groups: dict[tuple[H, ...], list[str]] = {}
    for person, theirs in crowds_of.items():
        joined = theirs[0] if len(theirs) == 1 else tuple(dict.fromkeys(chain(*theirs)))
        groups.setdefault(joined, []).append(person)
    return list(groups.items())


def people_args(groups: Iterable[PeopleGroup]) -> list[str | int]:
    """``groups`` as the arguments of :data:`PEOPLE` (and that part of a batch's writes)."""
    listed = list(groups)
    args: list[str | int] = [len(listed)]
    for targets, members in listed:
        args.append(len(targets))
        for key, expire_at in targets:
            args += [key, expire_at]
        args += [len(members), *members]
    return args


_EXACT = 2**53
"""Integers a Lua number (a double) holds exactly, which Redis (7.0 on) gives a command
to the unit: a batch's larger sums and spend go as text, which the script passes on."""


class Writes:
    """Every write of one batch, sent as a single script call inside its transaction.

    A worker writes hundreds of thousands of small values a second (sums, state); as
    separate commands, redis-py's per-command packing and reply parsing cost more than
    Redis itself. Flattened into one ``EVAL``, they cost one round trip and one reply,
    and stay inside the ``MULTI`` that makes them atomic with the source offsets. (Like
    the transaction, this needs every key on one Redis, or on a Redis Cluster in one
    slot: :attr:`Settings.key_prefix`.) Its arguments go as one MessagePack array, which
    the script unpacks (``cmsgpack``), not as one argument each: redis-py encoded each of
    them in Python (the sink's CPU an event 0.90-1.00x, same-run A/B, 10,000-event
    transactions).
    """

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._sums: dict[str, dict[str, int]] = {}
        self._expiry: dict[str, int] = {}
        self._strings: list[tuple[str, bytes | str, int]] = []
        self._people: dict[tuple[tuple[str, int], ...], set[str]] = {}
        self._ranked: dict[str, int] = {}
        self._members: dict[str, set[str]] = {}

    def add(self, key: str, field: str, amount: int, expire_at: int = 0) -> None:
        fields = self._sums.setdefault(key, {})
        fields[field] = fields.get(field, 0) + amount
        if expire_at:
            self._expiry[key] = expire_at

    def put(self, key: str, value: bytes | str, ttl_s: int = 0) -> None:
        # As text: Redis's Lua reads no MessagePack bin (our values are JSON, UTF-8).
        self._strings.append((key, value.decode() if isinstance(value, bytes) else value, ttl_s))

    def count_people(self, targets: tuple[tuple[str, int], ...], people: set[str]) -> None:
        """Count ``people`` in each HyperLogLog of ``targets`` (its key, and when it
        expires: 0, never)."""
        self._people.setdefault(targets, set()).update(people)

    def rank(self, campaign: str, spend: int) -> None:
        self._ranked[campaign] = self._ranked.get(campaign, 0) + spend

    def member(self, key: str, member: str) -> None:
        """Add ``member`` to the set ``key``."""
        self._members.setdefault(key, set()).add(member)

    def queue(self, pipe: Any) -> None:
        """Queue the script call on ``pipe`` (a pipeline in ``MULTI`` mode)."""
        pipe.eval(_APPLY, 0, _MSGPACK.encode(self.args()))

    def args(self) -> list[bytes | str | int]:
        """The script's arguments."""
        args: list[bytes | str | int] = [len(self._sums)]
        for key, fields in self._sums.items():
            args += [key, self._expiry.get(key, 0), len(fields)]
            for field, amount in fields.items():
                args += [field, amount if -_EXACT < amount < _EXACT else str(amount)]
        args.append(len(self._strings))
        for key, value, ttl in self._strings:
            args += [key, value, ttl]
        args += people_args((list(targets), who) for targets, who in group_people(self._people))
        args += [self.keys.rank, len(self._ranked)]
        for campaign, spend in self._ranked.items():
            args += [spend if -_EXACT < spend < _EXACT else str(spend), campaign]
        args.append(len(self._members))
        for key, added in self._members.items():
            args += [key, len(added), *added]
        return args
