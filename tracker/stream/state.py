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
from tracker.types import EpochMs, Micros


@dataclass(frozen=True, slots=True)
class SpendFigure:
    """The standing amount for a campaign and period, and when it was reported."""

    ts: EpochMs
    amount: Micros


@dataclass(frozen=True, slots=True)
class Click:
    """A click's touch and the person who clicked, for conversions that name the click."""

    touch: Touch
    person: str | None


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
class Order:
    """A counted conversion, remembered so a re-fire is dropped and a refund reverses it."""

    ts: EpochMs
    goal: str
    revenue: Micros
    credits: dict[str, list[Credit]]
    """Per attribution model, the shares it was counted as."""
    acquisition: Acquisition | None
    reversed: bool = False


@dataclass(slots=True)
class Lookups:
    """State the fold reads and updates; ``dirty_*`` name what the sink must write."""

    seen: set[str] = field(default_factory=set)
    spend: dict[tuple[str, str], SpendFigure] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    clicks: dict[str, Click] = field(default_factory=dict)
    paths: dict[str, list[Touch]] = field(default_factory=dict)
    customers: dict[str, Acquisition] = field(default_factory=dict)
    dirty_orders: set[str] = field(default_factory=set)
    dirty_clicks: set[str] = field(default_factory=set)
    dirty_paths: set[str] = field(default_factory=set)
    dirty_customers: set[str] = field(default_factory=set)


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
    return orjson.dumps([*_touch(click.touch), click.person])


def load_click(raw: bytes | str) -> Click:
    ts, campaign, channel, person = orjson.loads(raw)
    return Click(Touch(ts, campaign, channel), person)


def dump_acquisition(acquisition: Acquisition) -> bytes:
    return orjson.dumps([acquisition.campaign, acquisition.channel])


def load_acquisition(raw: bytes | str) -> Acquisition:
    campaign, channel = orjson.loads(raw)
    return Acquisition(campaign, channel)


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
        }
    )


def load_order(raw: bytes | str) -> Order:
    data = orjson.loads(raw)
    acq = data["acq"]
    return Order(
        ts=data["ts"],
        goal=data["goal"],
        revenue=data["revenue"],
        credits={
            model: [Credit(*share) for share in shares] for model, shares in data["credits"].items()
        },
        acquisition=Acquisition(*acq) if acq else None,
        reversed=data["reversed"],
    )
