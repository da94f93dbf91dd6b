"""The stakeholder report's figures, read once from Redis: one dict the HTML, CSV and JSON share.

Every figure is a :func:`tracker.rows.row` (as ``/v1/kpis`` serves it), a
:func:`tracker.rows.clv_row` (as ``/v1/clv``), or what :mod:`tracker.decide`
computes from the same buckets. Each row of the summary and the total is judged
against its KPI target, if it has one (:mod:`tracker.report.verdicts`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from tracker.decide import queries
from tracker.decide.budget import BudgetError, Rules
from tracker.decide.periods import previous, summed
from tracker.decide.queries import Progress, read_range
from tracker.decide.trends import Minimums
from tracker.kpis import Totals
from tracker.redis_clients import Reader
from tracker.report.verdicts import daily_rule, one_day, verdict
from tracker.rows import clv_row, final, row, totals
from tracker.rulebook import decode
from tracker.settings import Settings
from tracker.store import Buckets, Keys
from tracker.targets import TargetSet, load
from tracker.types import EpochMs, Micros
from tracker.windows import ALL_TIME, WINDOWS, Calendar, rfc3339

DIMENSIONS = ("channel", "campaign")
MAX_BUCKETS = 5000
NO_TARGETS = TargetSet()


def auto_window(start: EpochMs, end: EpochMs) -> str:
    """Days for three days or more, hours for three hours or more, else minutes (nominal)."""
    span = end - start
    if span >= 3 * WINDOWS["1d"]:
        return "1d"
    return "1h" if span >= 3 * WINDOWS["1h"] else "1m"


async def gather(
    redis: Reader,
    settings: Settings,
    *,
    start: EpochMs,
    end: EpochMs,
    dimension: str = "channel",
    window: str | None = None,
    model: str = "last_click",
    budget_total: Micros | None = None,
    budget_days: int = 7,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Everything the report shows for ``[start, end)``, in JSON-ready form.

    ``budget_total`` defaults to what the units spent in the ``budget_days`` whole
    days before ``end``: the same money, split anew. Hours and days are those of the
    settings' time zone.
    """
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {', '.join(DIMENSIONS)}")
    if start >= end:
        raise ValueError("from must be before to")
    window = window or auto_window(start, end)
    calendar = settings.calendar()
    starts = calendar.buckets_between(start, end, window)
    if len(starts) > MAX_BUCKETS:
        raise ValueError(
            f"the range spans {len(starts)} {window} buckets, at most {MAX_BUCKETS}: "
            "choose a bigger window"
        )
    keys = Keys(settings.key_prefix)
    currency = settings.base_currency.upper()
    before = previous(calendar, starts, window)
    buckets = await read_range(redis, keys, window, [*before, *starts], progress)
    everything = (await read_range(redis, keys, ALL_TIME, [0])).get(0, {})
    targets = load(decode(await redis.get(keys.targets)))
    budget = await _budget(
        redis, keys, settings, dimension, model, end, budget_total, budget_days, currency
    )
    return assemble(
        buckets,
        everything,
        budget,
        starts=starts,
        window=window,
        dimension=dimension,
        model=model,
        currency=currency,
        minimums=queries.minimums(settings),
        calendar=calendar,
        grace_ms=settings.grace_s * 1000,
        now=int(time.time() * 1000),
        targets=targets,
    )


def assemble(
    buckets: Buckets,
    everything: Mapping[tuple[str, str], Mapping[str, int]],
    budget: dict[str, Any],
    *,
    starts: Sequence[EpochMs],
    window: str,
    dimension: str,
    model: str,
    currency: str,
    minimums: Minimums,
    calendar: Calendar,
    grace_ms: int,
    now: EpochMs,
    targets: TargetSet = NO_TARGETS,
) -> dict[str, Any]:
    """The report from buckets already read (``starts`` and the period before them).

    ``everything`` is the all-time bucket (customer lifetime value); ``budget`` the
    recommendation as :func:`tracker.decide.queries.recommendation` answers it.
    ``final`` says whether the last bucket (so every bucket) is final at ``now``.
    ``targets``: the KPI targets the summary's rows and the total are judged against.
    """
    whole_day = window != "1d" and one_day(window, starts, calendar)

    def judged(dim: str, value: str, metrics: Mapping[str, int]) -> dict[str, Any]:
        """A row's verdict: its period sums, and its days when the report has them."""
        period = totals(dim, metrics, model)
        days: list[Totals] | None = [period] if whole_day else None
        if window == "1d":
            cells = (buckets.get(start, {}).get((dim, value), {}) for start in starts)
            days = [totals(dim, cell, model) for cell in cells]
        return verdict(targets.of(dim, value), period, days)

    series = [
        row(bucket, dimension, value, metrics, model)
        for bucket in starts
        for (dim, value), metrics in sorted(buckets.get(bucket, {}).items())
        if dim == dimension
    ]
    total_metrics: Mapping[str, int] = summed(buckets, starts, "total").get("total", {})
    sums = summed(buckets, starts, dimension)
    summary = _summary(sums, dimension, model, starts[0])
    for item in summary:
        item.update(judged(dimension, item["value"], sums[item["value"]]))
    clv = [
        clv_row(value, metrics, model)
        for (dim, value), metrics in sorted(everything.items())
        if dim == dimension and metrics.get("customers")
    ]
    lifetime = {c["value"]: c for c in clv}
    for item in summary:
        found = lifetime.get(item["value"], {})
        item["clv"], item["clv_cpa"] = found.get("clv"), found.get("clv_cpa")
    return {
        "title": f"Marketing performance by {dimension}",
        "from": rfc3339(starts[0]),
        "to": rfc3339(calendar.bucket_end(starts[-1], window)),
        "window": window,
        "dimension": dimension,
        "model": model,
        "currency": currency,
        "timezone": calendar.timezone,
        "final": final(calendar, starts[-1], window, grace_ms, now),
        "generated_at": rfc3339(now),
        "targets": {
            "version": targets.version,
            "saved_at": rfc3339(targets.saved_at) if targets.saved_at else None,
            "daily_spend": daily_rule(window, starts, calendar),
        },
        "total": {
            **_figures(row(starts[0], "total", "total", total_metrics, model)),
            **judged("total", "total", total_metrics),
        },
        "summary": summary,
        "series": series,
        "clv": clv,
        "trends": queries.trends_of(
            buckets,
            dimension=dimension,
            window=window,
            model=model,
            starts=starts,
            calendar=calendar,
            minimums=minimums,
            top=5,
        ),
        "attribution": queries.attribution_of(
            buckets, dimension=dimension, window=window, starts=starts, calendar=calendar
        ),
        "budget": budget,
    }


def _summary(
    sums: dict[str, Any], dimension: str, model: str, start: EpochMs
) -> list[dict[str, Any]]:
    """Per value over the whole range: its KPI row and its shares of spend and revenue."""
    spend = sum(totals(dimension, m, model).spend for m in sums.values())
    revenue = sum(totals(dimension, m, model).revenue for m in sums.values())
    found = []
    for value in sorted(sums, key=lambda v: (-totals(dimension, sums[v], model).spend, v)):
        t = totals(dimension, sums[value], model)
        item = _figures(row(start, dimension, value, sums[value], model))
        item["spend_share"] = round(t.spend / spend, 6) if spend else None
        item["revenue_share"] = round(t.revenue / revenue, 6) if revenue else None
        found.append({"value": value, **item})
    return found


def _figures(kpi_row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kpi_row.items() if k not in ("bucket", "value", "users", "bots")}


async def _budget(
    redis: Reader,
    keys: Keys,
    settings: Settings,
    dimension: str,
    model: str,
    end: EpochMs,
    total: Micros | None,
    days: int,
    currency: str,
) -> dict[str, Any]:
    history = settings.budget_history_days
    calendar = settings.calendar()
    if total is None:
        recent = calendar.days_before(end, days)
        last = await read_range(redis, keys, "1d", recent)
        spent = summed(last, recent, dimension).values()
        total = sum(totals(dimension, m, model).spend for m in spent)
    if total <= 0:
        reason = "nothing was spent in the days before the report's end"
        return {"summary": f"No budget to split: {reason}.", "units": [], "moves": []}
    rules = Rules(
        total=total,
        period_days=days,
        max_change=settings.budget_max_change,
        min_days=settings.budget_min_days,
        currency=currency,
    )
    try:
        return await queries.recommendation(
            redis,
            keys,
            dimension=dimension,
            model=model,
            end=end,
            history=history,
            rules=rules,
            calendar=calendar,
        )
    except BudgetError as exc:
        return {"summary": f"No recommendation: {exc}.", "units": [], "moves": []}
