"""KPI targets as budget maximums, on curves known exactly: limits and sentences by hand.

Units a and b follow a = 1000 s / (s + 100) and b = 1000 s / (s + 400) a day and spent
350 a day each in the last 7 days. Splitting 4,900 over 7 days, equal marginal returns
put a at 300 a day and b at 400 (2,100 and 2,800), within the 20% step (1,960 to
2,940). b's average ROAS 1000 / (s + 400) falls to r at s = 1000 / r - 400 a day.
"""

from __future__ import annotations

import argparse
import math
from fractions import Fraction

import pytest

from tests.unit.test_api import get
from tracker.decide.budget import BudgetError, Rules, Unit, plan
from tracker.decide.command import add_arguments, render
from tracker.decide.curves import Curve
from tracker.decide.explain import as_json, unit_sentence
from tracker.decide.limits import TargetLimit, average_bound, target_limits, tightest
from tracker.targets import Target

M = 1_000_000
A, B = Curve(1000.0, 100.0), Curve(1000.0, 400.0)


def history(name: str, curve: Curve, days: int = 21) -> Unit:
    """Exact days: spend swept from 100 to 600 a day, then 350 a day for the last 7."""
    sweep = [100.0 + 500.0 * i / (days - 8) for i in range(days - 7)]
    spend = [*sweep, *[350.0] * 7]
    return Unit(name, [round(s * M) for s in spend], [curve.outcome(s) for s in spend])


UNITS = [history("a", A), history("b", B)]


def split(**targets: Target) -> dict[str, int]:
    found = plan(UNITS, Rules(total=4900 * M, period_days=7, targets=targets))
    return {a.name: a.recommended // M for a in found.allocations}


def test_without_targets_the_curves_decide() -> None:
    assert split() == {"a": 2100, "b": 2800}


def test_the_average_bound_is_found_by_bisection() -> None:
    # Average ROAS 1000 / (s + 400) = 1.35 at s = 1000 / 1.35 - 400 = 340.74 a day.
    assert average_bound(B, 1.35) == pytest.approx(1000 / 1.35 - 400, rel=1e-12)
    # 50 conversions at most a day, half at 100: CPA (s + 100) / 50 = 10 at s = 400.
    assert average_bound(Curve(50.0, 100.0), 1 / 10) == pytest.approx(400.0, rel=1e-12)
    # The first unit of money earns 1 (slope 100 / 100): no spend reaches a ROAS of 2.
    assert average_bound(Curve(100.0, 100.0), 2.0) == 0.0
    assert math.isinf(average_bound(B, 0.0))


def test_limits_from_a_target() -> None:
    target = Target("channel", "b", daily_spend_max=380 * M, roas_min=Fraction(27, 20))
    roas, daily = target_limits(target, B, objective="revenue", period_days=7)
    assert roas == TargetLimit("roas_min", Fraction(27, 20), round(7 * (1000 / 1.35 - 400) * M))
    assert daily == TargetLimit("daily_spend_max", 380 * M, 2660 * M)  # after 2,385.19
    assert tightest([daily, roas]) is roas
    conversions = target_limits(
        Target("channel", "b", cpa_max=10 * M),
        Curve(50.0, 100.0),
        objective="conversions",
        period_days=7,
    )
    assert conversions == (TargetLimit("cpa_max", 10 * M, 2800 * M),)


def test_a_target_the_curves_cannot_read_sets_no_limit_and_says_why() -> None:
    roas = Target("channel", "b", roas_min=Fraction(2))
    (limit,) = target_limits(roas, B, objective="conversions", period_days=7)
    assert limit.maximum is None
    assert limit.skipped == "the curves are fitted on conversions; objective revenue would use it"
    (limit,) = target_limits(
        Target("channel", "b", cpa_max=M), None, objective="conversions", period_days=7
    )
    assert limit.skipped == "the unit has no response curve"
    assert (
        target_limits(
            Target("channel", "b", cvr_min=Fraction(1, 10)), B, objective="revenue", period_days=7
        )
        == ()
    )
    found = plan(
        UNITS, Rules(total=4900 * M, period_days=7, objective="conversions", targets={"b": roas})
    )
    b = found.allocations[1]
    assert b.capped_by is None
    assert unit_sentence(b, found).endswith(
        "; its ROAS target of 2.00 sets no limit: the curves are fitted on conversions; "
        "objective revenue would use it"
    )


def test_a_daily_spend_target_caps_the_period_and_is_explained() -> None:
    target = Target("channel", "b", daily_spend_max=380 * M)
    found = plan(UNITS, Rules(total=4900 * M, period_days=7, targets={"b": target}))
    a, b = found.allocations
    assert (a.recommended, b.recommended) == (2240 * M, 2660 * M)  # 380 a day for 7 days
    assert b.capped_by == TargetLimit("daily_spend_max", 380 * M, 2660 * M)
    assert unit_sentence(b, found).startswith("b: 2,450 USD -> 2,660 USD (+9%, the most its ")
    assert unit_sentence(b, found).endswith(
        "; at most 2,660 USD by its daily spend target of 380 USD over 7 days"
    )
    (limit,) = as_json(found)["units"][1]["target_limits"]
    assert limit == {
        "bound": "daily_spend_max",
        "target": 380.0,
        "maximum": 2660.0,
        "in_force": True,
        "explanation": "at most 2,660 USD by its daily spend target of 380 USD over 7 days",
    }


@pytest.mark.parametrize(
    ("explicit", "expected", "by_target"), [(2600, 2600, False), (2700, 2660, True)]
)
def test_against_an_explicit_maximum_the_lower_wins(
    explicit: int, expected: int, by_target: bool
) -> None:
    target = Target("channel", "b", daily_spend_max=380 * M)
    rules = Rules(total=4900 * M, period_days=7, maximum={"b": explicit * M}, targets={"b": target})
    found = plan(UNITS, rules)
    b = found.allocations[1]
    assert b.recommended == expected * M
    assert (b.capped_by is not None) == by_target
    assert as_json(found)["units"][1]["target_limits"][0]["in_force"] == by_target
    assert ("daily spend target" in unit_sentence(b, found)) == by_target


def test_a_roas_target_caps_where_the_average_roas_reaches_it() -> None:
    target = Target("channel", "b", roas_min=Fraction(27, 20))
    found = plan(UNITS, Rules(total=4900 * M, period_days=7, targets={"b": target}))
    b = found.allocations[1]
    exact = 7 * (1000 / 1.35 - 400)  # 2,385.19 over the period, by the true curve
    assert b.capped_by is not None
    assert b.capped_by.maximum is not None
    assert b.capped_by.maximum / M == pytest.approx(exact, abs=0.5)  # by the fitted curve
    assert b.recommended == 2385 * M  # down to the whole unit of the total
    assert "; at most 2,385 USD by its ROAS target of 1.35: by its curve" in unit_sentence(b, found)


def test_targets_that_exclude_the_total_keep_the_clear_message() -> None:
    capped = Target("channel", "x", daily_spend_max=300 * M)
    with pytest.raises(BudgetError) as caught:
        plan(UNITS, Rules(total=4900 * M, period_days=7, targets={"a": capped, "b": capped}))
    assert str(caught.value) == (
        "the limits allow between 3,920 USD and 4,200 USD, not 4,900 USD: loosen the "
        "minimums, maximums or the largest change per step; the maximums of a, b come "
        "from targets"
    )
    with pytest.raises(
        BudgetError,
        match=r"^b: the minimum is above the maximum its target "
        r"allows, 2,100 USD$",
    ):
        plan(
            UNITS,
            Rules(total=4900 * M, period_days=7, minimum={"b": 2500 * M}, targets={"b": capped}),
        )


def test_the_flag_and_the_query_parameter() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--total", "1"]).targets is False
    assert parser.parse_args(["--total", "1", "--targets"]).targets is True
    status, body = get("/v1/recommendations", b"total=100&targets=yes")
    assert (status, body["error"]) == (400, "targets must be true or false")


def test_the_terminal_names_the_targets_read() -> None:
    found = plan(UNITS, Rules(total=4900 * M, period_days=7))
    answer = {
        "dimension": "channel",
        "model": "last_click",
        "timezone": "UTC",
        "history": {"from": "2024-10-01T00:00:00Z", "to": "2024-10-22T00:00:00Z", "days": 21},
        "targets": {"version": 3, "saved_at": None},
        **as_json(found),
    }
    assert render(answer).splitlines()[1] == "KPI targets (version 3) taken as maximums"
    assert "KPI targets" not in render({**answer, "targets": None})
