"""The Redis key layout of the KPI store, and its reads.

Layout (``P`` is the configured prefix; ``SEP`` is ``\\x1f``):

- ``P:b:<window>:<bucket start ms>``: hash, one bucket of a window (``1m``, ``1h``,
  ``1d``; ``all:0`` holds all-time totals); fields ``<dimension>SEP<value>SEP<metric>``
  with integer values (money in micro-units of the base currency). Expires after the
  window's retention.
- ``P:src:<topic>:<partition>``: JSON ``{"offset", "watermark", "newest"}``: the
  last Kafka offset applied to the buckets, written in the same transaction as
  them, which is what makes replays apply nothing twice.
- ``P:seen:<event id>``: present for 48 hours after the event was counted.
- ``P:spend:<campaign>SEP<period>``: ``<report ts>:<micros>``, the standing figure.
- ``P:u:<window>:<bucket start>:<dimension>SEP<value>``: HyperLogLog of the people
  seen (unique users; standard error 0.81%), expiring with its bucket.
- ``P:order:<order id>``: JSON of a counted conversion and its credits, kept for the
  attribution lookback so re-fires are dropped and refunds reversed.
- ``P:click:<click id>``: JSON ``[ts, campaign, channel, person]``, for the lookback.
- ``P:path:<person>``: JSON list of the person's recent touches, for the lookback.
- ``P:cust:<person>``: JSON ``[campaign, channel]`` that acquired the customer.
- ``P:rank:spend``: sorted set of campaigns by all-time spend, and in every bucket
  the row ``campaigns``/``all`` summing all campaign rows: together they let
  ``/metrics`` read the top campaigns and fold the rest into ``other`` without
  reading every campaign.
- ``P:health``: hash of pipeline counters (events, duplicates, late, bots).
- ``P:sources``: set of the ``src`` keys, to find every partition's progress.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from tracker.types import EpochMs

SEP = "\x1f"
"""Separates parts of a Redis name; validation keeps control characters out of dimensions."""

Buckets = dict[EpochMs, dict[tuple[str, str], dict[str, int]]]
"""bucket start -> (dimension, value) -> metric -> amount."""

SEEN_TTL_S = 48 * 3600
CAMPAIGN_SUM = ("campaigns", "all")
"""The (dimension, value) of the row that sums every campaign row of a bucket."""


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def bucket(self, window: str, start: EpochMs) -> str:
        return f"{self.prefix}:b:{window}:{start}"

    def source(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:src:{topic}:{partition}"

    def seen(self, event_id: str) -> str:
        return f"{self.prefix}:seen:{event_id}"

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

    def field(self, dimension: str, value: str, metric: str) -> str:
        """The hash field of one metric of one dimension value in a bucket."""
        return f"{dimension}{SEP}{value}{SEP}{metric}"

    @property
    def rank(self) -> str:
        return f"{self.prefix}:rank:spend"

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


async def read_buckets(redis: Redis, window: str, starts: list[EpochMs], keys: Keys) -> Buckets:
    """Every bucket of ``window`` starting at ``starts``, in one pipelined round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(keys.bucket(window, start))
        raw = await pipe.execute()
    return {start: parse_bucket(item) for start, item in zip(starts, raw, strict=True) if item}


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
