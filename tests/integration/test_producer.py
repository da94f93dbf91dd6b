"""The collector's batching producer on real Kafka: every event once, in order, in few records."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict

import pytest

from collector.producer import BatchingProducer, FlushObserver
from tests.kafka import records
from tracker.events import Event
from tracker.kafka import ensure_topics
from tracker.records import decode_events, partition_of
from tracker.settings import Settings

pytestmark = pytest.mark.services

NOW = int(time.time() * 1000)


def hit(visitor: str, seq: int) -> Event:
    return Event(
        event_id=f"{visitor}-{seq:05d}",
        type="pageview",
        ts=NOW + seq,
        received_at=NOW,
        channel="direct",
        anonymous_id=visitor,
    )


async def _send_all(
    settings: Settings, requests: list[list[Event]], on_flushed: FlushObserver | None = None
) -> list[float]:
    """Send each request's events concurrently; the seconds each request waited."""
    await ensure_topics(settings)
    producer = BatchingProducer(settings, on_flushed)
    await producer.start()

    async def request(events: list[Event]) -> float:
        started = time.perf_counter()
        await producer.send(events)
        return time.perf_counter() - started

    try:
        return list(await asyncio.gather(*(request(events) for events in requests)))
    finally:
        await producer.stop()


def test_concurrent_requests_land_once_in_order_in_a_few_records(settings: Settings) -> None:
    requests = [[hit(f"v{i % 20}", i * 5 + j) for j in range(5)] for i in range(200)]
    flushes: list[tuple[int, float]] = []
    waited = asyncio.run(_send_all(settings, requests, lambda *flush: flushes.append(flush)))

    found = records(settings.kafka_bootstrap, settings.events_topic)
    per_visitor: dict[str, list[int]] = defaultdict(list)
    for partition, _, value in found:
        for event in decode_events(value):
            assert partition == partition_of(event, settings.topic_partitions)
            assert event.anonymous_id is not None
            per_visitor[event.anonymous_id].append(int(event.event_id.rsplit("-", 1)[1]))
    sent = sorted(e.event_id for events in requests for e in events)
    got = sorted(f"{v}-{seq:05d}" for v, seqs in per_visitor.items() for seq in seqs)
    assert got == sent  # every event once
    for seqs in per_visitor.values():
        assert seqs == sorted(seqs)  # one visitor's events in the order they came
    # 200 requests, one flush: a record per partition, not one per request.
    assert len(found) <= 2 * settings.topic_partitions
    # Each flush was observed once acknowledged, no later than its requests were answered.
    assert len(flushes) == len(found)
    assert sum(events for events, _ in flushes) == len(sent)
    assert 0 < max(seconds for _, seconds in flushes) <= max(waited)


def test_a_lone_hit_does_not_wait_for_the_flush_interval(settings: Settings) -> None:
    """``flush_ms`` spaces flushes under load; it is no delay for a hit after a quiet spell."""
    slow = dataclasses.replace(settings, flush_ms=3000.0)
    (waited,) = asyncio.run(_send_all(slow, [[hit("lone", 1)]]))
    assert waited < 2.0
    assert len(records(settings.kafka_bootstrap, settings.events_topic)) == 1
