"""``/v1/people`` refuses a query that does not name exactly one person, and shapes what
is held about one: whose each touch is on a shared device, orders as credited.

Refused requests go through the exporter's real routes and never reach Redis, so no
server is needed; the answers are built by pure functions over stored values.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from tests.unit.test_api import get as get_path
from tracker.attribution import ONE, Touch
from tracker.export.people import device_view, instant, user_view
from tracker.stream.identity import Segment
from tracker.stream.state import Acquisition, Credit, Customer, Order

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def get(query: bytes) -> tuple[int, dict[str, Any]]:
    return get_path("/v1/people", query)


# Parameters


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (b"", "give user_id or anonymous_id (one of them)"),
        (b"user_id=u-1&anonymous_id=a-1", "give user_id or anonymous_id (not both)"),
        (b"user_id=", "user_id must not be empty"),
        (b"anonymous_id=", "anonymous_id must not be empty"),
        (urlencode({"user_id": "u" * 257}).encode(), "user_id is longer than 256 characters"),
        (urlencode({"anonymous_id": "é" * 257}).encode(), "anonymous_id is longer than 256 "),
        (b"user=u-1", "unknown parameter 'user'; known: user_id, anonymous_id"),
        (b"user_id=u-1&user_id=u-2", "parameter 'user_id' is given twice"),
        (b"user_id=%FF", "the query is not valid UTF-8"),
    ],
)
def test_a_query_not_naming_exactly_one_person_is_refused(query: bytes, reason: str) -> None:
    status, body = get(query)
    assert status == 400
    assert body["error"].startswith(reason)


@pytest.mark.parametrize("query", [{"user_id": "u" * 256}, {"anonymous_id": "a-1"}])
def test_a_good_query_reaches_the_store_and_says_when_it_is_away(query: dict[str, str]) -> None:
    status, body = get(urlencode(query).encode())
    assert status == 503
    assert body["error"].startswith("the store (Redis) did not answer: ")


# Times


def test_instants_are_rfc3339_in_utc_to_the_millisecond() -> None:
    assert instant(T0) == "2024-05-01T10:00:00.000Z"
    assert instant(T0 + 250) == "2024-05-01T10:00:00.250Z"
    assert instant(0) == "1970-01-01T00:00:00.000Z"
    assert instant(T0 - 1) == "2024-05-01T09:59:59.999Z"


# A device shared by two accounts: u-1 signs in at +100, out at +200; u-2 in at +300.

SHARED = [Segment("u-1", T0 + 100), Segment(None, T0 + 200), Segment("u-2", T0 + 300)]
ON_SHARED = [
    Touch(T0 + 350, "c-after-u2", "search"),
    Touch(T0, "c-before-all", "social"),  # before the first sign-in: the first user's
    Touch(T0 + 150, "c-u1", "email"),
    Touch(T0 + 250, "c-signed-out", "display"),
]
NOW = T0 + 1_000


def test_a_user_gets_the_touches_of_their_devices_that_are_theirs() -> None:
    own = [Touch(T0 + 50, "c-server", "affiliate")]
    view = user_view("u-1", {"a-1": SHARED}, own, {"a-1": ON_SHARED}, None, {}, NOW)
    assert view == {
        "user_id": "u-1",
        "devices": [
            {
                "anonymous_id": "a-1",
                "owner": "u-2",  # signed in last
                "segments": [
                    {"user_id": "u-1", "since": "2024-05-01T10:00:00.100Z"},
                    {"user_id": None, "since": "2024-05-01T10:00:00.200Z"},
                    {"user_id": "u-2", "since": "2024-05-01T10:00:00.300Z"},
                ],
            }
        ],
        "path": [  # oldest first; neither the signed-out touch nor u-2's
            {
                "ts": "2024-05-01T10:00:00.000Z",
                "campaign": "c-before-all",
                "channel": "social",
                "anonymous_id": "a-1",
            },
            {
                "ts": "2024-05-01T10:00:00.050Z",
                "campaign": "c-server",
                "channel": "affiliate",
                "anonymous_id": None,
            },
            {
                "ts": "2024-05-01T10:00:00.150Z",
                "campaign": "c-u1",
                "channel": "email",
                "anonymous_id": "a-1",
            },
        ],
        "customer": None,
        "orders": [],
    }
    second = user_view("u-2", {"a-1": SHARED}, [], {"a-1": ON_SHARED}, None, {}, NOW)
    assert second is not None
    assert [touch["campaign"] for touch in second["path"]] == ["c-after-u2"]


def test_a_device_shows_every_touch_it_holds_with_whose_it_is() -> None:
    view = device_view("a-1", SHARED, ON_SHARED, None, {}, NOW)
    assert view is not None
    assert view["owner"] == "u-2"
    assert [(t["campaign"], t["owner"]) for t in view["path"]] == [
        ("c-before-all", "u-1"),
        ("c-u1", "u-1"),
        ("c-signed-out", None),
        ("c-after-u2", "u-2"),
    ]
    signed_out = device_view("a-1", SHARED[:2], [], None, {}, NOW)
    assert signed_out is not None
    assert signed_out["owner"] is None


def test_a_device_never_linked_belongs_to_nobody() -> None:
    view = device_view("a-9", [], [Touch(T0, "c", "search")], None, {}, NOW)
    assert view == {
        "anonymous_id": "a-9",
        "owner": None,
        "segments": [],
        "path": [
            {"ts": "2024-05-01T10:00:00.000Z", "campaign": "c", "channel": "search", "owner": None}
        ],
        "customer": None,
        "orders": [],
    }


def test_nothing_held_is_none() -> None:
    assert user_view("u-1", {}, [], {}, None, {}, NOW) is None
    assert device_view("a-1", [], [], None, {}, NOW) is None
    # Devices whose touches are all someone else's still say the user is known.
    assert user_view("u-3", {"a-1": SHARED}, [], {"a-1": ON_SHARED}, None, {}, NOW) is not None


def test_the_customer_record_and_orders_as_credited() -> None:
    # 49.90 split by linear over two touches: 24.95 each, half a conversion each; by
    # last click, all of it to the second.
    order = Order(
        ts=T0 + 500,
        goal="purchase",
        revenue=49_900_000,
        credits={
            "last_click": [Credit("c-u1", "email", ONE, 49_900_000)],
            "linear": [
                Credit("c-before-all", "social", ONE // 2, 24_950_000),
                Credit("c-u1", "email", ONE // 2, 24_950_000),
            ],
        },
        acquisition=Acquisition("c-u1", "email"),
        device="a-1",
        user=None,
    )
    refunded = Order(T0 + 400, "lead", 0, {}, None, reversed=True, click_id="k-1")
    view = device_view(
        "a-1",
        [],
        [],
        Customer(Acquisition(None, "direct"), None, 7),
        {"o-2": order, "o-1": refunded},
        NOW,
    )
    assert view is not None
    # Kept before it held the conversion that won them: what it cannot say is null.
    assert view["customer"] == {
        "campaign": None,
        "channel": "direct",
        "won_by": None,
        "revenue": None,
    }
    assert view["orders"] == [  # oldest first
        {
            "order_id": "o-1",
            "ts": "2024-05-01T10:00:00.400Z",
            "goal": "lead",
            "revenue": 0.0,
            "reversed": True,
            "user_id": None,
            "anonymous_id": None,
            "click_id": "k-1",
            "credits": {},
        },
        {
            "order_id": "o-2",
            "ts": "2024-05-01T10:00:00.500Z",
            "goal": "purchase",
            "revenue": 49.9,
            "reversed": False,
            "user_id": None,
            "anonymous_id": "a-1",
            "click_id": None,
            "credits": {
                "last_click": [
                    {"campaign": "c-u1", "channel": "email", "conversions": 1, "revenue": 49.9}
                ],
                "linear": [
                    {
                        "campaign": "c-before-all",
                        "channel": "social",
                        "conversions": 0.5,
                        "revenue": 24.95,
                    },
                    {"campaign": "c-u1", "channel": "email", "conversions": 0.5, "revenue": 24.95},
                ],
            },
        },
    ]
