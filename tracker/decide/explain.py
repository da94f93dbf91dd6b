"""A budget plan in plain words and as JSON: one sentence per move and per unit.

"move 1,200 USD from display to search: marginal ROAS 0.80 vs 3.10 at current spend".
For the conversions objective the marginal figure is the marginal CPA: what the next
conversion costs at that spend. A unit whose maximum comes from its KPI target says so
("at most 1,400 USD by its daily spend target of 200 USD over 7 days"), and so does a
target bound that sets no limit, with the reason.
"""

from __future__ import annotations

from typing import Any

from tracker.decide.budget import Allocation, Move, Plan
from tracker.decide.budget import money_text as money
from tracker.decide.limits import TargetLimit
from tracker.money import to_number

WEAK_FIT = 0.3
"""Below this R², a unit's sentence says its curve explains little of its daily figures."""


def marginal(value: float | None, objective: str, currency: str) -> str:
    """A marginal return as a marketer names it: marginal ROAS, or marginal CPA."""
    if value is None:
        return "no curve"
    if objective == "revenue":
        return f"{value:.2f}"
    return f"{1 / value:,.2f} {currency}" if value > 0 else "unbounded"


def move_sentence(move: Move, plan: Plan) -> str:
    rules = plan.rules
    name = "marginal ROAS" if rules.objective == "revenue" else "marginal CPA"
    amount = money(move.amount, rules.currency)
    source = marginal(move.source_marginal, rules.objective, rules.currency)
    target = marginal(move.target_marginal, rules.objective, rules.currency)
    if move.source_marginal is None or move.target_marginal is None:
        return f"move {amount} from {move.source} to {move.target}: to meet their limits"
    return (
        f"move {amount} from {move.source} to {move.target}: "
        f"{name} {source} vs {target} at current spend"
    )


def limit_sentence(limit: TargetLimit, plan: Plan) -> str:
    """What one bound of a unit's target makes of its budget, in words."""
    currency, days = plan.rules.currency, plan.rules.period_days
    if limit.bound == "daily_spend_max":
        what = f"its daily spend target of {money(int(limit.target), currency)}"
        what += f" over {days} day{'s' if days != 1 else ''}"
    elif limit.bound == "roas_min":
        what = f"its ROAS target of {float(limit.target):.2f}"
    else:
        what = f"its CPA target of {money(int(limit.target), currency)}"
    if limit.maximum is None:
        return f"{what} sets no limit: {limit.skipped}"
    most = f"at most {money(_quanta(limit, plan) or 0, currency)} by {what}"
    if limit.bound == "daily_spend_max":
        return most
    figure = "average ROAS" if limit.bound == "roas_min" else "average CPA"
    return f"{most}: by its curve, above that its {figure} over the period misses the target"


def _targets_said(a: Allocation, plan: Plan) -> str:
    """The clauses a unit's sentence gains from its target: the limit in force, those skipped."""
    said = [a.capped_by] if a.capped_by is not None else []
    said += [t for t in a.target_limits if t.maximum is None]
    return "".join(f"; {limit_sentence(t, plan)}" for t in said)


def unit_sentence(a: Allocation, plan: Plan) -> str:
    rules = plan.rules
    start, new = money(a.start, rules.currency), money(a.recommended, rules.currency)
    targets = _targets_said(a, plan)
    if a.kept_because is not None:
        held = "keeps" if a.recommended == a.start else "is held at"
        return f"{a.name} {held} {new}: {a.kept_because}{targets}"
    name = "marginal ROAS" if rules.objective == "revenue" else "marginal CPA"
    now = marginal(a.marginal_start, rules.objective, rules.currency)
    after = marginal(a.marginal_recommended, rules.objective, rules.currency)
    if a.change == 0:
        return f"{a.name} keeps {start}: {name} {now}, in line with the others{targets}"
    limit = ""
    if a.recommended == a.high == _quanta(a.capped_by, plan):
        limit = ", the most its target allows"
    elif a.recommended in (a.low, a.high):
        limit = ", the most this step allows" if a.change > 0 else ", the least this step allows"
    pct = a.change / a.start if a.start else 0.0
    caution = ""
    if a.fit is not None and a.fit.r2 < WEAK_FIT:
        caution = (
            f" (a weak fit: the curve explains {max(a.fit.r2, 0.0):.0%} of the daily ups and downs)"
        )
    return (
        f"{a.name}: {start} -> {new} ({pct:+.0%}{limit}); {name} {now} now, {after} after"
        f"{caution}{targets}"
    )


def _quanta(limit: TargetLimit | None, plan: Plan) -> int | None:
    """A target's maximum as the plan applies it: down to its money quantum, in micro-units."""
    if limit is None or limit.maximum is None:
        return None
    return limit.maximum // plan.quantum * plan.quantum


def summary(plan: Plan) -> str:
    rules = plan.rules
    if plan.nothing_because is not None:
        return f"No change recommended: {plan.nothing_because}."
    fitted = [a for a in plan.allocations if a.outcome_start is not None]
    before = sum(a.outcome_start or 0.0 for a in fitted)
    after = sum(a.outcome_recommended or 0.0 for a in fitted)
    gain = after - before
    days = f"{rules.period_days} day{'s' if rules.period_days != 1 else ''}"
    if rules.objective == "revenue":
        what = f"{gain:+,.0f} {rules.currency} revenue"
    else:
        what = f"{gain:+,.1f} conversions"
    pct = f" ({gain / before:+.1%})" if before else ""
    return (
        f"By the fitted curves, the recommended split earns about {what}{pct} in {days} "
        f"from the same {money(rules.total, rules.currency)}."
    )


def as_json(plan: Plan) -> dict[str, Any]:
    """The plan as the API and the report serve it; money in currency units."""
    rules = plan.rules
    fitted = [a for a in plan.allocations if a.outcome_start is not None]
    expected = None
    if fitted:
        before = sum(a.outcome_start or 0.0 for a in fitted)
        after = sum(a.outcome_recommended or 0.0 for a in fitted)
        expected = {
            "start": round(before, 6),
            "recommended": round(after, 6),
            "change": round(after - before, 6),
            "change_relative": round((after - before) / before, 6) if before else None,
        }
    return {
        "objective": rules.objective,
        "currency": rules.currency,
        "period_days": rules.period_days,
        "total": to_number(rules.total),
        "max_change": rules.max_change,
        "min_days": rules.min_days,
        "summary": summary(plan),
        "nothing_because": plan.nothing_because,
        "expected": expected,
        "units": [_unit(a, plan) for a in plan.allocations],
        "moves": [
            {
                "from": m.source,
                "to": m.target,
                "amount": to_number(m.amount),
                "from_marginal": _rounded(m.source_marginal),
                "to_marginal": _rounded(m.target_marginal),
                "explanation": move_sentence(m, plan),
            }
            for m in plan.moves
        ],
    }


def _unit(a: Allocation, plan: Plan) -> dict[str, Any]:
    fit = None
    if a.fit is not None:
        fit = {
            "saturation": round(a.fit.curve.saturation, 6),
            "half_spend": round(a.fit.curve.half_spend, 6),
            "days": a.fit.days,
            "r2": round(a.fit.r2, 4),
            "linear": a.fit.linear,
            "uncertain": a.fit.uncertain,
        }
    return {
        "value": a.name,
        "recent_spend": to_number(a.recent),
        "start": to_number(a.start),
        "recommended": to_number(a.recommended),
        "change": to_number(a.change),
        "change_relative": round(a.change / a.start, 6) if a.start else None,
        "low": to_number(a.low),
        "high": to_number(a.high),
        "marginal_start": _rounded(a.marginal_start),
        "marginal_recommended": _rounded(a.marginal_recommended),
        "expected_start": _rounded(a.outcome_start),
        "expected_recommended": _rounded(a.outcome_recommended),
        "curve": fit,
        "kept_because": a.kept_because,
        "target_limits": [
            {
                "bound": t.bound,
                "target": float(t.target) if t.bound == "roas_min" else to_number(int(t.target)),
                "maximum": None if t.maximum is None else to_number(_quanta(t, plan) or 0),
                "in_force": t is a.capped_by,
                "explanation": limit_sentence(t, plan),
            }
            for t in a.target_limits
        ],
        "explanation": unit_sentence(a, plan),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
