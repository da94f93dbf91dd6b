"""The verdict of a scenario: what was acknowledged, against Kafka and against the store.

- in Kafka: every acknowledged id is in the events topic, read back to its end; a 2xx
  for an event Kafka does not hold is a lie to the sender, whatever the store says.
- lost: acknowledged ids the store has not counted. The store keeps the id of every
  event it counted (the seen buckets, :meth:`tracker.seen.Claims.counted`), claimed just
  before the transaction that adds the event to the sums, so the check is per id once
  every record is applied (a claim whose transaction never landed shows below as sums
  short of the ids).
- counted twice: the store's sums above what its counted ids add up to. Every event
  of a scenario is an impression of the scenario's own campaign with a cost we chose,
  so the campaign's all-time row must hold exactly one impression per counted id and
  exactly their costs as spend; and as every id was retried until acknowledged, exactly
  the acknowledged ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests import applied
from tests.kafka import records
from tracker.records import decode_events
from tracker.redis_clients import async_client, async_reader
from tracker.seen import Claims
from tracker.settings import Settings
from tracker.store import Keys, read_buckets
from tracker.windows import ALL_TIME

_IDS_PER_READ = 5000


@dataclass
class Outcome:
    """A scenario's row of the table, and what failed in it."""

    scenario: str
    sent: int = 0
    """Event ids made (each sent until acknowledged)."""
    acknowledged: int = 0
    refused: int = 0
    """Answers other than 2xx (a retried request counts each time)."""
    lost: int = 0
    twice: int = 0
    pauses: str = "-"
    recovery: str = "-"
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None
    """Why the scenario could not run here."""

    def check(self, holds: bool, failure: str) -> bool:
        if not holds:
            self.failures.append(failure)
        return holds


async def _impressions(settings: Settings, campaign: str) -> int:
    keys = Keys(settings.key_prefix)
    redis = async_reader(settings)
    try:
        buckets = await read_buckets(redis, ALL_TIME, [0], keys, ("campaign",))
    finally:
        await redis.aclose()
    return buckets.get(0, {}).get(("campaign", campaign), {}).get("impressions", 0)


def settle(settings: Settings, campaign: str, acknowledged: int, timeout: float) -> float:
    """Wait until the store counts ``acknowledged`` impressions of ``campaign`` at least and
    has applied every record the events topic holds; the seconds it took. Raises
    TimeoutError after ``timeout``, saying what is missing.

    Both: Kafka's end offsets come from whichever broker the client asks, and one just
    back from a cut still names itself leader with its old end for a moment (seen).
    """
    started = time.monotonic()
    while True:
        counted = asyncio.run(_impressions(settings, campaign))
        behind = applied.behind(settings)
        if counted >= acknowledged and not behind:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            parts = [f"{counted} of {acknowledged} acknowledged events counted"]
            parts += [f"p{p} {done}/{end}" for p, (done, end) in behind.items()]
            raise TimeoutError(
                f"the store did not catch up within {timeout:.0f} s: " + ", ".join(parts)
            )
        time.sleep(0.5)


async def _health(settings: Settings) -> dict[str, int]:
    redis = async_client(settings)
    try:
        raw = await redis.hgetall(Keys(settings.key_prefix).health)
    finally:
        await redis.aclose()
    return {(n.decode() if isinstance(n, bytes) else n): int(v) for n, v in raw.items()}


def health(settings: Settings) -> dict[str, int]:
    """The workers' counters in the store (``P:health``): events, redis_writes (about one
    a transaction), redis_write_us, ..."""
    return asyncio.run(_health(settings))


def in_kafka(settings: Settings) -> set[str]:
    """Every event id the events topic holds."""
    return {
        event.event_id
        for _, _, value in records(settings.kafka_bootstrap, settings.events_topic)
        for event in decode_events(value)
    }


async def _store(settings: Settings, campaign: str, ids: list[str]) -> tuple[int, int, set[str]]:
    keys = Keys(settings.key_prefix)
    redis, reader = async_client(settings), async_reader(settings)
    claims = Claims(settings, redis)
    try:
        buckets = await read_buckets(reader, ALL_TIME, [0], keys, ("campaign",))
        row = buckets.get(0, {}).get(("campaign", campaign), {})
        counted: set[str] = set()
        now_s = int(time.time())
        for start in range(0, len(ids), _IDS_PER_READ):
            chunk = ids[start : start + _IDS_PER_READ]
            counted |= await claims.counted(chunk, now_s)
        return row.get("impressions", 0), row.get("spend", 0), counted
    finally:
        await claims.aclose()
        await redis.aclose()
        await reader.aclose()


def judge(
    outcome: Outcome,
    settings: Settings,
    campaign: str,
    costs: Mapping[str, int],
    acknowledged: Mapping[str, int],
    refused: int,
) -> None:
    """Fill ``outcome``'s counts from Kafka and the store; note every failed check.

    ``costs`` holds every event id made, ``acknowledged`` those answered 2xx.
    """
    outcome.sent += len(costs)
    outcome.acknowledged += len(acknowledged)
    outcome.refused += refused
    kafka = in_kafka(settings)
    missing = acknowledged.keys() - kafka
    outcome.check(not missing, f"{len(missing)} acknowledged not in Kafka, e.g. {_some(missing)}")
    impressions, spend, counted = asyncio.run(_store(settings, campaign, list(costs)))
    lost = acknowledged.keys() - counted
    outcome.lost += len(lost)
    outcome.check(not lost, f"{len(lost)} acknowledged ids not counted, e.g. {_some(lost)}")
    outcome.twice += max(0, impressions - len(counted))
    counted_spend = sum(costs[i] for i in counted)
    outcome.check(
        (impressions, spend) == (len(counted), counted_spend),
        f"the store holds {impressions} impressions and {spend} micro-units of spend, its "
        f"{len(counted)} counted ids {counted_spend}",
    )
    unacknowledged = counted - acknowledged.keys()
    outcome.check(
        not unacknowledged,
        f"{len(unacknowledged)} ids counted that were never acknowledged (the load gave up "
        f"retrying them), e.g. {_some(unacknowledged)}",
    )
    truth = (len(acknowledged), sum(acknowledged.values()))
    outcome.check(
        (impressions, spend) == truth,
        f"store {impressions} impressions, {spend} spend; acknowledged {truth[0]}, {truth[1]}",
    )


def _some(ids: set[str]) -> str:
    return ", ".join(sorted(ids)[:3]) or "-"
