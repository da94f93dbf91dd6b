"""The pure core of the worker: a batch of events -> the sums to add to Redis.

No I/O here. The sink reads what this needs (which event ids were seen, each
partition's watermark, earlier spend figures), calls :func:`fold`, and writes
the resulting :class:`Delta` in one transaction with the source offsets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tracker import money
from tracker.events import Event
from tracker.types import EpochMs, Micros
from tracker.windows import ALL_TIME, WINDOWS, bucket_start, day_of, period_start

METRICS = ("impressions", "clicks", "pageviews", "conversions", "spend", "revenue")
TOTAL = "total"
_MINUTE = WINDOWS["1m"]


Cell = tuple[str, EpochMs, str, str, str]
"""(window, bucket start, dimension, dimension value, metric)."""


@dataclass(frozen=True, slots=True)
class SpendFigure:
    """The newest reported amount for a campaign and period, and when it was reported."""

    ts: EpochMs
    amount: Micros


@dataclass(slots=True)
class Delta:
    """What one batch changes: bucket sums, remembered ids, spend figures, health."""

    sums: Counter[Cell] = field(default_factory=Counter)
    """Amounts to add, per cell."""
    seen: set[str] = field(default_factory=set)
    """Event ids accepted by this batch, to remember for deduplication."""
    spend: dict[tuple[str, str], SpendFigure] = field(default_factory=dict)
    """(campaign, period) -> the figure that now stands."""
    health: Counter[str] = field(default_factory=Counter)
    """Pipeline counters: events, duplicates, late, bots."""
    watermark: EpochMs = 0
    newest: EpochMs = 0


def spend_key(event: Event) -> tuple[str, str]:
    """The (campaign, period) a spend event reports; period defaults to its UTC day."""
    return (event.campaign or "", event.period or day_of(event.ts))


def fold(
    events: Iterable[Event],
    *,
    seen_before: frozenset[str] | set[str],
    watermark: EpochMs,
    grace_ms: int,
    rates: Mapping[str, float],
    spend_before: Mapping[tuple[str, str], SpendFigure],
) -> Delta:
    """Sum a partition's batch of events, in their order.

    Drops (and counts) duplicates by ``event_id``, late events (more than
    ``grace_ms`` behind the partition's newest event time) and bots (counted per
    campaign, never in KPIs). Spend events replace the figure of their campaign and
    period when they are newer, adding only the difference.
    """
    delta = Delta(watermark=watermark)
    # Sum per (minute, campaign, channel) first, then spread to windows and
    # dimensions once per cell instead of once per event.
    cells: dict[tuple[EpochMs, str | None, str], Counter[str]] = {}
    for event in events:
        if event.event_id in seen_before or event.event_id in delta.seen:
            delta.health["duplicates"] += 1
            continue
        if event.ts < delta.watermark - grace_ms:
            delta.health["late"] += 1
            continue
        delta.seen.add(event.event_id)
        delta.watermark = max(delta.watermark, event.ts)
        delta.newest = max(delta.newest, event.received_at)
        delta.health["events"] += 1
        if event.bot:
            delta.health["bots"] += 1
            delta.sums[ALL_TIME, 0, "campaign", event.campaign or "", "bots"] += 1
            continue
        if event.type == "spend":
            _upsert_spend(event, delta, spend_before, rates)
            continue
        cell = cells.setdefault(
            (event.ts - event.ts % _MINUTE, event.campaign, event.channel), Counter()
        )
        _count(event, cell, rates)
    for (minute, campaign, channel), metrics in cells.items():
        _spread(delta, minute, campaign, channel, metrics)
    return delta


def _count(event: Event, cell: Counter[str], rates: Mapping[str, float]) -> None:
    if event.type == "impression":
        cell["impressions"] += 1
    elif event.type == "click":
        cell["clicks"] += 1
    elif event.type == "pageview":
        cell["pageviews"] += 1
    elif event.type == "conversion" and event.status in ("approved", "pending"):
        cell["conversions"] += 1
        cell[f"conversions:{event.goal}"] += 1
        if event.value:
            cell["revenue"] += money.convert(event.value, event.currency, rates)
    if event.cost and event.type in ("impression", "click"):
        cell["spend"] += money.convert(event.cost, event.currency, rates)


def _upsert_spend(
    event: Event,
    delta: Delta,
    spend_before: Mapping[tuple[str, str], SpendFigure],
    rates: Mapping[str, float],
) -> None:
    key = spend_key(event)
    previous = delta.spend.get(key) or spend_before.get(key)
    if previous is not None and previous.ts > event.ts:
        delta.health["stale_spend"] += 1
        return
    amount = money.convert(event.cost or 0, event.currency, rates)
    delta.spend[key] = SpendFigure(event.ts, amount)
    change = amount - (previous.amount if previous else 0)
    if change:
        start = period_start(key[1])
        _spread(delta, start, event.campaign, event.channel, Counter(spend=change))


def _spread(
    delta: Delta, ts: EpochMs, campaign: str | None, channel: str, metrics: Counter[str]
) -> None:
    dimensions = [("channel", channel), (TOTAL, TOTAL)]
    if campaign:
        dimensions.append(("campaign", campaign))
    for window in (*WINDOWS, ALL_TIME):
        bucket = bucket_start(ts, window)
        for dimension, value in dimensions:
            for metric, amount in metrics.items():
                delta.sums[window, bucket, dimension, value, metric] += amount
