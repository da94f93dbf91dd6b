"""Hands accepted events to Kafka in batches, and tells each request when its are in.

Per-event produce calls cost aiokafka more Python work than the HTTP request
itself. Instead, events wait in a per-partition buffer, and a flusher sends one
record per partition carrying every event that arrived meanwhile, with
``acks=all`` and idempotence, and resolves the waiting requests when Kafka
acknowledges the record.

Batching adapts to the load instead of adding a fixed delay. An event arriving
after a quiet spell goes to Kafka at once, so a lone hit waits for nothing but
Kafka. Under load, flushes are at least ``flush_ms`` apart, and while one flush is
in flight the next one gathers events (group commit). All partitions flush
together, so their records travel in one produce request: aiokafka has one request
in flight per broker anyway, and partitions flushed one by one would each wait a
round trip behind the others. Each produce request costs aiokafka some 100-200 us
of CPU, so under load records grow with the traffic instead of their number.

When Kafka is slow or away, the buffer is bounded (``buffer_max_events``) and so
is the wait (``produce_timeout_s``): past either, :class:`Unavailable` tells the
handler to answer 503, never to pretend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tracker.events import Event
from tracker.kafka import client_options
from tracker.records import encode_records, partition_of
from tracker.settings import Settings

log = structlog.get_logger(__name__)


class Unavailable(RuntimeError):
    """Kafka did not take the events in time, or the buffer is full; retry later."""


@dataclass(slots=True)
class _Waiter:
    """One request's wait: done once each of the ``remaining`` records it joined is in."""

    future: asyncio.Future[None]
    remaining: int = 0


@dataclass(slots=True)
class _Pending:
    """The next record of one partition: its events and the requests waiting on it."""

    events: list[Event] = field(default_factory=list)
    waiters: list[_Waiter] = field(default_factory=list)
    expiry: asyncio.TimerHandle | None = None
    """Fails the waiters ``produce_timeout_s`` after the first event: one timer per
    record rather than one per request (:meth:`BatchingProducer._expire`)."""

    def acknowledged(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        for waiter in self.waiters:
            waiter.remaining -= 1
            if waiter.remaining == 0 and not waiter.future.done():
                waiter.future.set_result(None)

    def failed(self, error: Exception) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        for waiter in self.waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)


FlushObserver = Callable[[int, float], None]
"""Told of each partition's flush once Kafka acknowledged it: its events, and the seconds
from handing them to Kafka to the acknowledgement, retries included."""


def kafka_producer(settings: Settings) -> AIOKafkaProducer:
    """The collector's Kafka client (not started): nothing is lost once acknowledged."""
    compression = settings.kafka_compression
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=0,  # we batch ourselves; aiokafka should send at once
        compression_type=None if compression == "none" else compression,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=int(settings.produce_timeout_s * 1000),
    )


class BatchingProducer:
    def __init__(self, settings: Settings, on_flushed: FlushObserver | None = None) -> None:
        self._settings = settings
        self._on_flushed = on_flushed
        self._kafka: AIOKafkaProducer | None = None
        self._partitions = settings.topic_partitions
        self._pending: dict[int, _Pending] = {}
        self._buffered = 0
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._unacknowledged: set[int] = set()  # partitions with a record in flight
        self._retrying: set[int] = set()  # of those, the ones Kafka refused once
        self._last_error: float = 0.0
        self._stopping = False

    async def start(self) -> None:
        self._kafka = kafka_producer(self._settings)
        await self._kafka.start()
        partitions = await self._kafka.partitions_for(self._settings.events_topic)
        if partitions:
            self._partitions = len(partitions)
        self._flusher = asyncio.create_task(self._flush_loop(), name="flusher")

    async def stop(self) -> None:
        """Send everything buffered and wait for Kafka's acknowledgements, then close."""
        self._stopping = True
        self._wakeup.set()
        if self._flusher is not None:
            await self._flusher
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._started.stop()

    @property
    def _started(self) -> AIOKafkaProducer:
        if self._kafka is None:
            raise RuntimeError("BatchingProducer used before start()")
        return self._kafka

    @property
    def ready(self) -> bool:
        """False while Kafka refused our last records (a few seconds' memory)."""
        return self._flusher is not None and time.monotonic() - self._last_error > 5.0

    @property
    def _flushing(self) -> bool:
        """Whether records on their first try are in flight (``_retrying`` is a subset)."""
        return len(self._unacknowledged) > len(self._retrying)

    @property
    def buffered(self) -> int:
        return self._buffered

    async def send(self, events: Sequence[Event]) -> None:
        """Return once every event is in Kafka; :class:`Unavailable` if it cannot be."""
        if not events:
            return
        if self._stopping:
            raise Unavailable("collector is shutting down")
        if self._buffered + len(events) > self._settings.buffer_max_events:
            raise Unavailable("buffer full: Kafka is not keeping up")
        # One future per request, resolved by the records it joined (or failed by
        # their expiry): cheaper than a timeout around gathered shielded futures,
        # and a cancelled request harms no other.
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future())
        for event in events:
            pending = self._pending.get(p := partition_of(event, self._partitions))
            if pending is None:
                pending = self._pending[p] = _Pending()
                pending.expiry = loop.call_later(
                    self._settings.produce_timeout_s, self._expire, p, pending
                )
            if not pending.waiters or pending.waiters[-1] is not waiter:
                pending.waiters.append(waiter)
                waiter.remaining += 1
            pending.events.append(event)
            if len(pending.events) == self._settings.flush_max_events:
                self._wakeup.set()  # a full record goes without waiting for the flush
        self._buffered += len(events)
        if not self._flushing:
            self._wakeup.set()  # else the flush in flight wakes the flusher when it is in
        await waiter.future  # Unavailable when Kafka refused or did not answer in time

    def _expire(self, partition: int, pending: _Pending) -> None:
        """Answer ``pending``'s requests Unavailable, its time being up.

        Still queued (its partition's previous record not yet acknowledged), it is
        dropped: left queued, it would take new requests with no time limit of their
        own, and those it has were answered already. Retries of an idempotent producer
        never expire in aiokafka, so a record handed to Kafka may land later still.
        """
        if self._pending.get(partition) is pending:
            del self._pending[partition]
            self._buffered -= len(pending.events)
        pending.failed(Unavailable("Kafka did not acknowledge in time"))

    async def send_raw(self, topic: str, value: bytes) -> None:
        """One record to ``topic`` (dead letters), acknowledged before returning."""
        try:
            await asyncio.wait_for(
                self._started.send_and_wait(topic, value), self._settings.produce_timeout_s
            )
        except (KafkaError, TimeoutError) as exc:
            raise Unavailable(f"Kafka did not take the record: {exc!r}") from exc

    async def _flush_loop(self) -> None:
        interval = self._settings.flush_ms / 1000
        most = self._settings.flush_max_events
        last = -interval
        while True:
            await self._wakeup.wait()  # set by new events and by acknowledgements
            wait = last + interval - time.monotonic()
            if wait > 0 and not self._stopping and self._buffered < most:
                await asyncio.sleep(wait)  # busy: this flush gathers what arrives meanwhile
            self._wakeup.clear()
            # All partitions flush together, so their records share one produce
            # request: aiokafka has one request in flight per broker, and records
            # sent one by one would queue behind each other, a round trip each.
            # A partition Kafka refuses holds back only its own next record.
            flushing = self._flushing
            for partition in list(self._pending):
                batch = self._pending[partition]
                if partition in self._unacknowledged:
                    continue  # one record in flight per partition keeps them in order
                if flushing and len(batch.events) < most and not self._stopping:
                    continue  # joins the next flush, once those in flight are in
                del self._pending[partition]
                self._unacknowledged.add(partition)
                last = time.monotonic()
                task = asyncio.create_task(self._deliver(partition, batch))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if self._stopping and not self._pending:
                return

    async def _deliver(self, partition: int, batch: _Pending) -> None:
        started = time.monotonic()
        deadline = started + self._settings.produce_timeout_s
        # Several records only past flush_max_events (events gathered while the
        # partition's previous record was in flight) or Kafka's record size limit.
        most = self._settings.flush_max_events
        events = batch.events
        values = [
            v for i in range(0, len(events), most) for v in encode_records(events[i : i + most])
        ]
        sent = 0
        try:
            while True:
                try:
                    while sent < len(values):  # in order; an acknowledged one is not resent
                        future = await self._started.send(
                            self._settings.events_topic, values[sent], partition=partition
                        )
                        await future
                        sent += 1
                    batch.acknowledged()
                    if self._on_flushed is not None:
                        self._on_flushed(len(events), time.monotonic() - started)
                    return
                except KafkaError as exc:
                    self._last_error = time.monotonic()
                    if partition not in self._retrying:
                        self._retrying.add(partition)
                        self._wakeup.set()  # the other partitions need not wait for it
                    log.warning("kafka send failed", error=repr(exc), events=len(batch.events))
                    if time.monotonic() > deadline:
                        batch.failed(Unavailable(f"Kafka refused: {exc!r}"))
                        return
                    await asyncio.sleep(0.2)
        except Exception as exc:  # a bug, not Kafka: answer the requests now, not at timeout
            log.exception("delivery failed", events=len(batch.events))
            batch.failed(Unavailable(f"delivery failed: {exc!r}"))
        finally:
            self._buffered -= len(batch.events)
            self._unacknowledged.discard(partition)
            self._retrying.discard(partition)
            self._wakeup.set()  # the next flush may go now
