"""Response curves: the formulas by hand, and fits that recover known curves."""

from __future__ import annotations

import math
import random

import pytest

from tracker.decide.curves import Curve, FitError, fit


def test_curve_by_hand() -> None:
    curve = Curve(saturation=1000.0, half_spend=100.0)
    assert curve.outcome(0) == 0.0
    assert curve.outcome(100) == 500.0  # half of saturation at half_spend
    assert curve.outcome(300) == 750.0
    assert curve.marginal(0) == 10.0  # the first unit of money: 1000 / 100
    assert curve.marginal(300) == 0.625  # 1000 * 100 / 400^2
    assert curve.spend_at(0.625) == pytest.approx(300.0)
    assert curve.spend_at(20.0) == 0.0  # more than even the first unit earns
    assert curve.spend_at(0.0) == math.inf


def test_marginal_falls_as_spend_grows() -> None:
    curve = Curve(5000.0, 800.0)
    marginals = [curve.marginal(s) for s in range(0, 5000, 250)]
    assert marginals == sorted(marginals, reverse=True)


def test_fit_recovers_a_curve_from_exact_days() -> None:
    truth = Curve(2400.0, 600.0)
    spend = [200.0 + 25 * i for i in range(20)]
    found = fit(spend, [truth.outcome(s) for s in spend])
    assert found.curve.saturation == pytest.approx(2400.0, rel=1e-4)
    assert found.curve.half_spend == pytest.approx(600.0, rel=1e-4)
    assert found.r2 == pytest.approx(1.0)
    assert found.days == 20
    assert not found.linear


def test_fit_stays_close_under_noise() -> None:
    rng = random.Random(7)
    truth = Curve(2400.0, 600.0)
    spend = [rng.uniform(200, 600) for _ in range(60)]
    outcome = [truth.outcome(s) * rng.gauss(1, 0.05) for s in spend]
    found = fit(spend, outcome)
    assert found.curve.marginal(400) == pytest.approx(truth.marginal(400), rel=0.25)


def test_a_straight_line_is_flagged_linear() -> None:
    spend = [100.0, 150.0, 200.0, 250.0, 300.0]
    found = fit(spend, [3 * s for s in spend])  # no saturation in sight
    assert found.linear
    assert found.curve.marginal(200) == pytest.approx(3.0, rel=0.05)


@pytest.mark.parametrize(
    ("spend", "outcome", "reason"),
    [
        ([0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 5.0, 8.0], "only 2 days with spend"),
        ([10.0, 20.0, 30.0], [0.0, 0.0, 0.0], "no outcome at all"),
        ([100.0, 100.0, 101.0, 100.0], [50.0, 60.0, 55.0, 52.0], "hardly varied"),
    ],
)
def test_days_that_cannot_support_a_curve(
    spend: list[float], outcome: list[float], reason: str
) -> None:
    with pytest.raises(FitError, match=reason):
        fit(spend, outcome)


def test_mismatched_days_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="one figure per day"):
        fit([1.0, 2.0], [1.0])
