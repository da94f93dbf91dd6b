"""The report's three forms carry the same numbers; its HTML is self-contained."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest

from tests.htmltables import CHARTS, carried, number, read
from tracker.decide.budget import Rules, Unit, plan
from tracker.decide.curves import Curve
from tracker.decide.explain import as_json
from tracker.decide.trends import Minimums
from tracker.report import html, svg, tables
from tracker.report.gather import assemble, auto_window
from tracker.report.progress import Bar
from tracker.types import EpochMs
from tracker.windows import WINDOWS, Calendar, calendar

DAY = WINDOWS["1d"]
HOUR = WINDOWS["1h"]
M = 1_000_000
START = 20_000 * DAY
UTC = calendar("UTC")
BERLIN = calendar("Europe/Berlin")


def metrics(day: int, clicks: int, spend: float, revenue: float) -> dict[str, int]:
    found = {"impressions": clicks * 10, "clicks": clicks, "spend": round(spend * M)}
    for model, share in (("last_click", 1.0), ("linear", 0.8), ("first_click", 0.5)):
        found[f"conversions@{model}"] = round(clicks // 4 * share * M)
        found[f"revenue@{model}"] = round(revenue * share * M)
    for model in ("time_decay", "position_based"):
        found[f"conversions@{model}"] = clicks // 4 * M
        found[f"revenue@{model}"] = round(revenue * M)
    return found


def report(
    days: Calendar = UTC, start: EpochMs = START, now: EpochMs | None = None
) -> dict[str, Any]:
    """Three days from ``start`` (a local day start) and the three before, by hand."""
    starts = [start]
    for _ in range(3):
        starts.insert(0, days.bucket_start(starts[0] - 1, "1d"))
    for _ in range(2):
        starts.append(days.bucket_end(starts[-1], "1d"))
    buckets: dict[int, dict[tuple[str, str], dict[str, int]]] = {}
    for day in range(-3, 3):
        cells = {
            ("channel", "search"): metrics(day, 40 + day, 100.5 + day, 350.25 + 7 * day),
            ("channel", "display"): metrics(day, 20, 80.0, 60.0 - day),
        }
        cells["total", "total"] = {
            "impressions": 600,
            "clicks": 60 + day,
            "spend": round((180.5 + day) * M),
            "conversions": 15,
            "revenue": round((410.25 + 6 * day) * M),
        }
        buckets[starts[day + 3]] = cells
    everything = {
        ("channel", "search"): {
            "customers": 40,
            "customer_revenue": 2000 * M,
            "spend": 600 * M,
            "conversions@last_click": 60 * M,
        }
    }
    units = [
        Unit(
            name,
            [round((50 + 10 * (i % 9)) * M) for i in range(20)],
            [curve.outcome(50 + 10 * (i % 9)) for i in range(20)],
        )
        for name, curve in (("search", Curve(900, 100)), ("display", Curve(200, 300)))
    ]
    budget = as_json(plan(units, Rules(total=700 * M, period_days=7)))
    return assemble(
        buckets,
        everything,
        budget,
        starts=starts[3:],
        window="1d",
        dimension="channel",
        model="last_click",
        currency="USD",
        minimums=Minimums(5, 10 * M),
        calendar=days,
        grace_ms=HOUR,
        now=days.bucket_end(starts[-1], "1d") + HOUR if now is None else now,
    )


def test_the_report_by_hand() -> None:
    found = report()
    assert (found["from"], found["to"]) == ("2024-10-04T00:00:00Z", "2024-10-07T00:00:00Z")
    assert (found["timezone"], found["final"]) == ("UTC", True)
    search = found["summary"][0]
    assert search["value"] == "search"  # biggest spend first
    assert search["spend"] == 304.5  # 100.5 + 101.5 + 102.5
    assert search["revenue"] == 1071.75  # 350.25 + 357.25 + 364.25
    assert search["spend_share"] == round(304.5 / 544.5, 6)
    assert search["clv"] == 50.0  # 2000 over 40 customers
    assert search["clv_cpa"] == 5.0  # CPA 600 / 60 = 10
    assert found["summary"][1]["clv"] is None
    assert found["total"]["spend"] == 544.5
    assert len(found["series"]) == 6
    assert found["trends"]["previous"]["from"] == "2024-10-01T00:00:00Z"
    assert found["attribution"]["rows"][0]["models"]["linear"]["shift"]["revenue"]["relative"] == (
        -0.2
    )
    assert found["budget"]["moves"]


def test_html_is_self_contained_and_shows_the_json_numbers() -> None:
    found = report()
    page = read(html.render(found))
    assert page.urls == []
    assert "http" not in html.render(found)
    assert not page.tags & {"script", "img", "link", "iframe", "object", "embed"}
    assert {k for k, v in page.charts.items() if v > 0} == CHARTS
    checked = 0
    for cell in page.cells:
        if cell.table not in ("summary", "trends", "budget", "tiles"):
            continue
        expected = carried(found, cell)
        assert orjson.loads(cell.value) == expected, cell
        shown = number(cell.text)
        if expected is None or shown is None:
            assert expected is None or cell.text == "small sample", cell
        else:
            assert shown == pytest.approx(expected, abs=0.006 if "%" not in cell.text else 1e-3)
        checked += 1
    assert checked > 40


def test_csv_carries_every_figure_of_the_json() -> None:
    found = report()
    lines = list(csv.reader(io.StringIO(tables.to_csv(found))))
    assert lines[0] == list(tables.COLUMNS)
    assert lines[1:] == [list(line) for line in tables.lines(found)]
    by_key = {tuple(line[:4]): line[4] for line in lines[1:]}
    assert len(by_key) == len(lines) - 1  # every figure named once
    assert by_key["summary", "", "search", "spend"] == "304.5"
    assert by_key["series", "2024-10-04T00:00:00Z", "display", "roas"] == "0.75"
    assert by_key["trends.rows", "", "search", "change.spend.relative"] == str(
        found["trends"]["rows"][1]["change"]["spend"]["relative"]
    )
    assert by_key["trends.rows", "", "search", "cvr_interval.current.0"] != ""
    move = found["budget"]["moves"][0]
    assert by_key["budget.moves", "", f"{move['from']}->{move['to']}", "amount"] == str(
        move["amount"]
    )
    assert by_key["report", "", "", "currency"] == "USD"
    assert by_key["clv", "", "search", "clv_cpa"] == "5.0"
    assert orjson.loads(tables.to_json(found)) == orjson.loads(orjson.dumps(found))


def test_nice_ticks() -> None:
    assert svg.nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert svg.nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.nice_ticks(5, 5) == [5, 5.2, 5.4, 5.6, 5.8, 6.0]


def test_a_line_chart_breaks_at_missing_points() -> None:
    chart = svg.line_chart(
        "t", ["a", "b", "c", "d"], {"x": [1.0, None, 2.0, 3.0]}, str, {"x": "#000"}
    )
    assert chart.count("<path") == 1  # c-d; a alone is a dot
    assert chart.count("<circle") == 1
    assert "<script" not in chart


def test_the_window_follows_the_range() -> None:
    assert auto_window(0, 3 * DAY) == "1d"
    assert auto_window(0, 3 * DAY - 1) == "1h"
    assert auto_window(0, 2 * WINDOWS["1h"]) == "1m"


def test_progress_bar_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    bar = Bar("reading", quiet)
    bar(5, 10)
    bar(10, 10)
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    bar = Bar("reading", shown, force=True)
    bar(10, 10)
    assert shown.getvalue() == "\rreading [" + "#" * 30 + "] 100% 10/10\n"


def test_a_report_without_data_still_renders() -> None:
    empty = assemble(
        {},
        {},
        {"summary": "No budget to split: nothing was spent.", "units": [], "moves": []},
        starts=[START, START + DAY],
        window="1d",
        dimension="campaign",
        model="linear",
        currency="EUR",
        minimums=Minimums(20, 100 * M),
        calendar=UTC,
        grace_ms=HOUR,
        now=START,
    )
    assert empty["summary"] == []
    assert empty["total"]["roas"] is None
    page = read(html.render(empty))
    assert page.urls == []
    assert "No budget to split" in html.render(empty)
    assert tables.to_csv(empty).count("\n") > 10


def test_a_last_day_not_final_is_said_to_be_so() -> None:
    end = START + 3 * DAY
    assert html.not_final(report(now=end + HOUR)) is None
    assert 'id="not-final"' not in html.render(report(now=end + HOUR))
    early = report(now=end + HOUR - 1)
    assert early["final"] is False
    note = "The last day, 2024-10-06 (UTC), is not final yet"
    assert (html.not_final(early) or "").startswith(note)
    assert note in html.render(early)
    assert ("report", "", "", "final", "false") in tables.lines(early)


def test_a_report_in_local_days() -> None:
    """Berlin, 2024-10-27 lasts 25 hours; the page shows local days, the JSON UTC instants."""
    start = BERLIN.period_start("2024-10-26")
    found = report(BERLIN, start, now=BERLIN.period_start("2024-10-29"))
    assert found["from"] == "2024-10-25T22:00:00Z"
    assert found["to"] == "2024-10-28T23:00:00Z"  # local midnight, winter time
    assert found["timezone"] == "Europe/Berlin"
    assert [r["bucket"] for r in found["series"][::2]] == [
        "2024-10-25T22:00:00Z",
        "2024-10-26T22:00:00Z",
        "2024-10-27T23:00:00Z",
    ]
    assert found["trends"]["previous"] == {"from": "2024-10-22T22:00:00Z", "to": found["from"]}
    assert found["total"]["spend"] == 544.5  # the same figures as in UTC days
    page = html.render(found)
    assert "2024-10-26 to 2024-10-29 (end excluded), 1d buckets in Europe/Berlin time" in page
    assert "2024-10-23 to 2024-10-26" in page  # the trends' previous period
    assert all(f">10-{d}<" in page for d in (26, 27, 28))  # chart labels
    assert "The last day, 2024-10-28 (Europe/Berlin), is not final yet" in page
