from __future__ import annotations

import pytest

from tracker.attribution import ONE
from tracker.kpis import Totals, ratio


def test_ctr() -> None:
    assert Totals(impressions=200, clicks=3).ctr() == 0.015  # 3 / 200


def test_cvr() -> None:
    assert Totals(clicks=8, conversions=2 * ONE).cvr() == 0.25  # 2 / 8
    # a model crediting a third of a conversion: 333_333 micro-conversions per 3 clicks
    assert Totals(clicks=3, conversions=333_333).cvr() == pytest.approx(0.111111)


def test_cpc_in_currency_units() -> None:
    # 1_500_000 micros = 1.50 spent over 3 clicks -> 0.50 per click
    assert Totals(clicks=3, spend=1_500_000).cpc() == pytest.approx(0.5)


def test_cpa_in_currency_units() -> None:
    # 10.00 spent over 4 conversions -> 2.50 per conversion
    assert Totals(conversions=4 * ONE, spend=10_000_000).cpa() == 2.5  # 10.00 / 4


def test_roas() -> None:
    # 45.00 revenue on 10.00 spend -> 4.5
    assert Totals(spend=10_000_000, revenue=45_000_000).roas() == 4.5


def test_money_per_unit_is_rounded_to_the_micro_unit() -> None:
    # 19.99 over 7 clicks = 2.855714285...; 10.00 over 3 conversions = 3.333333...
    assert Totals(clicks=7, spend=19_990_000).cpc() == 2.855714
    assert Totals(conversions=3 * ONE, spend=10_000_000).cpa() == 3.333333
    assert Totals(clicks=3, spend=2_000_000).cpc() == 0.666667


def test_zero_denominators_are_none() -> None:
    totals = Totals(impressions=0, clicks=0, conversions=0, spend=0, revenue=5_000_000)
    assert totals.ctr() is None
    assert totals.cvr() is None
    assert totals.cpc() is None
    assert totals.cpa() is None
    assert totals.roas() is None  # revenue without spend: undefined, not infinite


def test_empty_totals() -> None:
    totals = Totals()
    assert [totals.ctr(), totals.cvr(), totals.cpc(), totals.cpa(), totals.roas()] == [None] * 5


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(1, 0, None), (0, 0, None), (0, 5, 0.0), (3, 4, 0.75), (0.5, 2, 0.25)],
)
def test_ratio(numerator: float, denominator: float, expected: float | None) -> None:
    assert ratio(numerator, denominator) == expected


def test_zero_numerator_is_zero_not_none() -> None:
    assert Totals(impressions=100).ctr() == 0.0
    assert Totals(spend=1_000_000).roas() == 0.0
