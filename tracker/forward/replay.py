"""``tracker replay-forwarding``: send one destination's dead letters again, after a fix.

Reads ``<forward_dead_letter_topic>.<destination>`` from the beginning (or from
``--since``, by the time each letter was written) and sends each letter's conversions
to that destination only, with today's settings and the forwarder's retries
(:class:`~tracker.forward.delivery.Delivery`). ``--dry-run`` only reports.

Nothing is sent twice: a conversion whose sent mark is set (:mod:`~tracker.forward.marks`)
is left out, and every letter whose conversions were all taken is recorded in
``<its topic>.replayed`` (as :mod:`tracker.deadletters` records the collector's), which
later runs skip. A letter refused again stays as it is, its reason in the summary, for
a later run; a refusal of the destination's setup stops the run (exit 1), sending
nothing more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from collector.producer import kafka_producer
from tracker.deadletters import Summary, letters_consumer, read_topic, topic_partitions
from tracker.events import Event
from tracker.forward import dead
from tracker.forward.delivery import Delivery, Transport
from tracker.forward.destinations import Destination
from tracker.forward.exchange import Failure
from tracker.forward.marks import SENT, Marks
from tracker.forward.transport import HttpTransport
from tracker.kafka import KafkaUnavailable, client_options, ensure_topics
from tracker.redis_clients import async_client
from tracker.settings import Settings
from tracker.store import StoreUnavailable
from tracker.types import EpochMs


class Refused(RuntimeError):
    """The destination refused its setup (credentials, ids): fix it, then replay again."""


class _Resend:
    """The outlet of one letter's delivery: what was taken, and why the rest was not."""

    def __init__(self, marks: Marks) -> None:
        self._marks = marks
        self.taken_count = 0
        self.failures: list[Failure] = []

    async def taken(self, events: Sequence[Event]) -> None:
        self.taken_count += len(events)
        await self._marks.mark(events, SENT)

    async def dead(self, events: Sequence[Event], failure: Failure, attempts: int) -> None:
        self.failures.append(failure)  # the letter stays; no second letter is written

    def failed(self, events: int, failure: Failure) -> None:
        pass  # retried by the delivery, or dead above

    async def blocked(self, failure: Failure | None) -> None:
        if failure is not None:
            raise Refused(f"{failure.code}: {failure.message}")

    def skipped(self, events: Sequence[Event], reason: str) -> None:
        pass  # repeats within the letter share their key, and its fate


async def replay(
    settings: Settings, destination: Destination, since_ms: EpochMs | None, dry_run: bool
) -> Summary:
    """Send ``destination``'s dead letters (since ``since_ms``) again unless ``dry_run``.

    Raises :class:`KafkaUnavailable` when Kafka cannot be read or written,
    :class:`StoreUnavailable` when Redis (the sent marks) does not answer, and
    :class:`Refused` when the destination refuses its setup.
    """
    name = destination.name
    topic = dead.topic(settings, name)
    summary = Summary(topic, since_ms, dry_run)
    consumer = letters_consumer(settings)
    producer = kafka_producer(settings)
    admin = AIOKafkaAdminClient(**client_options(settings))
    redis = async_client(settings)
    marks = Marks(redis, settings, name)
    transport = HttpTransport(settings)
    try:
        await ensure_topics(settings, dead.topics(settings, [name]))
        await admin.start()
        await consumer.start()
        await producer.start()
        replayed = dead.replayed_topic(settings, name)
        done = {
            (int(mark["partition"]), int(mark["offset"]))
            async for records in read_topic(
                consumer, replayed, await topic_partitions(admin, replayed), None
            )
            for mark in (orjson.loads(record.value) for record in records)
        }
        partitions = await topic_partitions(admin, topic)
        async for records in read_topic(consumer, topic, partitions, since_ms):
            for record in records:
                summary.read += 1
                if (record.partition, record.offset) in done:
                    summary.skipped += 1
                    continue
                try:
                    letter = dead.decode(record.value)
                except ValueError as exc:
                    summary.rejected += 1
                    summary.reasons[str(exc)[:200]] += 1
                    continue
                place = (record.partition, record.offset)
                await _resend(
                    settings, destination, transport, marks, producer, letter, place, summary
                )
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap} failed during the replay: {exc!r}"
        ) from exc
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"Redis (the sent marks) failed during the replay: {exc!r}") from exc
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.close()
        await transport.aclose()
        await redis.aclose()
    return summary


async def _resend(
    settings: Settings,
    destination: Destination,
    transport: Transport,
    marks: Marks,
    producer: AIOKafkaProducer,
    letter: dead.DeadLetter,
    place: tuple[int, int],
    summary: Summary,
) -> None:
    """Send the conversions of one letter that were not sent since; record it once all are."""
    states = await marks.states(letter.events)
    unsent = [event for event, state in zip(letter.events, states, strict=True) if state != SENT]
    if summary.dry_run:
        summary.replayed += 1
        summary.events += len(unsent)
        return
    outlet = _Resend(marks)
    if unsent:
        await Delivery(destination, settings, transport, outlet, asyncio.sleep).deliver(unsent)
    if outlet.failures:
        summary.rejected += 1
        summary.reasons.update(f"{f.kind} {f.code}: {f.message}" for f in outlet.failures)
        return
    summary.replayed += 1
    summary.events += outlet.taken_count
    partition, offset = place
    mark = {
        "partition": partition,
        "offset": offset,
        "event_ids": [event.event_id for event in letter.events],
        "replayed_at": time.time_ns() // 1_000_000,
    }
    await producer.send_and_wait(
        dead.replayed_topic(settings, destination.name),
        orjson.dumps(mark),
        key=f"{partition}:{offset}".encode(),
    )


def run(
    settings: Settings, destination: Destination, since_ms: EpochMs | None, dry_run: bool
) -> Summary:
    return asyncio.run(replay(settings, destination, since_ms, dry_run))


__all__ = ["Refused", "replay", "run"]
