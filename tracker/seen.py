"""Which event ids were counted: the deduplication state, spread over shards.

Most of the store's memory and most of its writes are the ids of counted events: a
16-byte digest an event, kept 48 hours at least (:func:`read_with_seen` says how they
are laid out, and what that costs). On a Redis Cluster they need not share the one
slot the rest of the store is in: they are spread by digest over :data:`SHARDS`
shards, each under a hash tag of its own (:func:`shard_prefix`), so the cluster's
primaries share them.

An id cannot sit under its partition's hash tag, as the sums do: a retry of an event
can reach another partition (its cookie minted anew, the next day's cookieless id),
so an id is found where its digest says. That puts it outside the transaction that
writes a batch's offsets and state, and a batch is made exact another way, by claims:

- Before its transaction, the sink claims the first occurrence of each id of a batch
  in the id's shard, in one script a shard: an id found counted there is a
  duplicate; one not found is written as counted, and its claim, the partition and
  offset of the record that holds it, kept in ``S:claims:<topic>:<partition>``.
- An id whose claim names the very record being applied is not a duplicate: it is
  the same batch applied again, after a crash, a failed ``EXEC`` or a rebalance
  before its transaction landed. So a claim made by a batch that never landed still
  counts once when the batch is applied again, and never twice, as the sums and the
  offsets land together or not at all.
- A claim is needed only while its batch may be applied again: until the store holds
  the batch's offset, and, after a failover, until the replica that took over holds
  it too. Each call notes the offset the store held then; a claim at or below an
  offset noted :data:`CLAIMS_KEPT_S` ago or more is dropped. So claims take the
  memory of a minute of traffic, not of 48 hours.
- On a Redis Cluster the claims of a batch are on a replica before its transaction
  runs (``WAIT``): a failover of a shard then cannot forget ids whose events were
  counted, which would count their retries again. A shard whose primary has no
  replica left has no failover to fear: its claims are taken as they are.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis

from tracker.redis_clients import Call, Script
from tracker.settings import Settings
from tracker.store import Keys, tag_of_its_own

SEEN_TTL_S = 48 * 3600
"""How long a counted event id is recognised as a duplicate, at least."""
GENERATION_S = 24 * 3600
"""Event ids counted within one such span (UTC days) share a seen generation."""
SEEN_LOAD = 96
"""Digests per seen bucket on average: a generation adds a bucket every this many ids."""
SHARDS = 64
"""Shards the counted ids are spread over: enough that a cluster's primaries, each a
range of slots, hold about as many each (three held 19 to 24 of them under each of
eight prefixes, the default one included; 16 shards gave 3 to 10). Fixed: an id is
looked for in the shard its digest names, so changing this would forget every id
counted."""
CLAIMS_KEPT_S = 60
"""How long after the store held a batch's offset its claims are kept: far longer than
a replica lags behind its primary, so a failover that loses the offset keeps them."""
_CLOCK_SLACK_S = 3600
"""Generations outlive their last use by this much: Redis expires them by its own clock,
the workers pick them by theirs."""
log = structlog.get_logger(__name__)


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


def shard_of(digest: bytes) -> int:
    """The shard of a digest: by its last byte, as a bucket is by its first four."""
    return digest[-1] % SHARDS


def shard_prefix(prefix: str, shard: int) -> str:
    """What a shard's keys start with: under the prefix, and on a Redis Cluster (where
    the prefix holds a hash tag, ``{P}``) under a hash tag of its own, ``{P:d3}``."""
    return tag_of_its_own(prefix, f"d{shard}") or f"{prefix}:d{shard}"


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
local function generations_of(names)
  local found = {}
  for _, name in ipairs(names) do
    local n = tonumber(redis.call('HGET', name, 'buckets'))
    if n then found[#found + 1] = {name .. ':', n, level(n)} end
  end
  return found
end
local function counted(generations, d)
  local h = home(d)
  for _, g in ipairs(generations) do
    if redis.call('HEXISTS', g[1] .. bucket_of(h, g[2], g[3]), d) == 1 then return true end
  end
  return false
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
local names, first = {}, tonumber(ARGV[1]) + 2
for j = 2, first - 1 do names[#names + 1] = ARGV[j] end
local generations = generations_of(names)
local hits, ids = {}, (#ARGV - first + 1) / 2
for i = first, first + ids - 1 do
  local hit = counted(generations, ARGV[i]) and 1 or 0
  if hit == 0 and ARGV[i + ids] ~= '' then hit = redis.call('EXISTS', ARGV[i + ids]) end
  hits[i - first + 1] = hit
end
return {found, hits}
"""
)

_CLAIM = (
    _BUCKETS
    + """
-- KEYS[1]: the generation written. ARGV: its expiry, CLAIMS_KEPT_S, how many generations
-- are searched, their names, then for each partition: its claims key, the offset the
-- store holds of it, its ids' 16-byte digests end to end, and their offsets, in the same
-- order, as decimals separated by spaces.
-- Returns the positions (from 1, over all partitions, in the order given) of the
-- duplicates.
local a, i = ARGV, 1
local function take() local v = a[i]; i = i + 1; return v end
local written, expire_at, kept = KEYS[1], tonumber(take()), tonumber(take())
local names = {}
for j = 1, tonumber(take()) do names[j] = take() end
local generations = generations_of(names)
local now = tonumber(redis.call('TIME')[1])
local new, fresh, duplicates, at = {}, {}, {}, 0
while i <= #a do
  local claims, stored, digests, listed = take(), take(), take(), take()
  local marks = claims .. ':marks'
  -- Claims at or below an offset the store held CLAIMS_KEPT_S ago are needed no more.
  local cut = nil
  while true do
    local head = redis.call('LINDEX', marks, 0)
    if not head then break end
    local t, offset = string.match(head, '^(%d+) (%-?%d+)$')
    if tonumber(t) > now - kept then break end
    cut = math.max(cut or -1, tonumber(offset))
    redis.call('LPOP', marks)
  end
  if cut then redis.call('ZREMRANGEBYSCORE', claims, '-inf', cut) end
  redis.call('RPUSH', marks, now .. ' ' .. stored)
  -- A partition's ids are distinct: their claims are read, and its new ones made, a
  -- thousand to a call, not one call an id.
  local ds, offsets, scores, claiming = {}, {}, {}, {}
  local n = 0
  for offset in string.gmatch(listed, '%d+') do
    n = n + 1
    ds[n], offsets[n] = string.sub(digests, n * 16 - 15, n * 16), tonumber(offset)
  end
  for first = 1, n, 1000 do
    local found = redis.call('ZMSCORE', claims, unpack(ds, first, math.min(first + 999, n)))
    for j, score in ipairs(found) do scores[first + j - 1] = score end
  end
  for j = 1, n do
    local d, offset, claimed = ds[j], offsets[j], scores[j]
    at = at + 1
    if claimed then
      if tonumber(claimed) ~= offset then duplicates[#duplicates + 1] = at end
    elseif fresh[d] or counted(generations, d) then
      duplicates[#duplicates + 1] = at
    else
      fresh[d] = true
      new[#new + 1] = d
      claiming[#claiming + 1] = offset
      claiming[#claiming + 1] = d
    end
  end
  for first = 1, #claiming, 2000 do
    redis.call('ZADD', claims, unpack(claiming, first, math.min(first + 1999, #claiming)))
  end
  redis.call('EXPIREAT', claims, expire_at)
  redis.call('EXPIREAT', marks, expire_at)
end
if #new == 0 then return duplicates end
local function add(key, fields)
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIREAT', key, expire_at)
end
local function split(base, n)
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
    add(base .. n, fields)
  end
end
local meta = redis.call('HMGET', written, 'ids', 'buckets')
local ids, n = (tonumber(meta[1]) or 0) + #new, tonumber(meta[2]) or 1
local base = written .. ':'
-- Grown before the digests go in, so that none lands in an overfull bucket: past
-- hash-max-listpack-entries a hash turns into a hash table for good, at 4x the memory.
while ids > LOAD * n do split(base, n); n = n + 1 end
redis.call('HSET', written, 'ids', ids, 'buckets', n)
redis.call('EXPIREAT', written, expire_at)
local half, buckets, added = level(n), {}, {}
for _, d in ipairs(new) do
  local key = base .. bucket_of(home(d), n, half)
  if not added[key] then buckets[#buckets + 1] = key; added[key] = {} end
  local fields = added[key]
  fields[#fields + 1] = d
  fields[#fields + 1] = ''
end
for _, key in ipairs(buckets) do add(key, added[key]) end
return duplicates
"""
)


async def read_with_seen(
    client: Any,
    keys: Keys,
    names: Sequence[str],
    event_ids: Sequence[str],
    now_s: int,
    legacy: bool = True,
) -> tuple[list[Any], list[str]]:
    """The values of ``names`` (an ``MGET``), and those of ``event_ids`` counted in the
    ``SEEN_TTL_S`` before ``now_s`` (epoch s) in the generations under ``keys``, in one
    round trip. ``client`` may be a pipeline in ``WATCH``, whose reads run at once.

    Under the store's prefix this reads the ids counted before the shards (and, with
    ``legacy``, before generations: a key per id), until they expire; under a shard's,
    that shard's.

    A counted id is kept as its 16-byte digest (:func:`seen_digest`), a field of a small
    hash, ``S:dedup:<generation>:<bucket>``. The ids counted in one ``GENERATION_S`` form
    a generation, ``S:dedup:<generation>`` (``{ids, buckets}``), whose buckets grow by
    linear hashing to about ``SEEN_LOAD`` digests each, whatever the traffic, and which
    expires whole once no lookup searches it (:func:`seen_expiry`). A lookup searches
    the generations of the last 48 hours and the next one, so an id is kept 48 to 73
    hours: at a steady rate, Redis holds 1 to 1.5 times the ids of 48 hours.

    Measured on Redis 7.0 (2-core machine, ids of three days, in one shard):

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
    found, hits = await client.eval(
        _READ,
        len(names),
        *names,
        len(generations),
        *generations,
        *map(seen_digest, event_ids),
        # Until 48 hours after an upgrade from a key per id, those keys hold what was
        # counted before it. Costs one EXISTS a new id; goes with that layout's last key.
        *(map(keys.legacy_seen, event_ids) if legacy else [""] * len(event_ids)),
    )
    return found, [event_id for event_id, hit in zip(event_ids, hits, strict=True) if hit]


@dataclass(frozen=True, slots=True)
class Claim:
    """The ids one partition's records bring to a batch, to be claimed."""

    topic: str
    partition: int
    stored: int
    """The partition's offset the store holds (-1: none)."""
    firsts: Mapping[str, int]
    """Each event id, by the offset of the first record of the batch that holds it."""


@dataclass(slots=True)
class _Call:
    """One shard's script call of a batch: what it is given, and whose each id is."""

    written: str
    """The generation the new ids go to."""
    args: list[Any]
    named: list[tuple[int, str]] = field(default_factory=list)
    """(index of its claim, event id) of each id given, in order."""


class Claims:
    """The shards of counted ids of one store, and the clients that reach them."""

    def __init__(self, settings: Settings, client: Redis) -> None:
        """``client`` reaches every shard off a cluster; on one, each shard gets its own."""
        self._keys = [Keys(shard_prefix(settings.key_prefix, s)) for s in range(SHARDS)]
        self._script = Script(settings, client, _CLAIM)

    def keys(self, shard: int) -> Keys:
        return self._keys[shard]

    async def claim(self, claims: Sequence[Claim], now_s: int) -> list[set[str]]:
        """Claim ``claims``' ids at ``now_s`` (epoch s); the duplicates of each, in order.

        Raises :class:`NotReplicated` on a Redis Cluster when a shard's replica did not
        confirm the claims: claiming again is safe.
        """
        generation = now_s // GENERATION_S
        searched = list(reversed(seen_generations(now_s)))
        calls: dict[int, _Call] = {}
        for index, claim in enumerate(claims):
            # A shard's ids go as two arguments, their digests end to end and their
            # offsets as text: redis-py encodes each argument in Python.
            by_shard: dict[int, tuple[list[str], list[bytes], list[str]]] = {}
            for event_id, offset in claim.firsts.items():
                digest = seen_digest(event_id)
                items = by_shard.get(shard := shard_of(digest))
                if items is None:
                    items = by_shard[shard] = ([], [], [])
                items[0].append(event_id)
                items[1].append(digest)
                items[2].append(str(offset))
            for shard, (named, digests, offsets) in by_shard.items():
                keys = self._keys[shard]
                if shard not in calls:
                    head = [seen_expiry(generation), CLAIMS_KEPT_S, len(searched)]
                    calls[shard] = _Call(keys.seen(generation), [*head, *map(keys.seen, searched)])
                call = calls[shard]
                call.args += [
                    keys.claims(claim.topic, claim.partition),
                    claim.stored,
                    b"".join(digests),
                    " ".join(offsets),
                ]
                call.named += [(index, event_id) for event_id in named]
        found = await self._script.run(
            [
                Call(self._keys[shard].prefix, [c.written], c.args, f"deduplication shard {shard}")
                for shard, c in calls.items()
            ]
        )
        duplicates: list[set[str]] = [set() for _ in claims]
        for call, ats in zip(calls.values(), found, strict=True):
            for at in ats:
                index, event_id = call.named[at - 1]
                duplicates[index].add(event_id)
        return duplicates

    async def counted(self, event_ids: Iterable[str], now_s: int) -> set[str]:
        """Those of ``event_ids`` counted in the ``SEEN_TTL_S`` before ``now_s``."""
        by_shard: dict[int, list[str]] = {}
        for event_id in event_ids:
            by_shard.setdefault(shard_of(seen_digest(event_id)), []).append(event_id)
        reads = [
            read_with_seen(self._client(shard), self._keys[shard], [], ids, now_s, legacy=False)
            for shard, ids in by_shard.items()
        ]
        return {event_id for _, found in await asyncio.gather(*reads) for event_id in found}

    async def aclose(self) -> None:
        await self._script.aclose()

    def _client(self, shard: int) -> Redis:
        return self._script.client(self._keys[shard].prefix)
