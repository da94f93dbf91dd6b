"""The simulated market: curves parsed with clear errors, days that follow them."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from tracker.market import PRESET, ChannelCurve, day_events, day_spend, parse_curves
from tracker.windows import DAY, calendar

START = 20_000 * DAY  # 2024-10-04, a day start
UTC = calendar("UTC")
NEW_YORK = calendar("America/New_York")
CURVES = [
    ChannelCurve("search", spend=400, saturation=2400, half_spend=600, cpc=4, ctr=0.5),
    ChannelCurve("display", spend=300, saturation=700, half_spend=300, cpc=4, ctr=0.5),
]


def test_the_preset_and_its_truth() -> None:
    curves = parse_curves("default")
    assert [c.channel for c in curves] == list(PRESET)
    search = curves[0]
    assert search.campaign == "search-curve"
    assert search.revenue(2500) == 4500.0  # half of saturation at half_spend
    assert search.marginal(0) == 9000 / 2500


def test_curves_from_json_text_and_file(tmp_path: Path) -> None:
    text = '{"email": {"spend": 100, "saturation": 800, "half_spend": 150}}'
    (curve,) = parse_curves(text)
    assert (curve.channel, curve.cpc, curve.vary) == ("email", 2.0, 0.5)
    path = tmp_path / "curves.json"
    path.write_bytes(orjson.dumps({"social": {"spend": 1, "saturation": 2, "half_spend": 3}}))
    assert parse_curves(str(path))[0].channel == "social"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[]", "JSON object"),
        ('{"tv": {}}', "'tv' is not a channel"),
        ('{"email": {"spend": 1, "saturation": 2, "half_spend": 3, "x": 1}}', "unknown"),
        ('{"email": {"spend": 1, "saturation": 2}}', "email: .*half_spend"),
        ('{"email": {"spend": 0, "saturation": 2, "half_spend": 3}}', "spend must be above 0"),
        ('{"email": {"spend": 1, "saturation": 2, "half_spend": 3, "vary": 1}}', "vary"),
    ],
)
def test_bad_curves_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_curves(text)


def test_a_day_follows_its_curves() -> None:
    events = day_events(CURVES, START, 3, UTC)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert all(START <= e["ts"] < START + DAY for e in events)
    spend = day_spend(CURVES, START, 3, UTC)
    for curve in CURVES:
        assert 0.5 * curve.spend <= spend[curve.channel] <= 1.5 * curve.spend
    # the last hourly report of each campaign is the day's whole spend
    reports: dict[str, list[str]] = defaultdict(list)
    for e in events:
        if e["type"] == "spend":
            reports[e["channel"]].append(e["cost"])
    assert {c: float(r[-1]) for c, r in reports.items()} == spend
    assert all(len(r) == 24 for r in reports.values())
    assert {e["period"] for e in events if e["type"] == "spend"} == {"2024-10-04"}
    # every conversion follows a click of the same visitor
    clicks = {e["click_id"]: e for e in events if e["type"] == "click"}
    kinds = Counter(e["type"] for e in events)
    assert kinds["conversion"] > 0
    for e in events:
        if e["type"] == "conversion":
            click = clicks[e["click_id"]]
            assert click["anonymous_id"] == e["anonymous_id"]
            assert click["ts"] < e["ts"]
    # the funnel: clicks = spend / cpc (at least one per conversion), impressions = clicks / ctr
    for curve in CURVES:
        mine = [c for c in clicks.values() if c["channel"] == curve.channel]
        converted = sum(
            1 for e in events if e["type"] == "conversion" and clicks[e["click_id"]] in mine
        )
        assert len(mine) == max(round(spend[curve.channel] / curve.cpc), converted)
        shown = sum(
            1 for e in events if e["type"] == "impression" and e["channel"] == curve.channel
        )
        assert shown == round(len(mine) / curve.ctr)
    assert kinds["pageview"] > 0  # assists from the other channel


def test_the_same_seed_gives_the_same_figures() -> None:
    def figures(seed: int) -> list[tuple[str, int, object]]:
        return [
            (e["type"], e["ts"], e.get("value") or e.get("cost"))
            for e in day_events(CURVES, START, seed, UTC)
        ]

    assert figures(1) == figures(1)
    assert figures(1) != figures(2)
    assert day_spend(CURVES, START, 1, UTC) != day_spend(CURVES, START + DAY, 1, UTC)


def test_a_day_sent_twice_has_the_same_event_ids() -> None:
    """So a backfill run again, or a simulator restarted, is counted once."""
    ids = [e["event_id"] for e in day_events(CURVES, START, 1, UTC)]
    assert ids == [e["event_id"] for e in day_events(CURVES, START, 1, UTC)]
    assert len(set(ids)) == len(ids)
    others = {e["event_id"] for e in day_events(CURVES, START + DAY, 1, UTC)}
    others |= {e["event_id"] for e in day_events(CURVES, START, 2, UTC)}
    assert not others & set(ids)


def test_revenue_over_many_days_follows_the_curve() -> None:
    curve = ChannelCurve("search", spend=400, saturation=2400, half_spend=600, order_value=10)
    expected = revenue = 0.0
    for day in range(20):
        start = START + day * DAY
        spend = day_spend([curve], start, 1, UTC)["search"]
        expected += curve.revenue(spend)
        revenue += sum(e["value"] for e in day_events([curve], start, 1, UTC) if "value" in e)
    assert revenue == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize(
    ("day", "hours"), [("2024-03-10", 23), ("2024-11-03", 25), ("2024-05-01", 24)]
)
def test_a_local_day_of_23_or_25_hours(day: str, hours: int) -> None:
    """New York: the day's events lie in the local day, one spend report an hour, its period."""
    start = NEW_YORK.period_start(day)
    end = NEW_YORK.bucket_end(start, "1d")
    assert end - start == hours * 3_600_000
    events = day_events(CURVES, start, 3, NEW_YORK)
    assert all(start <= e["ts"] < end for e in events)
    assert {NEW_YORK.day_of(e["ts"]) for e in events} == {day}
    spend = day_spend(CURVES, start, 3, NEW_YORK)
    reports: dict[str, list[dict[str, object]]] = defaultdict(list)
    for e in events:
        if e["type"] == "spend":
            reports[e["channel"]].append(e)
    for channel, mine in reports.items():
        assert len(mine) == hours
        assert {r["period"] for r in mine} == {day}
        assert mine[-1]["ts"] == end - 1
        assert float(str(mine[-1]["cost"])) == spend[channel]


def test_local_days_draw_their_own_figures() -> None:
    """Europe/London's 23-hour 2024-03-31 and the day after start on the same UTC day."""
    london = calendar("Europe/London")
    first = london.period_start("2024-03-31")
    second = london.bucket_end(first, "1d")
    assert first // DAY == second // DAY
    assert day_spend(CURVES, first, 1, london) != day_spend(CURVES, second, 1, london)
