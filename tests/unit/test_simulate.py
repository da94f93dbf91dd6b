"""The simulator's sample of realistic events, the benchmarks' input."""

from __future__ import annotations

from typing import Any

from tracker import simulate

NOW_MS = 1_790_000_000_000


def without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    minted = {"event_id", "anonymous_id", "click_id", "order_id"}
    return [{k: v for k, v in event.items() if k not in minted} for event in events]


def test_sample_has_the_count_asked_of_whole_funnels_from_the_start() -> None:
    events = simulate.sample(500, seed=3, now_ms=NOW_MS)
    assert len(events) == 500
    assert events[0]["type"] == "impression"
    kinds = {event["type"] for event in events}
    assert kinds == {"impression", "click", "conversion"}
    clicks = {event["click_id"] for event in events if event["type"] == "click"}
    assert all(e["click_id"] in clicks for e in events if e["type"] == "conversion")
    assert len({event["campaign"] for event in events}) <= 20


def test_sample_repeats_for_a_seed_but_for_minted_ids() -> None:
    first = simulate.sample(300, seed=5, now_ms=NOW_MS, campaign_count=50)
    again = simulate.sample(300, seed=5, now_ms=NOW_MS, campaign_count=50)
    other = simulate.sample(300, seed=6, now_ms=NOW_MS, campaign_count=50)
    assert without_ids(first) == without_ids(again)
    assert without_ids(first) != without_ids(other)
    assert [e["event_id"] for e in first] != [e["event_id"] for e in again]
