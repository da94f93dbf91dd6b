"""Decision figures read from Redis: what the API, ``tracker budget`` and the report share.

The decision modules' only door to Redis. Reads go through
:func:`tracker.store.read_buckets`, figures through :func:`tracker.rows.totals`
and :func:`tracker.rows.row`: the same aggregates ``/v1/kpis`` serves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from tracker.attribution import ONE
from tracker.decide.budget import Rules, Unit, plan
from tracker.decide.comparison import BASE, compare_models
from tracker.decide.explain import as_json
from tracker.decide.periods import previous, summed
from tracker.decide.trends import Minimums, compare
from tracker.money import MICROS_PER_UNIT, parse_micros, to_number
from tracker.redis_clients import Reader
from tracker.rows import totals
from tracker.rulebook import decode
from tracker.settings import Settings
from tracker.store import Buckets, Keys, read_buckets
from tracker.targets import load
from tracker.types import EpochMs
from tracker.windows import Calendar, rfc3339

Progress = Callable[[int, int], None]
"""Called with (buckets read so far, buckets to read)."""
CHUNK = 96
"""Buckets per pipelined round trip: small enough to show progress, big enough to be quick."""


async def read_range(
    redis: Reader,
    keys: Keys,
    window: str,
    starts: Sequence[EpochMs],
    progress: Progress | None = None,
) -> Buckets:
    """Every bucket of ``window`` at ``starts``, read in chunks, reporting progress."""
    found: Buckets = {}
    for offset in range(0, len(starts), CHUNK):
        found.update(await read_buckets(redis, window, list(starts[offset : offset + CHUNK]), keys))
        if progress is not None:
            progress(min(offset + CHUNK, len(starts)), len(starts))
    return found


def units(
    buckets: Buckets, days: Sequence[EpochMs], dimension: str, model: str, objective: str
) -> list[Unit]:
    """Daily spend and outcome of every value of ``dimension`` with spend in ``days``."""
    values = sorted(
        {
            value
            for day in days
            for (dim, value), metrics in buckets.get(day, {}).items()
            if dim == dimension and metrics.get("spend", 0) > 0
        }
    )
    found = []
    for value in values:
        series = [
            totals(dimension, buckets.get(day, {}).get((dimension, value), {}), model)
            for day in days
        ]
        outcome = [
            t.revenue / MICROS_PER_UNIT if objective == "revenue" else t.conversions / ONE
            for t in series
        ]
        found.append(Unit(value, [t.spend for t in series], outcome))
    return found


def minimums(settings: Settings) -> Minimums:
    """The trend minimums of the settings, spend in micro-units."""
    return Minimums(
        conversions=settings.trend_min_conversions,
        spend=parse_micros(f"{settings.trend_min_spend:.6f}"),
    )


async def trends(
    redis: Reader,
    keys: Keys,
    *,
    dimension: str,
    window: str,
    model: str,
    starts: Sequence[EpochMs],
    calendar: Calendar,
    minimums: Minimums,
    top: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The period ``starts`` against as many buckets before it."""
    before = previous(calendar, starts, window)
    buckets = await read_range(redis, keys, window, [*before, *starts], progress)
    return trends_of(
        buckets,
        dimension=dimension,
        window=window,
        model=model,
        starts=starts,
        calendar=calendar,
        minimums=minimums,
        top=top,
    )


def trends_of(
    buckets: Buckets,
    *,
    dimension: str,
    window: str,
    model: str,
    starts: Sequence[EpochMs],
    calendar: Calendar,
    minimums: Minimums,
    top: int,
) -> dict[str, Any]:
    """:func:`trends.compare` of ``starts`` and the period before, both in ``buckets``."""
    before = previous(calendar, starts, window)
    found = compare(
        summed(buckets, starts, dimension),
        summed(buckets, before, dimension),
        dimension=dimension,
        model=model,
        period_start=starts[0],
        previous_start=before[0],
        minimums=minimums,
        top=top,
    )
    return {
        "current": {
            "from": rfc3339(starts[0]),
            "to": rfc3339(calendar.bucket_end(starts[-1], window)),
        },
        "previous": {"from": rfc3339(before[0]), "to": rfc3339(starts[0])},
        "minimums": {"conversions": minimums.conversions, "spend": to_number(minimums.spend)},
        **found,
    }


async def attribution(
    redis: Reader,
    keys: Keys,
    *,
    dimension: str,
    window: str,
    starts: Sequence[EpochMs],
    calendar: Calendar,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every model's credit against last click's over ``starts``."""
    buckets = await read_range(redis, keys, window, starts, progress)
    return attribution_of(
        buckets, dimension=dimension, window=window, starts=starts, calendar=calendar
    )


def attribution_of(
    buckets: Buckets,
    *,
    dimension: str,
    window: str,
    starts: Sequence[EpochMs],
    calendar: Calendar,
) -> dict[str, Any]:
    """:func:`comparison.compare_models` over ``starts`` in ``buckets``."""
    return {
        "from": rfc3339(starts[0]),
        "to": rfc3339(calendar.bucket_end(starts[-1], window)),
        "base": BASE,
        "rows": compare_models(summed(buckets, starts, dimension), dimension),
    }


async def recommendation(
    redis: Reader,
    keys: Keys,
    *,
    dimension: str,
    model: str,
    end: EpochMs,
    history: int,
    rules: Rules,
    calendar: Calendar,
    progress: Progress | None = None,
    targets: bool = False,
) -> dict[str, Any]:
    """The budget plan (:func:`budget.plan`) from the ``history`` whole local days before ``end``.

    ``targets``: read the KPI targets of the units of ``dimension`` in force and take
    them as maximums (:mod:`tracker.decide.limits`); the answer's ``targets`` names
    their version (null when not asked). Raises :class:`budget.BudgetError` when the
    limits cannot add up to the total.
    """
    days = calendar.days_before(end, history)
    buckets = await read_range(redis, keys, "1d", days, progress)
    used = None
    if targets:
        found_targets = load(decode(await redis.get(keys.targets)))
        named = {t.value: t for t in found_targets.targets if t.dimension == dimension}
        rules = dataclasses.replace(rules, targets=named)
        saved_at = found_targets.saved_at
        used = {
            "version": found_targets.version,
            "saved_at": rfc3339(saved_at) if saved_at else None,
        }
    found = plan(units(buckets, days, dimension, model, rules.objective), rules)
    return {
        "dimension": dimension,
        "model": model,
        "timezone": calendar.timezone,
        "history": {
            "from": rfc3339(days[0]),
            "to": rfc3339(calendar.bucket_end(days[-1], "1d")),
            "days": history,
        },
        "targets": used,
        **as_json(found),
    }
