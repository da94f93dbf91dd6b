"""Applies batches of Kafka records to Redis exactly once.

Each call reads, under ``WATCH``, the last applied offset of every partition in the
batch, skips records at or below it, folds the rest (:func:`aggregate.fold`) and
writes the sums, the remembered event ids and the new offsets in one ``MULTI``.
So a record counts once however often Kafka redelivers it (restart, rebalance,
crash before the offset commit), and a worker that lost its partition to another
(a zombie) fails its ``EXEC`` instead of double counting. This relies on Redis
keeping acknowledged writes across its own restarts (``appendfsync always``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import WatchError

from tracker.events import Event
from tracker.settings import Settings
from tracker.store import SEEN_TTL_S, Keys
from tracker.stream.aggregate import SpendFigure, fold, spend_key
from tracker.types import EpochMs
from tracker.windows import ALL_TIME

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record of events, with where it came from."""

    topic: str
    partition: int
    offset: int
    events: Sequence[Event]


@dataclass(frozen=True, slots=True)
class SourceState:
    offset: int = -1
    watermark: EpochMs = 0
    newest: EpochMs = 0


class Sink:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._keys = Keys(settings.redis_prefix)
        self._grace_ms = settings.grace_s * 1000
        self._rates = settings.rates()
        self._ttl = {
            "1m": settings.retention_1m_days * 86_400,
            "1h": settings.retention_1h_days * 86_400,
            "1d": settings.retention_1d_days * 86_400,
        }

    async def apply(self, records: Sequence[Record]) -> Counter[str]:
        """Apply ``records`` once; returns the health counters of what was new.

        Raises :class:`WatchError` when another worker moved a partition's offset
        meanwhile: the partition is no longer ours, and nothing was written.
        """
        keys = self._keys
        by_source: dict[tuple[str, int], list[Record]] = {}
        for record in records:
            by_source.setdefault((record.topic, record.partition), []).append(record)
        source_keys = [keys.source(topic, partition) for topic, partition in by_source]
        events = [event for record in records for event in record.events]
        seen_keys = [keys.seen(event.event_id) for event in events]
        spends = sorted({spend_key(e) for e in events if e.type == "spend" and not e.bot})
        spend_keys = [keys.spend(*key) for key in spends]

        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(*source_keys)
            found = await pipe.mget(*source_keys, *seen_keys, *spend_keys)
            states = [_source_state(raw) for raw in found[: len(source_keys)]]
            seen_raw = found[len(source_keys) : len(source_keys) + len(seen_keys)]
            seen = {e.event_id for e, raw in zip(events, seen_raw, strict=True) if raw}
            spend_before = {
                key: _spend_figure(raw)
                for key, raw in zip(spends, found[len(source_keys) + len(seen_keys) :], strict=True)
                if raw
            }
            health: Counter[str] = Counter()
            pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            for source_key, state, batch in zip(
                source_keys, states, by_source.values(), strict=True
            ):
                fresh = [r for r in batch if r.offset > state.offset]
                health["skipped_records"] += len(batch) - len(fresh)
                if not fresh:
                    continue
                delta = fold(
                    (event for record in fresh for event in record.events),
                    seen_before=seen,
                    watermark=state.watermark,
                    grace_ms=self._grace_ms,
                    rates=self._rates,
                    spend_before=spend_before,
                )
                seen |= delta.seen
                spend_before = {**spend_before, **delta.spend}
                self._write(pipe, delta.sums, delta.seen, delta.spend)
                new_state = SourceState(
                    offset=fresh[-1].offset,
                    watermark=delta.watermark,
                    newest=max(state.newest, delta.newest),
                )
                pipe.set(source_key, orjson.dumps(new_state))
                pipe.sadd(keys.sources, source_key)
                health.update(delta.health)
            for name, amount in health.items():
                pipe.hincrby(keys.health, name, amount)
            started = time.perf_counter()
            await pipe.execute()
            health["redis_write_us"] = int((time.perf_counter() - started) * 1e6)
        return health

    def _write(
        self,
        pipe: Redis,  # a pipeline in MULTI mode, same command surface
        sums: Counter[tuple[str, EpochMs, str, str, str]],
        seen: set[str],
        spend: Mapping[tuple[str, str], SpendFigure],
    ) -> None:
        keys = self._keys
        touched: set[tuple[str, EpochMs]] = set()
        for (window, start, dimension, value, metric), amount in sums.items():
            if amount:
                pipe.hincrby(
                    keys.bucket(window, start), keys.field(dimension, value, metric), amount
                )
                touched.add((window, start))
        for window, start in touched:
            if window != ALL_TIME:
                # Retention counts from the bucket's own time, so old buckets replayed
                # late do not linger.
                expire_at = start // 1000 + self._ttl[window]
                pipe.expireat(keys.bucket(window, start), max(expire_at, int(time.time()) + 60))
        for event_id in seen:
            pipe.set(keys.seen(event_id), b"1", ex=SEEN_TTL_S)
        for (campaign, period), figure in spend.items():
            pipe.set(keys.spend(campaign, period), f"{figure.ts}:{figure.amount}")


def _source_state(raw: bytes | str | None) -> SourceState:
    return SourceState(**orjson.loads(raw)) if raw else SourceState()


def _spend_figure(raw: bytes | str) -> SpendFigure:
    ts, _, amount = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
    return SpendFigure(int(ts), int(amount))


__all__ = ["Record", "Sink", "WatchError"]
