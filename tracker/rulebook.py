"""Rules people change at run time (goals, targets), kept in the store and versioned.

A rulebook is one JSON document under one key: its rules, the version (1, 2, ...)
and when it was saved. Every version stays readable in a hash beside it, so a
conversion stamped with version 3 can be explained after version 4 replaced it.
A save is one transaction under ``WATCH``: two admins saving at once get two
versions, one after the other, never a mix; a document that fails validation is
refused before anything is written, so nothing is ever saved half.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from tracker.redis_clients import replicated
from tracker.types import EpochMs


class RulesError(ValueError):
    """A document of rules that cannot be saved; ``reasons`` names each bad part."""

    def __init__(self, reasons: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{where}: {why}" for where, why in reasons.items()))
        self.reasons = dict(reasons)


def items_of(body: Any, key: str, max_rules: int) -> list[Any]:
    """The list under ``key`` of a rules document, checked for shape and size."""
    if not isinstance(body, dict):
        raise RulesError({"body": f'must be a JSON object: {{"{key}": [...]}}'})
    unknown = sorted(set(body) - {key})
    if unknown:
        raise RulesError({unknown[0]: f"unknown field; the document has only {key!r}"})
    items = body.get(key)
    if not isinstance(items, list):
        raise RulesError({key: "must be a list (an empty one removes every rule)"})
    if len(items) > max_rules:
        raise RulesError({key: f"{len(items)} rules, at most {max_rules}"})
    return items


def rules_of(
    body: Any, key: str, fields: frozenset[str], max_rules: int, reasons: dict[str, str]
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Each rule of a document: its index, where it is (``goals[3]``) and its object.

    The document's shape and size are checked first (:class:`RulesError` at once); a
    rule that is no object, and each field a rule has beyond ``fields``, go into
    ``reasons``, for the caller to refuse the document with its own findings.
    """
    for index, item in enumerate(items_of(body, key, max_rules)):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            reasons[where] = "must be an object"
            continue
        for unknown in sorted(set(item) - fields):
            reasons[f"{where}.{unknown}"] = f"unknown field; known: {', '.join(sorted(fields))}"
        yield index, where, item


def decode(raw: bytes | str | None) -> dict[str, Any]:
    """A stored document; ``{"version": 0}`` when nothing was ever saved."""
    if raw is None:
        return {"version": 0}
    document: dict[str, Any] = orjson.loads(raw)
    return document


class Rulebook:
    """One kind of rules in Redis: ``key`` holds the current version, ``key:versions`` all."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self.key = key
        self._versions = f"{key}:versions"

    async def current(self) -> dict[str, Any]:
        return decode(await self._redis.get(self.key))

    async def at(self, version: int) -> dict[str, Any] | None:
        """Version ``version`` as it was saved; None if there never was one."""
        raw = await self._redis.hget(self._versions, str(version))
        return decode(raw) if raw is not None else None

    async def save(
        self, rules: Mapping[str, Any], now: EpochMs | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Store ``rules`` (already validated) as the next version: the stored document,
        and whether it is new. The rules in force saved again make no new version, so a
        file applied at every start (compose, ``make up``) does not pile versions up."""
        saved_at = time.time_ns() // 1_000_000 if now is None else now
        async with replicated(self._redis) as redis, redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.key)
                    current = decode(await pipe.get(self.key))
                    if current["version"] and all(current.get(k) == v for k, v in rules.items()):
                        return current, False  # leaving the pipeline unwatches
                    version = current["version"] + 1
                    document = {"version": version, "saved_at": saved_at, **rules}
                    raw = orjson.dumps(document)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(self.key, raw)
                    pipe.hset(self._versions, str(version), raw)
                    await pipe.execute()
                    return document, True
                except WatchError:
                    continue


__all__ = ["Rulebook", "RulesError", "decode", "items_of", "rules_of"]
