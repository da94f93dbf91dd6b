"""Who was erased, kept as hashes: the suppression list the collector and workers honour.

``POST /v1/erasure`` (:mod:`tracker.export.erasure`) deletes what is held about a
person and adds each of their ids to the list as :func:`erased_hash` of it. The list
outlives the data it suppresses, so it holds no id itself: a hash tells only whether an
id one already holds was erased. It is a plain SHA-256, not a keyed one, so that it
needs no key kept as long as the list; an id that can be guessed (an e-mail address
as ``user_id``) can therefore be confirmed by trying it.

Two guards read the list (its Redis keys are in :mod:`tracker.store`):

- the worker, exactly: its copy is brought up to date in each batch's own transaction,
  against the count of erasures it watches (:mod:`tracker.stream.sink`), so an event
  applied after an erasure is dropped, whenever it was sent;
- the collector, early: :class:`Suppressions` is its copy of the list, refreshed now
  and then, so a known person's events are not even written to Kafka. A copy can be
  one refresh behind; the worker covers that.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from redis.asyncio import Redis

from tracker.events import Event
from tracker.store import Keys

KINDS: Final = ("user_id", "anonymous_id")
"""The ids a person is known by, as the event fields and ``/v1/erasure`` name them."""
_SEP: Final = "\x1f"


def erased_hash(kind: str, identifier: str) -> str:
    """The suppression list's name for ``identifier`` of ``kind``: hex SHA-256 of both.

    The kind is part of it, so a ``user_id`` erased does not suppress an equal
    ``anonymous_id`` of someone else.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return hashlib.sha256(f"{kind}{_SEP}{identifier}".encode()).hexdigest()


def ids_of(event: Event) -> list[tuple[str, str]]:
    """(kind, id) of each id ``event`` carries."""
    return person_ids(event.anonymous_id, event.user_id)


def person_ids(device: str | None, user: str | None) -> list[tuple[str, str]]:
    """(kind, id) of a person's device and user id, those they have."""
    found = [("anonymous_id", device), ("user_id", user)]
    return [(kind, identifier) for kind, identifier in found if identifier]


class Suppressions:
    """A collector's copy of the suppression list: refreshed from Redis, asked per event.

    Erasures are only ever appended to the list (``P:erasures``), so a refresh reads
    from where the last one stopped, and a hash once known is never forgotten.
    """

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._hashes: set[str] = set()
        self._read = 0
        """How many entries of the list are in ``_hashes``."""

    def __len__(self) -> int:
        return len(self._hashes)

    @property
    def known(self) -> int:
        """How many entries of the list this copy has read."""
        return self._read

    async def catch_up(self, client: Any, count: int) -> None:
        """Read the list's entries up to ``count``, its length as read with the offsets.

        ``client`` may be a pipeline in ``WATCH`` mode, whose commands run at once, so
        the entries are read in the transaction that watches the count. A count below
        what was read (Redis restored from an older copy) reads the list again.
        """
        if count < self._read:
            self._read = 0
        if count <= self._read:
            return  # lrange(0, -1) would be the whole list
        added = await client.lrange(self._keys.erasures, self._read, count - 1)
        self._hashes.update(raw.decode() if isinstance(raw, bytes) else raw for raw in added)
        self._read += len(added)

    async def refresh(self, redis: Redis) -> int:
        """Read the erasures added since the last refresh; how many were new.

        One round trip. Should the list be shorter than what was read (Redis lost it,
        or it was restored from an older copy), it is read again from its start, and
        what was known stays known.
        """
        key = self._keys.erasures
        async with redis.pipeline(transaction=True) as pipe:
            pipe.lrange(key, self._read, -1)
            pipe.llen(key)
            added, length = await pipe.execute()
        if length < self._read:
            self._read = 0
            return await self.refresh(redis)
        before = len(self._hashes)
        self._hashes.update(raw.decode() if isinstance(raw, bytes) else raw for raw in added)
        self._read += len(added)
        return len(self._hashes) - before

    def suppressed(self, event: Event) -> bool:
        """True when ``event`` carries an id of a person erased (as of the last refresh)."""
        return self.erased(event.anonymous_id, event.user_id)

    def erased(self, device: str | None, user: str | None) -> bool:
        """True when ``device`` or ``user`` is an id of a person erased."""
        if not self._hashes:
            return False  # no hashing while nobody is erased
        return any(
            erased_hash(kind, identifier) in self._hashes
            for kind, identifier in person_ids(device, user)
        )


__all__ = ["KINDS", "Suppressions", "erased_hash", "ids_of", "person_ids"]
