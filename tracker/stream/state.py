"""What the worker remembers between events, as plain values.

The sink reads these from Redis before a batch (:class:`Lookups`), the fold updates
them as it goes and marks what changed, and the sink writes the changes back in the
batch's transaction. Each type has a compact JSON form for its Redis value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tracker.attribution import Touch
from tracker.stream.identity import Segment
from tracker.types import EpochMs, Micros


@dataclass(frozen=True, slots=True)
class SpendFigure:
    """The standing amount for a campaign and period, and when it was reported."""

    ts: EpochMs
    amount: Micros


@dataclass(frozen=True, slots=True)
class Click:
    """A click's touch and who clicked, for conversions that name the click."""

    touch: Touch
    device: str | None
    """The clicker's anonymous id, when the click had one."""
    user: str | None = None
    """The clicker's user id, when the click had one."""


@dataclass(frozen=True, slots=True)
class Credit:
    """One share of a conversion: micro-conversions and revenue for a campaign/channel."""

    campaign: str | None
    channel: str
    conversions: int
    revenue: Micros


@dataclass(frozen=True, slots=True)
class Acquisition:
    """The campaign and channel that won a customer (their first attributed conversion)."""

    campaign: str | None
    channel: str


@dataclass(slots=True)
class Customer:
    """Who won a customer, with which of their conversions, and what they spent since."""

    acquisition: Acquisition
    first: tuple[EpochMs, str] | None
    """(time, order id or else event id) of the conversion that won them: their earliest
    counted, whatever order conversions arrive in. ``None``: won before this was kept,
    and kept so."""
    revenue: Micros = 0
    """Their revenue counted so far, less refunds: it moves with them to another
    acquisition when an earlier conversion of theirs comes."""
    count: int | None = None
    """Their conversions counted (``None``: not kept, in a record older than this): at 0,
    after the last went to another customer (a guest's, to the user who signed in),
    they are no customer any more."""


@dataclass(slots=True)
class Order:
    """A counted conversion, remembered so a re-fire is dropped and a refund reverses it."""

    ts: EpochMs
    goal: str
    revenue: Micros
    credits: dict[str, list[Credit]]
    """Per attribution model, the shares it was counted as."""
    acquisition: Acquisition | None
    reversed: bool = False
    device: str | None = None
    user: str | None = None
    click_id: str | None = None
    named: bool = False
    """It named its campaign, which it keeps whatever the touches: never re-credited."""
    customer: str | None = None
    """Whose customer record it counts in (``None``: counted before that was kept, or
    nobody's): a refund or a re-credit changes that record."""


@dataclass(slots=True)
class Lookups:
    """State the fold reads and updates; ``dirty_*`` name what the sink must write."""

    seen: set[str] = field(default_factory=set)
    spend: dict[tuple[str, str], SpendFigure] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    clicks: dict[str, Click] = field(default_factory=dict)
    paths: dict[str, list[Touch]] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    links: dict[str, list[Segment]] = field(default_factory=dict)
    """Device -> its link segments."""
    devices: dict[str, list[str]] = field(default_factory=dict)
    """User -> the devices linked to them."""
    recent: dict[str, list[tuple[str, EpochMs]]] = field(default_factory=dict)
    """Device or user -> their last orders (order id, time)."""
    dirty_orders: set[str] = field(default_factory=set)
    dirty_clicks: set[str] = field(default_factory=set)
    dirty_paths: set[str] = field(default_factory=set)
    dirty_customers: set[str] = field(default_factory=set)
    dirty_links: set[str] = field(default_factory=set)
    dirty_devices: set[str] = field(default_factory=set)
    dirty_recent: set[str] = field(default_factory=set)


# Redis forms: short arrays, since millions of these live in Redis.


def dump_spend(figure: SpendFigure) -> bytes:
    return f"{figure.ts}:{figure.amount}".encode()


def load_spend(raw: bytes | str) -> SpendFigure:
    ts, _, amount = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
    return SpendFigure(int(ts), int(amount))


def _touch(t: Touch) -> list[Any]:
    return [t.ts, t.campaign, t.channel]


def dump_path(path: list[Touch]) -> bytes:
    return orjson.dumps([_touch(t) for t in path])


def load_path(raw: bytes | str) -> list[Touch]:
    return [Touch(ts, campaign, channel) for ts, campaign, channel in orjson.loads(raw)]


def dump_click(click: Click) -> bytes:
    return orjson.dumps([*_touch(click.touch), click.device, click.user])


def load_click(raw: bytes | str) -> Click:
    ts, campaign, channel, device, *user = orjson.loads(raw)
    return Click(Touch(ts, campaign, channel), device, user[0] if user else None)


def dump_link(segments: list[Segment]) -> bytes:
    return orjson.dumps([[s.user, s.since] for s in segments])


def load_link(raw: bytes | str) -> list[Segment]:
    return [Segment(user, since) for user, since in orjson.loads(raw)]


def dump_devices(devices: list[str]) -> bytes:
    return orjson.dumps(devices)


def load_devices(raw: bytes | str) -> list[str]:
    devices: list[str] = orjson.loads(raw)
    return devices


def dump_recent(orders: list[tuple[str, EpochMs]]) -> bytes:
    return orjson.dumps(orders)


def load_recent(raw: bytes | str) -> list[tuple[str, EpochMs]]:
    return [(order_id, ts) for order_id, ts in orjson.loads(raw)]


def dump_customer(customer: Customer) -> bytes:
    won = customer.acquisition
    first = list(customer.first) if customer.first else None
    return orjson.dumps([won.campaign, won.channel, first, customer.revenue, customer.count])


def load_customer(raw: bytes | str) -> Customer:
    # A record kept before the first conversion was (two items) is never displaced.
    campaign, channel, *rest = orjson.loads(raw)
    first, revenue, count = (*rest, None, None, None)[:3] if rest else (None, 0, None)
    return Customer(
        Acquisition(campaign, channel),
        (first[0], first[1]) if first else None,
        revenue or 0,
        count,
    )


def dump_order(order: Order) -> bytes:
    credits = {
        model: [[c.campaign, c.channel, c.conversions, c.revenue] for c in shares]
        for model, shares in order.credits.items()
    }
    acquisition = order.acquisition
    return orjson.dumps(
        {
            "ts": order.ts,
            "goal": order.goal,
            "revenue": order.revenue,
            "credits": credits,
            "acq": [acquisition.campaign, acquisition.channel] if acquisition else None,
            "reversed": order.reversed,
            "who": [order.device, order.user, order.click_id, order.named, order.customer],
        }
    )


def load_order(raw: bytes | str) -> Order:
    data = orjson.loads(raw)
    acq = data["acq"]
    # Orders stored before identity stitching say nothing of who: never re-credited.
    device, user, click_id, named, *customer = data.get("who") or (None, None, None, True)
    return Order(
        ts=data["ts"],
        goal=data["goal"],
        revenue=data["revenue"],
        credits={
            model: [Credit(*share) for share in shares] for model, shares in data["credits"].items()
        },
        acquisition=Acquisition(*acq) if acq else None,
        reversed=data["reversed"],
        device=device,
        user=user,
        click_id=click_id,
        named=named,
        customer=customer[0] if customer else None,
    )
