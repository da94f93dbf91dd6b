"""Hands accepted events to Kafka in batches, and tells each request when its are in.

Per-event produce calls cost aiokafka more Python work than the HTTP request
itself. Instead, events wait in a per-partition buffer; a flusher sends one record
per partition carrying every event that arrived meanwhile (at most ``flush_ms``
later), with ``acks=all`` and idempotence, and resolves the waiting requests when
Kafka acknowledges the record. When Kafka is slow or away, the buffer is bounded
(``buffer_max_events``) and so is the wait (``produce_timeout_s``): past either,
:class:`Unavailable` tells the handler to answer 503, never to pretend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tracker.events import Event
from tracker.records import encode_events, partition_of
from tracker.settings import Settings

log = structlog.get_logger(__name__)


class Unavailable(RuntimeError):
    """Kafka did not take the events in time, or the buffer is full; retry later."""


@dataclass(slots=True)
class _Pending:
    events: list[Event] = field(default_factory=list)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BatchingProducer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._kafka: AIOKafkaProducer | None = None
        self._partitions = settings.topic_partitions
        self._pending: dict[int, _Pending] = {}
        self._buffered = 0
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._last_error: float = 0.0
        self._stopping = False

    async def start(self) -> None:
        settings = self._settings
        self._kafka = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # we batch ourselves; aiokafka should send at once
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=int(settings.produce_timeout_s * 1000),
        )
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
        waits = set()
        for event in events:
            pending = self._pending.get(p := partition_of(event, self._partitions))
            if pending is None:
                pending = self._pending[p] = _Pending()
            pending.events.append(event)
            waits.add(pending.done)
        self._buffered += len(events)
        self._wakeup.set()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(asyncio.shield(w) for w in waits)),
                self._settings.produce_timeout_s,
            )
        except TimeoutError:
            raise Unavailable("Kafka did not acknowledge in time") from None

    async def send_raw(self, topic: str, value: bytes) -> None:
        """One record to ``topic`` (dead letters), acknowledged before returning."""
        try:
            await asyncio.wait_for(
                self._started.send_and_wait(topic, value), self._settings.produce_timeout_s
            )
        except (KafkaError, TimeoutError) as exc:
            raise Unavailable(f"Kafka did not take the record: {exc!r}") from exc

    async def _flush_loop(self) -> None:
        linger = self._settings.flush_ms / 1000
        while True:
            await self._wakeup.wait()
            if linger and not self._stopping and self._buffered < self._settings.flush_max_events:
                await asyncio.sleep(linger)  # let concurrent requests join this batch
            self._wakeup.clear()
            pending, self._pending = self._pending, {}
            for partition, batch in pending.items():
                task = asyncio.create_task(self._deliver(partition, batch))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if self._stopping and not self._pending:
                return

    async def _deliver(self, partition: int, batch: _Pending) -> None:
        deadline = time.monotonic() + self._settings.produce_timeout_s
        value = encode_events(batch.events)
        try:
            while True:
                try:
                    future = await self._started.send(
                        self._settings.events_topic, value, partition=partition
                    )
                    await future
                    batch.done.set_result(None)
                    return
                except KafkaError as exc:
                    self._last_error = time.monotonic()
                    log.warning("kafka send failed", error=repr(exc), events=len(batch.events))
                    if time.monotonic() > deadline:
                        batch.done.set_exception(Unavailable(f"Kafka refused: {exc!r}"))
                        return
                    await asyncio.sleep(0.2)
        finally:
            self._buffered -= len(batch.events)
