"""KPI rows as the query API serves them: money in currency units, null ratios."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracker.attribution import ONE
from tracker.kpis import Totals, money_ratio, ratio
from tracker.money import to_number
from tracker.stream.delta import attributed
from tracker.types import EpochMs
from tracker.windows import ALL_TIME, Calendar, rfc3339

ATTRIBUTED_DIMENSIONS = ("campaign", "channel")
"""Dimensions whose conversions and revenue depend on the attribution model."""


def totals(dimension: str, metrics: Mapping[str, int], model: str) -> Totals:
    """Sums of a row; conversions in micro-conversions where attribution may split them."""
    if dimension in ATTRIBUTED_DIMENSIONS:
        conversions = metrics.get(attributed("conversions", model), 0)
        revenue = metrics.get(attributed("revenue", model), 0)
    else:
        conversions = metrics.get("conversions", 0) * ONE
        revenue = metrics.get("revenue", 0)
    return Totals(
        impressions=metrics.get("impressions", 0),
        clicks=metrics.get("clicks", 0),
        conversions=conversions,
        spend=metrics.get("spend", 0),
        revenue=revenue,
    )


def row(
    bucket: EpochMs,
    dimension: str,
    value: str,
    metrics: Mapping[str, int],
    model: str,
    users: int | None = None,
) -> dict[str, Any]:
    t = totals(dimension, metrics, model)
    return {
        "bucket": rfc3339(bucket),
        "value": value,
        "impressions": t.impressions,
        "clicks": t.clicks,
        "conversions": count(t.conversions),
        "spend": to_number(t.spend),
        "revenue": to_number(t.revenue),
        "ctr": t.ctr(),
        "cvr": t.cvr(),
        "cpc": t.cpc(),
        "cpa": t.cpa(),
        "roas": t.roas(),
        "users": users,
        "bots": metrics.get("bots", 0),
    }


def final(calendar: Calendar, bucket: EpochMs, window: str, grace_ms: int, now: EpochMs) -> bool:
    """Whether a bucket is final: it ended at least ``grace_ms`` before ``now``.

    A final bucket's figures change only if a late event still arrives (it is counted,
    as late); the all-time bucket is never final.
    """
    if window == ALL_TIME:
        return False
    return calendar.bucket_end(bucket, window) + grace_ms <= now


def clv_row(value: str, metrics: Mapping[str, int], model: str) -> dict[str, Any]:
    """All-time lifetime value of the customers a campaign or channel acquired."""
    customers = metrics.get("customers", 0)
    revenue = metrics.get("customer_revenue", 0)
    clv = money_ratio(revenue, customers)
    cpa = totals("campaign", metrics, model).cpa()
    return {
        "value": value,
        "customers": customers,
        "customer_revenue": to_number(revenue),
        "clv": clv,
        "cpa": cpa,
        "clv_cpa": ratio(clv, cpa) if clv is not None and cpa is not None else None,
    }


def count(micro_conversions: int) -> int | float:
    """Whole conversions as an integer; a model's fractional credit to six decimals."""
    whole, rest = divmod(micro_conversions, ONE)
    return whole if rest == 0 else round(micro_conversions / ONE, 6)
