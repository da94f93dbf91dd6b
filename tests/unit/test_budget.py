"""Budget reallocation on curves known exactly: optima, limits and sentences checked by hand.

Two units with daily curves a = 1000 s / (s + 100) and b = 1000 s / (s + 400): their
marginal returns 1000 h / (s + h)^2 are equal where s_b + 400 = 2 (s_a + 100), so a
daily budget of 700 is best split 300 / 400 (both at marginal ROAS 0.625).
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.decide.budget import (
    Allocation,
    BudgetError,
    Rules,
    Unit,
    _moves,
    _rounded,
    parse_limits,
    parse_period,
    plan,
    proportional,
    quantum_of,
)
from tracker.decide.command import history_span, render
from tracker.decide.curves import Curve
from tracker.decide.explain import as_json, move_sentence, summary, unit_sentence

M = 1_000_000
A, B = Curve(1000.0, 100.0), Curve(1000.0, 400.0)


def history(name: str, curve: Curve, recent: list[float], days: int = 21) -> Unit:
    """Exact days: spend swept from 100 to 600 a day, then ``recent``, the last days."""
    sweep = [100.0 + 500.0 * i / (days - len(recent) - 1) for i in range(days - len(recent))]
    spend = [*sweep, *recent]
    return Unit(name, [round(s * M) for s in spend], [curve.outcome(s) for s in spend])


def test_equal_marginals_without_a_step_limit() -> None:
    units = [history("a", A, [350.0]), history("b", B, [350.0])]
    found = plan(units, Rules(total=700 * M, period_days=1, max_change=1.0))
    got = {a.name: a.recommended / M for a in found.allocations}
    assert got["a"] == pytest.approx(300, abs=1)
    assert got["b"] == pytest.approx(400, abs=1)
    assert sum(a.recommended for a in found.allocations) == 700 * M
    assert found.allocations[0].marginal_recommended == pytest.approx(0.625, rel=0.01)


def test_the_step_limit_binds_and_the_move_is_explained() -> None:
    # The last 7 days: a spent 100 a day, b 600 a day; the total is the same 4,900.
    units = [history("a", A, [100.0] * 7), history("b", B, [600.0] * 7)]
    found = plan(units, Rules(total=4900 * M, period_days=7))
    a, b = found.allocations
    assert (a.start, b.start) == (700 * M, 4200 * M)
    assert (a.low, a.high, b.low, b.high) == (560 * M, 840 * M, 3360 * M, 5040 * M)
    assert (a.recommended, b.recommended) == (840 * M, 4060 * M)  # a as high as allowed
    assert a.marginal_start == pytest.approx(2.5, rel=1e-3)  # 1000 * 100 / 200^2
    assert b.marginal_start == pytest.approx(0.4, rel=1e-3)  # 1000 * 400 / 1000^2
    (move,) = found.moves
    assert move_sentence(move, found) == (
        "move 140 USD from b to a: marginal ROAS 0.40 vs 2.50 at current spend"
    )
    assert unit_sentence(a, found) == (
        "a: 700 USD -> 840 USD (+20%, the most this step allows); "
        "marginal ROAS 2.50 now, 2.07 after"
    )
    # 7 days at 120 instead of 100 a day: 7 * (1000 * 120/220 - 1000 * 100/200) = 318.18
    assert a.outcome_recommended is not None
    assert a.outcome_start is not None
    assert a.outcome_recommended - a.outcome_start == pytest.approx(318.18, abs=0.1)
    assert summary(found).startswith("By the fitted curves, the recommended split earns about +")


def test_minimums_and_maximums_win() -> None:
    units = [history("a", A, [100.0] * 7), history("b", B, [600.0] * 7)]
    capped = plan(units, Rules(total=4900 * M, period_days=7, maximum={"a": 800 * M}))
    assert [x.recommended for x in capped.allocations] == [800 * M, 4100 * M]
    floored = plan(units, Rules(total=4900 * M, period_days=7, minimum={"b": 4150 * M}))
    assert [x.recommended for x in floored.allocations] == [750 * M, 4150 * M]


def test_limits_that_cannot_add_up_say_so() -> None:
    units = [history("a", A, [100.0] * 7), history("b", B, [600.0] * 7)]
    with pytest.raises(BudgetError, match=r"between 6,360 USD and .*, not 4,900 USD"):
        plan(units, Rules(total=4900 * M, period_days=7, minimum={"a": 3000 * M}))
    with pytest.raises(BudgetError, match="minimum is above the maximum"):
        plan(units, Rules(4900 * M, 7, minimum={"a": 9 * M}, maximum={"a": 8 * M}))


def test_cents_add_up_exactly() -> None:
    units = [history("a", A, [100.0] * 7), history("b", B, [600.0] * 7)]
    total = 4900 * M + 550_000  # 4,900.55
    found = plan(units, Rules(total=total, period_days=7))
    assert found.quantum == 10_000
    assert sum(x.recommended for x in found.allocations) == total
    assert all(x.recommended % 10_000 == 0 for x in found.allocations)


def test_too_little_data_recommends_nothing_and_says_why() -> None:
    units = [history("a", A, [100.0], days=5), history("b", B, [600.0], days=5)]
    found = plan(units, Rules(total=1000 * M, period_days=1))
    assert found.moves == []
    assert found.nothing_because == "no unit has enough history for a response curve"
    assert [x.recommended for x in found.allocations] == [143 * M, 857 * M]  # the old shares
    for x in found.allocations:
        assert x.kept_because == "only 5 days with spend in its history, 14 needed"
        assert unit_sentence(x, found).endswith("only 5 days with spend in its history, 14 needed")
    assert summary(found) == (
        "No change recommended: no unit has enough history for a response curve."
    )


def test_a_unit_with_exactly_the_days_needed_has_a_curve() -> None:
    units = [history("a", A, [350.0], days=14), history("b", B, [350.0], days=13)]
    found = plan(units, Rules(total=700 * M, period_days=1))
    a, b = found.allocations
    assert (a.kept_because, a.fit is not None) == (None, True)
    assert b.kept_because == "only 13 days with spend in its history, 14 needed"
    # b keeps its start, so a must keep the rest of the total: its own start.
    assert found.moves == []
    assert found.nothing_because == "only a has a response curve: there is nothing to move"


def test_no_recent_spend_recommends_nothing() -> None:
    quiet = Unit("a", [5 * M] * 10 + [0] * 7, [10.0] * 10 + [0.0] * 7)
    found = plan([quiet], Rules(total=100 * M, period_days=7))
    assert found.allocations == []
    assert found.nothing_because == "no spend in the last 7 days to start from"


def test_a_paused_unit_keeps_nothing_and_the_others_share() -> None:
    paused = Unit("c", [50 * M] * 14 + [0] * 7, [40.0] * 14 + [0.0] * 7)
    units = [history("a", A, [100.0] * 7), history("b", B, [600.0] * 7), paused]
    found = plan(units, Rules(total=4900 * M, period_days=7))
    c = found.allocations[2]
    assert (c.recommended, c.kept_because) == (0, "no spend in the last 7 days")


def test_conversions_are_explained_as_marginal_cpa() -> None:
    units = [history("a", A, [100.0] * 7), history("b", B, [600.0] * 7)]
    found = plan(units, Rules(total=4900 * M, period_days=7, objective="conversions"))
    (move,) = found.moves
    assert move_sentence(move, found) == (
        "move 140 USD from b to a: marginal CPA 2.50 USD vs 0.40 USD at current spend"
    )


def test_json_form() -> None:
    units = [history("a", A, [100.0] * 7), history("b", B, [600.0] * 7)]
    found = as_json(plan(units, Rules(total=4900 * M, period_days=7)))
    assert found["total"] == 4900.0
    assert found["units"][0]["start"] == 700.0
    assert found["units"][0]["recommended"] == 840.0
    assert found["units"][0]["curve"]["half_spend"] == pytest.approx(100.0, rel=1e-3)
    assert found["moves"][0]["amount"] == 140.0
    assert found["moves"][0]["explanation"].startswith("move 140 USD from b to a")
    assert found["expected"]["change"] > 0


def test_helpers() -> None:
    assert quantum_of(4900 * M) == M
    assert quantum_of(4900 * M + 10_000) == 10_000
    assert quantum_of(1) == 1
    assert proportional(10, [1, 1, 1]) == [4, 3, 3]
    assert proportional(100, [700, 4200]) == [14, 86]
    assert [parse_period(p) for p in ("7d", "1d", "366d")] == [7, 1, 366]
    assert parse_limits("search=500, display=12.50") == {
        "search": 500 * M,
        "display": 12_500_000,
    }
    for bad in ("7", "0d", "1w", "400d", "367d"):
        with pytest.raises(ValueError, match="period"):
            parse_period(bad)
    for bad in ("search", "=5", " =5"):
        with pytest.raises(ValueError, match="name=amount"):
            parse_limits(bad)
    with pytest.raises(ValueError, match="search: must not be negative"):
        parse_limits("search=-1")


def test_steady_spend_cannot_show_a_curve() -> None:
    steady = Unit("a", [100 * M] * 21, [250.0 + (i % 3) for i in range(21)])
    other = Unit("b", [50 * M] * 21, [80.0] * 21)
    found = plan([steady, other], Rules(total=1050 * M, period_days=7))
    assert found.moves == []
    assert found.nothing_because == "no unit has a usable response curve: see each unit's reason"
    assert all("hardly varied" in (x.kept_because or "") for x in found.allocations)


def test_the_terminal_names_the_history_in_local_days() -> None:
    units = [history("a", A, [100.0] * 7), history("b", B, [600.0] * 7)]
    found = {
        "dimension": "channel",
        "model": "last_click",
        "timezone": "Asia/Kolkata",
        "history": {"from": "2024-04-30T18:30:00Z", "to": "2024-05-21T18:30:00Z", "days": 21},
        **as_json(plan(units, Rules(total=4900 * M, period_days=7))),
    }
    assert history_span(found) == ("2024-05-01", "2024-05-21")
    first_line = render(found).splitlines()[0]
    assert first_line.endswith("curves fitted on the days 2024-05-01 to 2024-05-21 (Asia/Kolkata)")


# --- the two steps every plan ends with, on any input ---------------------------------


def allocation(name: str, change: int, marginal: float) -> Allocation:
    return Allocation(
        name, 0, 1_000, 1_000 + change, 0, 2_000, None, None, marginal, None, None, None
    )


@given(st.lists(st.tuples(st.integers(-50, 50), st.floats(0, 10)), min_size=1, max_size=8))
def test_moves_carry_every_cut_to_the_raises_lowest_return_to_highest_first(
    drawn: list[tuple[int, float]],
) -> None:
    changes = [change for change, _ in drawn]
    drawn = [*drawn, (-sum(changes), 5.0)]  # a plan's changes add up to nothing
    units = [allocation(f"u{i}", change, marginal) for i, (change, marginal) in enumerate(drawn)]
    moves = _moves(units)
    assert all(move.amount > 0 for move in moves)
    given_by, taken_by = Counter[str](), Counter[str]()
    for move in moves:
        given_by[move.source] += move.amount
        taken_by[move.target] += move.amount
    assert given_by == {u.name: -u.change for u in units if u.change < 0}
    assert taken_by == {u.name: u.change for u in units if u.change > 0}
    # Each source is drained before the next, in order of their return at the start.
    sources = [units[int(move.source[1:])] for move in moves]
    assert sources == sorted(sources, key=lambda u: (u.marginal_start, u.name))
    targets = [units[int(move.target[1:])] for move in moves]
    assert targets == sorted(targets, key=lambda u: (-(u.marginal_start or 0.0), u.name))


@st.composite
def amounts_within_bounds(draw: st.DrawFn) -> tuple[list[float], list[tuple[int, int]]]:
    bounds = [
        (lo, lo + draw(st.integers(0, 5)))
        for lo in draw(st.lists(st.integers(0, 20), min_size=1, max_size=8))
    ]
    amounts = [draw(st.floats(lo, hi)) for lo, hi in bounds]
    return amounts, bounds


@given(amounts_within_bounds(), st.floats(0, 1))
def test_rounding_reaches_any_total_the_bounds_allow_and_stays_within_them(
    drawn: tuple[list[float], list[tuple[int, int]]], where: float
) -> None:
    amounts, bounds = drawn
    least, most = sum(lo for lo, _ in bounds), sum(hi for _, hi in bounds)
    total = least + round(where * (most - least))
    parts = _rounded(amounts, bounds, total)
    assert sum(parts) == total
    assert all(lo <= part <= hi for part, (lo, hi) in zip(parts, bounds, strict=True))


@given(amounts_within_bounds())
def test_rounding_the_amounts_own_total_moves_each_by_less_than_one_largest_fractions_up(
    drawn: tuple[list[float], list[tuple[int, int]]],
) -> None:
    amounts, bounds = drawn
    total = round(sum(amounts))
    parts = _rounded(amounts, bounds, total)
    assert sum(parts) == total
    assert all(abs(part - amount) < 1 for part, amount in zip(parts, amounts, strict=True))
    raised = [a - math.floor(a) for p, a in zip(parts, amounts, strict=True) if p > math.floor(a)]
    kept = [a - math.floor(a) for p, a in zip(parts, amounts, strict=True) if p == math.floor(a)]
    assert not raised or not kept or min(raised) >= max(kept)
