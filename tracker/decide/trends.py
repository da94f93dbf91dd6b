"""Trends: a period's KPIs against the period of equal length before it, and the top movers.

Pure functions over summed bucket metrics (:func:`tracker.decide.periods.summed`);
every figure is :func:`tracker.rows.row` of those sums, so a one-bucket period
shows exactly what ``/v1/kpis`` shows for that bucket.

Small samples are said to be small: CTR and conversion rate carry a Wilson score
interval, and CPA and ROAS are ranked among the movers only when both periods have
at least the minimum conversions and spend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tracker.attribution import ONE
from tracker.kpis import Totals
from tracker.money import to_number
from tracker.rows import count, row, totals
from tracker.types import EpochMs, Micros

SUMS = ("impressions", "clicks", "conversions", "spend", "revenue")
RATIOS = ("ctr", "cvr", "cpc", "cpa", "roas")
MOVER_METRICS = ("revenue", "spend", "conversions", "roas", "cpa", "cvr", "ctr")
Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""


@dataclass(frozen=True, slots=True)
class Minimums:
    """Below these, in either period, CPA and ROAS changes are not ranked."""

    conversions: float
    spend: Micros


def wilson(successes: float, trials: float, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None without trials or above 100%.

    ``successes`` may be fractional (an attribution model's credit).
    """
    if trials <= 0 or not 0 <= successes <= trials:
        return None
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return (round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6))


def compare(
    current: Mapping[str, Mapping[str, int]],
    previous: Mapping[str, Mapping[str, int]],
    *,
    dimension: str,
    model: str,
    period_start: EpochMs,
    previous_start: EpochMs,
    minimums: Minimums,
    top: int = 5,
) -> dict[str, Any]:
    """Per value of ``dimension``: both periods' KPIs, their change and intervals; the movers.

    ``current``/``previous`` map each value to its summed raw metrics.
    """
    rows = []
    for value in sorted(set(current) | set(previous)):
        now_metrics, then_metrics = current.get(value, {}), previous.get(value, {})
        now, then = totals(dimension, now_metrics, model), totals(dimension, then_metrics, model)
        now_row = _figures(row(period_start, dimension, value, now_metrics, model))
        then_row = _figures(row(previous_start, dimension, value, then_metrics, model))
        rows.append(
            {
                "value": value,
                "current": now_row,
                "previous": then_row,
                "change": _changes(now, then, now_row, then_row),
                "ctr_interval": {
                    "current": wilson(now.clicks, now.impressions),
                    "previous": wilson(then.clicks, then.impressions),
                },
                "cvr_interval": {
                    "current": wilson(now.conversions / ONE, now.clicks),
                    "previous": wilson(then.conversions / ONE, then.clicks),
                },
                "ranked": {
                    "cpa": _enough_conversions(now, then, minimums),
                    "roas": _enough_spend(now, then, minimums),
                },
            }
        )
    return {"rows": rows, "movers": movers(rows, top)}


def movers(rows: list[dict[str, Any]], top: int) -> dict[str, list[dict[str, Any]]]:
    """For each metric, the ``top`` values whose figure changed most, largest change first.

    CPA and ROAS leave out values not ``ranked`` (too few conversions or too little
    spend); CTR and conversion rate say whether their intervals are apart
    (``significant``).
    """
    found: dict[str, list[dict[str, Any]]] = {}
    for metric in MOVER_METRICS:
        ranked = []
        for r in rows:
            change = r["change"][metric]
            if change["absolute"] is None or change["absolute"] == 0:
                continue
            if metric in r["ranked"] and not r["ranked"][metric]:
                continue
            item = {"value": r["value"], **change}
            if metric in ("ctr", "cvr"):
                item["significant"] = _apart(r[f"{metric}_interval"])
            ranked.append(item)
        ranked.sort(key=lambda m: (-abs(m["absolute"]), m["value"]))
        found[metric] = ranked[:top]
    return found


def _figures(kpi_row: dict[str, Any]) -> dict[str, Any]:
    return {k: kpi_row[k] for k in (*SUMS, *RATIOS)}


def _changes(
    now: Totals, then: Totals, now_row: Mapping[str, Any], then_row: Mapping[str, Any]
) -> dict[str, dict[str, float | None]]:
    """Absolute and relative change of every figure; sums computed exactly in integers."""
    exact: dict[str, tuple[int, int, Callable[[int], float]]] = {
        "impressions": (now.impressions, then.impressions, int),
        "clicks": (now.clicks, then.clicks, int),
        "conversions": (now.conversions, then.conversions, count),
        "spend": (now.spend, then.spend, to_number),
        "revenue": (now.revenue, then.revenue, to_number),
    }
    changes: dict[str, dict[str, float | None]] = {}
    for metric, (a, b, unit) in exact.items():
        changes[metric] = {"absolute": unit(a - b), "relative": _relative(a, b)}
    for metric in RATIOS:
        a, b = now_row[metric], then_row[metric]
        if a is None or b is None:
            changes[metric] = {"absolute": None, "relative": None}
        else:
            changes[metric] = {"absolute": round(a - b, 9), "relative": _relative(a, b)}
    return changes


def _relative(now: float, then: float) -> float | None:
    return round((now - then) / then, 6) if then else None


def _enough_conversions(now: Totals, then: Totals, minimums: Minimums) -> bool:
    floor = minimums.conversions * ONE
    return now.conversions >= floor and then.conversions >= floor and now.conversions > 0


def _enough_spend(now: Totals, then: Totals, minimums: Minimums) -> bool:
    return now.spend >= minimums.spend and then.spend >= minimums.spend and now.spend > 0


def _apart(interval: Mapping[str, tuple[float, float] | None]) -> bool:
    """True when both periods' intervals exist and do not overlap."""
    now, then = interval["current"], interval["previous"]
    if now is None or then is None:
        return False
    return now[0] > then[1] or then[0] > now[1]
