"""``tracker replay-dead-letters``: judge rejected input again, with today's settings.

After a fix (a currency rate added, a redirect host allowed, a limit raised), input the
collector rejected earlier may pass. This reads the dead-letter topic from the
beginning (or from ``--since``), validates each letter's raw payload exactly as the
collector would now (:mod:`collector.validation`, with the request context the letter
kept) and sends what passes to the events topic, in the collector's record format and
partitioning. ``--dry-run`` only reports.

Idempotence: a replayed event keeps its own ``event_id``; one without gets
``dl-<partition>-<offset>-<index>`` from the letter's place in the topic (a postback,
``pb-`` and its signature, as the collector would have given it). So the same letter
always yields the same event, which the worker counts once. In addition, every letter
replayed is recorded in ``<dead-letter topic>.replayed`` once its events are
acknowledged, and later runs skip it, so the events topic normally holds each replayed
event once; only a crash between the two writes sends an event again (still counted
once, by its id).

Replayed events keep their original receive time: those further behind than the
grace period of their partition's newest event are counted as late, not in windows.
Letters that cannot be judged again stay rejected: whole bodies that were not JSON,
payloads cut to fit the letter, records the worker could not decode.

Letters of every protocol are judged: the pixel's, the batch API's, the redirect's,
postbacks, Segment's and Snowplow's messages (each letter of an SDK is one message,
made self-contained by its adapter). What a protocol said that tracker did not count
(a Segment ``track`` of a name that was no conversion then) stays rejected with its
reason until a setting or a later version counts it: then it replays like the rest.

A rejected item of a batch sent in an envelope keeps the envelope's ``sent_at`` in its
letter, so its ``ts`` is corrected as the collector corrected it. A whole envelope the
collector refused (a ``sent_at`` beyond the horizon, say) is judged again as a whole:
it replays once every one of its events passes, and otherwise stays rejected with the
reasons of each bad event (``events[3].ts: ...``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from redis.exceptions import RedisError

from collector import postback, redirect, segment_messages, snowplow_events, validation
from collector.cookieless import Salts
from collector.producer import kafka_producer
from tracker.events import Context, Event, InvalidEvent, Rules, parse_event
from tracker.kafka import KafkaUnavailable, client_options, ensure_topics
from tracker.records import decode_dead_letter, encode_records, partition_of
from tracker.redis_clients import async_client
from tracker.settings import Settings
from tracker.store import Keys
from tracker.types import EpochMs

READ_BATCH = 500
"""Dead letters judged and replayed per round trip; bounds the memory a run needs."""
STALL_S = 30.0
"""A read that makes no progress this long fails instead of waiting forever."""
_UNKNOWN_TOPIC = 3  # Kafka's UNKNOWN_TOPIC_OR_PARTITION error code


def replayed_topic(settings: Settings) -> str:
    """Where replayed letters are recorded, so a later run skips them."""
    return f"{settings.dead_letter_topic}.replayed"


def derived_id(partition: int, offset: int, index: int = 0) -> str:
    """The event id of the ``index``-th event of a letter that carried none: stable."""
    return f"dl-{partition}-{offset}-{index}"


def judge(
    letter: Mapping[str, Any],
    partition: int,
    offset: int,
    rules: Rules,
    allowed: redirect.AllowList,
    salt: bytes | None = None,
) -> list[Event]:
    """The events a dead letter yields under ``rules``; :class:`InvalidEvent` if none.

    ``salt``: the replaying day's key for cookieless visitors (the letter's own day's
    key is gone by design).
    """
    if letter.get("truncated"):
        raise InvalidEvent({"raw": "was cut to fit the dead letter and cannot be replayed"})
    raw, endpoint = letter.get("raw"), letter.get("endpoint")
    received_at = letter.get("received_at")
    if not isinstance(raw, str) or not isinstance(received_at, int):
        raise InvalidEvent({"letter": "has no raw payload or receive time"})
    context = validation.restored_context(received_at, letter.get("context"), salt)
    fallback_id = derived_id(partition, offset)
    if endpoint == "pixel":
        params = validation.parse_query(raw)
        if not params.get("event_id"):
            params["event_id"] = fallback_id
        return [parse_event(params, context, rules)]
    if endpoint == "batch":
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidEvent({"raw": "is a request body that was not JSON"}) from None
        if validation.is_envelope(item):
            return _envelope(item, context, rules, partition, offset)
        return [_batch_item(item, context, rules, fallback_id)]
    if endpoint == "redirect":
        params = validation.parse_query(raw)
        event, _ = redirect.click_event(params, context, rules, allowed, fallback_id, fallback_id)
        return [event]
    if endpoint == "postback":
        params = _postback_params(raw)
        event_id = None if params.get("sig") or params.get("event_id") else fallback_id
        return [postback.conversion(params, received_at, rules, event_id)]
    if endpoint == "segment":
        return segment_messages.judge(raw, context, rules, fallback_id)
    if endpoint == "snowplow":
        return snowplow_events.judge(raw, context, rules, fallback_id)
    raise InvalidEvent({"endpoint": f"letters from {endpoint!r} cannot be replayed"})


def _batch_item(item: Any, context: Context, rules: Rules, fallback_id: str) -> Event:
    if not isinstance(item, dict):
        raise InvalidEvent({"event": "must be a JSON object"})
    validation.check_size(item)
    if not item.get("event_id"):
        item["event_id"] = fallback_id
    return parse_event(item, context, rules)


def _envelope(
    body: dict[str, Any], context: Context, rules: Rules, partition: int, offset: int
) -> list[Event]:
    """A whole batch envelope the collector refused (its ``sent_at`` or shape), judged
    again: all its events or, naming each bad one by index, none."""
    context.sent_at, items = validation.envelope(body, context.received_at, rules)
    events: list[Event] = []
    reasons: dict[str, str] = {}
    for index, item in enumerate(items):
        try:
            events.append(_batch_item(item, context, rules, derived_id(partition, offset, index)))
        except InvalidEvent as exc:
            reasons.update({f"events[{index}].{name}": why for name, why in exc.reasons.items()})
    if reasons:
        raise InvalidEvent(reasons)
    return events


def _postback_params(raw: str) -> dict[str, str]:
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError:
        params = None
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise InvalidEvent({"raw": "is not a postback's parameters"})
    return params


@dataclass(slots=True)
class Summary:
    """What a run did, or would do with ``dry_run``."""

    topic: str
    since_ms: EpochMs | None
    dry_run: bool
    read: int = 0
    replayed: int = 0
    events: int = 0
    skipped: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def render(self, top: int = 10) -> str:
        since = "the beginning" if self.since_ms is None else f"epoch ms {self.since_ms}"
        verb = "would replay" if self.dry_run else "replayed"
        lines = [
            f"dead letters read from {self.topic} since {since}: {self.read}",
            f"  {verb}: {self.replayed} ({self.events} events)",
            f"  already replayed earlier, skipped: {self.skipped}",
            f"  still rejected: {self.rejected}",
        ]
        if self.reasons:
            lines.append("top reasons still rejected:")
            common = self.reasons.most_common(top)
            lines += [f"  {count:>7}  {reason[:200]}" for reason, count in common]
        return "\n".join(lines)


async def replay(settings: Settings, since_ms: EpochMs | None, dry_run: bool) -> Summary:
    """Judge every dead letter (since ``since_ms``) again; send what passes unless ``dry_run``.

    Raises :class:`KafkaUnavailable` when Kafka cannot be read or written.
    """
    summary = Summary(settings.dead_letter_topic, since_ms, dry_run)
    rules = validation.rules(settings)
    allowed = redirect.AllowList.from_settings(settings)
    consumer = letters_consumer(settings)
    producer = kafka_producer(settings)
    admin = AIOKafkaAdminClient(**client_options(settings))
    salt = await todays_salt(settings)
    try:
        await ensure_topics(settings)
        await admin.start()
        if not dry_run:
            await _ensure_replayed_topic(admin, settings)
        await consumer.start()
        await producer.start()
        marks = await topic_partitions(admin, replayed_topic(settings))
        done = {
            (int(mark["partition"]), int(mark["offset"]))
            async for records in read_topic(consumer, replayed_topic(settings), marks, None)
            for mark in (orjson.loads(record.value) for record in records)
        }
        partitions = len(await topic_partitions(admin, settings.events_topic))
        letters = await topic_partitions(admin, settings.dead_letter_topic)
        async for records in read_topic(consumer, settings.dead_letter_topic, letters, since_ms):
            replayable: list[tuple[int, int, list[Event]]] = []
            for record in records:
                summary.read += 1
                if (record.partition, record.offset) in done:
                    summary.skipped += 1
                    continue
                try:
                    letter = decode_dead_letter(record.value)
                    events = judge(letter, record.partition, record.offset, rules, allowed, salt)
                except (InvalidEvent, ValueError) as exc:
                    reasons = getattr(exc, "reasons", None) or {"letter": str(exc)}
                    summary.rejected += 1
                    summary.reasons.update(f"{name}: {why}" for name, why in reasons.items())
                    continue
                replayable.append((record.partition, record.offset, events))
                summary.replayed += 1
                summary.events += len(events)
            if replayable and not dry_run:
                await _send(producer, settings, partitions, replayable)
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap} failed during the replay: {exc!r}"
        ) from exc
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.close()
    return summary


def letters_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A consumer for reading a dead-letter topic from its start, committing nothing:
    what was replayed is kept in a topic of its own."""
    return AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=READ_BATCH,
    )


async def todays_salt(settings: Settings) -> bytes | None:
    """Today's cookieless salt, as the collectors share it; None when Redis is unreachable
    (cookieless letters then stay rejected, saying why)."""
    redis = async_client(settings)
    now = int(time.time() * 1000)
    salts = Salts(redis, Keys(settings.key_prefix))
    try:
        await salts.refresh(now)
    except (RedisError, OSError):
        return None
    finally:
        await redis.aclose()
    return salts.today(now)


async def topic_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    """The partitions of ``topic`` (none when it does not exist), once they have leaders."""
    if topic not in await admin.list_topics():
        return []  # describing it would create it, where the broker auto-creates topics
    stalled_at = time.monotonic() + STALL_S
    while True:
        (described,) = await admin.describe_topics([topic])
        if described["error_code"] == _UNKNOWN_TOPIC:
            return []
        partitions = described["partitions"]
        if partitions and all(p["leader"] >= 0 for p in partitions):
            return sorted(p["partition"] for p in partitions)
        if time.monotonic() > stalled_at:
            raise KafkaUnavailable(f"{topic} has no leader for {STALL_S:.0f} s")
        await asyncio.sleep(0.1)


async def read_topic(
    consumer: AIOKafkaConsumer, topic: str, partitions: list[int], since_ms: EpochMs | None
) -> AsyncIterator[list[Any]]:
    """Batches of ``topic``'s records up to its end as of now, from ``since_ms`` or the start."""
    if not partitions:
        return
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    # Explicit offsets: seek_to_beginning() can lose a race against the reset that
    # assign() starts, leaving the consumer at the end.
    if since_ms is None:
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
    else:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        for tp in tps:
            consumer.seek(tp, found[tp].offset if found[tp] is not None else ends[tp])
    waiting = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    stalled_at = time.monotonic() + STALL_S
    while waiting:
        fetched = await consumer.getmany(*waiting, timeout_ms=500)
        batch = [r for tp, records in fetched.items() for r in records if r.offset < ends[tp]]
        if batch:
            stalled_at = time.monotonic() + STALL_S
            yield batch
        elif time.monotonic() > stalled_at:
            raise KafkaUnavailable(f"no progress reading {topic} for {STALL_S:.0f} s")
        waiting = {tp for tp in waiting if await consumer.position(tp) < ends[tp]}


async def _send(
    producer: AIOKafkaProducer,
    settings: Settings,
    partitions: int,
    replayable: Sequence[tuple[int, int, list[Event]]],
) -> None:
    """Events first, acknowledged; then the marks that say their letters are replayed."""
    by_partition: dict[int, list[Event]] = {}
    for _, _, events in replayable:
        for event in events:
            by_partition.setdefault(partition_of(event, partitions), []).append(event)
    sent = [
        await producer.send(settings.events_topic, value, partition=partition)
        for partition, events in by_partition.items()
        for value in encode_records(events)
    ]
    await asyncio.gather(*sent)
    now_ms = time.time_ns() // 1_000_000
    marks = [
        await producer.send(
            replayed_topic(settings),
            orjson.dumps(
                {
                    "partition": partition,
                    "offset": offset,
                    "event_ids": [e.event_id for e in events],
                    "replayed_at": now_ms,
                }
            ),
            key=f"{partition}:{offset}".encode(),
        )
        for partition, offset, events in replayable
    ]
    await asyncio.gather(*marks)


async def _ensure_replayed_topic(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    try:
        if replayed_topic(settings) not in set(await admin.list_topics()):
            topic = NewTopic(replayed_topic(settings), 1, settings.topic_replicas)
            await admin.create_topics([topic])
    except TopicAlreadyExistsError:
        pass  # another run created it meanwhile


def run(settings: Settings, since_ms: EpochMs | None, dry_run: bool) -> Summary:
    return asyncio.run(replay(settings, since_ms, dry_run))


__all__ = [
    "Summary",
    "derived_id",
    "judge",
    "read_topic",
    "replay",
    "replayed_topic",
    "run",
    "topic_partitions",
]
