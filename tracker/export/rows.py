"""KPI rows as the query API serves them: money in currency units, null ratios."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracker.kpis import Totals
from tracker.money import to_number
from tracker.types import EpochMs
from tracker.windows import rfc3339


def totals(metrics: Mapping[str, int]) -> Totals:
    return Totals(
        impressions=metrics.get("impressions", 0),
        clicks=metrics.get("clicks", 0),
        conversions=metrics.get("conversions", 0),
        spend=metrics.get("spend", 0),
        revenue=metrics.get("revenue", 0),
    )


def row(bucket: EpochMs, value: str, metrics: Mapping[str, int]) -> dict[str, Any]:
    t = totals(metrics)
    return {
        "bucket": rfc3339(bucket),
        "value": value,
        "impressions": t.impressions,
        "clicks": t.clicks,
        "conversions": t.conversions,
        "spend": to_number(t.spend),
        "revenue": to_number(t.revenue),
        "ctr": t.ctr(),
        "cvr": t.cvr(),
        "cpc": t.cpc(),
        "cpa": t.cpa(),
        "roas": t.roas(),
    }
