"""Budget maximums from KPI targets: the most a unit may get over the period and meet its target.

Pure functions over plain values; opt-in (``tracker budget --targets``,
``GET /v1/recommendations?targets=true``), so without it a recommendation is what it
always was. Each bound of a unit's target may set a maximum over the period:

- ``daily_spend_max``: that much a day, ``daily_spend_max * period_days`` in all.
- ``roas_min`` (objective revenue) and ``cpa_max`` (objective conversions): the spend
  at which the unit's fitted curve's AVERAGE return (outcome per unit of money over
  the period, not the marginal return) reaches the target. The curves are concave
  and start at 0, so the average return only falls as spend grows: every budget up
  to the bound meets the target, every one above misses it. The bound is found by
  bisection on the curve's outcome, so it holds for any concave curve; for the Hill
  curve of :mod:`curves` it is ``saturation / roas_min - half_spend`` a day (and
  ``saturation * cpa_max - half_spend``), which the tests check it against.
- A ROAS target under the conversions objective, a CPA target under the revenue one,
  or either on a unit without a curve sets none: its :class:`TargetLimit` says why.
  A conversion-rate target sets none either: in the curves, conversions per click do
  not depend on the budget.

A unit with several maximums gets the lowest, an explicit maximum included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from tracker.decide.curves import Curve
from tracker.money import MICROS_PER_UNIT
from tracker.targets import Target
from tracker.types import Micros

CURVE_BOUNDS: Final = {"roas_min": "revenue", "cpa_max": "conversions"}
"""The target bounds a curve can turn into a maximum, and the objective it must be fitted on."""
_BISECTIONS: Final = 200
_DOUBLINGS: Final = 200


@dataclass(frozen=True, slots=True)
class TargetLimit:
    """What one bound of a unit's target makes of its budget over the period."""

    bound: str
    """``daily_spend_max``, ``roas_min`` or ``cpa_max``."""
    target: Micros | Fraction
    """The bound's value: money in micro-units (per day, per conversion), ROAS a fraction."""
    maximum: Micros | None
    """The most the unit may get over the period; None when the bound sets no limit."""
    skipped: str | None = None
    """Why the bound sets no limit, in plain words; None when it does."""


def target_limits(
    target: Target | None, curve: Curve | None, *, objective: str, period_days: int
) -> tuple[TargetLimit, ...]:
    """The limits ``target`` sets on a unit with ``curve`` (None: no curve), lowest first."""
    if target is None:
        return ()
    found: list[TargetLimit] = []
    if target.daily_spend_max is not None:
        daily = target.daily_spend_max
        found.append(TargetLimit("daily_spend_max", daily, daily * period_days))
    for bound, fitted_on in CURVE_BOUNDS.items():
        value: Micros | Fraction | None = getattr(target, bound)
        if value is None:
            continue
        if objective != fitted_on:
            why = f"the curves are fitted on {objective}; objective {fitted_on} would use it"
            found.append(TargetLimit(bound, value, None, why))
        elif curve is None:
            found.append(TargetLimit(bound, value, None, "the unit has no response curve"))
        else:
            found.append(_from_curve(bound, value, curve, period_days))
    return tuple(sorted(found, key=lambda t: (t.maximum is None, t.maximum or 0)))


def tightest(limits: Sequence[TargetLimit]) -> TargetLimit | None:
    """The limit with the lowest maximum; None when none sets one."""
    setting = [t for t in limits if t.maximum is not None]
    return min(setting, key=lambda t: t.maximum or 0) if setting else None


def average_bound(curve: Curve, least: float) -> float:
    """The daily spend at which ``curve``'s average return ``outcome(s) / s`` falls to ``least``.

    0 when even the first unit of money returns less; infinity when the average never
    falls that low. Bisection: the average return of a concave curve through 0 falls
    as spend grows, so the spends meeting ``least`` are one interval from 0.
    """
    if least <= 0:
        return math.inf
    if curve.marginal(0.0) <= least:  # the average's limit at 0 is the first slope
        return 0.0
    low, high = 0.0, max(curve.half_spend, 1.0)
    for _ in range(_DOUBLINGS):
        if curve.outcome(high) / high < least:
            break
        low, high = high, high * 2
    else:
        return math.inf
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if curve.outcome(middle) / middle >= least:
            low = middle
        else:
            high = middle
    return low


def _from_curve(bound: str, value: Micros | Fraction, curve: Curve, days: int) -> TargetLimit:
    """The maximum a ROAS or CPA target sets by the unit's curve (per day, in currency units)."""
    # The least average return: revenue per unit of money, or conversions (1 / CPA).
    least = float(value) if bound == "roas_min" else MICROS_PER_UNIT / int(value)
    daily = average_bound(curve, least)
    if math.isinf(daily):
        return TargetLimit(bound, value, None, "its curve's average return never falls that low")
    # To the nearest micro-unit: bisection ends a few ulps below the exact bound.
    return TargetLimit(bound, value, round(daily * days * MICROS_PER_UNIT))


__all__ = ["CURVE_BOUNDS", "TargetLimit", "average_bound", "target_limits", "tightest"]
