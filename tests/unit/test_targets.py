"""KPI targets: what a document may say, and how a row is judged against one, exactly."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from tracker.attribution import ONE
from tracker.kpis import Totals
from tracker.rulebook import RulesError
from tracker.targets import Target, TargetSet, load, parse, row_verdict

MICRO = 1_000_000


def refused(body: Any, max_rules: int = 100) -> dict[str, str]:
    with pytest.raises(RulesError) as caught:
        parse(body, max_rules)
    return caught.value.reasons


def test_the_issue_example_parses_and_round_trips_through_its_stored_form() -> None:
    found = parse(
        {
            "targets": [
                {"dimension": "campaign", "value": "spring", "cpa_max": 30, "roas_min": 2.5},
                {"dimension": "channel", "value": "search", "cvr_min": "0.02"},
                {"dimension": "total", "daily_spend_max": "1000.50"},
            ]
        },
        100,
    )
    assert found == (
        Target("campaign", "spring", cpa_max=30 * MICRO, roas_min=Fraction(5, 2)),
        Target("channel", "search", cvr_min=Fraction(1, 50)),
        Target("total", "total", daily_spend_max=1_000_500_000),
    )
    stored = {"version": 2, "saved_at": 9, **TargetSet(targets=found).as_json()}
    assert stored["targets"][2] == {"dimension": "total", "daily_spend_max": 1000.5}
    assert load(stored) == TargetSet(2, 9, found)


@pytest.mark.parametrize(
    ("item", "where", "reason"),
    [
        ({"dimension": "goal", "value": "lead", "cpa_max": 1}, "targets[0].dimension", "one of"),
        ({"dimension": "channel", "value": "tv", "cpa_max": 1}, "targets[0].value", "unknown"),
        ({"dimension": "campaign", "cpa_max": 1}, "targets[0].value", "printable"),
        ({"dimension": "total", "value": "x", "cpa_max": 1}, "targets[0].value", "no value"),
        ({"dimension": "campaign", "value": "a", "cpa_max": -5}, "targets[0].cpa_max", "negative"),
        ({"dimension": "campaign", "value": "a", "cpa_max": 0}, "targets[0].cpa_max", "than 0"),
        ({"dimension": "campaign", "value": "a", "roas_min": -1}, "targets[0].roas_min", "than 0"),
        ({"dimension": "campaign", "value": "a", "cvr_min": "NaN"}, "targets[0].cvr_min", ""),
        ({"dimension": "campaign", "value": "a", "roas_min": "x"}, "targets[0].roas_min", "not a"),
        ({"dimension": "campaign", "value": "a", "roas_min": True}, "targets[0].roas_min", ""),
        ({"dimension": "campaign", "value": "a"}, "targets[0]", "no bound"),
        ({"dimension": "campaign", "value": "a", "cpa": 3}, "targets[0].cpa", "unknown field"),
    ],
)
def test_a_bad_target_is_refused_naming_it(item: dict[str, Any], where: str, reason: str) -> None:
    assert reason in refused({"targets": [item]})[where]


def test_two_targets_for_one_row_and_too_many_targets_are_refused() -> None:
    twice = [{"dimension": "campaign", "value": "a", "cpa_max": n} for n in (1, 2)]
    assert "targets[0]" in refused({"targets": twice})["targets[1]"]
    assert "at most 1" in refused({"targets": twice}, max_rules=1)["targets"]


def totals(**figures: int) -> Totals:
    return Totals(**figures)


@pytest.mark.parametrize(
    ("spend", "conversions", "met"),
    [
        (300 * MICRO, 10 * ONE, True),  # exactly 30.00: met
        (300 * MICRO + 1, 10 * ONE, False),  # a micro over
        (300 * MICRO, 0, False),  # spend, no conversion: CPA unbounded
        (0, 0, None),  # nothing to judge
        (0, 3 * ONE, True),
        (100 * MICRO, ONE // 3, False),  # a model's third of a conversion: CPA 300
    ],
)
def test_cpa_is_judged_exactly(spend: int, conversions: int, met: bool | None) -> None:
    target = Target("campaign", "a", cpa_max=30 * MICRO)
    assert target.judge(totals(spend=spend, conversions=conversions), False) == {"cpa_max": met}


def test_ratios_are_judged_against_the_decimal_given_not_its_float() -> None:
    target = load({"targets": [{"dimension": "total", "roas_min": 0.3, "cvr_min": 0.1}]})
    row = target.of("total", "total")
    assert row is not None
    # 0.3 * 10 is 3.0000000000000004 in floats: revenue of exactly 3 would "miss".
    judged = row.judge(totals(spend=10, revenue=3, clicks=10, conversions=ONE), False)
    assert judged == {"roas_min": True, "cvr_min": True}
    assert row.judge(totals(spend=0, clicks=0), False) == {"roas_min": None, "cvr_min": None}


def test_a_daily_budget_is_judged_on_day_rows_only() -> None:
    target = Target("channel", "search", daily_spend_max=500 * MICRO)
    over = totals(spend=500 * MICRO + 1)
    assert target.judge(over, True) == {"daily_spend_max": False}
    assert target.judge(over, False) == {"daily_spend_max": None}
    assert target.judge(totals(spend=500 * MICRO), True) == {"daily_spend_max": True}


def test_a_row_says_its_target_each_verdict_and_whether_all_judged_are_met() -> None:
    target = Target("campaign", "a", cpa_max=30 * MICRO, roas_min=Fraction(2))
    figures = totals(spend=100 * MICRO, conversions=5 * ONE, revenue=150 * MICRO)
    assert row_verdict(target, figures, False) == {
        "target": {"cpa_max": 30.0, "roas_min": 2.0},
        "met": {"cpa_max": True, "roas_min": False},
        "on_target": False,
    }
    assert row_verdict(None, figures, False) == {"target": None, "met": None, "on_target": None}
    nothing = row_verdict(Target("total", "total", daily_spend_max=MICRO), figures, False)
    assert nothing["on_target"] is None
