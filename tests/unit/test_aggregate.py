from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from tracker.attribution import ONE, Touch
from tracker.events import Event
from tracker.stream.aggregate import fold, spend_key
from tracker.stream.delta import Audience, Cell, Delta, Policy
from tracker.stream.state import (
    Acquisition,
    Click,
    Credit,
    Customer,
    Lookups,
    Order,
    SpendFigure,
)
from tracker.windows import calendar

DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000
# 2024-05-01T00:00:00Z = 19_844 days * 86_400_000 ms; T0 is 10:00 that day.
MAY1 = 1_714_521_600_000
T0 = MAY1 + 10 * HOUR  # 1_714_557_600_000
HALF_LIFE = 7 * DAY
RATES = {"USD": 1.0, "EUR": 1.08}
KEY = ("spring", "2024-05-01")
MODELS = ("last_click", "first_click", "linear", "time_decay", "position_based")
# The buckets holding T0 in each window.
AT_T0 = {"1m": T0, "1h": T0, "1d": MAY1, "all": 0}


def uniques(delta: Delta) -> dict[Audience, set[str]]:
    """Each audience (HyperLogLog) of ``delta``'s crowds, with every person counted in it."""
    found: dict[Audience, set[str]] = {}
    for audiences, people in delta.crowds.items():
        for audience in audiences:
            found.setdefault(audience, set()).update(people)
    return found


def event(event_id: str, kind: str = "click", **fields: Any) -> Event:
    base: dict[str, Any] = {
        "event_id": event_id,
        "type": kind,
        "ts": T0,
        "received_at": T0,
        "channel": "search",
        "campaign": "spring",
    }
    return Event(**(base | fields))


def spend(event_id: str, cost: int, **fields: Any) -> Event:
    return event(event_id, "spend", cost=cost, **({"period": "2024-05-01"} | fields))


def click(event_id: str, ts: int, campaign: str | None, channel: str, **fields: Any) -> Event:
    return event(event_id, "click", ts=ts, campaign=campaign, channel=channel, **fields)


def conversion(event_id: str, **fields: Any) -> Event:
    """A conversion postback naming no campaign, as most do: attribution decides."""
    base: dict[str, Any] = {
        "campaign": None,
        "channel": "direct",
        "goal": "purchase",
        "status": "approved",
    }
    return event(event_id, "conversion", **(base | fields))


def run(
    events: Iterable[Event],
    lookups: Lookups | None = None,
    *,
    watermark: int = 0,
    grace_ms: int = HOUR,
    lookback: Mapping[str, int] | None = None,
    half_life_ms: int = HALF_LIFE,
    path_max: int = 20,
    skew_ms: int = 0,
    timezone: str = "UTC",
) -> Delta:
    """Fold ``events``; ``lookback`` overrides the 30-day lookback per channel."""
    overrides = dict(lookback or {})
    policy = Policy(
        grace_ms=grace_ms,
        calendar=calendar(timezone),
        rates=RATES,
        lookback_ms=lambda channel: overrides.get(channel, 30 * DAY),
        half_life_ms=half_life_ms,
        path_max=path_max,
        skew_ms=skew_ms,
    )
    return fold(
        events, Lookups() if lookups is None else lookups, watermark=watermark, policy=policy
    )


def acquisitions(lookups: Lookups) -> dict[str, Acquisition]:
    return {person: customer.acquisition for person, customer in lookups.customers.items()}


def total(delta: Delta, metric: str, window: str = "all", bucket: int = 0) -> int:
    return delta.sums[window, bucket, "total", "total", metric]


def credits(delta: Delta, dimension: str, metric: str) -> dict[str, int]:
    """All-time, non-zero ``metric`` per value of ``dimension``."""
    return {
        value: amount
        for (window, _, dim, value, name), amount in delta.sums.items()
        if window == "all" and dim == dimension and name == metric and amount
    }


def nonzero(delta: Delta) -> dict[Cell, int]:
    return {cell: amount for cell, amount in delta.sums.items() if amount}


def net(delta: Delta) -> dict[Cell, int]:
    """The sums less the all-time reversal tallies that keep counters monotonic."""
    return {cell: amount for cell, amount in delta.sums.items() if "_reversed" not in cell[4]}


# counting


def test_click_lands_in_every_window_and_dimension() -> None:
    lookups = Lookups()
    delta = run([event("e1")], lookups)
    dimensions = [("channel", "search"), ("total", "total"), ("campaign", "spring")]
    expected: dict[Cell, int] = {
        (window, start, dimension, value, "clicks"): 1
        for window, start in AT_T0.items()
        for dimension, value in dimensions
    }
    assert dict(delta.sums) == expected  # 4 windows x 3 dimensions
    assert lookups.seen == {"e1"}
    assert dict(delta.health) == {"events": 1}
    assert (delta.watermark, delta.newest) == (T0, T0)
    assert delta.crowds == {}  # nobody named
    assert lookups.paths == {}  # a click of nobody is no one's touch


def test_events_of_one_minute_are_summed() -> None:
    delta = run(
        [
            event("i1", "impression", ts=T0),
            event("i2", "impression", ts=T0 + 10_000),
            event("i3", "impression", ts=T0 + 59_999),
            event("c1", "click", ts=T0 + MINUTE),  # the next minute
            event("p1", "pageview", ts=T0 + MINUTE),
        ]
    )
    assert total(delta, "impressions", "1m", T0) == 3
    assert total(delta, "clicks", "1m", T0) == 0
    assert total(delta, "clicks", "1m", T0 + MINUTE) == 1
    assert total(delta, "pageviews", "1m", T0 + MINUTE) == 1
    assert total(delta, "impressions", "1h", T0) == 3  # same hour
    assert total(delta, "clicks", "1h", T0) == 1


def test_duplicates_within_a_batch() -> None:
    lookups = Lookups()
    delta = run([event("e1"), event("e1", received_at=T0 + 99), event("e2")], lookups)
    assert total(delta, "clicks") == 2
    assert delta.health["duplicates"] == 1
    assert delta.health["events"] == 2
    assert lookups.seen == {"e1", "e2"}
    assert delta.newest == T0  # the duplicate's received_at does not count


def test_duplicates_seen_before() -> None:
    lookups = Lookups(seen={"e1"})
    delta = run([event("e1"), event("e2")], lookups)
    assert total(delta, "clicks") == 1
    assert delta.health["duplicates"] == 1
    assert lookups.seen == {"e1", "e2"}


def test_duplicates_across_folds_sharing_lookups() -> None:
    # The sink folds each partition with the same lookups: an id is taken once.
    lookups = Lookups()
    first = run([event("e1")], lookups)
    second = run([event("e1")], lookups)
    assert total(first, "clicks") == 1
    assert not second.sums
    assert second.health["duplicates"] == 1


def test_late_beyond_grace_counted_as_late_and_in_its_own_buckets() -> None:
    # watermark T0, grace 60 s: the horizon is T0 - 60_000
    lookups = Lookups()
    delta = run(
        [event("late", ts=T0 - 60_001), event("edge", ts=T0 - 60_000)],
        lookups,
        watermark=T0,
        grace_ms=60_000,
    )
    assert delta.health["late"] == 1
    assert delta.health["events"] == 2
    assert lookups.seen == {"late", "edge"}  # counted, so a later copy is a duplicate
    assert total(delta, "clicks") == 2
    assert total(delta, "clicks", "1m", T0 - 2 * MINUTE) == 1  # the late one, in its minute
    assert total(delta, "clicks", "1m", T0 - MINUTE) == 1
    assert delta.watermark == T0  # an older event does not move it back


def test_lateness_histogram() -> None:
    delta = run(
        [
            event("a", ts=T0 - 2 * HOUR),
            event("b", ts=T0 - 8 * DAY),
            event("c", ts=T0 - 40 * DAY),
            event("d", ts=T0 - 6 * HOUR),
        ],
        watermark=T0,
    )
    assert delta.health["late"] == 4
    assert delta.health["late_le_10800"] == 1  # 2 h: within 3 h
    assert delta.health["late_le_21600"] == 1  # on a bound: within it, as Prometheus's le says
    assert delta.health["late_le_2592000"] == 1  # 8 days: within 30
    assert delta.health["late_le_inf"] == 1
    assert delta.health["late_ms"] == (2 * HOUR + 8 * DAY + 40 * DAY + 6 * HOUR)


def test_a_week_old_history_counts_in_its_day_while_live_traffic_flows() -> None:
    lookups = Lookups()
    run([event("live", ts=T0)], lookups)  # the partition's newest event is now T0
    week_ago = T0 - 7 * DAY
    delta = run(
        [
            click("old", week_ago, "spring", "search", user_id="u1", click_id="k-old"),
            conversion("buy", ts=week_ago + HOUR, click_id="k-old", value=5_000_000),
            spend("s-old", 70_000_000, period="2024-04-24", ts=week_ago),
        ],
        lookups,
        watermark=T0,
    )
    assert delta.health["late"] == 3
    assert total(delta, "clicks", "1d", MAY1 - 7 * DAY) == 1
    assert total(delta, "spend", "1d", MAY1 - 7 * DAY) == 70_000_000
    assert credits(delta, "campaign", "revenue@last_click") == {"spring": 5_000_000}


def test_watermark_advances_within_the_batch() -> None:
    lookups = Lookups()
    delta = run(
        [
            event("ahead", ts=T0 + 2 * MINUTE),
            event("behind", ts=T0),  # 120 s behind the new watermark: late
            event("within", ts=T0 + MINUTE),  # 60 s behind: within grace
        ],
        lookups,
        grace_ms=MINUTE,
    )
    assert delta.health["late"] == 1
    assert lookups.seen == {"ahead", "behind", "within"}
    assert delta.watermark == T0 + 2 * MINUTE


def test_late_click_is_a_touch() -> None:
    lookups = Lookups()
    run([click("late", T0 - HOUR - 1, "spring", "search", user_id="u1")], lookups, watermark=T0)
    assert lookups.paths == {"u1": [Touch(T0 - HOUR - 1, "spring", "search")]}


def test_bots_counted_in_every_window_never_in_kpis() -> None:
    lookups = Lookups()
    delta = run(
        [
            event("b1", bot=True, cost=1_000_000, user_id="botty", click_id="g1"),
            event("b2", "impression", bot=True),
            event("b3", bot=True, campaign=None),
            event("b4", "conversion", bot=True, value=5_000_000, order_id="o1", user_id="botty"),
            event("human"),
        ],
        lookups,
    )
    for window, start in AT_T0.items():
        assert delta.sums[window, start, "campaign", "spring", "bots"] == 3  # b1, b2, b4
        assert delta.sums[window, start, "channel", "search", "bots"] == 4
        assert delta.sums[window, start, "total", "total", "bots"] == 4
    bot_cells = {cell for cell in delta.sums if cell[4] == "bots"}
    assert {cell[2:4] for cell in bot_cells} == {
        ("total", "total"),
        ("channel", "search"),
        ("campaign", "spring"),  # no campaign: no campaign cell (no more "" value)
    }
    assert {cell[:2] for cell in bot_cells} == set(AT_T0.items())
    assert total(delta, "clicks") == 1  # the human only
    assert total(delta, "impressions") == 0
    assert total(delta, "spend") == 0
    assert total(delta, "conversions") == 0
    assert total(delta, "revenue") == 0
    assert delta.health["bots"] == 4
    assert delta.health["events"] == 5
    assert "b1" in lookups.seen
    # A bot leaves no trace to attribute by, and is no unique user.
    assert delta.crowds == {}
    assert (lookups.clicks, lookups.paths, lookups.orders, lookups.customers) == ({}, {}, {}, {})
    assert not (lookups.dirty_clicks | lookups.dirty_paths | lookups.dirty_orders)


def test_cost_counts_on_impressions_and_clicks_only() -> None:
    delta = run(
        [
            event("i", "impression", cost=2_000),
            event("c", "click", cost=500_000),
            event("p", "pageview", cost=1_000_000),
            event("v", "conversion", cost=7, goal="purchase", status="approved"),
        ]
    )
    assert total(delta, "spend") == 502_000  # 2_000 + 500_000


def test_currency_conversion() -> None:
    delta = run(
        [
            event("c", cost=10_000_000, currency="EUR"),  # 10 EUR * 1.08 = 10.80
            # 19.99 EUR * 1.08 = 21.5892
            event(
                "v",
                "conversion",
                value=19_990_000,
                currency="EUR",
                goal="purchase",
                status="approved",
            ),
        ]
    )
    assert total(delta, "spend") == 10_800_000
    assert total(delta, "revenue") == 21_589_200
    assert credits(delta, "campaign", "revenue@linear") == {"spring": 21_589_200}


def test_missing_rate_on_revenue_skips_the_conversion() -> None:
    delta = run([conversion("v", value=1_000_000, currency="GBP")])
    assert delta.unconvertible == ["v"]
    assert not total(delta, "conversions")


def test_unique_users_per_bucket_and_dimension() -> None:
    delta = run(
        [
            event("c1", user_id="u1", anonymous_id="a1"),  # user_id wins over anonymous_id
            event("c2", anonymous_id="a2"),
            event("c3", ts=T0 + 1_000, user_id="u1"),  # same person, same minute
            event("i1", "impression", campaign="summer", channel="display", anonymous_id="a3"),
            event("b1", bot=True, user_id="botty"),
            spend("s1", 1_000_000),
            conversion("v1", user_id="u4"),  # counted under its own (direct) channel
        ]
    )
    spring = {"u1", "a2"}
    summer = {"a3"}
    expected: dict[tuple[str, int, str, str], set[str]] = {}
    for window, start in AT_T0.items():
        expected[window, start, "total", "total"] = spring | summer | {"u4"}
        expected[window, start, "channel", "search"] = spring
        expected[window, start, "campaign", "spring"] = spring
        expected[window, start, "channel", "display"] = summer
        expected[window, start, "campaign", "summer"] = summer
        expected[window, start, "channel", "direct"] = {"u4"}
    assert uniques(delta) == expected


def test_unique_users_of_other_minutes() -> None:
    delta = run(
        [event("c1", user_id="u1"), event("c2", ts=T0 + MINUTE, user_id="u2")],
    )
    found = uniques(delta)
    assert found["1m", T0, "total", "total"] == {"u1"}
    assert found["1m", T0 + MINUTE, "total", "total"] == {"u2"}
    assert found["1h", T0, "total", "total"] == {"u1", "u2"}
    assert found["all", 0, "campaign", "spring"] == {"u1", "u2"}


# conversions: total and goal carry plain counts, campaign and channel attributed ones


def test_conversions_per_goal() -> None:
    delta = run(
        [
            event("a", "conversion", goal="purchase", status="approved", value=5_000_000),
            event("b", "conversion", goal="purchase", status="approved", value=2_500_000),
            event("c", "conversion", goal="signup", status="approved"),
        ]
    )
    assert total(delta, "conversions") == 3
    assert total(delta, "revenue") == 7_500_000  # 5.00 + 2.50
    assert credits(delta, "goal", "conversions") == {"purchase": 2, "signup": 1}
    assert credits(delta, "goal", "revenue") == {"purchase": 7_500_000}
    assert delta.sums["1d", MAY1, "goal", "purchase", "conversions"] == 2
    # Attributed: three whole conversions to the named campaign, in micro-conversions.
    assert credits(delta, "campaign", "conversions@last_click") == {"spring": 3 * ONE}
    assert credits(delta, "channel", "revenue@first_click") == {"search": 7_500_000}


def test_conversion_without_goal_counts_under_goal_conversion() -> None:
    delta = run([conversion("v", goal=None)])
    assert credits(delta, "goal", "conversions") == {"conversion": 1}


def test_which_metrics_live_in_which_dimension() -> None:
    delta = run([event("v", "conversion", goal="purchase", status="approved", value=1_000_000)])
    metrics: dict[str, set[str]] = {}
    for _, _, dimension, _, metric in nonzero(delta):
        metrics.setdefault(dimension, set()).add(metric)
    attributed = {f"{metric}@{model}" for metric in ("conversions", "revenue") for model in MODELS}
    assert metrics == {
        "total": {"conversions", "revenue"},
        "goal": {"conversions", "revenue"},
        "channel": attributed,
        "campaign": attributed,
    }


@pytest.mark.parametrize(
    ("status", "conversions", "revenue"),
    [("approved", 1, 5_000_000), ("pending", 1, 5_000_000), ("rejected", 0, 0), ("refund", 0, 0)],
)
def test_conversion_status(status: str, conversions: int, revenue: int) -> None:
    delta = run([event("v", "conversion", goal="purchase", status=status, value=5_000_000)])
    assert total(delta, "conversions") == conversions
    assert delta.sums["all", 0, "goal", "purchase", "conversions"] == conversions
    assert total(delta, "revenue") == revenue
    assert delta.health["events"] == 1  # accepted and remembered either way
    if not conversions:
        assert not delta.sums
        assert delta.health["unmatched_reversals"] == 1  # no order_id: nothing to reverse


def test_unattributed_conversion_goes_to_direct_without_campaign() -> None:
    lookups = Lookups()
    delta = run(
        [conversion("v", channel="search", user_id="u9", value=5_000_000, order_id="o1")],
        lookups,
    )
    dims = {(cell[2], cell[3]) for cell in nonzero(delta)}
    assert dims == {("total", "total"), ("goal", "purchase"), ("channel", "direct")}
    for model in MODELS:
        assert credits(delta, "channel", f"conversions@{model}") == {"direct": ONE}
        assert credits(delta, "channel", f"revenue@{model}") == {"direct": 5_000_000}
        assert lookups.orders["o1"].credits[model] == [Credit(None, "direct", ONE, 5_000_000)]
    assert acquisitions(lookups) == {"u9": Acquisition(None, "direct")}


# attribution


def test_attribution_by_click_id_earlier_in_the_batch() -> None:
    lookups = Lookups()
    delta = run(
        [
            click("c1", T0 - MINUTE, "spring", "search", click_id="g1"),
            conversion("v1", click_id="g1", value=10_000_000),  # nobody named: the click's
            conversion("v2", click_id="g-unknown", value=1_000_000),
        ],
        lookups,
    )
    for model in MODELS:
        assert credits(delta, "campaign", f"conversions@{model}") == {"spring": ONE}
        assert credits(delta, "campaign", f"revenue@{model}") == {"spring": 10_000_000}
        assert credits(delta, "channel", f"conversions@{model}") == {"search": ONE, "direct": ONE}
    assert lookups.clicks == {"g1": Click(Touch(T0 - MINUTE, "spring", "search"), None)}
    assert lookups.dirty_clicks == {"g1"}


def test_attribution_by_click_id_from_lookups_credits_the_clicker() -> None:
    lookups = Lookups(clicks={"g1": Click(Touch(T0 - DAY, "summer", "social"), "u7")})
    delta = run([conversion("v", click_id="g1", value=2_000_000)], lookups)
    for model in MODELS:
        assert credits(delta, "campaign", f"conversions@{model}") == {"summer": ONE}
        assert credits(delta, "channel", f"revenue@{model}") == {"social": 2_000_000}
    # The click names the person, so the customer is theirs.
    assert acquisitions(lookups) == {"u7": Acquisition("summer", "social")}
    assert credits(delta, "campaign", "customers") == {"summer": 1}
    assert credits(delta, "campaign", "customer_revenue") == {"summer": 2_000_000}


def test_a_named_click_is_the_last_touch_after_the_path_that_led_to_it() -> None:
    # The person touched "a", then clicked "b" (named), then "c": the conversion
    # came through the click it names, so "c" is not on its path.
    a = Touch(T0 - 3 * DAY, "a", "search")
    b = Touch(T0 - 2 * DAY, "b", "social")
    c = Touch(T0 - DAY, "c", "email")
    path = [a, c]
    lookups = Lookups(paths={"u1": list(path)}, clicks={"g1": Click(b, "u1")})
    delta = run([conversion("v", user_id="u1", click_id="g1")], lookups)
    assert credits(delta, "campaign", "conversions@first_click") == {"a": ONE}
    assert credits(delta, "campaign", "conversions@last_click") == {"b": ONE}
    assert lookups.paths == {"u1": path}  # consulted, not changed
    assert not lookups.dirty_paths


def test_click_id_touch_already_on_the_path_counts_once() -> None:
    a, b = Touch(T0 - 2 * DAY, "a", "search"), Touch(T0 - DAY, "b", "social")
    lookups = Lookups(paths={"u1": [a, b]}, clicks={"g1": Click(b, "u1")})
    delta = run([conversion("v", user_id="u1", click_id="g1")], lookups)
    # Two touches, halves; had the click been added again: 333_333 / 666_667.
    assert credits(delta, "campaign", "conversions@linear") == {"a": 500_000, "b": 500_000}


def test_a_named_click_is_credited_whatever_the_clocks_say() -> None:
    # The conversion's clock was 10 minutes slow: it is timed before its own click.
    lookups = Lookups(clicks={"g1": Click(Touch(T0 + 10 * MINUTE, "b", "social"), None)})
    delta = run([conversion("v", click_id="g1")], lookups)
    assert credits(delta, "channel", "conversions@last_click") == {"social": ONE}


@pytest.mark.parametrize(
    ("gap", "credited"),
    [
        (-2 * DAY, "direct"),
        (2 * DAY, "direct"),
        (-DAY, "social"),
        (DAY, "social"),
        (DAY + 1, "direct"),
    ],
)
def test_the_lookback_of_a_named_click_is_on_the_absolute_gap(gap: int, credited: str) -> None:
    # A whole lookback away is still in it, as for any touch; a millisecond more is not.
    lookups = Lookups(clicks={"g1": Click(Touch(T0 + gap, "b", "social"), None)})
    delta = run([conversion("v", click_id="g1")], lookups, lookback={"social": DAY})
    assert credits(delta, "channel", "conversions@last_click") == {credited: ONE}


def test_the_touches_before_a_named_click_count_back_from_it_within_their_lookback() -> None:
    clicked = T0 - HOUR
    named = Touch(clicked, "b", "social")
    path = [
        Touch(clicked - 30 * DAY - 1, "old", "search"),  # 1 ms beyond the lookback
        Touch(clicked - 30 * DAY, "edge", "search"),  # a whole lookback before: in
        Touch(clicked, "same", "email"),  # the click's own millisecond: before it
        named,
        Touch(clicked + MINUTE, "after", "display"),  # after the click: not what led to it
    ]
    lookups = Lookups(paths={"u1": path}, clicks={"g1": Click(named, "u1")})
    delta = run([conversion("v", user_id="u1", click_id="g1")], lookups)
    assert credits(delta, "campaign", "conversions@first_click") == {"edge": ONE}
    assert credits(delta, "campaign", "conversions@linear") == {
        "edge": 333_334,
        "same": 333_333,
        "b": 333_333,
    }


@pytest.mark.parametrize("first", ["early", "late"])
def test_which_copy_of_an_order_comes_first_never_moves_its_credit(first: str) -> None:
    path = [Touch(T0 - HOUR, "a", "search"), Touch(T0 + 2 * MINUTE, "c", "email")]
    named = Touch(T0 + MINUTE, "b", "social")
    lookups = Lookups(paths={"u1": list(path)}, clicks={"g1": Click(named, "u1")})
    copies = {
        "early": conversion(
            "early", order_id="o1", click_id="g1", user_id="u1", ts=T0 - 5 * MINUTE
        ),
        "late": conversion("late", order_id="o1", click_id="g1", user_id="u1", ts=T0 + 30 * MINUTE),
    }
    other = "late" if first == "early" else "early"
    delta = run([copies[first], copies[other]], lookups)
    assert delta.health["duplicate_orders"] == 1
    assert credits(delta, "campaign", "conversions@last_click") == {"b": ONE}
    assert credits(delta, "campaign", "conversions@first_click") == {"a": ONE}


def test_a_persons_touch_a_little_after_the_conversion_counts_within_the_skew() -> None:
    touch = Touch(T0 + 2 * MINUTE, "b", "social")  # the browser's clock ran 2 minutes fast
    for skew, expected in ((0, "direct"), (5 * MINUTE, "social")):
        lookups = Lookups(paths={"u1": [touch]})
        delta = run([conversion("v", user_id="u1")], lookups, skew_ms=skew)
        assert credits(delta, "channel", "conversions@last_click") == {expected: ONE}, skew


def test_a_devices_anonymous_touches_follow_the_user_who_signs_in_on_it() -> None:
    lookups = Lookups(
        paths={
            "u1": [Touch(T0 - DAY, "mine", "search")],
            "a1": [Touch(T0 - 2 * DAY, "device", "social")],
        }
    )
    delta = run(
        [
            conversion("v1", user_id="u1", anonymous_id="a1"),  # both ids: a1 is u1's
            conversion("v2", anonymous_id="a1"),  # the device's owner now: u1
        ],
        lookups,
    )
    assert credits(delta, "campaign", "conversions@first_click") == {"device": 2 * ONE}
    assert credits(delta, "campaign", "conversions@last_click") == {"mine": 2 * ONE}
    assert acquisitions(lookups) == {"u1": Acquisition("mine", "search")}
    assert delta.health["identity_links"] == 1


def test_clicks_and_campaign_pageviews_are_touches() -> None:
    lookups = Lookups()
    delta = run(
        [
            event("i", "impression", ts=T0 - 4 * MINUTE, campaign="seen", user_id="u1"),
            event("p0", "pageview", ts=T0 - 3 * MINUTE, campaign=None, user_id="u1"),
            click("c", T0 - 2 * MINUTE, "brand", "search", user_id="u1", anonymous_id="a1"),
            event(
                "p1", "pageview", ts=T0 - MINUTE, campaign="landing", channel="email", user_id="u1"
            ),
            conversion("v", user_id="u1"),
        ],
        lookups,
    )
    assert lookups.paths == {  # remembered on the device, else the user
        "a1": [Touch(T0 - 2 * MINUTE, "brand", "search")],
        "u1": [Touch(T0 - MINUTE, "landing", "email")],
    }
    assert credits(delta, "campaign", "conversions@first_click") == {"brand": ONE}
    assert credits(delta, "campaign", "conversions@last_click") == {"landing": ONE}


# Three touches, 2, 1 and 0 half-lives (7 days) before a 10.00 conversion:
# brand (search) -> retarget (social) -> newsletter (email).
THREE_TOUCHES = [
    Touch(T0 - 14 * DAY, "brand", "search"),
    Touch(T0 - 7 * DAY, "retarget", "social"),
    Touch(T0, "newsletter", "email"),
]
BY_MODEL: dict[str, dict[str, tuple[int, int]]] = {
    # campaign -> (micro-conversions, revenue)
    "last_click": {"newsletter": (ONE, 10_000_000)},
    "first_click": {"brand": (ONE, 10_000_000)},
    # thirds: 333_333.33 each, the spare unit to the earliest (all remainders tie)
    "linear": {
        "brand": (333_334, 3_333_334),
        "retarget": (333_333, 3_333_333),
        "newsletter": (333_333, 3_333_333),
    },
    # weights 1/4 : 1/2 : 1 = 1/7, 2/7, 4/7 of one: 142_857.14, 285_714.29, 571_428.57
    # (one unit left, to .57); of 10.00: 1_428_571.43, 2_857_142.86, 5_714_285.71 (two
    # units left, to .86 and .71)
    "time_decay": {
        "brand": (142_857, 1_428_571),
        "retarget": (285_714, 2_857_143),
        "newsletter": (571_429, 5_714_286),
    },
    "position_based": {
        "brand": (400_000, 4_000_000),
        "retarget": (200_000, 2_000_000),
        "newsletter": (400_000, 4_000_000),
    },
}
CHANNEL_OF = {"brand": "search", "retarget": "social", "newsletter": "email"}


@pytest.mark.parametrize("model", MODELS)
def test_three_touch_path_from_clicks_in_the_batch(model: str) -> None:
    lookups = Lookups()
    delta = run(
        [
            *(
                click(f"c{i}", t.ts, t.campaign, t.channel, user_id="u1")
                for i, t in enumerate(THREE_TOUCHES)
            ),
            conversion("v", user_id="u1", value=10_000_000, order_id="o1"),
        ],
        lookups,
    )
    expected = BY_MODEL[model]
    assert credits(delta, "campaign", f"conversions@{model}") == {
        c: conv for c, (conv, _) in expected.items()
    }
    assert credits(delta, "campaign", f"revenue@{model}") == {
        c: rev for c, (_, rev) in expected.items()
    }
    assert credits(delta, "channel", f"conversions@{model}") == {
        CHANNEL_OF[c]: conv for c, (conv, _) in expected.items()
    }
    # The conversion's own buckets hold it, in every window.
    for window, start in AT_T0.items():
        assert (
            delta.sums[window, start, "campaign", "brand", f"conversions@{model}"]
            == (expected.get("brand", (0, 0))[0])
        )
    assert lookups.paths == {"u1": THREE_TOUCHES}
    assert lookups.orders["o1"].credits[model] == [
        Credit(c, CHANNEL_OF[c], conv, rev) for c, (conv, rev) in expected.items()
    ]


def test_three_touch_path_from_lookups_sums_exactly() -> None:
    delta = run(
        [conversion("v", user_id="u1", value=10_000_000)],
        Lookups(paths={"u1": list(THREE_TOUCHES)}),
    )
    for model in MODELS:
        assert sum(credits(delta, "campaign", f"conversions@{model}").values()) == ONE
        assert sum(credits(delta, "channel", f"revenue@{model}").values()) == 10_000_000
    assert total(delta, "conversions") == 1  # plain count, once
    assert total(delta, "revenue") == 10_000_000


def test_time_decay_one_half_life_older_gets_half_the_weight() -> None:
    path = [Touch(T0 - HALF_LIFE, "older", "search"), Touch(T0, "newer", "social")]
    delta = run([conversion("v", user_id="u1", value=3_000_000)], Lookups(paths={"u1": path}))
    # weights 1/3, 2/3: 333_333.33 + 666_666.67 -> the spare unit to .67;
    # of 3.00: 1.00 and 2.00
    assert credits(delta, "campaign", "conversions@time_decay") == {
        "older": 333_333,
        "newer": 666_667,
    }
    assert credits(delta, "campaign", "revenue@time_decay") == {
        "older": 1_000_000,
        "newer": 2_000_000,
    }


def test_touches_of_one_campaign_and_channel_are_merged() -> None:
    path = [
        Touch(T0 - 3 * HOUR, "spring", "search"),
        Touch(T0 - 2 * HOUR, "spring", "search"),
        Touch(T0 - HOUR, "x", "social"),
    ]
    lookups = Lookups(paths={"u1": path})
    delta = run([conversion("v", user_id="u1", order_id="o1")], lookups)
    # 333_334 + 333_333 for spring, 333_333 for x
    assert credits(delta, "campaign", "conversions@linear") == {"spring": 666_667, "x": 333_333}
    assert lookups.orders["o1"].credits["linear"] == [
        Credit("spring", "search", 666_667, 0),
        Credit("x", "social", 333_333, 0),
    ]
    # position_based 40/20/40: spring 60%
    assert credits(delta, "campaign", "conversions@position_based") == {
        "spring": 600_000,
        "x": 400_000,
    }


def test_lookback_excludes_older_touches() -> None:
    path = [
        Touch(T0 - 30 * DAY - 1, "old", "search"),  # 1 ms beyond 30 days
        Touch(T0 - 30 * DAY, "edge", "social"),  # exactly 30 days: still in
        Touch(T0 - DAY, "new", "email"),
    ]
    delta = run([conversion("v", user_id="u1")], Lookups(paths={"u1": path}))
    assert credits(delta, "campaign", "conversions@first_click") == {"edge": ONE}
    assert credits(delta, "campaign", "conversions@linear") == {"edge": 500_000, "new": 500_000}


def test_lookback_per_channel() -> None:
    lookups = Lookups(
        paths={
            "u1": [
                Touch(T0 - 3 * DAY, "brand", "search"),
                Touch(T0 - 2 * DAY, "banner", "display"),
            ],
            "u2": [Touch(T0 - 3 * DAY, "brand", "search"), Touch(T0 - HOUR, "banner", "display")],
        }
    )
    delta = run(
        [conversion("v1", user_id="u1"), conversion("v2", user_id="u2")],
        lookups,
        lookback={"display": DAY},
    )
    # u1's display touch is 2 days old, beyond display's 1 day: brand takes it all.
    # u2's is an hour old: last click is the banner, first click still brand.
    assert credits(delta, "campaign", "conversions@last_click") == {"brand": ONE, "banner": ONE}
    assert credits(delta, "campaign", "conversions@first_click") == {"brand": 2 * ONE}


def test_no_touch_in_lookback_is_direct() -> None:
    path = [Touch(T0 - 31 * DAY, "old", "search"), Touch(T0 + MINUTE, "after", "social")]
    delta = run([conversion("v", user_id="u1")], Lookups(paths={"u1": path}))
    # too old, and after the conversion: neither earns credit
    for model in MODELS:
        assert credits(delta, "channel", f"conversions@{model}") == {"direct": ONE}
    assert credits(delta, "campaign", "conversions@last_click") == {}


def test_explicit_campaign_on_a_conversion_is_kept_by_every_model() -> None:
    lookups = Lookups(paths={"u1": list(THREE_TOUCHES)})
    delta = run(
        [
            conversion(
                "v", user_id="u1", campaign="partner-x", channel="affiliate", value=10_000_000
            )
        ],
        lookups,
    )
    for model in MODELS:
        assert credits(delta, "campaign", f"conversions@{model}") == {"partner-x": ONE}
        assert credits(delta, "channel", f"revenue@{model}") == {"affiliate": 10_000_000}
    assert acquisitions(lookups) == {"u1": Acquisition("partner-x", "affiliate")}


def test_path_max_keeps_the_newest_touches() -> None:
    lookups = Lookups()
    run(
        [
            click("c1", T0 - 3 * MINUTE, "a", "search", user_id="u1"),
            click("c2", T0 - MINUTE, "c", "search", user_id="u1"),
            click("c3", T0 - 2 * MINUTE, "b", "search", user_id="u1"),  # out of order
        ],
        lookups,
        path_max=2,
    )
    assert lookups.paths == {
        "u1": [Touch(T0 - 2 * MINUTE, "b", "search"), Touch(T0 - MINUTE, "c", "search")]
    }
    # A click older than a full path is dropped at once.
    run([click("c0", T0 - 4 * MINUTE, "z", "search", user_id="u1")], lookups, path_max=2)
    assert [t.campaign for t in lookups.paths["u1"]] == ["b", "c"]


def test_path_max_bounds_the_touches_credited() -> None:
    path = [
        Touch(T0 - 3 * HOUR, "a", "search"),
        Touch(T0 - 2 * HOUR, "b", "social"),
        Touch(T0 - HOUR, "c", "email"),
    ]
    delta = run([conversion("v", user_id="u1")], Lookups(paths={"u1": path}), path_max=2)
    assert credits(delta, "campaign", "conversions@first_click") == {"b": ONE}
    assert credits(delta, "campaign", "conversions@linear") == {"b": 500_000, "c": 500_000}


def test_time_decay_with_a_short_half_life_does_not_crash() -> None:
    path = [Touch(T0 - 29 * DAY, "a", "search"), Touch(T0 - 28 * DAY, "b", "social")]
    # half-life 30 min: the touches are 1392 and 1344 half-lives old; b weighs 2**48
    # times a, so a's share rounds to nothing and b takes the whole conversion.
    delta = run(
        [conversion("v", user_id="u1")], Lookups(paths={"u1": path}), half_life_ms=30 * MINUTE
    )
    assert credits(delta, "campaign", "conversions@time_decay") == {"b": ONE}


# orders: re-fires, pending -> approved, refunds and rejections


def test_refired_order_within_a_batch_is_dropped() -> None:
    lookups = Lookups()
    delta = run(
        [
            conversion("v1", order_id="o1", value=10_000_000),
            conversion("v2", order_id="o1", value=10_000_000, ts=T0 + 1_000),
        ],
        lookups,
    )
    assert total(delta, "conversions") == 1
    assert total(delta, "revenue") == 10_000_000
    assert delta.health["duplicate_orders"] == 1
    assert delta.health["events"] == 2
    assert {"v1", "v2"} <= lookups.seen  # both event ids are taken
    assert set(lookups.orders) == {"o1"}


def test_refired_order_from_lookups_is_dropped() -> None:
    order = Order(T0 - DAY, "purchase", 10_000_000, {}, None)
    lookups = Lookups(orders={"o1": order})
    delta = run([conversion("v", order_id="o1", value=10_000_000)], lookups)
    assert not delta.sums
    assert delta.health["duplicate_orders"] == 1
    assert lookups.orders == {"o1": order}
    assert not lookups.dirty_orders


def test_conversions_without_order_id_are_all_counted() -> None:
    lookups = Lookups()
    delta = run([conversion("v1"), conversion("v2")], lookups)
    assert total(delta, "conversions") == 2
    assert lookups.orders == {}


def test_pending_then_approved_is_counted_once() -> None:
    delta = run(
        [
            conversion("v1", order_id="o1", status="pending", value=10_000_000),
            conversion("v2", order_id="o1", status="approved", value=10_000_000, ts=T0 + HOUR),
        ]
    )
    assert total(delta, "conversions") == 1
    assert total(delta, "revenue") == 10_000_000
    assert credits(delta, "channel", "conversions@linear") == {"direct": ONE}
    assert delta.health["duplicate_orders"] == 1


@pytest.mark.parametrize("status", ["refund", "rejected"])
def test_reversal_in_the_same_batch_takes_back_everything_but_the_customer(status: str) -> None:
    lookups = Lookups(paths={"u1": list(THREE_TOUCHES)})
    delta = run(
        [
            conversion("v1", user_id="u1", order_id="o1", status="pending", value=10_000_000),
            conversion("v2", user_id="u1", order_id="o1", status=status, ts=T0 + MINUTE),
        ],
        lookups,
    )
    # Every bucket, every model, every dimension back to 0; the customer stays won.
    assert {c: a for c, a in net(delta).items() if a} == {
        ("all", 0, "total", "total", "customers"): 1,
        ("all", 0, "channel", "email", "customers"): 1,  # last click: newsletter (email)
        ("all", 0, "campaign", "newsletter", "customers"): 1,
    }
    assert delta.sums["1m", T0, "campaign", "brand", "revenue@linear"] == 0  # added, taken back
    assert lookups.orders["o1"].reversed
    assert delta.health["reversals"] == 1
    assert lookups.dirty_orders == {"o1"}


def test_refund_of_a_known_order_subtracts_exactly_what_it_added() -> None:
    order = Order(
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
    lookups = Lookups(orders={"o1": order})
    refund = conversion("r", order_id="o1", status="refund", ts=T0 + DAY, value=10_000_000)
    delta = run([refund], lookups)
    expected: dict[Cell, int] = {}
    for window, start in AT_T0.items():  # the order's own buckets, not the refund's
        for dimension, value in (("total", "total"), ("goal", "purchase")):
            expected[window, start, dimension, value, "conversions"] = -1
            expected[window, start, dimension, value, "revenue"] = -10_000_000
        for dimension, value in (("channel", "social"), ("campaign", "summer")):
            expected[window, start, dimension, value, "conversions@last_click"] = -ONE
            expected[window, start, dimension, value, "revenue@last_click"] = -10_000_000
            expected[window, start, dimension, value, "conversions@linear"] = -500_000
            expected[window, start, dimension, value, "revenue@linear"] = -5_000_000
        for dimension, value in (("channel", "search"), ("campaign", "spring")):
            expected[window, start, dimension, value, "conversions@linear"] = -500_000
            expected[window, start, dimension, value, "revenue@linear"] = -5_000_000
    # lifetime value of the acquiring campaign; the customer is not taken back
    for dimension, value in (("total", "total"), ("channel", "search"), ("campaign", "spring")):
        expected["all", 0, dimension, value, "customer_revenue"] = -10_000_000
    assert net(delta) == expected
    # and all-time tallies of what was taken back, so gross counters never go down
    reversed_cells = {cell: a for cell, a in delta.sums.items() if "_reversed" in cell[4]}
    tallies: dict[Cell, int] = {}
    for dimension, value in (("total", "total"), ("goal", "purchase")):
        tallies["all", 0, dimension, value, "conversions_reversed"] = 1
        tallies["all", 0, dimension, value, "revenue_reversed"] = 10_000_000
    for dimension, value in (("channel", "social"), ("campaign", "summer")):
        tallies["all", 0, dimension, value, "conversions_reversed@last_click"] = ONE
        tallies["all", 0, dimension, value, "revenue_reversed@last_click"] = 10_000_000
        tallies["all", 0, dimension, value, "conversions_reversed@linear"] = 500_000
        tallies["all", 0, dimension, value, "revenue_reversed@linear"] = 5_000_000
    for dimension, value in (("channel", "search"), ("campaign", "spring")):
        tallies["all", 0, dimension, value, "conversions_reversed@linear"] = 500_000
        tallies["all", 0, dimension, value, "revenue_reversed@linear"] = 5_000_000
    assert reversed_cells == tallies
    assert lookups.orders["o1"].reversed
    assert lookups.dirty_orders == {"o1"}
    assert delta.health["reversals"] == 1


def test_refund_of_an_order_without_person_leaves_lifetime_value_alone() -> None:
    order = Order(
        T0, "purchase", 1_000_000, {"linear": [Credit(None, "direct", ONE, 1_000_000)]}, None
    )
    delta = run([conversion("r", order_id="o1", status="refund")], Lookups(orders={"o1": order}))
    assert {cell[4] for cell in net(delta)} == {
        "conversions",
        "revenue",
        "conversions@linear",
        "revenue@linear",
    }


def test_refund_of_unknown_order_is_unmatched() -> None:
    lookups = Lookups()
    delta = run(
        [
            conversion("r1", order_id="o404", status="refund"),
            conversion("r2", status="refund"),  # no order_id at all
            conversion("r3", order_id="o405", status="rejected"),
        ],
        lookups,
    )
    assert not delta.sums
    assert delta.health["unmatched_reversals"] == 3
    assert delta.health["reversals"] == 0
    assert lookups.orders == {}
    assert not lookups.dirty_orders


def test_refund_twice_is_repeated() -> None:
    lookups = Lookups()
    delta = run(
        [
            conversion("v", order_id="o1", value=4_000_000),
            conversion("r1", order_id="o1", status="refund"),
            conversion("r2", order_id="o1", status="refund"),
        ],
        lookups,
    )
    assert total(delta, "conversions") == 0
    assert total(delta, "revenue") == 0
    assert delta.health["reversals"] == 1
    assert delta.health["repeated_reversals"] == 1
    # and once more in a later batch, against the stored (reversed) order
    later = run([conversion("r3", order_id="o1", status="rejected")], lookups)
    assert not later.sums
    assert later.health["repeated_reversals"] == 1


def test_refunded_order_refired_stays_dropped() -> None:
    delta = run(
        [
            conversion("v1", order_id="o1", value=4_000_000),
            conversion("r1", order_id="o1", status="refund"),
            conversion("v2", order_id="o1", value=4_000_000),
        ]
    )
    assert total(delta, "conversions") == 0
    assert delta.health["duplicate_orders"] == 1


# customer lifetime value


def test_acquisition_is_the_first_conversion_and_kept_for_later_ones() -> None:
    lookups = Lookups(paths={"u1": [Touch(T0 - 2 * DAY, "brand", "search")]})
    delta = run(
        [
            conversion("v1", user_id="u1", order_id="o1", value=10_000_000),
            click("c", T0 + MINUTE, "retarget", "social", user_id="u1"),
            conversion("v2", user_id="u1", order_id="o2", value=4_000_000, ts=T0 + 2 * MINUTE),
        ],
        lookups,
    )
    # the second order is credited to retarget, but the customer was won by brand
    assert credits(delta, "campaign", "conversions@last_click") == {
        "brand": ONE,
        "retarget": ONE,
    }
    assert credits(delta, "campaign", "customers") == {"brand": 1}
    assert credits(delta, "channel", "customers") == {"search": 1}
    assert total(delta, "customers") == 1
    assert credits(delta, "campaign", "customer_revenue") == {"brand": 14_000_000}
    assert credits(delta, "channel", "customer_revenue") == {"search": 14_000_000}
    assert total(delta, "customer_revenue") == 14_000_000
    assert {cell[:2] for cell in delta.sums if cell[4].startswith("customer")} == {("all", 0)}
    assert acquisitions(lookups) == {"u1": Acquisition("brand", "search")}
    assert lookups.dirty_customers == {"u1"}
    assert lookups.orders["o2"].acquisition == Acquisition("brand", "search")


def test_an_earlier_conversion_coming_later_wins_the_customer_and_what_they_spent() -> None:
    """A customer's conversions on two partitions may come in either order: the earliest
    wins them, whichever came first."""
    lookups = Lookups(
        paths={"u1": [Touch(T0 - DAY, "brand", "search")]},
        clicks={"g1": Click(Touch(T0 - HOUR, "partner", "affiliate"), None, "u1")},
    )
    first = run([conversion("v2", user_id="u1", order_id="o2", value=4_000_000)], lookups)
    assert acquisitions(lookups) == {"u1": Acquisition("brand", "search")}
    then = run(
        [conversion("v1", order_id="o1", click_id="g1", value=10_000_000, ts=T0 - MINUTE)],
        lookups,
    )
    assert acquisitions(lookups) == {"u1": Acquisition("partner", "affiliate")}
    assert lookups.customers["u1"].first == (T0 - MINUTE, "o1")
    assert lookups.customers["u1"].revenue == 14_000_000
    for metric, brand, partner in (("customers", 0, 1), ("customer_revenue", 0, 14_000_000)):
        both = Counter(credits(first, "campaign", metric)) + Counter(
            credits(then, "campaign", metric)
        )
        assert {c: both[c] for c in ("brand", "partner")} == {"brand": brand, "partner": partner}
    # Where the customer left, the counter of customers ever won stays: moved ones count.
    assert credits(then, "campaign", "customers_moved") == {"brand": 1}
    assert total(then, "customers") == 0


def test_a_customer_won_before_their_first_conversion_was_kept_stays_where_they_are() -> None:
    lookups = Lookups(customers={"u1": Customer(Acquisition("brand", "search"), None)})
    run([conversion("v", user_id="u1", order_id="o0", value=1, ts=T0 - 30 * DAY)], lookups)
    assert acquisitions(lookups) == {"u1": Acquisition("brand", "search")}


def test_a_refund_takes_revenue_from_where_its_customer_is_now() -> None:
    lookups = Lookups(
        paths={"u1": [Touch(T0 - DAY, "brand", "search")]},
        clicks={"g1": Click(Touch(T0 - HOUR, "partner", "affiliate"), None, "u1")},
    )
    run([conversion("v2", user_id="u1", order_id="o2", value=4_000_000)], lookups)
    run([conversion("v1", order_id="o1", click_id="g1", value=1, ts=T0 - MINUTE)], lookups)
    refund = run([conversion("r2", order_id="o2", status="refund", ts=T0 + HOUR)], lookups)
    assert credits(refund, "campaign", "customer_revenue") == {"partner": -4_000_000}
    assert lookups.customers["u1"].revenue == 1


def test_a_link_that_re_credits_the_winning_order_moves_its_customer() -> None:
    lookups = Lookups(paths={"d1": [Touch(T0 - HOUR, "brand", "search")]})
    run([conversion("v1", user_id="u1", order_id="o1", value=5_000_000)], lookups)
    assert acquisitions(lookups) == {"u1": Acquisition(None, "direct")}
    linked = run(
        [event("i1", "identify", ts=T0 + MINUTE, anonymous_id="d1", user_id="u1")], lookups
    )
    assert linked.health["identity_restitched"] == 1
    assert acquisitions(lookups) == {"u1": Acquisition("brand", "search")}
    assert credits(linked, "campaign", "customer_revenue") == {"brand": 5_000_000}
    assert credits(linked, "channel", "customers") == {"direct": -1, "search": 1}


def test_a_guest_who_signs_in_as_a_new_user_stays_one_customer_the_users() -> None:
    lookups = Lookups(paths={"d1": [Touch(T0 - HOUR, "brand", "search")]})
    bought = run([conversion("v1", anonymous_id="d1", order_id="o1", value=5_000_000)], lookups)
    assert acquisitions(lookups) == {"d1": Acquisition("brand", "search")}
    signed = run(
        [event("i1", "identify", ts=T0 + MINUTE, anonymous_id="d1", user_id="u1")], lookups
    )
    assert lookups.customers["u1"] == Customer(
        Acquisition("brand", "search"), (T0, "o1"), 5_000_000, 1
    )
    assert lookups.customers["d1"].count == 0  # no customer any more
    assert lookups.orders["o1"].customer == "u1"
    assert total(bought, "customers") == 1
    assert not any(cell[4].startswith("customer") for cell in signed.sums)  # renamed, no more
    again = run([conversion("v2", user_id="u1", order_id="o2", value=1, ts=T0 + HOUR)], lookups)
    assert total(again, "customers") == 0  # one person, one customer
    assert lookups.customers["u1"].revenue == 5_000_001


def test_a_guest_who_signs_in_as_a_known_customer_is_merged_into_them() -> None:
    lookups = Lookups(paths={"d1": [Touch(T0 - HOUR, "brand", "search")]})
    run([conversion("v0", user_id="u1", order_id="o0", value=1_000_000, ts=T0 - DAY)], lookups)
    run([conversion("v1", anonymous_id="d1", order_id="o1", value=5_000_000)], lookups)
    signed = run(
        [event("i1", "identify", ts=T0 + MINUTE, anonymous_id="d1", user_id="u1")], lookups
    )
    assert total(signed, "customers") == -1  # two customers were one person
    assert credits(signed, "campaign", "customers") == {"brand": -1}
    assert credits(signed, "campaign", "customers_moved") == {"brand": 1}
    assert credits(signed, "campaign", "customer_revenue") == {"brand": -5_000_000}
    assert credits(signed, "channel", "customer_revenue") == {
        "search": -5_000_000,
        "direct": 5_000_000,
    }
    assert lookups.customers["u1"].revenue == 6_000_000
    assert lookups.customers["u1"].count == 2
    # The device signed out and buying again is a customer of its own again.
    run([event("r1", "reset", ts=T0 + 2 * MINUTE, anonymous_id="d1")], lookups)
    later = run([conversion("v3", anonymous_id="d1", order_id="o3", ts=T0 + HOUR)], lookups)
    assert total(later, "customers") == 1


def test_known_customer_adds_revenue_not_a_customer() -> None:
    lookups = Lookups(customers={"u1": Customer(Acquisition("brand", "search"), (T0 - DAY, "o0"))})
    delta = run([conversion("v", user_id="u1", value=5_000_000)], lookups)
    assert total(delta, "customers") == 0
    assert credits(delta, "campaign", "customer_revenue") == {"brand": 5_000_000}
    assert credits(delta, "channel", "conversions@last_click") == {"direct": ONE}
    assert lookups.customers["u1"].revenue == 5_000_000  # kept, to move with them
    assert lookups.dirty_customers == {"u1"}


def test_acquisition_of_a_multi_touch_path_is_its_last_click() -> None:
    lookups = Lookups(paths={"u1": list(THREE_TOUCHES)})
    run([conversion("v", user_id="u1")], lookups)
    assert acquisitions(lookups) == {"u1": Acquisition("newsletter", "email")}


def test_conversion_of_nobody_wins_no_customer() -> None:
    lookups = Lookups()
    delta = run([conversion("v", value=5_000_000)], lookups)
    assert total(delta, "customers") == 0
    assert total(delta, "customer_revenue") == 0
    assert lookups.customers == {}


# what the sink must write back


def test_dirty_sets_name_exactly_what_changed() -> None:
    lookups = Lookups(
        clicks={"g-old": Click(Touch(T0 - DAY, "orig", "search"), "u1")},
        orders={"o-old": Order(T0 - DAY, "purchase", 1, {}, None)},
        customers={"u5": Customer(Acquisition(None, "direct"), None)},
    )
    run(
        [
            click("c1", T0 - 5 * MINUTE, "spring", "search", user_id="u1", click_id="g1"),
            click("c2", T0 - 4 * MINUTE, "again", "search", user_id="u2", click_id="g-old"),
            event("p1", "pageview", ts=T0 - 3 * MINUTE, campaign="landing", anonymous_id="a3"),
            event("p2", "pageview", ts=T0 - 3 * MINUTE, campaign=None, user_id="u4"),
            event("i1", "impression", ts=T0 - 3 * MINUTE, user_id="u6"),
            click("c3", T0 - 2 * MINUTE, "spring", "search", click_id="g2"),  # nobody's
            conversion("v1", user_id="u1", order_id="o1"),
            conversion("v2", user_id="u5", order_id="o-old"),  # re-fired: nothing changes
            conversion("v3", user_id="u5"),  # known customer, no order id
            conversion("r1", order_id="o404", status="refund"),  # unmatched
        ],
        lookups,
    )
    assert lookups.dirty_clicks == {"g1", "g2"}  # g-old was known: kept as it was
    assert lookups.clicks["g-old"] == Click(Touch(T0 - DAY, "orig", "search"), "u1")
    assert lookups.dirty_paths == {"u1", "u2", "a3"}
    assert lookups.dirty_orders == {"o1"}
    assert lookups.dirty_customers == {"u1", "u5"}  # u5 spent: their revenue moves with them
    assert set(lookups.orders) == {"o-old", "o1"}
    assert set(lookups.customers) == {"u1", "u5"}


# spend upsert


def test_spend_key() -> None:
    utc = calendar("UTC")
    assert spend_key(spend("s", 1), utc) == KEY
    assert spend_key(spend("s", 1, period=None, ts=MAY1 - 1), utc) == ("spring", "2024-04-30")
    assert spend_key(spend("s", 1, period="2024-05-01T13"), utc) == ("spring", "2024-05-01T13")
    # The reporting zone's day: 00:30 UTC on May 1st is still April 30th in New York.
    ny = calendar("America/New_York")
    assert spend_key(spend("s", 1, period=None, ts=MAY1 + 30 * MINUTE), ny) == (
        "spring",
        "2024-04-30",
    )


def test_first_spend_report() -> None:
    lookups = Lookups()
    delta = run([spend("s1", 100_000_000)], lookups)
    # A day's spend lands at the start of its period, 2024-05-01T00:00Z, in every window.
    for window, bucket in (("1m", MAY1), ("1h", MAY1), ("1d", MAY1), ("all", 0)):
        for dimension, value in (("channel", "search"), ("total", "total"), ("campaign", "spring")):
            assert delta.sums[window, bucket, dimension, value, "spend"] == 100_000_000
    assert len(delta.sums) == 12
    assert delta.spend == {KEY: SpendFigure(T0, 100_000_000)}
    assert lookups.spend == {KEY: SpendFigure(T0, 100_000_000)}
    assert delta.health["events"] == 1
    assert delta.crowds == {}


def test_hourly_spend_period() -> None:
    delta = run([spend("s1", 7_000_000, period="2024-05-01T13")])
    assert total(delta, "spend", "1h", MAY1 + 13 * HOUR) == 7_000_000
    assert total(delta, "spend", "1d", MAY1) == 7_000_000


def test_spend_without_period_covers_its_day() -> None:
    delta = run([spend("s1", 3_000_000, period=None)])
    assert delta.spend == {KEY: SpendFigure(T0, 3_000_000)}
    assert total(delta, "spend", "1d", MAY1) == 3_000_000


@pytest.mark.parametrize(
    ("before", "after", "added"),
    [
        (80_000_000, 100_000_000, 20_000_000),  # 80 -> 100: add the 20 difference
        (120_000_000, 100_000_000, -20_000_000),  # a correction downwards
    ],
)
def test_newer_spend_replaces_older_adding_the_difference(
    before: int, after: int, added: int
) -> None:
    lookups = Lookups(spend={KEY: SpendFigure(T0 - 1_000, before)})
    delta = run([spend("s2", after, ts=T0)], lookups)
    assert total(delta, "spend") == added
    assert total(delta, "spend", "1d", MAY1) == added
    assert delta.spend == {KEY: SpendFigure(T0, after)}
    assert lookups.spend == {KEY: SpendFigure(T0, after)}
    # a correction downwards is also tallied, so gross spend counters never go down
    assert total(delta, "spend_revised_down") == max(0, -added)


def test_same_spend_figure_again_adds_nothing() -> None:
    delta = run([spend("s2", 100_000_000)], Lookups(spend={KEY: SpendFigure(T0 - 1, 100_000_000)}))
    assert not delta.sums
    assert delta.spend == {KEY: SpendFigure(T0, 100_000_000)}  # newer timestamp stands


def test_spend_report_of_the_same_time_replaces() -> None:
    delta = run([spend("s2", 30_000_000)], Lookups(spend={KEY: SpendFigure(T0, 10_000_000)}))
    assert total(delta, "spend") == 20_000_000
    assert delta.health["stale_spend"] == 0


def test_older_spend_report_is_stale() -> None:
    lookups = Lookups(spend={KEY: SpendFigure(T0 + 1_000, 80_000_000)})
    delta = run([spend("s0", 50_000_000, ts=T0)], lookups)
    assert delta.health["stale_spend"] == 1
    assert not delta.sums
    assert delta.spend == {}
    assert lookups.spend == {KEY: SpendFigure(T0 + 1_000, 80_000_000)}


def test_spend_reports_within_one_batch() -> None:
    newer_last = run([spend("a", 50_000_000, ts=T0), spend("b", 150_000_000, ts=T0 + 1_000)])
    assert total(newer_last, "spend") == 150_000_000  # 50, then +100
    assert newer_last.spend == {KEY: SpendFigure(T0 + 1_000, 150_000_000)}

    older_last = run([spend("a", 150_000_000, ts=T0 + 1_000), spend("b", 50_000_000, ts=T0)])
    assert total(older_last, "spend") == 150_000_000
    assert older_last.health["stale_spend"] == 1


def test_spend_in_another_currency() -> None:
    delta = run([spend("s1", 100_000_000, currency="EUR")])  # 100 EUR * 1.08 = 108 USD
    assert total(delta, "spend") == 108_000_000
    assert delta.spend == {KEY: SpendFigure(T0, 108_000_000)}  # stored converted
    again = run([spend("s2", 108_000_000, ts=T0 + 1)], Lookups(spend=dict(delta.spend)))
    assert not again.sums  # the same amount, now reported in USD


def test_spend_figures_are_per_campaign_and_period() -> None:
    delta = run(
        [
            spend("a", 10_000_000),
            spend("b", 20_000_000, campaign="summer"),
            spend("c", 40_000_000, period="2024-05-02"),
        ]
    )
    assert set(delta.spend) == {KEY, ("summer", "2024-05-01"), ("spring", "2024-05-02")}
    assert total(delta, "spend") == 70_000_000
    assert total(delta, "spend", "1d", MAY1 + DAY) == 40_000_000


def test_empty_batch() -> None:
    lookups = Lookups()
    delta = run([], lookups, watermark=T0)
    assert not delta.sums
    assert delta.crowds == {}
    assert (delta.watermark, delta.newest) == (T0, 0)
    assert lookups == Lookups()


def test_a_currency_without_a_rate_is_skipped_and_counted_never_a_crash() -> None:
    lookups = Lookups()
    delta = run([event("jpy", cost=1_000_000, currency="JPY"), event("usd")], lookups)
    assert delta.health["unconvertible"] == 1
    assert delta.unconvertible == ["jpy"]
    assert lookups.seen == {"usd"}  # it counts once the rate is there and it is replayed
    assert total(delta, "clicks") == 1
