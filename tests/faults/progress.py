"""Each partition's progress in the store, watched while faults come and go.

The sink writes the last Kafka offset it applied of each partition in the transaction
that applies it (``P:src:<topic>:<partition>``, :mod:`tracker.store`): when that moves,
the partition's events are counted. A thread reads all of them five times a second and
keeps when each moved; :meth:`Progress.stall` is then the longest time a partition
did not, around a fault.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import orjson
from redis.exceptions import RedisError

from tracker.redis_clients import sync_client
from tracker.settings import Settings
from tracker.store import Keys

_EVERY_S = 0.2


@dataclass(frozen=True, slots=True)
class Stall:
    seconds: float
    partition: int
    resumed: bool
    """Whether the partition moved again after it (else it is stalled still)."""


class Progress:
    """Watches the store's offsets of ``settings``' events topic until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        keys = Keys(settings.key_prefix)
        self._names = [
            keys.source(settings.events_topic, p) for p in range(settings.topic_partitions)
        ]
        self._redis = sync_client(settings)
        self.moves: list[list[float]] = [[] for _ in self._names]
        """Per partition, when (time.monotonic()) its offset was seen to move."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Progress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._redis.close()

    def _run(self) -> None:
        last: list[int | None] = [None] * len(self._names)
        while not self._stopping.wait(_EVERY_S):
            try:
                values = self._redis.mget(self._names)
            except RedisError:  # down on purpose, now and then
                continue
            now = time.monotonic()
            for partition, raw in enumerate(values):
                offset = orjson.loads(raw)["offset"] if raw else None
                if offset != last[partition]:
                    if last[partition] is not None or offset is not None:
                        self.moves[partition].append(now)
                    last[partition] = offset

    def stall(self, start: float, end: float) -> Stall:
        """The longest time a partition's offset stood still after a fault at ``start``,
        until the next at ``end``: from its last move before ``start`` to its first after
        (however late), and between its moves up to ``end``."""
        worst = Stall(0.0, -1, True)
        for partition, moves in enumerate(self.moves):
            before = [t for t in moves if t <= start]
            inside = [t for t in moves if start < t < end]
            later = [t for t in moves if t > start]
            gaps: list[tuple[float, bool]] = []
            if before:  # the fault's own stall, uncapped
                gaps.append((later[0] - before[-1], True) if later else (end - before[-1], False))
            # The next move of each (the last's: ``end``); zip stops with ``inside``.
            for at, following in zip(inside, [*inside[1:], end], strict=False):
                gaps.append((following - at, True))
            for seconds, resumed in gaps:
                if seconds > worst.seconds:
                    worst = Stall(seconds, partition, resumed)
        return worst

    def moved_after(self, moment: float) -> bool:
        """Whether every partition has moved since ``moment``."""
        return all(moves and moves[-1] > moment for moves in self.moves)
