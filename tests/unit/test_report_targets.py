"""The report's rows judged against KPI targets, checked by hand in all three forms.

Three UTC days; search spends 100, 110 and 90 (300 in all, 100 a day on average) for
revenue 250, 260, 150 (660: ROAS 2.2) and 4 + 5 + 3 = 12 conversions (CPA 25);
display spends 50 a day for revenue 40 a day (ROAS 0.8), 10 clicks and one conversion a
day (conversion rate 0.1). The total: 450 spent, 780 earned (ROAS 1.73).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from fractions import Fraction
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.htmltables import read
from tracker.decide.trends import Minimums
from tracker.kpis import Totals
from tracker.report import html, tables
from tracker.report.gather import assemble
from tracker.report.verdicts import BY_DAY, NOT_BY_DAY, ONE_DAY, verdict
from tracker.targets import Target, TargetSet, load
from tracker.windows import WINDOWS, calendar

DAY = WINDOWS["1d"]
HOUR = WINDOWS["1h"]
M = 1_000_000
START = 20_000 * DAY
UTC = calendar("UTC")
NO_BUDGET = {"summary": "No budget to split.", "units": [], "moves": []}
SEARCH = ((100, 250, 4), (110, 260, 5), (90, 150, 3))
"""Spend, revenue and conversions of search on each of the three days."""


def cell(spend: float, revenue: float, conversions: int) -> dict[str, int]:
    return {
        "clicks": 10 * conversions,
        "spend": round(spend * M),
        "revenue@last_click": round(revenue * M),
        "conversions@last_click": conversions * M,
    }


def buckets(starts: Sequence[int]) -> dict[int, dict[tuple[str, str], dict[str, int]]]:
    found: dict[int, dict[tuple[str, str], dict[str, int]]] = {}
    for start, (spend, revenue, conversions) in zip(starts, SEARCH, strict=False):
        found[start] = {
            ("channel", "search"): cell(spend, revenue, conversions),
            ("channel", "display"): cell(50, 40, 1),
            ("total", "total"): {
                "spend": round((spend + 50) * M),
                "revenue": round((revenue + 40) * M),
                "conversions": conversions + 1,
                "clicks": 10 * (conversions + 1),
            },
        }
    return found


def report(targets: dict[str, Any] | None, window: str = "1d", days: int = 3) -> dict[str, Any]:
    """The report of ``days`` days from START in ``window`` buckets (all spend in the first)."""
    starts = UTC.buckets_between(START, START + days * DAY, window)
    return assemble(
        buckets(starts),
        {},
        NO_BUDGET,
        starts=starts,
        window=window,
        dimension="channel",
        model="last_click",
        currency="USD",
        minimums=Minimums(5, 10 * M),
        calendar=UTC,
        grace_ms=HOUR,
        now=START + 10 * DAY,
        targets=load({"version": 4, "saved_at": START, **targets}) if targets else TargetSet(),
    )


TARGETS = {
    "targets": [
        # CPA 25 meets 25.00 exactly; 100 a day on average is within 105 a day, but
        # the second day's 110 is not: off target by its daily spend only.
        {"dimension": "channel", "value": "search", "cpa_max": "25.00", "daily_spend_max": "105"},
        {"dimension": "channel", "value": "display", "roas_min": 0.8, "cvr_min": 0.2},
        {"dimension": "total", "roas_min": 2},
    ]
}


def row(found: dict[str, Any], value: str) -> dict[str, Any]:
    return next(r for r in found["summary"] if r["value"] == value)


def test_a_verdict_by_hand() -> None:
    target = Target("channel", "search", cpa_max=30 * M, roas_min=Fraction(2))
    period = Totals(clicks=100, conversions=10 * M, spend=300 * M, revenue=590 * M)
    found = verdict(target, period, None)
    assert found["met"] == {"cpa_max": True, "roas_min": False}  # CPA 30; ROAS 1.97
    assert (found["on_target"], found["target_status"]) == (False, "off target")
    assert found["target"] == {"cpa_max": 30.0, "roas_min": 2.0}
    none = verdict(None, period, None)
    assert none == {"target": None, "met": None, "on_target": None, "target_status": "no target"}


def test_a_daily_budget_is_missed_when_any_day_is_over_it() -> None:
    target = Target("channel", "search", daily_spend_max=100 * M)
    days = [Totals(spend=80 * M), Totals(spend=101 * M), Totals(spend=60 * M)]
    period = Totals(spend=241 * M)  # 80.33 a day on average: within, yet one day is over
    assert verdict(target, period, days)["met"] == {"daily_spend_max": False}
    assert verdict(target, period, days[::2])["target_status"] == "on target"
    unknown = verdict(target, period, None)
    assert unknown["met"] == {"daily_spend_max": None}
    assert (unknown["on_target"], unknown["target_status"]) == (None, "not judged")


def test_the_report_judges_each_row_over_its_period_and_days() -> None:
    found = report(TARGETS)
    search, display = row(found, "search"), row(found, "display")
    assert search["met"] == {"cpa_max": True, "daily_spend_max": False}
    assert search["target_status"] == "off target"
    assert search["target"] == {"cpa_max": 25.0, "daily_spend_max": 105.0}
    # ROAS 120 / 150 = 0.8 exactly; CVR 3 conversions of 30 clicks = 0.1 < 0.2.
    assert display["met"] == {"roas_min": True, "cvr_min": False}
    assert found["total"]["met"] == {"roas_min": False}  # 780 / 450 = 1.73
    assert found["total"]["target_status"] == "off target"
    assert found["targets"] == {
        "version": 4,
        "saved_at": "2024-10-04T00:00:00Z",
        "daily_spend": BY_DAY,
    }


def test_rows_without_a_target_say_so() -> None:
    found = report({"targets": [{"dimension": "channel", "value": "search", "roas_min": 1}]})
    assert row(found, "search")["target_status"] == "on target"
    assert row(found, "display")["target_status"] == "no target"
    assert found["total"]["target"] is None


@pytest.mark.parametrize(
    ("days", "met", "rule"),
    [(1, False, ONE_DAY), (2, None, NOT_BY_DAY)],
)
def test_hour_buckets_judge_a_daily_budget_only_over_one_whole_day(
    days: int, met: bool | None, rule: str
) -> None:
    # The three figures fall in the first three hours: 300 spent on the first day.
    target = {"dimension": "channel", "value": "search", "daily_spend_max": 99}
    found = report({"targets": [target]}, window="1h", days=days)
    assert found["window"] == "1h"
    assert row(found, "search")["met"] == {"daily_spend_max": met}
    assert found["targets"]["daily_spend"] == rule


def test_the_html_marks_each_row_in_words() -> None:
    found = report(TARGETS)
    page = html.render(found)
    rows = {r: text for r, text in _status_cells(page)}
    assert rows == {
        "search": "off target: daily spend",
        "display": "off target: conv. rate",
    }
    assert "CPA at most 25.00; daily spend at most 105.00" in page
    assert "ROAS at least 0.80; conv. rate at least 20.00%" in page
    assert 'id="total-target"' in page
    assert "Total against its target (ROAS at least 2.00):" in page
    assert BY_DAY in page
    parsed = read(page)
    assert {c.field for c in parsed.cells if c.table == "summary"} >= {"spend", "cpa"}


def test_without_targets_the_html_is_as_before() -> None:
    page = html.render(report(None))
    assert "against target" not in page
    assert 'id="total-target"' not in page
    assert "Targets (version" not in page
    assert 'class="status' not in page


def test_csv_and_json_carry_the_marks() -> None:
    found = report(TARGETS)
    lines = {tuple(line[:4]): line[4] for line in csv.reader(io.StringIO(tables.to_csv(found)))}
    assert lines["summary", "", "search", "target_status"] == "off target"
    assert lines["summary", "", "search", "met.daily_spend_max"] == "false"
    assert lines["summary", "", "search", "met.cpa_max"] == "true"
    assert lines["summary", "", "search", "target.cpa_max"] == "25.0"
    assert lines["summary", "", "display", "on_target"] == "false"
    assert lines["total", "", "", "target_status"] == "off target"
    assert lines["targets", "", "", "version"] == "4"
    plain = {
        tuple(line[:4]): line[4] for line in csv.reader(io.StringIO(tables.to_csv(report(None))))
    }
    assert plain["summary", "", "search", "target_status"] == "no target"
    assert plain["summary", "", "search", "target"] == ""


def _status_cells(page: str) -> list[tuple[str, str]]:
    """(row, text) of every status cell of the summary table."""
    found: list[tuple[str, str]] = []

    class Cells(HTMLParser):
        row = ""
        inside = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            named = dict(attrs)
            if tag == "tr":
                self.row = named.get("data-value") or ""
            self.inside = tag == "td" and "status" in (named.get("class") or "").split()
            if self.inside:
                found.append((self.row, ""))

        def handle_endtag(self, tag: str) -> None:
            self.inside = self.inside and tag != "td"

        def handle_data(self, data: str) -> None:
            if self.inside:
                found[-1] = (found[-1][0], found[-1][1] + data)

    parser = Cells()
    parser.feed(page)
    return found
