"""Budget reallocation: split a total across units where the fitted marginal return is highest.

Pure functions over plain values. The plan starts from each unit's recent spend (its
last ``period_days`` days), scaled so the shares add up to the new total: that is
"no change". Each unit whose history supports a response curve (:mod:`curves`) may
then move within ``max_change`` of that start and within its minimum and maximum;
units without one keep their start, with the reason. Within those limits the total
goes where the marginal return (the curve's slope) is highest: for concave curves,
the split at which every movable unit not held at a limit has the same marginal
return is the best one (the Karush-Kuhn-Tucker condition), found by bisection on
that common marginal return. Amounts are integers of a money quantum (a whole
currency unit when the total is whole, else a cent, else a micro-unit) and add up
to exactly the total. The units' KPI targets, when given, add maximums
(:mod:`limits`); an explicit maximum or a target's, the lower wins.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tracker.decide.curves import Curve, Fit, FitError, fit
from tracker.decide.limits import TargetLimit, target_limits, tightest
from tracker.money import MICROS_PER_UNIT, MoneyError, parse_micros
from tracker.targets import Target
from tracker.types import Micros

OBJECTIVES = ("revenue", "conversions")
_BISECTIONS = 200


class BudgetError(ValueError):
    """The request cannot be met (limits that exclude the total); the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Unit:
    """A channel or campaign's daily history, oldest day first, every day of the window."""

    name: str
    spend: Sequence[Micros]
    outcome: Sequence[float]
    """Revenue in currency units, or conversions, as the attribution model credits them."""


@dataclass(frozen=True, slots=True)
class Rules:
    total: Micros
    period_days: int
    objective: str = "revenue"
    max_change: float = 0.2
    """Largest change of a unit against its start, as a share of the start."""
    min_days: int = 14
    """Days with spend a unit needs in its history before its curve is trusted."""
    minimum: Mapping[str, Micros] = field(default_factory=dict)
    maximum: Mapping[str, Micros] = field(default_factory=dict)
    currency: str = "USD"
    targets: Mapping[str, Target] = field(default_factory=dict)
    """The units' KPI targets, read as maximums (:mod:`limits`); empty unless asked for."""


@dataclass(frozen=True, slots=True)
class Allocation:
    name: str
    recent: Micros
    """Spend over the last ``period_days`` days of the history."""
    start: Micros
    """``recent`` scaled to the total: what "no change" means."""
    recommended: Micros
    low: Micros
    high: Micros
    fit: Fit | None
    kept_because: str | None
    """Why the unit keeps its start (no curve), else None."""
    marginal_start: float | None
    """Outcome of the next unit of money at the start (marginal ROAS, or conversions per unit)."""
    marginal_recommended: float | None
    outcome_start: float | None
    """Expected outcome over the period at the start, by the fitted curve."""
    outcome_recommended: float | None
    target_limits: tuple[TargetLimit, ...] = ()
    """What each bound of the unit's target makes of its budget, lowest maximum first."""
    capped_by: TargetLimit | None = None
    """The target limit that is the unit's maximum (below any explicit one), if any."""

    @property
    def change(self) -> Micros:
        return self.recommended - self.start


@dataclass(frozen=True, slots=True)
class Move:
    source: str
    target: str
    amount: Micros
    source_marginal: float | None
    target_marginal: float | None
    """Marginal returns at the start; None for a unit without a curve (moved by its limits)."""


@dataclass(frozen=True, slots=True)
class Plan:
    rules: Rules
    allocations: list[Allocation]
    moves: list[Move]
    nothing_because: str | None
    """Why nothing moves at all, when nothing does."""
    quantum: Micros


def parse_period(text: str) -> int:
    """Days of a budget period written ``7d`` (1 to 366 days); ``ValueError`` otherwise."""
    match = re.fullmatch(r"([0-9]{1,3})d", text.strip())
    if match is None or not 1 <= int(match[1]) <= 366:
        raise ValueError(f"{text!r} is not a period such as 7d (1d to 366d)")
    return int(match[1])


def parse_limits(text: str) -> dict[str, Micros]:
    """Per-unit amounts ``search=500,display=120.50`` in micro-units; ``ValueError`` if bad."""
    limits: dict[str, Micros] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sign, amount = item.rpartition("=")
        if not sign or not name.strip():
            raise ValueError(f"{item!r} is not name=amount")
        try:
            limits[name.strip()] = parse_micros(amount)
        except MoneyError as exc:
            raise ValueError(f"{name.strip()}: {exc}") from None
    return limits


def quantum_of(total: Micros) -> Micros:
    """The coarsest of a whole unit, a cent and a micro-unit that divides ``total``."""
    for quantum in (MICROS_PER_UNIT, MICROS_PER_UNIT // 100, 1):
        if total % quantum == 0:
            return quantum
    raise AssertionError("unreachable: 1 divides everything")


def proportional(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to integer ``weights`` by largest remainder, exactly."""
    whole = sum(weights)
    if whole <= 0:
        raise ValueError("weights must add up to more than zero")
    parts = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[: total - sum(parts)]:
        parts[i] += 1
    return parts


def plan(units: Sequence[Unit], rules: Rules) -> Plan:
    """The recommended split of ``rules.total`` over ``units`` for the next period.

    Raises :class:`BudgetError` when the minimums, maximums and step limits cannot
    add up to the total.
    """
    if rules.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")
    if rules.total <= 0:
        raise BudgetError("the total must be more than zero")
    q = quantum_of(rules.total)
    total_q = rules.total // q
    recent = [sum(u.spend[-rules.period_days :]) for u in units]
    if not units or sum(recent) == 0:
        days = f"{rules.period_days} day{'s' if rules.period_days != 1 else ''}"
        return Plan(rules, [], [], f"no spend in the last {days} to start from", q)
    starts = proportional(total_q, recent)
    fits: list[Fit | None] = []
    reasons: list[str | None] = []
    for unit, spent in zip(units, recent, strict=True):
        found, reason = _curve(unit, spent, rules)
        fits.append(found)
        reasons.append(reason)
    limits = [
        target_limits(
            rules.targets.get(unit.name),
            found.curve if found else None,
            objective=rules.objective,
            period_days=rules.period_days,
        )
        for unit, found in zip(units, fits, strict=True)
    ]
    caps = [_cap(unit.name, found, rules) for unit, found in zip(units, limits, strict=True)]
    bounds = [
        _bounds(unit.name, start, found is not None, rules, q, cap)
        for unit, start, found, cap in zip(units, starts, fits, caps, strict=True)
    ]
    low = sum(lo for lo, _ in bounds)
    high = sum(hi for _, hi in bounds)
    if not low <= total_q <= high:
        least, most = money_text(low * q, rules.currency), money_text(high * q, rules.currency)
        capped = [unit.name for unit, cap in zip(units, caps, strict=True) if cap is not None]
        from_targets = f"; the maximums of {', '.join(capped)} come from targets" if capped else ""
        raise BudgetError(
            f"the limits allow between {least} and {most}, not "
            f"{money_text(rules.total, rules.currency)}: loosen the minimums, maximums "
            f"or the largest change per step{from_targets}"
        )
    scale = q / MICROS_PER_UNIT / rules.period_days  # quanta over the period -> units a day
    curves = [f.curve if f else None for f in fits]
    chosen = _water_fill(curves, bounds, total_q, scale)
    allocations = []
    for i, unit in enumerate(units):
        curve = curves[i]
        day_start, day_new = starts[i] * scale, chosen[i] * scale
        allocations.append(
            Allocation(
                name=unit.name,
                recent=recent[i],
                start=starts[i] * q,
                recommended=chosen[i] * q,
                low=bounds[i][0] * q,
                high=bounds[i][1] * q,
                fit=fits[i],
                kept_because=reasons[i],
                marginal_start=curve.marginal(day_start) if curve else None,
                marginal_recommended=curve.marginal(day_new) if curve else None,
                outcome_start=curve.outcome(day_start) * rules.period_days if curve else None,
                outcome_recommended=curve.outcome(day_new) * rules.period_days if curve else None,
                target_limits=limits[i],
                capped_by=caps[i],
            )
        )
    moves = _moves(allocations)
    nothing = None
    if not moves:
        movable = [a for a in allocations if a.fit is not None]
        if not movable and all((a.kept_because or "").startswith("only ") for a in allocations):
            nothing = "no unit has enough history for a response curve"
        elif not movable:
            nothing = "no unit has a usable response curve: see each unit's reason"
        elif len(movable) == 1:
            nothing = f"only {movable[0].name} has a response curve: there is nothing to move"
        else:
            nothing = "the marginal returns are already as even as the limits allow"
    return Plan(rules, allocations, moves, nothing, q)


def _curve(unit: Unit, recent: Micros, rules: Rules) -> tuple[Fit | None, str | None]:
    """The unit's fitted curve, or why it has none."""
    if recent == 0:
        return None, f"no spend in the last {rules.period_days} days"
    first = next(i for i, s in enumerate(unit.spend) if s > 0)
    spend = [s / MICROS_PER_UNIT for s in unit.spend[first:]]
    outcome = list(unit.outcome[first:])
    paid = sum(1 for s in spend if s > 0)
    if paid < rules.min_days:
        return None, (
            f"only {paid} day{'s' if paid != 1 else ''} with spend in its history, "
            f"{rules.min_days} needed"
        )
    try:
        return fit(spend, outcome), None
    except FitError as exc:
        return None, str(exc)


def _cap(name: str, limits: Sequence[TargetLimit], rules: Rules) -> TargetLimit | None:
    """The target limit that is the unit's maximum: the lowest, if below an explicit one."""
    lowest = tightest(limits)
    if lowest is None or lowest.maximum is None:
        return None
    explicit = rules.maximum.get(name)
    return lowest if explicit is None or lowest.maximum < explicit else None


def _bounds(
    name: str, start: int, movable: bool, rules: Rules, q: Micros, cap: TargetLimit | None = None
) -> tuple[int, int]:
    """The unit's range in quanta: within the step limit, the minimum and the maximum.

    ``cap``: a maximum from the unit's target, lower than any explicit one.
    """
    minimum = -(-rules.minimum.get(name, 0) // q)  # rounded up to a quantum
    maximum = rules.maximum[name] // q if name in rules.maximum else math.inf
    source = ""
    if cap is not None and cap.maximum is not None:
        maximum = cap.maximum // q
        source = f" its target allows, {money_text(cap.maximum, rules.currency)}"
    if minimum > maximum:
        raise BudgetError(f"{name}: the minimum is above the maximum{source}")
    if not movable:
        held = int(min(max(start, minimum), maximum))
        return held, held
    step = math.floor(start * rules.max_change)
    low, high = max(start - step, minimum), min(start + step, maximum)
    if low > high:  # an explicit minimum or maximum wins over the step limit
        low = high = int(minimum if minimum > start + step else maximum)
    return int(low), int(high)


def _water_fill(
    curves: Sequence[Curve | None], bounds: Sequence[tuple[int, int]], total: int, scale: float
) -> list[int]:
    """Amounts in quanta within ``bounds`` adding up to ``total``, equal marginals between.

    ``scale`` turns quanta over the period into currency units a day, the curves' unit.
    """

    def at(level: float) -> list[float]:
        amounts = []
        for curve, (lo, hi) in zip(curves, bounds, strict=True):
            if curve is None or lo == hi:
                amounts.append(float(lo))
            else:
                amounts.append(min(max(curve.spend_at(level) / scale, lo), hi))
        return amounts

    top = max(
        (c.marginal(lo * scale) for c, (lo, _) in zip(curves, bounds, strict=True) if c),
        default=1.0,
    )
    top = max(top, 1e-12)  # a flat curve's marginal return is 0, whose log is not
    low, high = math.log(top) - 60.0, math.log(top) + 1.0  # sum(at(e^low)) >= total >= ...
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if sum(at(math.exp(middle))) > total:
            low = middle
        else:
            high = middle
    return _rounded(at(math.exp(high)), bounds, total)


def _rounded(amounts: Sequence[float], bounds: Sequence[tuple[int, int]], total: int) -> list[int]:
    """Integers within ``bounds`` adding up to ``total``, each within 1 of its amount.

    Rounds down, then gives the missing quanta to the largest fractions (or takes
    the excess from the smallest), never past a bound.
    """
    parts = [min(max(math.floor(a), lo), hi) for a, (lo, hi) in zip(amounts, bounds, strict=True)]
    order = sorted(range(len(parts)), key=lambda i: (parts[i] - amounts[i], i))
    while (missing := total - sum(parts)) != 0:
        step = 1 if missing > 0 else -1
        candidates = order if step > 0 else order[::-1]
        moved = False
        for i in candidates:
            lo, hi = bounds[i]
            if lo <= parts[i] + step <= hi:
                parts[i] += step
                moved = True
                if (missing := missing - step) == 0:
                    break
        if not moved:
            raise BudgetError("the limits cannot add up to the total")  # checked before
    return parts


def _moves(allocations: Sequence[Allocation]) -> list[Move]:
    """Pair the cuts with the raises, lowest marginal return giving to the highest."""
    givers = sorted(
        (a for a in allocations if a.change < 0), key=lambda a: (a.marginal_start or 0.0, a.name)
    )
    takers = sorted(
        (a for a in allocations if a.change > 0),
        key=lambda a: (-(a.marginal_start or 0.0), a.name),
    )
    left = {a.name: abs(a.change) for a in (*givers, *takers)}
    moves = []
    g = t = 0
    while g < len(givers) and t < len(takers):
        giver, taker = givers[g], takers[t]
        amount = min(left[giver.name], left[taker.name])
        moves.append(
            Move(giver.name, taker.name, amount, giver.marginal_start, taker.marginal_start)
        )
        left[giver.name] -= amount
        left[taker.name] -= amount
        g += left[giver.name] == 0
        t += left[taker.name] == 0
    return moves


def money_text(micros: Micros, currency: str) -> str:
    """``1,200 USD``, or ``1,200.50 USD`` when not whole."""
    units = micros / MICROS_PER_UNIT
    text = f"{units:,.0f}" if micros % MICROS_PER_UNIT == 0 else f"{units:,.2f}"
    return f"{text} {currency}"
