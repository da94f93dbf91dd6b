"""KPI formulas over counts and micro-unit sums. Undefined ratios are ``None``.

A KPI whose denominator is zero is ``None`` (null in JSON, absent in Prometheus),
never NaN or infinity. Money ratios are returned in currency units.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracker.attribution import ONE
from tracker.money import MICROS_PER_UNIT
from tracker.types import Micros


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def money_ratio(micros: Micros, denominator: int) -> float | None:
    """Money per unit in currency units, rounded to the micro-unit (no 1.6920000000000002)."""
    return round(micros / MICROS_PER_UNIT / denominator, 6) if denominator else None


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over one bucket and one dimension value."""

    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    """In micro-conversions: attribution models may credit a fraction of one."""
    spend: Micros = 0
    revenue: Micros = 0

    def ctr(self) -> float | None:
        """Clicks per impression."""
        return ratio(self.clicks, self.impressions)

    def cvr(self) -> float | None:
        """Conversions per click."""
        return ratio(self.conversions / ONE, self.clicks)

    def cpc(self) -> float | None:
        """Spend per click, in currency units."""
        return money_ratio(self.spend, self.clicks)

    def cpa(self) -> float | None:
        """Spend per conversion, in currency units."""
        if not self.conversions:
            return None
        return round(self.spend / self.conversions, 6)  # micros per micro-conversion

    def roas(self) -> float | None:
        """Revenue per unit of spend."""
        return ratio(self.revenue, self.spend)
