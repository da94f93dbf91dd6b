"""``GET``/``PUT /v1/goals`` and ``/v1/targets``: the rules people change at run time.

Both are documents of one list (:mod:`tracker.goals`, :mod:`tracker.targets`), kept
versioned in the store (:mod:`tracker.rulebook`). A ``PUT`` replaces the whole list:
it is checked first and answered 400 with every reason, saving nothing, or saved
whole as the next version. ``GET`` answers the version in force, ``?version=N`` an
earlier one. ``tracker goals --file`` and ``tracker targets --file`` save a file the
same way, for ``make up`` and compose.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tracker import goals, targets
from tracker.asgi import HTTPError, Request, Response
from tracker.export.api import known_query
from tracker.redis_clients import async_client
from tracker.rulebook import Rulebook, RulesError
from tracker.settings import Settings
from tracker.store import Keys, StoreUnavailable, read_once
from tracker.windows import rfc3339

MAX_BODY_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of rules: where it is kept, how a document is checked, what a save means."""

    name: str
    key: Callable[[Keys], str]
    applies: str

    def saved(self, new: bool) -> dict[str, Any]:
        """What a save answers besides the document."""
        if new:
            return {"applies": self.applies}
        return {"applies": "unchanged: the rules in force were saved again, no new version"}


GOALS: Final = Kind(
    "goals",
    lambda keys: keys.goals,
    "to events the collectors receive from now on (they read the rules every 5 s); "
    "events received before keep the rules that counted them",
)
TARGETS: Final = Kind(
    "targets",
    lambda keys: keys.targets,
    "to every figure from now on, past buckets included: a target judges, it counts nothing",
)


def answer(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document as the API shows it: its save time in RFC 3339."""
    saved_at = document.get("saved_at")
    return {**document, "saved_at": rfc3339(saved_at) if saved_at else None}


def check(kind: Kind, raw: bytes, settings: Settings) -> dict[str, Any]:
    """The document ``raw`` (JSON) holds, checked; :class:`RulesError` if it cannot be saved."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RulesError({"body": f"is not JSON: {exc}"}) from None
    if kind is GOALS:
        currencies = frozenset(settings.rates())
        base = settings.base_currency.upper()
        found = goals.parse(body, currencies, base, settings.max_goals)
        return goals.GoalSet(goals=found).as_json()
    return targets.TargetSet(targets=targets.parse(body, settings.max_targets)).as_json()


class RulesApi:
    def __init__(self, redis: Redis, settings: Settings, kind: Kind) -> None:
        self._settings = settings
        self._kind = kind
        self._book = Rulebook(redis, kind.key(Keys(settings.key_prefix)))

    async def get(self, request: Request) -> Response:
        query = known_query(request, ("version",))
        if "version" not in query:
            return Response.json(answer(await self._book.current()))
        try:
            version = int(query["version"])
        except ValueError:
            raise HTTPError(400, "version must be a whole number") from None
        found = await self._book.at(version)
        if found is None:
            raise HTTPError(404, f"no version {version} of the {self._kind.name} was saved")
        return Response.json(answer(found))

    async def put(self, request: Request) -> Response:
        known_query(request, ())
        try:
            document = check(self._kind, await request.body(MAX_BODY_BYTES), self._settings)
        except RulesError as exc:
            return Response.json({"error": str(exc), "reasons": exc.reasons}, 400)
        try:
            saved, new = await self._book.save(document)
        except RedisError as exc:
            raise HTTPError(503, f"the store (Redis) did not confirm the save: {exc}") from exc
        return Response.json({**answer(saved), **self._kind.saved(new)})


def run(settings: Settings, kind: Kind, path: str | None) -> int:
    """``tracker goals`` / ``tracker targets``: print the rules in force, or save a file's.

    0 when done, 1 when Redis is away, 2 when the file cannot be read or saved.
    """

    async def act(redis: Redis) -> dict[str, Any]:
        book = Rulebook(redis, kind.key(Keys(settings.key_prefix)))
        if path is None:
            return await book.current()
        saved, new = await book.save(check(kind, raw, settings))
        return {**saved, **kind.saved(new)}

    raw = b""
    try:
        raw = Path(path).read_bytes() if path is not None else b""
        shown = answer(read_once(settings, act, async_client))
    except OSError as exc:
        print(f"tracker: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(f"tracker: {path}: nothing saved: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


__all__ = ["GOALS", "TARGETS", "Kind", "RulesApi", "answer", "check", "run"]
