"""What the worker skips and seeks after the store was found behind Kafka (Rewinds).

Faust's consumer is replaced by a recorder of seeks: what is tested is the bookkeeping,
which records are applied and when a partition is sought again; the seeks themselves
run on Kafka in tests/e2e/test_faults.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from tracker.stream.app import Rewinds
from tracker.stream.sink import Record

SOURCE = ("t", 0)


@dataclass
class Consumer:
    oldest: int = 0
    seeks: list[tuple[TP, int]] = field(default_factory=list)

    async def earliest_offsets(self, *partitions: TP) -> dict[TP, int]:
        return dict.fromkeys(partitions, self.oldest)

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.extend(partitions.items())


@dataclass
class App:
    consumer: Consumer


def rewinds(oldest: int = 0) -> tuple[Rewinds, Consumer]:
    consumer = Consumer(oldest)
    app: Any = App(consumer)
    return Rewinds(app), consumer


def record(offset: int, partition: int = 0) -> Record:
    return Record("t", partition, offset, [])


def test_records_fetched_before_the_seek_are_skipped_until_the_one_asked_for() -> None:
    found, consumer = rewinds()
    asyncio.run(found.seek({SOURCE: 9}))
    assert consumer.seeks == [(TP("t", 0), 9)]
    assert [found.wanted(record(o)) for o in (15, 16)] == [False, False]
    assert found.wanted(record(3, partition=1))  # other partitions go on
    assert found.wanted(record(9))
    assert found.wanted(record(10))
    assert found.gaps == set()


def test_a_skipped_record_makes_the_seek_again_and_only_then() -> None:
    found, consumer = rewinds()
    asyncio.run(found.seek({SOURCE: 9}))
    asyncio.run(found.again())
    assert len(consumer.seeks) == 1  # nothing skipped yet, not waiting long
    found.wanted(record(15))  # delivered after the seek: Faust would now skip 9-14
    asyncio.run(found.again())
    assert consumer.seeks == [(TP("t", 0), 9)] * 2
    found.wanted(record(9))
    found.wanted(record(16))
    asyncio.run(found.again())
    assert len(consumer.seeks) == 2


def test_a_partition_waiting_too_long_is_sought_again() -> None:
    found, consumer = rewinds()
    found.AGAIN_AFTER_S = 0.0
    asyncio.run(found.seek({SOURCE: 9}))
    asyncio.run(found.again())
    assert len(consumer.seeks) == 2


def test_records_gone_from_kafka_are_a_gap_let_through() -> None:
    found, consumer = rewinds(oldest=12)
    asyncio.run(found.seek({SOURCE: 9}))
    assert consumer.seeks == [(TP("t", 0), 12)]
    assert found.gaps == {SOURCE}
    assert found.wanted(record(12))
    found.applied([record(12)])
    assert found.gaps == set()


def test_a_revoked_partition_is_forgotten() -> None:
    found, _ = rewinds()
    asyncio.run(found.seek({SOURCE: 9}))
    found.revoked([TP("t", 0)])
    assert found.wanted(record(40))  # given back later: from where Faust seeks it
