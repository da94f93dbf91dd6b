from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from tracker.events import Event
from tracker.money import MoneyError
from tracker.stream.aggregate import Cell, Delta, SpendFigure, fold, spend_key

# 2024-05-01T00:00:00Z = 19_844 days * 86_400_000 ms; T0 is 10:00 that day.
DAY = 1_714_521_600_000
HOUR = 3_600_000
MINUTE = 60_000
T0 = DAY + 10 * HOUR  # 1_714_557_600_000
RATES = {"USD": 1.0, "EUR": 1.08}
KEY = ("spring", "2024-05-01")


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


def run(
    events: Iterable[Event],
    *,
    seen_before: frozenset[str] = frozenset(),
    watermark: int = 0,
    grace_ms: int = HOUR,
    spend_before: Mapping[tuple[str, str], SpendFigure] | None = None,
) -> Delta:
    return fold(
        events,
        seen_before=seen_before,
        watermark=watermark,
        grace_ms=grace_ms,
        rates=RATES,
        spend_before=spend_before or {},
    )


def total(delta: Delta, metric: str, window: str = "all", bucket: int = 0) -> int:
    return delta.sums[window, bucket, "total", "total", metric]


def test_click_lands_in_every_window_and_dimension() -> None:
    delta = run([event("e1")])
    buckets = {"1m": T0, "1h": T0, "1d": DAY, "all": 0}
    dimensions = [("channel", "search"), ("total", "total"), ("campaign", "spring")]
    expected: dict[Cell, int] = {
        (window, start, dimension, value, "clicks"): 1
        for window, start in buckets.items()
        for dimension, value in dimensions
    }
    assert dict(delta.sums) == expected  # 4 windows x 3 dimensions
    assert delta.seen == {"e1"}
    assert dict(delta.health) == {"events": 1}
    assert (delta.watermark, delta.newest) == (T0, T0)


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
    delta = run([event("e1"), event("e1", received_at=T0 + 99), event("e2")])
    assert total(delta, "clicks") == 2
    assert delta.health["duplicates"] == 1
    assert delta.health["events"] == 2
    assert delta.seen == {"e1", "e2"}
    assert delta.newest == T0  # the duplicate's received_at does not count


def test_duplicates_seen_before() -> None:
    delta = run([event("e1"), event("e2")], seen_before=frozenset({"e1"}))
    assert total(delta, "clicks") == 1
    assert delta.health["duplicates"] == 1
    assert delta.seen == {"e2"}  # only what this batch accepted


def test_late_beyond_grace_dropped_within_grace_kept() -> None:
    # watermark T0, grace 60 s: the horizon is T0 - 60_000
    delta = run(
        [event("late", ts=T0 - 60_001), event("edge", ts=T0 - 60_000)],
        watermark=T0,
        grace_ms=60_000,
    )
    assert delta.health["late"] == 1
    assert delta.health["events"] == 1
    assert delta.seen == {"edge"}  # a late event is not remembered
    assert total(delta, "clicks") == 1
    assert delta.watermark == T0  # an older event does not move it back


def test_watermark_advances_within_the_batch() -> None:
    delta = run(
        [
            event("ahead", ts=T0 + 2 * MINUTE),
            event("behind", ts=T0),  # 120 s behind the new watermark: late
            event("within", ts=T0 + MINUTE),  # 60 s behind: within grace
        ],
        grace_ms=MINUTE,
    )
    assert delta.health["late"] == 1
    assert delta.seen == {"ahead", "within"}
    assert delta.watermark == T0 + 2 * MINUTE


def test_bots_counted_per_campaign_never_in_kpis() -> None:
    delta = run(
        [
            event("b1", bot=True, cost=1_000_000),
            event("b2", "impression", bot=True),
            event("b3", bot=True, campaign=None),
            event("human"),
        ]
    )
    assert delta.sums["all", 0, "campaign", "spring", "bots"] == 2
    assert delta.sums["all", 0, "campaign", "", "bots"] == 1  # no campaign: empty value
    assert total(delta, "clicks") == 1  # the human only
    assert total(delta, "impressions") == 0
    assert total(delta, "spend") == 0
    assert delta.health["bots"] == 3
    assert delta.health["events"] == 4
    assert "b1" in delta.seen
    bot_cells = [cell for cell in delta.sums if cell[4] == "bots"]
    assert {cell[:2] for cell in bot_cells} == {("all", 0)}  # all-time only


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


def test_missing_rate_raises() -> None:
    with pytest.raises(MoneyError, match="'GBP'"):
        run([event("c", cost=1_000_000, currency="GBP")])


def test_conversions_per_goal() -> None:
    delta = run(
        [
            event("a", "conversion", goal="purchase", status="approved", value=5_000_000),
            event("b", "conversion", goal="purchase", status="approved", value=2_500_000),
            event("c", "conversion", goal="signup", status="approved"),
        ]
    )
    assert total(delta, "conversions") == 3
    assert total(delta, "conversions:purchase") == 2
    assert total(delta, "conversions:signup") == 1
    assert total(delta, "revenue") == 7_500_000  # 5.00 + 2.50


@pytest.mark.parametrize(
    ("status", "conversions", "revenue"),
    [("approved", 1, 5_000_000), ("pending", 1, 5_000_000), ("rejected", 0, 0), ("refund", 0, 0)],
)
def test_conversion_status(status: str, conversions: int, revenue: int) -> None:
    delta = run([event("v", "conversion", goal="purchase", status=status, value=5_000_000)])
    assert total(delta, "conversions") == conversions
    assert total(delta, "conversions:purchase") == conversions
    assert total(delta, "revenue") == revenue
    assert delta.health["events"] == 1  # accepted and remembered either way
    if not conversions:
        assert not delta.sums


def test_conversion_without_campaign_lands_in_channel_and_total() -> None:
    delta = run([event("v", "conversion", campaign=None, goal="purchase", status="approved")])
    assert {(cell[2], cell[3]) for cell in delta.sums} == {
        ("channel", "search"),
        ("total", "total"),
    }
    assert delta.sums["all", 0, "channel", "search", "conversions"] == 1


# spend upsert


def test_spend_key() -> None:
    assert spend_key(spend("s", 1)) == KEY
    assert spend_key(spend("s", 1, period=None, ts=DAY - 1)) == ("spring", "2024-04-30")
    assert spend_key(spend("s", 1, period="2024-05-01T13")) == ("spring", "2024-05-01T13")


def test_first_spend_report() -> None:
    delta = run([spend("s1", 100_000_000)])
    # A day's spend lands at the start of its period, 2024-05-01T00:00Z, in every window.
    for window, bucket in (("1m", DAY), ("1h", DAY), ("1d", DAY), ("all", 0)):
        for dimension, value in (("channel", "search"), ("total", "total"), ("campaign", "spring")):
            assert delta.sums[window, bucket, dimension, value, "spend"] == 100_000_000
    assert len(delta.sums) == 12
    assert delta.spend == {KEY: SpendFigure(T0, 100_000_000)}
    assert delta.health["events"] == 1


def test_hourly_spend_period() -> None:
    delta = run([spend("s1", 7_000_000, period="2024-05-01T13")])
    assert total(delta, "spend", "1h", DAY + 13 * HOUR) == 7_000_000
    assert total(delta, "spend", "1d", DAY) == 7_000_000


def test_spend_without_period_covers_its_day() -> None:
    delta = run([spend("s1", 3_000_000, period=None)])
    assert delta.spend == {KEY: SpendFigure(T0, 3_000_000)}
    assert total(delta, "spend", "1d", DAY) == 3_000_000


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
    delta = run(
        [spend("s2", after, ts=T0)],
        spend_before={KEY: SpendFigure(T0 - 1_000, before)},
    )
    assert total(delta, "spend") == added
    assert total(delta, "spend", "1d", DAY) == added
    assert delta.spend == {KEY: SpendFigure(T0, after)}


def test_same_spend_figure_again_adds_nothing() -> None:
    delta = run([spend("s2", 100_000_000)], spend_before={KEY: SpendFigure(T0 - 1, 100_000_000)})
    assert not delta.sums
    assert delta.spend == {KEY: SpendFigure(T0, 100_000_000)}  # newer timestamp stands


def test_older_spend_report_is_stale() -> None:
    delta = run(
        [spend("s0", 50_000_000, ts=T0)],
        spend_before={KEY: SpendFigure(T0 + 1_000, 80_000_000)},
    )
    assert delta.health["stale_spend"] == 1
    assert not delta.sums
    assert delta.spend == {}


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
    again = run([spend("s2", 108_000_000, ts=T0 + 1)], spend_before=delta.spend)
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
    assert total(delta, "spend", "1d", DAY + 86_400_000) == 40_000_000


def test_empty_batch() -> None:
    delta = run([], watermark=T0)
    assert not delta.sums
    assert (delta.watermark, delta.newest) == (T0, 0)
    assert not delta.seen
