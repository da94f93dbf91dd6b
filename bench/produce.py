"""Produce benchmark: what one acknowledged produce round trip costs the collector's core.

``python -m bench.produce`` (starts the local Kafka when none answers). The collector
hands Kafka one record per partition per flush and waits for the acknowledgement
(``collector/producer.py``); this times that pattern alone, in this process pinned to
the server's core with the broker on the other, as ``bench/collector`` places them.
Each flush sends ``records`` records (one per partition, all in one produce request)
of ``events`` realistic events each, with the collector's settings (``acks=all``,
idempotence, its compression), and waits until Kafka acknowledged them all.

Printed per flush: this process's CPU (user and system, all threads), and per event;
each as a ratio of the collector's usual operating point (4 records of 10 events:
~40 pixel hits a flush at 64 connections), measured in the same round. Every round
runs each shape once, in turn, so a load change hits them all alike; each figure is
the best of ``--rounds``.

When ``confluent-kafka`` (librdkafka) is importable, the same flushes also go through
it (``produce`` per record, then ``flush``), as the alternative client with the least
Python per request. It is not a dependency of the project: ``pip install
confluent-kafka`` to compare.

``--secure``: what TLS and a SASL login cost instead. A broker of its own
(harness/secure_kafka.py) takes the same flushes on its PLAINTEXT listener and on its
SASL_SSL one (``TRACKER_KAFKA_SECURITY_PROTOCOL=SASL_SSL``), in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.collector import BROKER_PIDFILE, LOAD_CORE, SERVER_CORE, broker_on
from bench.conditions import describe, settle
from collector.producer import kafka_producer
from collector.validation import rules
from harness.redis_servers import certificates
from harness.secure_kafka import secure_kafka
from harness.services import kafka_bootstrap
from tracker import simulate
from tracker.events import Context, parse_event
from tracker.kafka import ensure_topics
from tracker.records import encode_records
from tracker.settings import Settings

Shape = tuple[int, int]
"""(records per flush, one per partition; events per record)."""
SHAPES: tuple[Shape, ...] = ((1, 10), (1, 40), (4, 10), (4, 40))
REFERENCE: Shape = (4, 10)
"""The collector's usual flush at 64 connections."""


@dataclass(frozen=True, slots=True)
class Cost:
    user_us: float
    system_us: float
    flushes_per_s: float

    @property
    def cpu_us(self) -> float:
        return self.user_us + self.system_us


def record(events: int) -> bytes:
    """One record of ``events`` events, as the collector writes them."""
    raw = simulate.sample(events, seed=events, now_ms=int(time.time() * 1000))
    context = Context(ip="203.0.113.7", user_agent="Mozilla/5.0 Chrome/120.0")
    judged = rules(Settings())
    parsed = [parse_event(item, context, judged) for item in raw]
    return encode_records(parsed)[0]


def timed(flush: Callable[[], Any], flushes: int) -> Cost:
    before, started = os.times(), time.perf_counter()
    for _ in range(flushes):
        flush()
    after, wall = os.times(), time.perf_counter() - started
    return Cost(
        (after.user - before.user) / flushes * 1e6,
        (after.system - before.system) / flushes * 1e6,
        flushes / wall,
    )


class Aiokafka:
    """The collector's client, configured as ``collector/producer.py`` configures it."""

    def __init__(self, settings: Settings, name: str = "aiokafka") -> None:
        self.name = name
        self._loop = uvloop.new_event_loop()
        self._topic = settings.events_topic
        self._producer = self._loop.run_until_complete(self._start(settings))

    @staticmethod
    async def _start(settings: Settings) -> AIOKafkaProducer:
        producer = kafka_producer(settings)  # aiokafka takes the loop running at its making
        await producer.start()
        return producer

    def cost(self, values: list[bytes], flushes: int) -> Cost:
        async def flush() -> None:
            sent = [
                await self._producer.send(self._topic, value, partition=partition)
                for partition, value in enumerate(values)
            ]
            for future in sent:
                await future

        return timed(lambda: self._loop.run_until_complete(flush()), flushes)

    def close(self) -> None:
        self._loop.run_until_complete(self._producer.stop())
        self._loop.close()


class Librdkafka:
    """confluent-kafka with the same guarantees: acks=all, idempotence, compression."""

    name = "confluent-kafka"

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer  # type: ignore[import-not-found]

        self._topic = settings.events_topic
        self._producer = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "compression.type": settings.kafka_compression,
            }
        )

    def cost(self, values: list[bytes], flushes: int) -> Cost:
        def flush() -> None:
            for partition, value in enumerate(values):
                self._producer.produce(self._topic, value, partition=partition)
            self._producer.flush()

        return timed(flush, flushes)

    def close(self) -> None:
        self._producer.flush()


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([settings.events_topic, settings.dead_letter_topic])
    finally:
        await admin.close()


def measure(
    clients: list[Aiokafka | Librdkafka], args: argparse.Namespace
) -> dict[str, dict[Shape, Cost]]:
    """The best cost of each shape for each of ``clients`` (closed after), the first's
    the reference."""
    records = {events: record(events) for events in {e for _, e in SHAPES}}
    best: dict[str, dict[Shape, Cost]] = {client.name: {} for client in clients}
    try:
        for client in clients:  # connections, metadata and the broker's first writes
            client.cost([records[10]] * 4, args.flushes // 4)
        for _ in range(args.rounds):
            for shape in SHAPES:
                count, events = shape
                for client in clients:
                    cost = client.cost([records[events]] * count, args.flushes)
                    kept = best[client.name].get(shape)
                    if kept is None or cost.cpu_us < kept.cpu_us:
                        best[client.name][shape] = cost
    finally:
        for client in clients:
            client.close()
    return best


def report(best: dict[str, dict[Shape, Cost]], compression: str) -> None:
    first = next(iter(best))
    reference = best[first][REFERENCE]
    print(
        f"\nCPU of this process per acknowledged flush (acks=all, idempotent, {compression}); "
        f"ratios against {first} at {REFERENCE[0]} records of {REFERENCE[1]} events"
    )
    print(
        f"{'client':<20}{'records':>8}{'events':>8}{'us/flush':>10}{'user':>7}{'sys':>6}"
        f"{'us/event':>10}{'vs ref':>8}{'flushes/s':>11}"
    )
    for name, shapes in best.items():
        for (count, events), cost in shapes.items():
            per_event = cost.cpu_us / (count * events)
            print(
                f"{name:<20}{count:>8}{events:>8}{cost.cpu_us:>10.0f}{cost.user_us:>7.0f}"
                f"{cost.system_us:>6.0f}{per_event:>10.2f}{cost.cpu_us / reference.cpu_us:>7.2f}x"
                f"{cost.flushes_per_s:>11,.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--flushes", type=int, default=2000, help="per shape and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--secure", action="store_true", help="plain text against TLS with a SASL login"
    )
    args = parser.parse_args()

    print(describe())
    print(settle())
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {SERVER_CORE})
    with ExitStack() as stack:
        if args.secure:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            secure = stack.enter_context(secure_kafka(folder, certificates(folder)))
            bootstrap, pidfile = secure.plain, secure.pidfile
        else:
            bootstrap, pidfile = stack.enter_context(kafka_bootstrap()), BROKER_PIDFILE
        print(stack.enter_context(broker_on(LOAD_CORE, pidfile)))
        run = f"bench-produce-{uuid.uuid4().hex[:8]}"
        settings = Settings(
            kafka_bootstrap=bootstrap,
            events_topic=f"{run}.events",
            dead_letter_topic=f"{run}.dead",
            topic_partitions=max(count for count, _ in SHAPES),
        )
        asyncio.run(ensure_topics(settings))
        clients: list[Aiokafka | Librdkafka] = [Aiokafka(settings)]
        if args.secure:
            clients.append(Aiokafka(secure.settings(settings), "aiokafka SASL_SSL"))
        else:
            try:
                clients.append(Librdkafka(settings))
            except ImportError:
                print("confluent-kafka not installed: aiokafka only")
        try:
            best = measure(clients, args)
        finally:
            asyncio.run(delete_topics(settings))
    report(best, settings.kafka_compression)
    print()
    print(describe())


if __name__ == "__main__":
    main()
