"""``/v1/people`` on a real Redis: state written under the store's key names, in the
worker's own forms, is read back through the endpoint."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from redis.asyncio import Redis

from tracker.asgi import HTTPError, Message, Request
from tracker.attribution import ONE, Touch
from tracker.export.people import PeopleApi
from tracker.settings import Settings
from tracker.store import Keys
from tracker.stream import state
from tracker.stream.identity import Segment
from tracker.stream.state import Acquisition, Credit, Order

pytestmark = pytest.mark.services

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def ask(settings: Settings, writes: dict[str, bytes], **query: str) -> tuple[int, dict[str, Any]]:
    """Write ``writes`` (key -> value) to Redis, then ask ``/v1/people?<query>``."""

    async def main() -> tuple[int, dict[str, Any]]:
        redis = Redis.from_url(settings.redis_url)
        try:
            if writes:
                await redis.mset(writes)
            scope: dict[str, Any] = {"method": "GET", "path": "/v1/people", "headers": []}
            scope["query_string"] = urlencode(query).encode()
            try:
                response = await PeopleApi(redis, redis, settings).people(Request(scope, _no_body))
            except HTTPError as exc:
                return exc.status, {"error": exc.reason}
            return response.status, orjson.loads(response.body)
        finally:
            await redis.aclose()

    return asyncio.run(main())


def stored(keys: Keys) -> dict[str, bytes]:
    """u-1 signed in on a laptop (l-1) and, later, on a phone shared with u-2 (p-1)."""
    sale = Order(
        ts=T0 + 5_000,
        goal="purchase",
        revenue=49_900_000,
        credits={"last_click": [Credit("spring", "search", ONE, 49_900_000)]},
        acquisition=Acquisition("spring", "search"),
        device="p-1",
        user=None,
        click_id="k-1",
    )
    return {
        keys.devices("u-1"): state.dump_devices(["l-1", "p-1"]),
        keys.link("l-1"): state.dump_link([Segment("u-1", T0)]),
        keys.link("p-1"): state.dump_link([Segment("u-2", T0 + 1_000), Segment("u-1", T0 + 3_000)]),
        keys.path("l-1"): state.dump_path([Touch(T0 - 60_000, "brand", "search")]),
        keys.path("p-1"): state.dump_path(
            [Touch(T0 + 2_000, "launch", "social"), Touch(T0 + 4_000, "spring", "search")]
        ),
        keys.path("u-1"): state.dump_path([Touch(T0 + 500, None, "email")]),
        keys.customer("u-1"): state.dump_customer(
            state.Customer(Acquisition("spring", "search"), (T0 + 5_000, "o-1"), 49_900_000)
        ),
        # o-gone's order expired (the lookback); the list still names it.
        keys.recent("u-1"): state.dump_recent([("o-gone", T0 - 1), ("o-1", T0 + 5_000)]),
        keys.recent("p-1"): state.dump_recent([("o-1", T0 + 5_000)]),
        keys.order("o-1"): state.dump_order(sale),
    }


def test_a_user_is_read_back_with_devices_path_customer_and_orders(settings: Settings) -> None:
    keys = Keys(settings.redis_prefix)
    status, body = ask(settings, stored(keys), user_id="u-1")
    assert status == 200, body
    assert body["user_id"] == "u-1"
    assert body["currency"] == settings.base_currency.upper()
    assert body["devices"] == [
        {
            "anonymous_id": "l-1",
            "owner": "u-1",
            "segments": [{"user_id": "u-1", "since": "2024-05-01T10:00:00.000Z"}],
        },
        {
            "anonymous_id": "p-1",
            "owner": "u-1",
            "segments": [
                {"user_id": "u-2", "since": "2024-05-01T10:00:01.000Z"},
                {"user_id": "u-1", "since": "2024-05-01T10:00:03.000Z"},
            ],
        },
    ]
    # The laptop's anonymous past is u-1's (first to sign in there); on the phone only
    # what came after u-1 signed in (the launch touch was u-2's).
    assert body["path"] == [
        {
            "ts": "2024-05-01T09:59:00.000Z",
            "campaign": "brand",
            "channel": "search",
            "anonymous_id": "l-1",
        },
        {
            "ts": "2024-05-01T10:00:00.500Z",
            "campaign": None,
            "channel": "email",
            "anonymous_id": None,
        },
        {
            "ts": "2024-05-01T10:00:04.000Z",
            "campaign": "spring",
            "channel": "search",
            "anonymous_id": "p-1",
        },
    ]
    assert body["customer"] == {
        "campaign": "spring",
        "channel": "search",
        "won_by": {"ts": "2024-05-01T10:00:05.000Z", "conversion": "o-1"},
        "revenue": 49.9,
    }
    (order,) = body["orders"]  # the expired one is no longer held
    assert order == {
        "order_id": "o-1",
        "ts": "2024-05-01T10:00:05.000Z",
        "goal": "purchase",
        "revenue": 49.9,
        "reversed": False,
        "user_id": None,
        "anonymous_id": "p-1",
        "click_id": "k-1",
        "credits": {
            "last_click": [
                {"campaign": "spring", "channel": "search", "conversions": 1, "revenue": 49.9}
            ]
        },
    }


def test_an_anonymous_id_is_read_back_with_segments_owner_and_path(settings: Settings) -> None:
    keys = Keys(settings.redis_prefix)
    status, body = ask(settings, stored(keys), anonymous_id="p-1")
    assert status == 200, body
    assert body["anonymous_id"] == "p-1"
    assert body["owner"] == "u-1"
    assert [s["user_id"] for s in body["segments"]] == ["u-2", "u-1"]
    assert [(t["campaign"], t["owner"]) for t in body["path"]] == [
        ("launch", "u-2"),
        ("spring", "u-1"),
    ]
    assert body["customer"] is None  # its conversion's customer is u-1
    assert [o["order_id"] for o in body["orders"]] == ["o-1"]


def test_nothing_held_answers_404(settings: Settings) -> None:
    keys = Keys(settings.redis_prefix)
    writes = stored(keys)
    assert ask(settings, writes, user_id="u-9") == (
        404,
        {"error": "nothing is held about user_id 'u-9'"},
    )
    assert ask(settings, {}, anonymous_id="l-9")[0] == 404
    # u-2 signed in on the phone once: their device is listed though u-1 holds it now.
    writes = {keys.devices("u-2"): state.dump_devices(["p-1"])}
    status, body = ask(settings, writes, user_id="u-2")
    assert status == 200
    assert body["devices"][0]["owner"] == "u-1"
    assert [t["campaign"] for t in body["path"]] == ["launch"]
