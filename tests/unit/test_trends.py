"""Trends: Wilson intervals, period sums and changes, checked by hand."""

from __future__ import annotations

from collections import Counter

import pytest

from tracker.decide.periods import previous, summed
from tracker.decide.queries import trends_of
from tracker.decide.trends import Minimums, compare, wilson
from tracker.rows import row
from tracker.windows import WINDOWS, calendar, rfc3339

DAY = WINDOWS["1d"]
UTC = calendar("UTC")
NEW_YORK = calendar("America/New_York")


def test_wilson_matches_the_textbook_values() -> None:
    # 5 of 10: centre 0.5, half-width 1.96/(1+0.384) * sqrt(0.025 + 0.0096) = 0.2634
    assert wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    # 0 of 10 still has an upper bound: z^2/(n+z^2) = 3.8415/13.8415 = 0.2775
    assert wilson(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert wilson(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)


def test_wilson_is_undefined_without_trials_or_above_one() -> None:
    assert wilson(0, 0) is None
    assert wilson(3, 2) is None  # more conversions than clicks: not a proportion


def test_wilson_narrows_with_the_sample() -> None:
    small, large = wilson(4, 100), wilson(400, 10_000)
    assert small is not None
    assert large is not None
    assert large[1] - large[0] < small[1] - small[0]


def test_previous_period_has_equal_length_and_ends_where_the_period_starts() -> None:
    starts = [10 * DAY, 11 * DAY, 12 * DAY]
    assert previous(UTC, starts, "1d") == [7 * DAY, 8 * DAY, 9 * DAY]
    assert previous(UTC, [], "1h") == []
    assert previous(calendar("Asia/Kolkata"), [DAY - 1_800_000], "1h") == [DAY - 5_400_000]


def test_the_week_before_a_week_is_seven_local_days_across_a_clock_change() -> None:
    """New York, 2024-03-10 lasts 23 hours: the week before the 14th holds it."""
    week = [NEW_YORK.period_start(f"2024-03-{d:02d}") for d in range(14, 21)]
    before = previous(NEW_YORK, week, "1d")
    assert [NEW_YORK.day_of(b) for b in before] == [f"2024-03-{d:02d}" for d in range(7, 14)]
    assert before[0] == NEW_YORK.period_start("2024-03-07")
    assert week[0] - before[0] == 7 * 24 * 3_600_000 - 3_600_000  # 167 hours


def test_trends_of_compare_local_days() -> None:
    """Two weeks of one spend a day: the week over the clock change counts 7 days too."""
    days = [NEW_YORK.period_start(f"2024-03-{d:02d}") for d in range(7, 21)]
    buckets = {day: {("channel", "search"): {"spend": 1_000_000}} for day in days}
    found = trends_of(
        buckets,
        dimension="channel",
        window="1d",
        model="last_click",
        starts=days[7:],
        calendar=NEW_YORK,
        minimums=Minimums(0, 0),
        top=5,
    )
    assert found["current"] == {
        "from": "2024-03-14T04:00:00Z",
        "to": rfc3339(NEW_YORK.period_start("2024-03-21")),
    }
    assert found["previous"] == {"from": "2024-03-07T05:00:00Z", "to": "2024-03-14T04:00:00Z"}
    (search,) = found["rows"]
    assert search["current"]["spend"] == search["previous"]["spend"] == 7.0


def test_summed_adds_raw_metrics_of_one_dimension() -> None:
    buckets = {
        0: {("channel", "search"): {"clicks": 2, "spend": 5}, ("campaign", "x"): {"clicks": 9}},
        DAY: {("channel", "search"): {"clicks": 3}, ("channel", "email"): {"spend": 1}},
        2 * DAY: {("channel", "search"): {"clicks": 100}},
    }
    assert summed(buckets, [0, DAY], "channel") == {
        "search": Counter(clicks=5, spend=5),
        "email": Counter(spend=1),
    }


def metrics(imp: int, clk: int, conv: int, spend: int, rev: int) -> dict[str, int]:
    return {
        "impressions": imp,
        "clicks": clk,
        "spend": spend * 1_000_000,
        "conversions@last_click": conv * 1_000_000,
        "revenue@last_click": rev * 1_000_000,
    }


def test_compare_by_hand() -> None:
    now = {"search": metrics(1000, 50, 10, 200, 800), "email": metrics(100, 20, 2, 10, 100)}
    then = {"search": metrics(800, 40, 8, 100, 500), "email": metrics(100, 20, 1, 10, 20)}
    found = compare(
        now,
        then,
        dimension="channel",
        model="last_click",
        period_start=7 * DAY,
        previous_start=0,
        minimums=Minimums(conversions=5, spend=50_000_000),
        top=5,
    )
    rows = {r["value"]: r for r in found["rows"]}
    search = rows["search"]
    assert search["current"]["spend"] == 200.0
    assert search["current"]["roas"] == 4.0
    assert search["previous"]["roas"] == 5.0
    assert search["change"]["spend"] == {"absolute": 100.0, "relative": 1.0}
    assert search["change"]["revenue"] == {"absolute": 300.0, "relative": 0.6}
    assert search["change"]["conversions"] == {"absolute": 2, "relative": 0.25}
    assert search["change"]["roas"] == {"absolute": -1.0, "relative": -0.2}
    assert search["change"]["cpa"] == {"absolute": 7.5, "relative": 0.6}  # 20 against 12.5
    assert search["ctr_interval"]["current"] == wilson(50, 1000)
    assert search["cvr_interval"]["previous"] == wilson(8, 40)
    assert search["ranked"] == {"cpa": True, "roas": True}
    # email: 2 and 1 conversions, 10 spend: too small to rank CPA or ROAS
    assert rows["email"]["ranked"] == {"cpa": False, "roas": False}
    movers = found["movers"]
    assert [m["value"] for m in movers["revenue"]] == ["search", "email"]
    assert [m["value"] for m in movers["roas"]] == ["search"]  # email left out
    assert [m["value"] for m in movers["cpa"]] == ["search"]
    # search's conversion rate stayed at 0.2; email's went from 1 in 20 to 2 in 20
    assert movers["cvr"] == [
        {"value": "email", "absolute": 0.05, "relative": 1.0, "significant": False}
    ]


def test_a_one_bucket_period_shows_exactly_the_kpi_row() -> None:
    now = {"search": metrics(1000, 50, 10, 200, 800)}
    found = compare(
        now,
        {},
        dimension="channel",
        model="last_click",
        period_start=7 * DAY,
        previous_start=6 * DAY,
        minimums=Minimums(0, 0),
    )
    (only,) = found["rows"]
    kpis = row(7 * DAY, "channel", "search", now["search"], "last_click")
    assert only["current"] == {k: v for k, v in kpis.items() if k in only["current"]}
    assert set(only["current"]) == set(kpis) - {"bucket", "value", "users", "bots"}
    assert only["change"]["spend"]["relative"] is None  # nothing before: no relative change
    assert only["change"]["roas"] == {"absolute": None, "relative": None}


def test_fractional_credit_changes_stay_exact() -> None:
    now = {"x": {"conversions@linear": 2_333_333, "clicks": 3}}
    then = {"x": {"conversions@linear": 1_166_667, "clicks": 3}}
    found = compare(
        now,
        then,
        dimension="campaign",
        model="linear",
        period_start=DAY,
        previous_start=0,
        minimums=Minimums(0, 0),
    )
    assert found["rows"][0]["change"]["conversions"]["absolute"] == 1.166666
