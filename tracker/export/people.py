"""``GET /v1/people``: what tracker holds about one person, by user id or anonymous id.

A user's answer: their devices (anonymous ids), each with its link segments (who it
belonged to from when); their touch path (the touches made without a device, and on
each device the touches that device's links give them); their customer record (the
campaign and channel that acquired them); their recent orders. An anonymous id's
answer: its segments, its owner now, every touch it holds with the owner of each, and
the customer record and recent orders held under it (an anonymous customer's).

Nothing else about a person is kept: touches and orders live for the attribution
lookback, links for 400 days, the customer record for good (:mod:`tracker.store`).
Clicks are kept by click id, not by person, so they appear here as touches only.

The answer is shaped by pure functions over the stored values (:func:`user_view`,
:func:`device_view`); :class:`PeopleApi` reads them around it, in two round trips.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tracker.asgi import HTTPError, Request, Response
from tracker.attribution import Touch
from tracker.export.api import known_query
from tracker.money import to_number
from tracker.redis_clients import Reader
from tracker.rows import count
from tracker.settings import Settings
from tracker.store import Keys, path_prefix
from tracker.stream.conversions import joined
from tracker.stream.identity import Segment, owner
from tracker.stream.state import (
    Customer,
    Order,
    load_customer,
    load_devices,
    load_link,
    load_order,
    load_path,
    load_recent,
)
from tracker.types import EpochMs

T = TypeVar("T")
Raw = bytes | str | None
"""A value as Redis answers it; ``None`` for a missing key."""

PARAMETERS = ("user_id", "anonymous_id")
MAX_ID_CHARS = 256
"""As long as an event's ``user_id`` or ``anonymous_id`` may be."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_person(query: Mapping[str, str]) -> tuple[str, str]:
    """``("user_id" | "anonymous_id", id)`` from a query naming exactly one; HTTP 400 else."""
    given = [name for name in PARAMETERS if name in query]
    if len(given) != 1:
        also = "not both" if given else "one of them"
        raise HTTPError(400, f"give user_id or anonymous_id ({also})")
    (name,) = given
    person = query[name]
    if not person:
        raise HTTPError(400, f"{name} must not be empty")
    if len(person) > MAX_ID_CHARS:
        raise HTTPError(400, f"{name} is longer than {MAX_ID_CHARS} characters")
    return name, person


def user_view(
    user: str,
    devices: Mapping[str, Sequence[Segment]],
    own: Sequence[Touch],
    held: Mapping[str, Sequence[Touch]],
    customer: Customer | None,
    orders: Mapping[str, Order],
    now: EpochMs,
) -> dict[str, Any] | None:
    """What is held about ``user``; ``None`` when nothing is.

    ``devices`` maps each of the user's devices to its segments, ``own`` are the touches
    made without a device, ``held`` each device's touches (of whoever owns them).
    """
    path: list[tuple[Touch, str | None]] = [(touch, None) for touch in own]
    for device, touches in held.items():
        segments = devices.get(device, ())
        path += [(t, device) for t in touches if owner(segments, t.ts) == user]
    if not (devices or path or customer or orders):
        return None
    path.sort(key=lambda item: (item[0].ts, item[1] or ""))
    return {
        "user_id": user,
        "devices": [
            {
                "anonymous_id": device,
                "owner": owner(segments, now),
                "segments": [_segment(s) for s in segments],
            }
            for device, segments in devices.items()
        ],
        "path": [{**_touch(t), "anonymous_id": device} for t, device in path],
        "customer": _customer(customer),
        "orders": _orders(orders),
    }


def device_view(
    device: str,
    segments: Sequence[Segment],
    touches: Sequence[Touch],
    customer: Customer | None,
    orders: Mapping[str, Order],
    now: EpochMs,
) -> dict[str, Any] | None:
    """What is held about the anonymous id ``device``; ``None`` when nothing is."""
    if not (segments or touches or customer or orders):
        return None
    return {
        "anonymous_id": device,
        "owner": owner(segments, now),
        "segments": [_segment(s) for s in segments],
        "path": [
            {**_touch(t), "owner": owner(segments, t.ts)}
            for t in sorted(touches, key=lambda t: t.ts)
        ],
        "customer": _customer(customer),
        "orders": _orders(orders),
    }


def instant(ts: EpochMs) -> str:
    """``ts`` as RFC 3339 in UTC to the millisecond (``2026-05-01T10:00:00.250Z``)."""
    text = (_EPOCH + timedelta(milliseconds=ts)).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _segment(segment: Segment) -> dict[str, Any]:
    return {"user_id": segment.user, "since": instant(segment.since)}


def _touch(touch: Touch) -> dict[str, Any]:
    return {"ts": instant(touch.ts), "campaign": touch.campaign, "channel": touch.channel}


def _customer(customer: Customer | None) -> dict[str, Any] | None:
    """Who won them, with which conversion, and their revenue since: ``null`` for those two
    in a record kept before it held them."""
    if customer is None:
        return None
    won, first = customer.acquisition, customer.first
    return {
        "campaign": won.campaign,
        "channel": won.channel,
        "won_by": {"ts": instant(first[0]), "conversion": first[1]} if first else None,
        "revenue": to_number(customer.revenue) if first else None,
    }


def _orders(orders: Mapping[str, Order]) -> list[dict[str, Any]]:
    """Oldest first; money in the base currency, conversions as each model credited them."""
    return [
        {
            "order_id": order_id,
            "ts": instant(order.ts),
            "goal": order.goal,
            "revenue": to_number(order.revenue),
            "reversed": order.reversed,
            "user_id": order.user,
            "anonymous_id": order.device,
            "click_id": order.click_id,
            "credits": {
                model: [
                    {
                        "campaign": c.campaign,
                        "channel": c.channel,
                        "conversions": count(c.conversions),
                        "revenue": to_number(c.revenue),
                    }
                    for c in shares
                ]
                for model, shares in order.credits.items()
            },
        }
        for order_id, order in sorted(orders.items(), key=lambda item: (item[1].ts, item[0]))
    ]


class PeopleApi:
    """Reads a person's state from Redis and answers it; read-only."""

    def __init__(self, redis: Redis, reader: Reader, settings: Settings) -> None:
        """``reader`` reaches every primary (the click shards', where paths may be spread),
        ``redis`` the store's."""
        self._redis = redis
        self._reader = reader
        self._keys = Keys(settings.key_prefix)
        self._currency = settings.base_currency.upper()
        self._most = settings.path_max_touches

    async def people(self, request: Request) -> Response:
        name, person = parse_person(known_query(request, PARAMETERS))
        now = time.time_ns() // 1_000_000
        try:
            if name == "user_id":
                found = await self._user(person, now)
            else:
                found = await self._device(person, now)
        except RedisError as exc:
            raise HTTPError(503, f"the store (Redis) did not answer: {exc}") from exc
        if found is None:
            raise HTTPError(404, f"nothing is held about {name} {person[:64]!r}")
        return Response.json({**found, "currency": self._currency})

    async def _user(self, user: str, now: EpochMs) -> dict[str, Any] | None:
        keys = self._keys
        devices_raw, own_raw, customer_raw, recent_raw = await self._get(
            [keys.devices(user), keys.path(user), keys.customer(user), keys.recent(user)]
        )
        devices = load_devices(devices_raw) if devices_raw else []
        order_ids = _order_ids(recent_raw)
        found = iter(
            await self._get(
                [*map(keys.link, devices), *map(keys.path, devices), *map(keys.order, order_ids)]
            )
        )
        links = {device: _segments(next(found)) for device in devices}
        paths = await self._spread(
            {user: _path(own_raw), **{device: _path(next(found)) for device in devices}}
        )
        orders = _present(order_ids, found, load_order)
        customer = load_customer(customer_raw) if customer_raw else None
        held = {device: paths[device] for device in devices}
        return user_view(user, links, paths[user], held, customer, orders, now)

    async def _device(self, device: str, now: EpochMs) -> dict[str, Any] | None:
        keys = self._keys
        link_raw, path_raw, customer_raw, recent_raw = await self._get(
            [keys.link(device), keys.path(device), keys.customer(device), keys.recent(device)]
        )
        order_ids = _order_ids(recent_raw)
        found = iter(await self._get(list(map(keys.order, order_ids))))
        orders = _present(order_ids, found, load_order)
        customer = load_customer(customer_raw) if customer_raw else None
        path = (await self._spread({device: _path(path_raw)}))[device]
        return device_view(device, _segments(link_raw), path, customer, orders, now)

    async def _spread(self, paths: dict[str, list[Touch]]) -> dict[str, list[Touch]]:
        """``paths`` (by holder, as the store's slot has them) joined with their copies
        under the click shards, on a Redis Cluster (``TRACKER_REDIS_SPREAD_PATHS``)."""
        prefix = self._keys.prefix
        spread = {h: Keys(at).path(h) for h in paths if (at := path_prefix(prefix, h)) != prefix}
        if not spread:
            return paths
        mget = getattr(self._reader, "mget_nonatomic", self._reader.mget)
        found = dict(zip(spread, await mget(list(spread.values())), strict=True))
        return {h: joined(path, _path(found.get(h)), self._most) for h, path in paths.items()}

    async def _get(self, names: list[str]) -> list[Raw]:
        """The values of ``names``, in one round trip (``None`` for a missing key)."""
        return list(await self._redis.mget(names)) if names else []


def _segments(raw: Raw) -> list[Segment]:
    return load_link(raw) if raw else []


def _path(raw: Raw) -> list[Touch]:
    return load_path(raw) if raw else []


def _order_ids(raw: Raw) -> list[str]:
    """The order ids of a ``recent`` list, each once."""
    return list(dict.fromkeys(order_id for order_id, _ in load_recent(raw))) if raw else []


def _present(
    names: list[str], found: Iterator[Raw], load: Callable[[bytes | str], T]
) -> dict[str, T]:
    """``name -> load(value)`` for the names whose values (next in ``found``) exist."""
    return {name: load(raw) for name in names if (raw := next(found)) is not None}
