"""The day's salt of cookieless visitor ids, shared by every collector process.

A visitor who did not consent to analytics storage is counted by a keyed hash of IP,
agent and site (:func:`tracker.consent.cookieless_id`). Every collector process must
use the same key on a given day, or one visitor would count once per process, so the
key lives in Redis: the first process to need a day's key creates it (``SET NX``),
the others read it, and Redis deletes it when its UTC day ends (``EXPIREAT``). It is
never written anywhere else, so after its day nobody can recompute an id from an IP,
nor link one day's visitors to the next day's.

Requests never wait on Redis: :meth:`Salts.refresh` runs in the background, fetching
today's key and making tomorrow's ahead of midnight; a request takes what is in memory.

On a Redis Cluster a key is made for good only once a replica holds it too: a failover
that lost it would let the next process make another, and a visitor would count once
under each that day. No replica confirming (none is up, so none could take over) does
not stop the key being used; it is logged.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import structlog
from redis.asyncio import Redis

from tracker.redis_clients import NotReplicated, replicated
from tracker.store import Keys
from tracker.types import EpochMs

log = structlog.get_logger(__name__)

DAY_MS = 86_400_000
SALT_BYTES = 32


def day_of(now: EpochMs) -> int:
    """The UTC day ``now`` falls in, as days since the epoch."""
    return now // DAY_MS


def _name(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


class Salts:
    """Today's and tomorrow's keys, as Redis holds them."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._by_day: dict[int, bytes] = {}

    def today(self, now: EpochMs) -> bytes | None:
        """The key of ``now``'s day; None until :meth:`refresh` has fetched it."""
        return self._by_day.get(day_of(now))

    async def refresh(self, now: EpochMs) -> None:
        """Fetch today's key and tomorrow's, creating them if no process has yet.

        Tomorrow's is made a day early so that at midnight it is already in memory;
        it still expires when its own day ends. Keys of past days are forgotten.
        """
        today = day_of(now)
        fetched: dict[int, bytes] = {}
        for day in (today, today + 1):
            name = self._keys.salt(_name(day))
            ends_s = (day + 1) * 86_400
            value = await self._redis.get(name)
            if value is None:
                await self._make(name, ends_s)
                value = await self._redis.get(name)
            if isinstance(value, bytes):
                fetched[day] = value
        self._by_day = fetched

    async def _make(self, name: str, ends_s: int) -> None:
        """Make the key ``name`` unless another process just did (``SET NX``)."""
        try:
            async with replicated(self._redis) as own:
                await own.set(name, secrets.token_bytes(SALT_BYTES), nx=True, exat=ends_s)
        except NotReplicated as exc:
            log.warning("cookieless salt made, not yet on a replica", key=name, error=str(exc))


__all__ = ["DAY_MS", "Salts", "day_of"]
