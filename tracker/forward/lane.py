"""One destination's way through the events topic: read, batch, send, commit.

Each destination reads the events topic with a consumer group of its own
(``<forward_group>.<destination>``), from where that group left off (the oldest record
Kafka keeps, the first time). A platform that throttles, fails or refuses its setup
thus holds back its own conversions only, and each destination's progress and lag are
its own.

A lane runs one loop: it reads records until it holds ``max_batch`` accepted
conversions or ``forward_linger_s`` has passed since the first; skips what its
destination does not take (counting why) and what was sent or dead-lettered already
(:mod:`~tracker.forward.marks`); sends the rest (:class:`~tracker.forward.delivery.Delivery`);
and only then commits the offsets after the records it read. So every offset committed
is of records whose conversions were all taken or dead-lettered, partition by
partition, and a restart reads again at most what was not done. Records it holds while
a platform throttles or refuses its setup stay uncommitted and the lane reads no more:
that is how a misconfigured destination stops consuming.

A rebalance during a send may hand a partition to another forwarder that sends the same
conversions before this one marks them: the platforms deduplicate those by the same key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tracker.events import Event
from tracker.forward import dead
from tracker.forward.delivery import Delivery, Transport
from tracker.forward.destinations import Destination
from tracker.forward.exchange import Failure
from tracker.forward.marks import DEAD, SENT, Marks, unique
from tracker.forward.metrics import Metrics
from tracker.kafka import client_options
from tracker.records import decode_events
from tracker.settings import Settings

log = structlog.get_logger(__name__)

MAX_POLL_INTERVAL_MS: Final = 86_400_000
"""A lane reads nothing while it retries a batch, which may take ``forward_give_up_s`` or,
for a destination refusing its setup, until an operator acts. aiokafka would take such a
pause for a dead consumer and leave the group; its heartbeats (and rebalances) run on
their own, so a day is no risk of hiding a crashed process."""
RETRY_S: Final = 1.0
"""The wait after Kafka or Redis failed the loop, before the batch is read again."""
STOP_GRACE_S: Final = 15.0
"""At SIGTERM, how long a request in flight may take before the lane is cancelled."""


class Stopped(Exception):
    """The lane is stopping: a wait ended early."""


@dataclass(slots=True)
class _Batch:
    """Records read and not yet committed, and the conversions they carry."""

    offsets: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    """partition -> (first, last) offset read."""
    oldest_ms: int | None = None
    """The Kafka timestamp of the oldest record."""
    events: list[Event] = field(default_factory=list)
    """The conversions the destination accepts, in the records' order."""

    def add(self, tp: TopicPartition, offset: int, timestamp_ms: int) -> None:
        first, _ = self.offsets.get(tp, (offset, offset))
        self.offsets[tp] = (first, offset)
        if self.oldest_ms is None or timestamp_ms < self.oldest_ms:
            self.oldest_ms = timestamp_ms


class Lane:
    """Conversions from the events topic to one destination: see the module's docstring."""

    def __init__(
        self,
        destination: Destination,
        settings: Settings,
        redis: Redis,
        producer: AIOKafkaProducer,
        transport: Transport,
        metrics: Metrics,
    ) -> None:
        self.destination = destination
        self.name = destination.name
        self._settings = settings
        self._producer = producer
        self._metrics = metrics
        self._marks = Marks(redis, settings, destination.name)
        self._stopping = asyncio.Event()
        self._delivery = Delivery(destination, settings, transport, self, self.pause)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._batch: _Batch | None = None
        self.blocked_by: Failure | None = None
        metrics.measure_lag(self.name, self.lag_s)

    @property
    def group(self) -> str:
        return f"{self._settings.forward_group}.{self.name}"

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self._settings.events_topic,
            **client_options(self._settings),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"forward-{self.name}")
        log.info("forwarding", destination=self.name, group=self.group)

    async def stop(self) -> None:
        """End the loop: at once when it waits, after the request in flight otherwise.

        What was read and not yet done stays uncommitted, for the next start.
        """
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception:  # the loop's own error, logged when it ended
                log.info("stopping a lane that had ended on an error", destination=self.name)
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def alive(self) -> bool:
        """False once the loop ended other than by :meth:`stop`."""
        return self._task is not None and (not self._task.done() or self._stopping.is_set())

    def lag_s(self) -> float:
        """The age of the oldest record read and not yet done; 0 when there is none."""
        batch = self._batch
        if batch is None or batch.oldest_ms is None:
            return 0.0
        return max(0.0, time.time() - batch.oldest_ms / 1000)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``; :class:`Stopped` as soon as the lane is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        if self._stopping.is_set():
            raise Stopped

    @property
    def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("Lane used before start()")
        return self._consumer

    async def _run(self) -> None:
        while not self._stopping.is_set():
            batch = self._batch = _Batch()
            try:
                await self._gather(batch)
                if self._stopping.is_set():
                    return  # read, not sent: read again at the next start
                await self._send(batch)
                await self._commit(batch)
            except Stopped:
                return
            except (KafkaError, RedisError, OSError) as exc:
                log.warning("forwarding interrupted", destination=self.name, error=repr(exc))
                self._rewind(batch)
                with contextlib.suppress(Stopped):
                    await self.pause(RETRY_S)
            except Exception:
                log.exception("forwarding failed", destination=self.name)
                raise
            finally:
                self._batch = None

    async def _gather(self, batch: _Batch) -> None:
        """Read until ``batch`` holds a full request's conversions or the linger is over;
        at once when what was read holds no conversion."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while not self._stopping.is_set():
            wait = 1.0 if deadline is None else max(0.0, deadline - loop.time())
            fetched = await self._started.getmany(timeout_ms=int(wait * 1000))
            for tp, records in fetched.items():
                for record in records:
                    batch.add(tp, record.offset, record.timestamp)
                    batch.events += self._accepted(record.value)
            if batch.events and deadline is None:
                deadline = loop.time() + self._settings.forward_linger_s
            if len(batch.events) >= self.destination.max_batch:
                return
            if deadline is not None and loop.time() >= deadline:
                return
            if batch.offsets and not batch.events:
                return

    def _accepted(self, value: bytes) -> list[Event]:
        """The events of one record that the destination takes; the others counted."""
        try:
            events = decode_events(value)
        except ValueError:
            self._metrics.skip(self.name, "not an events record")
            log.warning("record skipped: not an events record", destination=self.name)
            return []
        now_ms = time.time_ns() // 1_000_000
        accepted: list[Event] = []
        reasons: Counter[str] = Counter()
        for event in events:
            reason = self.destination.accepts(event, self._settings, now_ms)
            if reason is None:
                accepted.append(event)
            else:
                reasons[reason] += 1
        for reason, count in reasons.items():
            self._metrics.skip(self.name, reason, count)
        return accepted

    async def _send(self, batch: _Batch) -> None:
        """Send the batch's conversions that were neither sent nor dead-lettered before."""
        first, repeats = unique(batch.events)
        self.skipped(repeats, "repeats another conversion of the batch")
        states = await self._marks.states(first)
        fresh = [event for event, state in zip(first, states, strict=True) if state is None]
        self.skipped([e for e, s in zip(first, states, strict=True) if s == SENT], "sent before")
        self.skipped(
            [e for e, s in zip(first, states, strict=True) if s == DEAD], "dead-lettered before"
        )
        if fresh:
            await self._delivery.deliver(fresh)

    async def _commit(self, batch: _Batch) -> None:
        """Commit the offsets after the batch's records, on the partitions still ours."""
        consumer = self._started
        owned = consumer.assignment()
        offsets = {tp: last + 1 for tp, (_, last) in batch.offsets.items() if tp in owned}
        if offsets:
            await consumer.commit(offsets)

    def _rewind(self, batch: _Batch) -> None:
        """Read the batch's records again: its send did not finish."""
        consumer = self._started
        owned = consumer.assignment()
        for tp, (first, _) in batch.offsets.items():
            if tp in owned:
                consumer.seek(tp, first)

    # The delivery's outlet

    async def taken(self, events: Sequence[Event]) -> None:
        self._metrics.sent.labels(self.name).inc(len(events))
        try:
            await self._marks.mark(events, SENT)
        except (RedisError, OSError) as exc:
            # Committed offsets cover them once the batch is done; only a crash before
            # then sends them again, which the platform deduplicates.
            log.warning("sent marks not written", destination=self.name, error=repr(exc))

    async def dead(self, events: Sequence[Event], failure: Failure, attempts: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        letter = dead.DeadLetter.of(self.name, events, failure, attempts, now_ms)
        while True:
            try:
                await dead.write(self._producer, self._settings, letter)
                break
            except KafkaError as exc:
                log.warning("dead letter not written yet", destination=self.name, error=repr(exc))
                await self.pause(RETRY_S)
        self._metrics.dead_lettered.labels(self.name).inc(len(events))
        log.warning(
            "conversions dead-lettered",
            destination=self.name,
            events=len(events),
            kind=failure.kind,
            code=failure.code,
            message=failure.message,
            attempts=attempts,
        )
        with contextlib.suppress(RedisError, OSError):  # a re-read then dead-letters again
            await self._marks.mark(events, DEAD)

    def failed(self, events: int, failure: Failure) -> None:
        self._metrics.failed.labels(self.name, failure.kind).inc(events)
        log.info(
            "send failed",
            destination=self.name,
            events=events,
            kind=failure.kind,
            code=failure.code,
            message=failure.message,
            retry_after_s=failure.retry_after_s,
        )

    async def blocked(self, failure: Failure | None) -> None:
        self.blocked_by = failure
        self._metrics.up.labels(self.name).set(0 if failure else 1)
        if failure is None:
            log.info("destination accepts its setup again", destination=self.name)
        else:
            log.error(
                "destination refuses its setup: nothing is sent until it is fixed",
                destination=self.name,
                code=failure.code,
                message=failure.message,
                retry_s=self._settings.forward_blocked_retry_s,
            )

    def skipped(self, events: Sequence[Event], reason: str) -> None:
        if events:
            self._metrics.skip(self.name, reason, len(events))

    def status(self) -> dict[str, Any]:
        """The lane's state for ``/readyz``."""
        if not self.alive:
            return {"status": "stopped"}
        if self.blocked_by is not None:
            failure = self.blocked_by
            return {"status": "blocked", "code": failure.code, "message": failure.message}
        return {"status": "ok"}


__all__ = ["MAX_POLL_INTERVAL_MS", "Lane", "Stopped"]
