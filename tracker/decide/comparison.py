"""Attribution comparison: how each model's credit differs from ``last_click``'s, per value.

Pure functions over summed bucket metrics. Spend, clicks and impressions do not
depend on the model; conversions and revenue (and so CPA and ROAS) do. A team reads
which channels last click under-credits (other models give them more) or
over-credits (other models give them less).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracker.attribution import MODELS, ONE
from tracker.money import to_number
from tracker.rows import count, totals

BASE = "last_click"
EVEN = 0.05
"""Shifts within this share of last click's revenue count as "about the same"."""


def compare_models(sums: Mapping[str, Mapping[str, int]], dimension: str) -> list[dict[str, Any]]:
    """Per value: every model's conversions, revenue, CPA, ROAS; shifts against last click."""
    rows = []
    for value in sorted(sums):
        metrics = sums[value]
        base = totals(dimension, metrics, BASE)
        models: dict[str, dict[str, Any]] = {}
        for model in MODELS:
            t = totals(dimension, metrics, model)
            figures: dict[str, Any] = {
                "conversions": count(t.conversions),
                "revenue": to_number(t.revenue),
                "cpa": t.cpa(),
                "roas": t.roas(),
            }
            if model != BASE:
                figures["shift"] = {
                    "conversions": _shift(t.conversions, base.conversions, ONE),
                    "revenue": _shift(t.revenue, base.revenue, None),
                    "cpa": _ratio_shift(t.cpa(), base.cpa()),
                    "roas": _ratio_shift(t.roas(), base.roas()),
                }
            models[model] = figures
        rows.append(
            {
                "value": value,
                "spend": to_number(base.spend),
                "models": models,
                "verdict": verdict(
                    value, {m: models[m]["shift"]["revenue"] for m in models if m != BASE}
                ),
            }
        )
    return rows


def verdict(value: str, shifts: Mapping[str, Mapping[str, float | None]]) -> str:
    """One sentence: does last click under- or over-credit ``value``'s revenue?"""
    relative = {m: s["relative"] for m, s in shifts.items()}
    absolute = {m: s["absolute"] or 0.0 for m, s in shifts.items()}
    if all(a == 0 for a in absolute.values()):
        return f"{value}: every model gives it the same revenue"
    known = [r for r in relative.values() if r is not None]
    if len(known) < len(relative):  # last click gives it nothing
        return f"last click gives {value} no revenue; other models do"
    lowest, highest = min(known), max(known)
    span = f"{lowest:+.0%} to {highest:+.0%}" if lowest != highest else f"{lowest:+.0%}"
    if lowest > EVEN:
        return f"last click under-credits {value}: other models give it {span} revenue"
    if highest < -EVEN:
        return f"last click over-credits {value}: other models give it {span} revenue"
    if lowest >= -EVEN and highest <= EVEN:
        return f"{value}: about the same revenue under every model ({span})"
    return f"{value}: the models disagree ({span} revenue against last click)"


def _shift(now: int, base: int, unit: int | None) -> dict[str, float | None]:
    diff = now - base
    absolute = to_number(diff) if unit is None else count(diff)
    return {"absolute": absolute, "relative": round(diff / base, 6) if base else None}


def _ratio_shift(now: float | None, base: float | None) -> dict[str, float | None]:
    if now is None or base is None:
        return {"absolute": None, "relative": None}
    return {
        "absolute": round(now - base, 6),
        "relative": round((now - base) / base, 6) if base else None,
    }
