from __future__ import annotations

import pytest

from tracker.attribution import ONE, Touch
from tracker.stream.state import (
    Acquisition,
    Click,
    Credit,
    Customer,
    Lookups,
    Order,
    SpendFigure,
    dump_click,
    dump_customer,
    dump_order,
    dump_path,
    load_click,
    load_customer,
    load_order,
    load_path,
)

T0 = 1_714_557_600_000  # 2024-05-01T10:00Z


# paths


@pytest.mark.parametrize(
    "path",
    [
        [],
        [Touch(T0, "spring", "search")],
        [Touch(T0 - 1, None, "social"), Touch(T0, "spring", "search"), Touch(T0, "été", "email")],
    ],
)
def test_path_round_trip(path: list[Touch]) -> None:
    assert load_path(dump_path(path)) == path


def test_path_compact_form() -> None:
    path = [Touch(T0 - 1, None, "social"), Touch(T0, "spring", "search")]
    assert dump_path(path) == b'[[1714557599999,null,"social"],[1714557600000,"spring","search"]]'
    assert dump_path([]) == b"[]"


def test_path_loads_from_str_too() -> None:
    assert load_path('[[1,"a","email"]]') == [Touch(1, "a", "email")]


# clicks


@pytest.mark.parametrize(
    "click",
    [
        Click(Touch(T0, "spring", "search"), "u1"),
        Click(Touch(T0, None, "social"), None),
        Click(Touch(0, 'x,y"z', "other"), "anon-ü"),
    ],
)
def test_click_round_trip(click: Click) -> None:
    assert load_click(dump_click(click)) == click


def test_click_compact_form() -> None:
    assert dump_click(Click(Touch(T0, "spring", "search"), "a1", "u1")) == (
        b'[1714557600000,"spring","search","a1","u1"]'
    )
    assert dump_click(Click(Touch(T0, None, "social"), None)) == (
        b'[1714557600000,null,"social",null,null]'
    )
    assert load_click('[5,null,"email",null,"u2"]') == Click(Touch(5, None, "email"), None, "u2")
    # Stored before identity: its one person is read as the device.
    assert load_click('[5,null,"email","a9"]') == Click(Touch(5, None, "email"), "a9")


# customers


@pytest.mark.parametrize(
    "customer",
    [
        Customer(Acquisition("spring", "search"), (1_764_800_000_000, "o-1"), 12_500_000, 3),
        Customer(Acquisition(None, "direct"), None, -3),
    ],
)
def test_customer_round_trip(customer: Customer) -> None:
    assert load_customer(dump_customer(customer)) == customer


def test_customer_compact_form() -> None:
    customer = Customer(Acquisition("spring", "search"), (5, "o-1"), 7, 2)
    assert dump_customer(customer) == b'["spring","search",[5,"o-1"],7,2]'


def test_a_customer_kept_before_their_first_conversion_was_is_never_displaced() -> None:
    assert load_customer('[null,"direct"]') == Customer(Acquisition(None, "direct"), None, 0)


# orders

LINEAR_ORDER = Order(
    ts=T0,
    goal="purchase",
    revenue=10_000_000,
    credits={
        "last_click": [Credit("summer", "social", ONE, 10_000_000)],
        "linear": [
            Credit("spring", "search", 500_000, 5_000_000),
            Credit("summer", "social", 500_000, 5_000_000),
        ],
    },
    acquisition=Acquisition("spring", "search"),
)


@pytest.mark.parametrize(
    "order",
    [
        LINEAR_ORDER,
        Order(
            ts=T0,
            goal="signup",
            revenue=0,
            credits={"last_click": [Credit(None, "direct", ONE, 0)]},
            acquisition=None,
        ),
        Order(
            ts=T0,
            goal="purchase",
            revenue=3_000_000,
            credits={
                "time_decay": [
                    Credit("a", "search", 333_333, 1_000_000),
                    Credit(None, "email", 666_667, 2_000_000),
                ]
            },
            acquisition=Acquisition(None, "direct"),  # a falsy campaign must survive
            reversed=True,
        ),
        Order(ts=0, goal="g", revenue=0, credits={}, acquisition=None),
    ],
)
def test_order_round_trip(order: Order) -> None:
    assert load_order(dump_order(order)) == order


def test_order_compact_form() -> None:
    assert dump_order(LINEAR_ORDER) == (
        b'{"ts":1714557600000,"goal":"purchase","revenue":10000000,'
        b'"credits":{"last_click":[["summer","social",1000000,10000000]],'
        b'"linear":[["spring","search",500000,5000000],["summer","social",500000,5000000]]},'
        b'"acq":["spring","search"],"reversed":false,"who":[null,null,null,false,null]}'
    )


def test_order_without_acquisition_and_reversed() -> None:
    order = Order(T0, "purchase", 1, {}, None, reversed=True, device="a1", click_id="k1")
    assert dump_order(order) == (
        b'{"ts":1714557600000,"goal":"purchase","revenue":1,"credits":{},'
        b'"acq":null,"reversed":true,"who":["a1",null,"k1",false,null]}'
    )
    assert load_order(dump_order(order)) == order


def test_order_keeps_whose_customer_it_counts_in() -> None:
    order = Order(T0, "purchase", 1, {}, None, user="u1", customer="u1")
    assert load_order(dump_order(order)) == order
    before = '{"ts":1,"goal":"g","revenue":2,"credits":{},"acq":null,"reversed":false,'
    assert load_order(before + '"who":["a1",null,null,false]}').customer is None


def test_order_loads_from_str_and_is_mutable() -> None:
    order = load_order(
        '{"ts":1,"goal":"purchase","revenue":2,"credits":{"linear":[[null,"direct",1000000,2]]},'
        '"acq":null,"reversed":false}'
    )
    # Stored before identity, it says nothing of who: never re-credited (named).
    assert order == Order(
        1, "purchase", 2, {"linear": [Credit(None, "direct", ONE, 2)]}, None, named=True
    )
    order.reversed = True  # the fold marks a refunded order in place
    assert load_order(dump_order(order)).reversed


def test_order_revenue_up_to_the_largest_amount() -> None:
    big = 10**15 * 50  # fifty of the largest single amounts, still exact
    order = Order(T0, "purchase", big, {"linear": [Credit("a", "search", ONE, big)]}, None)
    assert load_order(dump_order(order)) == order


# plain values


def test_lookups_start_empty_and_independent() -> None:
    a, b = Lookups(), Lookups()
    a.seen.add("e1")
    a.paths.setdefault("u1", []).append(Touch(T0, None, "search"))
    assert b.seen == set()
    assert b.paths == {}
    assert (b.dirty_orders, b.dirty_clicks, b.dirty_paths, b.dirty_customers) == (
        set(),
        set(),
        set(),
        set(),
    )


def test_value_types_are_hashable_and_compare_by_value() -> None:
    assert Touch(1, "a", "search") == Touch(1, "a", "search")
    assert len({Touch(1, "a", "search"), Touch(1, "a", "search")}) == 1
    assert SpendFigure(T0, 5) == SpendFigure(T0, 5)
    assert Credit("a", "search", 1, 2) != Credit("a", "search", 1, 3)
    assert {Acquisition("a", "search"): 1}[Acquisition("a", "search")] == 1
    assert Click(Touch(1, None, "email"), None) == Click(Touch(1, None, "email"), None)
