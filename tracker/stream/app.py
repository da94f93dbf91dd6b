"""The Faust worker: reads event records, applies them to Redis through the sink.

Faust gives us consumer-group membership, partition assignment, offset commits
and graceful shutdown. Results do not rest on Faust's windowed tables (their
windows close by wall clock and ``on_window_close`` drops windows on
multi-partition workers): windows are bucketed on the event's own time, and the
sink makes every record count exactly once in Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import faust
import structlog
from faust.types import TP
from redis.exceptions import OutOfMemoryError, RedisError

from tracker import heap, kafka
from tracker.kafka_oauth import token_provider
from tracker.records import decode_events, encode_dead_letter
from tracker.redis_clients import async_client
from tracker.redis_nodes import MayEvict
from tracker.settings import Settings
from tracker.stream.sink import Record, Rewind, Sink, WatchError

log = structlog.get_logger(__name__)


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust's form of :func:`tracker.kafka.client_options`' TLS and SASL."""
    context = kafka.tls_context(settings) if settings.kafka_tls else None
    if settings.kafka_oauth:
        return faust.OAuthCredentials(oauth_cb=token_provider(settings), ssl_context=context)
    if settings.kafka_sasl:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    return faust.SSLCredentials(context) if context else None


def build_app(settings: Settings, datadir: Path) -> faust.App:
    """A Faust app consuming ``settings.events_topic`` into Redis; ``datadir`` is Faust's
    own directory (empty: tables are in memory)."""
    app = faust.App(
        settings.app_id,
        datadir=datadir,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=_credentials(settings),
        store="memory://",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_port=settings.worker_port,
        web_in_thread=False,
        # Records are applied idempotently; commits only bound the replay.
        broker_commit_interval=1.0,
        # A worker that joined while the broker was restarting may be assigned
        # nothing ("missing topic"); fresh metadata shows the topic and makes the
        # group rebalance within seconds instead of the default five minutes.
        consumer_metadata_max_age_ms=10_000,
        # Static membership when set: a stopping worker does not leave the group, and
        # one back under its id within the session timeout is given its partitions
        # again without a rebalance. Its partitions wait meanwhile.
        consumer_group_instance_id=settings.worker_instance_id or None,
        broker_session_timeout=settings.worker_session_timeout_s,
        # Kafka's advice: a heartbeat at most a third of the session timeout, so two
        # lost ones do not expire it.
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_s / 3),
        # Our topics exist before the worker starts (tracker.kafka.ensure_topics), and
        # no table or on_leader timer needs one of Faust's own. Faust declaring topics
        # anyway asks the controller for each: a broker restarting at that moment made
        # the worker crash (NodeNotReadyError in _get_controller_node) and stop.
        topic_allow_declare=False,
        topic_disable_leader=True,
    )
    events = app.topic(settings.events_topic, value_serializer="raw", key_serializer="raw")
    dead_letters = app.topic(
        settings.dead_letter_topic, value_serializer="raw", key_serializer="raw"
    )

    rewinds = Rewinds(app)

    @app.on_partitions_revoked.connect
    async def forget_rewinds(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        rewinds.revoked(args[0])  # the partitions revoked, as Faust sends them

    @app.timer(Rewinds.AGAIN_AFTER_S)  # type: ignore[untyped-decorator]  # Faust ships no types
    async def seek_again() -> None:  # a partition skipped whole by Faust brings no batch
        await rewinds.again()

    @app.task  # type: ignore[untyped-decorator]  # run once the worker has started
    async def settle_heap() -> None:
        heap.settle()

    @app.agent(events)
    async def apply_records(stream: Any) -> None:
        # noack_take: a record is acknowledged (and its offset committed) only after
        # the sink applied it. A crash, a SIGTERM mid-batch or a Redis outage then
        # leaves it uncommitted, and Kafka delivers it again; the sink's offset
        # guard makes that harmless.
        redis = async_client(settings)
        sink = Sink(redis, settings)
        try:
            async for batch in stream.noack_take(
                settings.worker_batch_max, within=settings.worker_batch_wait_s
            ):
                records = [await decoded(event) for event in batch]
                wanted = [r for r in records if r is not None and rewinds.wanted(r)]
                await rewinds.again()
                if await apply_until_done(sink, wanted):
                    for event in batch:
                        await stream.ack(event)
        finally:
            await sink.aclose()
            await redis.aclose()

    async def decoded(event: Any) -> Record | None:
        message = event.message
        try:
            return Record(
                message.topic, message.partition, message.offset, decode_events(event.value)
            )
        except ValueError as exc:
            log.error(
                "undecodable record, dead-lettered",
                partition=message.partition,
                offset=message.offset,
                error=str(exc),
            )
            letter = encode_dead_letter(
                event.value, {"record": str(exc)}, "worker", int(message.timestamp * 1000)
            )
            await dead_letters.send(value=letter)
            return None

    async def apply_until_done(sink: Sink, records: list[Record]) -> bool:
        """Apply, retrying while Redis is away or another apply raced ours.

        A ``WATCH`` conflict means a partition's offset moved meanwhile (a rebalance,
        a zombie); retrying re-reads it, so records already applied are skipped and
        the rest applied. Never leaving a batch unacknowledged matters: a gap in the
        acknowledged offsets is not safe to rely on for redelivery. Records of a
        partition the store is behind on are read again (:class:`Rewinds`); those of
        this batch are acknowledged unapplied, as the store's offset, not Kafka's, says
        where a partition resumes.
        """
        delay = 0.05
        while True:
            try:
                health = await sink.apply(records, rewinds.gaps)
            except Rewind as rewind:
                await rewinds.seek(rewind.offsets)
                records = [r for r in records if (r.topic, r.partition) not in rewind.offsets]
                continue
            except WatchError:
                log.info("offsets moved during the batch; applying again")
            except MayEvict as exc:
                log.error("applying nothing to a store that may evict keys", error=str(exc))
            except OutOfMemoryError as exc:
                log.error("the store is full: applying nothing until it has room", error=str(exc))
            except RedisError as exc:
                log.warning("redis unavailable, retrying", error=str(exc), retry_in=delay)
            else:
                log.debug("applied", records=len(records), **health)
                rewinds.applied(records)
                return True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        status = readiness(app.rebalancing_count, app.rebalancing)
        return web.json({"status": status}, status=200 if status == "ready" else 503)

    return app


def readiness(rebalances: int, rebalancing: bool) -> str:
    """``ready`` once the worker has joined its group and holds its partitions (none,
    when the group has more workers than partitions); else what it waits for.

    ``/healthz`` answers as soon as the process serves, seconds before it has joined:
    a rolling update gated on that restarts the next worker while this one's
    partitions still wait, and a test that starts workers and sends at once meets a
    rebalance (the fault battery's drain did, and charged it to four workers).
    """
    if not rebalances:
        return "joining"
    return "rebalancing" if rebalancing else "ready"


class Rewinds:
    """Partitions read again from where the store is, and the records to skip meanwhile.

    After a seek back, the records fetched before it still come, first: they are skipped
    until the one the seek asked for. Faust's fetcher also skips what is below the last
    offset it delivered, so one such record delivered after the seek would make it skip
    the very records asked for: the seek is made again whenever one is skipped here, and
    every few seconds while the one asked for has not come. When Kafka no longer holds
    that one (past its retention), the seek goes to the oldest it holds, and the gap is
    logged and let through: those records are lost to the store for good.
    """

    AGAIN_AFTER_S = 5.0

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._resume: dict[tuple[str, int], int] = {}
        self._sought: dict[tuple[str, int], float] = {}
        self._stale: set[tuple[str, int]] = set()
        self.gaps: set[tuple[str, int]] = set()

    def wanted(self, record: Record) -> bool:
        """Whether ``record`` is to be applied, not one fetched before a seek back."""
        source = (record.topic, record.partition)
        resume = self._resume.get(source)
        if resume is None or record.offset < resume:
            return True
        if record.offset > resume:
            self._stale.add(source)
            return False
        del self._resume[source]
        self._stale.discard(source)
        return True

    async def seek(self, offsets: dict[tuple[str, int], int]) -> None:
        for source, offset in offsets.items():
            tp = TP(*source)
            try:
                oldest = (await self._app.consumer.earliest_offsets(tp))[tp]
            except Exception as exc:  # revoked meanwhile: its next owner's sink rewinds it
                log.warning("could not read a partition again", partition=source, error=str(exc))
                continue
            resume = max(offset, oldest)
            if resume > offset:
                self.gaps.add(source)
                log.error(
                    "records the store lost are gone from Kafka too: lost for good",
                    partition=source,
                    offsets=[offset, resume - 1],
                )
            log.warning("the store is behind Kafka; reading again", partition=source, offset=resume)
            self._resume[source] = resume
            await self._seek(source)

    async def again(self) -> None:
        """Seek again each partition whose records skipped here, or that waits too long."""
        now = time.monotonic()
        for source in list(self._resume):
            if source in self._stale or now - self._sought[source] > self.AGAIN_AFTER_S:
                await self._seek(source)

    async def _seek(self, source: tuple[str, int]) -> None:
        self._stale.discard(source)
        self._sought[source] = time.monotonic()
        try:
            # seek_wait, not seek: it runs in the consumer's thread, where the fetcher's
            # buffers live; seek would change them under the fetcher's feet (KeyError there).
            await self._app.consumer.seek_wait({TP(*source): self._resume[source]})
        except Exception as exc:  # revoked meanwhile
            log.warning("could not read a partition again", partition=source, error=str(exc))

    def applied(self, records: list[Record]) -> None:
        self.gaps -= {(r.topic, r.partition) for r in records}

    def revoked(self, partitions: Collection[TP]) -> None:
        """Forget ``partitions``: given back later, they resume where Faust seeks them."""
        for tp in partitions:
            source = (tp.topic, tp.partition)
            self._resume.pop(source, None)
            self._stale.discard(source)
            self.gaps.discard(source)
