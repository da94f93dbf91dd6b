"""What the forwarder sent to each destination, kept in Redis so that nothing is sent twice.

``P:fwd:<destination>:<key>`` (``P`` the Redis prefix) holds :data:`SENT` once the
platform took the conversion of that key, or :data:`DEAD` once it was dead-lettered.
The key is the conversion's status and its order id, else its event id: what the
platforms deduplicate by (Meta's and TikTok's ``event_id`` is the order id, else the
event id; Google's is the order id), the status keeping an order's retraction apart
from its upload.

A mark is written after the platform's answer and read before each send, so a record
read again (a restart, a rebalance, offsets not committed yet) is not sent again, nor
dead-lettered twice; ``tracker replay-forwarding`` re-sends the :data:`DEAD` ones only.
What this cannot cover: a crash after the platform took a conversion and before its
mark is written. The restarted forwarder then sends it again, and the platform
deduplicates it by the same key (Meta and TikTok within 48 hours of the first, Google
for good: an order id it has is answered ``ORDER_ID_ALREADY_IN_USE``, counted taken).

A mark lives for the platform's deduplication window or the events' retention in Kafka
(``events_retention_days``), whichever is longer: as long as a record could be read again.
Marks expire, so a Redis that may evict would pick them first: nothing is sent while
one may (:mod:`tracker.redis_nodes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from redis.asyncio import Redis

from tracker.events import Event
from tracker.redis_nodes import Guard
from tracker.settings import Settings

SENT: Final = b"sent"
DEAD: Final = b"dead"
DAY_S: Final = 86_400
WINDOW_S: Final = {"meta": 2 * DAY_S, "tiktok": 2 * DAY_S}
"""How long a platform deduplicates a conversion by its key, where it says: 48 hours for
Meta's and TikTok's ``event_id``. Google keeps order ids for good."""


def key(event: Event) -> str:
    """What a conversion is known by to every platform (see the module's docstring)."""
    return f"{event.status}:{event.order_id or event.event_id}"


def unique(events: Sequence[Event]) -> tuple[list[Event], list[Event]]:
    """``events`` with one per :func:`key` (the first), and the repeats left out."""
    seen: set[str] = set()
    first: list[Event] = []
    repeats: list[Event] = []
    for event in events:
        known = key(event)
        (repeats if known in seen else first).append(event)
        seen.add(known)
    return first, repeats


class Marks:
    """The sent and dead marks of one destination."""

    def __init__(self, redis: Redis, settings: Settings, destination: str) -> None:
        self._redis = redis
        self._prefix = f"{settings.key_prefix}:fwd:{destination}:"
        retention_s = settings.events_retention_days * DAY_S
        self._ttl_s = max(WINDOW_S.get(destination, 0), retention_s)
        self._guard = Guard(settings, redis)

    def name(self, event: Event) -> str:
        """The Redis key of ``event``'s mark."""
        return self._prefix + key(event)

    async def states(self, events: Sequence[Event]) -> list[bytes | None]:
        """Each event's mark (:data:`SENT`, :data:`DEAD`), None where it has none.

        Raises :class:`tracker.redis_nodes.MayEvict` while a node of the store may evict
        keys: a mark evicted would send its conversion again."""
        if not events:
            return []
        await self._guard.check()
        found = await self._redis.mget([self.name(e) for e in events])
        # bytes: the client does not decode (redis-py types say str too)
        return [state.encode() if isinstance(state, str) else state for state in found]

    async def mark(self, events: Sequence[Event], state: bytes) -> None:
        """Set ``events``' marks to ``state``, for the mark's lifetime."""
        if not events:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.set(self.name(event), state, ex=self._ttl_s)
            await pipe.execute()


__all__ = ["DEAD", "SENT", "WINDOW_S", "Marks", "key", "unique"]
