"""Decision support on the real stack, over four weeks of history from known response curves.

``tracker simulate --curves FILE --backfill-days 28`` sends the history through the
collector; the worker applies it; then trends and the attribution comparison must
equal ``/v1/kpis`` over the same days, the budget recommendation must capture most of
what the true optimum (computed here from the known curves) would gain, and the
report must render in a real headless Chromium without a single network request,
showing the numbers of its JSON form.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from harness.isolation import isolated_settings
from harness.processes import command, http_get, running, wait_for
from tests.e2e.chromium import HEADLESS
from tests.htmltables import CHARTS, carried, number, read
from tests.kafka import caught_up
from tracker.decide.trends import wilson
from tracker.market import ChannelCurve, parse_curves
from tracker.report import svg, tables
from tracker.settings import Settings
from tracker.windows import WINDOWS, rfc3339

pytestmark = pytest.mark.services

DAY = WINDOWS["1d"]
M = 1_000_000
HISTORY_DAYS = 28
SEED = 11
# Four channels whose marginal ROAS at their usual spend differs clearly (search 1.4,
# email 1.8, social 0.8, display 0.5); small order values give many conversions per
# day, so a day's revenue is not all noise.
CURVES: dict[str, dict[str, float]] = {
    "search": {"spend": 400, "saturation": 2400, "half_spend": 600, "cpc": 4, "ctr": 0.5},
    "display": {"spend": 400, "saturation": 700, "half_spend": 300, "cpc": 4, "ctr": 0.5},
    "email": {"spend": 100, "saturation": 800, "half_spend": 150, "cpc": 2, "ctr": 0.5},
    "social": {"spend": 300, "saturation": 900, "half_spend": 500, "cpc": 4, "ctr": 0.5},
}
for _curve in CURVES.values():
    _curve["order_value"] = 10
METRICS = ("impressions", "clicks", "conversions", "spend", "revenue")
CHROMIUM_FLAGS = [
    *HEADLESS,
    "--hide-scrollbars",
    # Nowhere to go: any request the page made would fail, and show in the net log.
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


@dataclass(frozen=True)
class Market:
    settings: Settings
    today: int
    """Start of the UTC day the history ends before."""
    curves: dict[str, ChannelCurve]
    api: str


@pytest.fixture(scope="module")
def market(servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    settings = isolated_settings(servers)
    spec = tmp_path_factory.mktemp("curves") / "curves.json"
    spec.write_bytes(orjson.dumps(CURVES))
    api = f"http://127.0.0.1:{settings.exporter_port}"
    with running(settings, "worker", "collector", "serve"):
        now = int(time.time() * 1000)
        result = command(
            settings,
            *("simulate", "--curves", str(spec), "--backfill-days", str(HISTORY_DAYS)),
            *("--duration", "0", "--seed", str(SEED)),
        )
        assert result.returncode == 0, result.stderr[-2000:]
        wait_for(
            lambda: caught_up(settings.kafka_bootstrap, settings.app_id, settings.events_topic),
            timeout=300,
            what="the history applied",
        )
        curves = {c.channel: c for c in parse_curves(str(spec))}
        yield Market(settings, now - now % DAY, curves, api)


def get(market: Market, path: str, **params: Any) -> tuple[int, Any]:
    status, body = http_get(f"{market.api}{path}?{urllib.parse.urlencode(params)}", timeout=30)
    return status, orjson.loads(body)


def ok(market: Market, path: str, **params: Any) -> Any:
    status, body = get(market, path, **params)
    assert status == 200, body
    return body


def kpi_sums(market: Market, start: int, end: int, model: str = "last_click") -> dict[str, Any]:
    """Per channel, /v1/kpis' day rows over [start, end) added up in exact integers."""
    rows = ok(
        market, "/v1/kpis", dimension="channel", window="1d", model=model, to=end, **{"from": start}
    )["rows"]
    sums: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        sums[row["value"]].update(
            impressions=row["impressions"],
            clicks=row["clicks"],
            conversions=round(row["conversions"] * M),
            spend=round(row["spend"] * M),
            revenue=round(row["revenue"] * M),
        )
    return sums


def exact(figures: dict[str, Any]) -> dict[str, int]:
    return {
        "impressions": figures["impressions"],
        "clicks": figures["clicks"],
        "conversions": round(figures["conversions"] * M),
        "spend": round(figures["spend"] * M),
        "revenue": round(figures["revenue"] * M),
    }


def test_trends_equal_kpis_over_the_same_days(market: Market) -> None:
    start, end = market.today - 7 * DAY, market.today
    found = ok(market, "/v1/trends", dimension="channel", window="1d", to=end, **{"from": start})
    assert found["current"] == {"from": rfc3339(start), "to": rfc3339(end)}
    assert found["previous"] == {"from": rfc3339(start - 7 * DAY), "to": rfc3339(start)}
    now, before = kpi_sums(market, start, end), kpi_sums(market, start - 7 * DAY, start)
    rows = {r["value"]: r for r in found["rows"]}
    assert set(rows) == set(now) == set(CURVES)
    for channel, row in rows.items():
        current = exact(row["current"])
        assert current == dict(now[channel]), channel
        assert exact(row["previous"]) == dict(before[channel]), channel
        # the KPIs by hand, from the sums
        assert row["current"]["ctr"] == current["clicks"] / current["impressions"]
        assert row["current"]["roas"] == current["revenue"] / current["spend"]
        assert row["current"]["cpa"] == round(current["spend"] / current["conversions"], 6)
        assert (
            row["change"]["spend"]["absolute"] == (current["spend"] - before[channel]["spend"]) / M
        )
        assert row["cvr_interval"]["current"] == list(
            wilson(current["conversions"] / M, current["clicks"]) or ()
        )
    assert found["movers"]["revenue"]  # the days differ, so something moved


def test_a_one_day_trend_is_the_kpi_row(market: Market) -> None:
    start = market.today - 2 * DAY
    found = ok(
        market, "/v1/trends", dimension="channel", window="1d", to=start + DAY, **{"from": start}
    )
    kpis = ok(
        market, "/v1/kpis", dimension="channel", window="1d", to=start + DAY, **{"from": start}
    )
    for kpi in kpis["rows"]:
        (trend,) = (r for r in found["rows"] if r["value"] == kpi["value"])
        assert trend["current"] == {k: kpi[k] for k in trend["current"]}


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"dimension": "country"}, "dimension must be one of campaign, channel, goal, total"),
        ({"window": "1w"}, "window must be one of 1m, 1h, 1d"),
        ({"model": "u_shaped"}, "model must be one of"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from must be before to"),
        ({"from": "yesterday"}, "from: 'yesterday' is neither epoch milliseconds nor RFC 3339"),
        ({"window": "1m", "from": "0", "to": str(2000 * 60_000)}, "range spans 2000 1m buckets"),
        ({"top": "0"}, "top must be a whole number from 1 to 100"),
    ],
)
def test_trends_refuse_what_kpis_refuse(
    market: Market, params: dict[str, str], reason: str
) -> None:
    status, body = get(market, "/v1/trends", **params)
    assert status == 400
    assert reason in body["error"]
    if "top" not in params:
        status, same = get(market, "/v1/kpis", **params)
        assert (status, same) == (400, body)


def test_attribution_comparison_equals_kpis_per_model(market: Market) -> None:
    start, end = market.today - 7 * DAY, market.today
    found = ok(market, "/v1/attribution", dimension="channel", to=end, **{"from": start})
    rows = {r["value"]: r for r in found["rows"]}
    base = kpi_sums(market, start, end)
    for model in ("last_click", "first_click", "linear", "time_decay", "position_based"):
        sums = kpi_sums(market, start, end, model)
        for channel, figures in sums.items():
            credited = rows[channel]["models"][model]
            assert round(credited["revenue"] * M) == figures["revenue"], (model, channel)
            assert round(credited["conversions"] * M) == figures["conversions"], (model, channel)
            if model != "last_click":
                shift = credited["shift"]["revenue"]["absolute"]
                assert round(shift * M) == figures["revenue"] - base[channel]["revenue"]
    # 30% of buyers saw another channel's page first: first click moves credit around
    verdicts = " ".join(r["verdict"] for r in found["rows"])
    assert "under-credits" in verdicts
    assert "over-credits" in verdicts


def true_revenue(curves: dict[str, ChannelCurve], split: dict[str, int], days: int) -> float:
    """Expected revenue over ``days`` of a split (micro-units), by the known curves."""
    return sum(days * curves[u].revenue(amount / M / days) for u, amount in split.items())


def true_optimum(
    curves: dict[str, ChannelCurve], bounds: dict[str, tuple[int, int]], total: int, days: int
) -> dict[str, int]:
    """The best split within ``bounds`` by the known curves: greedy, one unit of money at a
    time to the highest true marginal revenue (optimal for concave curves)."""
    split = {u: lo for u, (lo, _) in bounds.items()}
    left = total - sum(split.values())
    while left > 0:
        room = [u for u in split if split[u] < bounds[u][1]]
        best = max(room, key=lambda u: curves[u].marginal(split[u] / M / days))
        step = min(M, bounds[best][1] - split[best], left)
        split[best] += step
        left -= step
    return split


def test_budget_recommendation_captures_the_true_optimum(market: Market) -> None:
    recent = kpi_sums(market, market.today - 7 * DAY, market.today)
    total = sum(s["spend"] for s in recent.values()) // M * M  # whole units: quantum 1 USD
    found = ok(market, "/v1/recommendations", total=total // M, period="7d", to=market.today)
    assert found["nothing_because"] is None
    units = {u["value"]: u for u in found["units"]}
    assert set(units) == set(CURVES)
    start = {u: round(x["start"] * M) for u, x in units.items()}
    recommended = {u: round(x["recommended"] * M) for u, x in units.items()}
    bounds = {u: (round(x["low"] * M), round(x["high"] * M)) for u, x in units.items()}
    # the total, exactly; every limit kept; the start is each unit's last 7 days, scaled
    assert sum(recommended.values()) == total
    assert sum(start.values()) == total
    for unit, amount in recommended.items():
        assert units[unit]["recent_spend"] * M == pytest.approx(recent[unit]["spend"])
        assert (
            abs(
                start[unit]
                - total * recent[unit]["spend"] / sum(s["spend"] for s in recent.values())
            )
            <= M
        )
        lo, hi = bounds[unit]
        assert lo <= amount <= hi
        assert abs(amount - start[unit]) <= 0.2 * start[unit] + 1
        assert amount % M == 0
    optimum = true_optimum(market.curves, bounds, total, 7)
    before = true_revenue(market.curves, start, 7)
    gain = true_revenue(market.curves, recommended, 7) - before
    best = true_revenue(market.curves, optimum, 7) - before
    captured = gain / best
    print(f"captured {captured:.1%} of the true optimum's gain ({gain:.0f} of {best:.0f})")
    assert captured >= 0.8
    # the right direction: wherever the optimum moves a unit by over 5%, so does the advice
    for unit in units:
        if abs(optimum[unit] - start[unit]) > 0.05 * start[unit]:
            assert (recommended[unit] > start[unit]) == (optimum[unit] > start[unit]), unit
    # each move in a sentence with its numbers, from low to high marginal return
    for move in found["moves"]:
        assert move["from_marginal"] < move["to_marginal"]
        assert move["explanation"].startswith(f"move {move['amount']:,.0f} USD from {move['from']}")
        assert "marginal ROAS" in move["explanation"]

    cli = command(
        market.settings,
        *("budget", "--total", str(total // M), "--period", "7d"),
        *("--to", str(market.today), "--json"),
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == found  # the same recommendation on the command line


def test_budget_limits_are_kept_or_refused(market: Market) -> None:
    found = ok(
        market,
        "/v1/recommendations",
        total=5000,
        to=market.today,
        min="email=700",  # above the most the step allows email (about 500)
        max="search=1500",  # below search's start (about 1,670)
    )
    units = {u["value"]: u for u in found["units"]}
    assert units["email"]["recommended"] == 700  # the explicit minimum wins over the step
    assert units["search"]["recommended"] <= 1500
    assert sum(round(u["recommended"] * M) for u in units.values()) == 5000 * M
    status, body = get(market, "/v1/recommendations", total=100, to=market.today, min="search=500")
    assert status == 400
    assert "loosen the minimums" in body["error"]
    for params, reason in (
        ({}, "total is required"),
        ({"total": "-5"}, "total: must not be negative"),
        ({"total": "10", "period": "1w"}, "not a period such as 7d"),
        ({"total": "10", "objective": "clicks"}, "objective must be one of"),
        ({"total": "10", "max_change": "2"}, "max_change must be a number from 0 to 1"),
    ):
        status, body = get(market, "/v1/recommendations", **params)
        assert (status, reason in body["error"]) == (400, True), body


def test_too_little_history_recommends_nothing_and_says_why(market: Market) -> None:
    first = market.today - HISTORY_DAYS * DAY
    to = first + 6 * DAY  # six days of history
    found = ok(market, "/v1/recommendations", total=7000, period="7d", to=to)
    assert found["moves"] == []
    assert found["nothing_because"] == "no unit has enough history for a response curve"
    assert found["summary"].startswith("No change recommended")
    for unit in found["units"]:
        assert unit["recommended"] == unit["start"]
        assert unit["kept_because"] == "only 6 days with spend in its history, 14 needed"
        assert unit["explanation"].endswith("only 6 days with spend in its history, 14 needed")
    assert sum(round(u["recommended"] * M) for u in found["units"]) == 7000 * M
    cli = command(market.settings, "budget", "--total", "7000", "--to", str(to))
    assert cli.returncode == 0, cli.stderr
    assert "No change recommended: no unit has enough history" in cli.stdout
    assert "6 days with spend in its history, 14 needed" in cli.stdout


def browse(chromium: str, page: Path, work: Path, *action: str) -> tuple[str, list[str]]:
    """Run headless Chromium on ``page``; its stdout, and the URLs the page itself asked for.

    The net log records every request; Chromium's own (update checks and the like,
    refused by the proxy to nowhere) have no initiator, a page's have its origin.
    """
    profile = work / f"profile-{len(list(work.iterdir()))}"
    netlog = profile.with_suffix(".netlog.json")
    result = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--log-net-log={netlog}",
            *action,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TZ": "UTC"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = json.loads(netlog.read_text())
    kinds = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    asked = [
        event["params"]["url"]
        for event in log["events"]
        if kinds[event["type"]] == "URL_REQUEST_START_JOB"
        and "url" in event.get("params", {})
        and event["params"].get("initiator") != "not an origin"
    ]
    return result.stdout, asked


def write_report(market: Market, fmt: str, out: Path) -> None:
    result = command(
        market.settings,
        *("report", "--from", str(market.today - 14 * DAY), "--to", str(market.today)),
        *("--format", fmt, "--out", str(out)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal


def test_report_renders_offline_with_the_json_numbers(
    market: Market, chromium: str, tmp_path: Path
) -> None:
    for fmt in ("json", "csv", "html"):
        write_report(market, fmt, tmp_path / f"report.{fmt}")
    report = json.loads((tmp_path / "report.json").read_text())
    text = (tmp_path / "report.html").read_text()
    assert "http://" not in text
    assert "https://" not in text

    # the CSV carries the JSON's figures (all but the time it was written)
    lines = list(csv.reader(io.StringIO((tmp_path / "report.csv").read_text())))
    expected = [list(line) for line in tables.lines(report)]
    assert [x for x in lines[1:] if x[3] != "generated_at"] == [
        x for x in expected if x[3] != "generated_at"
    ]

    # a control: the net log does catch a page that asks for something
    control = tmp_path / "control.html"
    control.write_text('<img src="http://example.com/pixel.gif">')
    _, asked = browse(chromium, control, tmp_path, "--dump-dom")
    assert asked == ["http://example.com/pixel.gif"]

    dom, asked = browse(chromium, tmp_path / "report.html", tmp_path, "--dump-dom")
    assert asked == []
    page = read(dom)
    assert page.urls == []
    drawn = {figure for figure, marks in page.charts.items() if marks > 0}
    assert drawn == CHARTS
    checked = 0
    for cell in page.cells:
        if cell.table not in ("summary", "budget", "tiles"):
            continue
        want = carried(report, cell)
        assert json.loads(cell.value) == want, cell
        shown = number(cell.text)
        assert (shown is None) == (want is None), cell
        if want is not None:
            assert shown == pytest.approx(want, abs=0.005 if "%" not in cell.text else 5e-4)
        checked += 1
    assert checked >= 4 * 10 + 4 * 6

    _, asked = browse(
        chromium,
        tmp_path / "report.html",
        tmp_path,
        "--window-size=1100,3600",
        f"--screenshot={tmp_path / 'report.png'}",
    )
    assert asked == []
    with Image.open(tmp_path / "report.png") as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    pixels = {rgb: count for count, rgb in colours}
    for colour in svg.PALETTE[:4]:  # the four channels' colours are painted
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert pixels.get(rgb, 0) > 200, colour

    _, asked = browse(
        chromium,
        tmp_path / "report.html",
        tmp_path,
        "--no-pdf-header-footer",
        f"--print-to-pdf={tmp_path / 'report.pdf'}",
    )
    assert asked == []
    pdf = (tmp_path / "report.pdf").read_bytes()
    pages = re.findall(rb"/Type\s*/Page(?!s)", pdf)
    assert 1 <= len(pages) <= 4
    boxes = re.findall(rb"/MediaBox \[0 0 ([0-9.]+) ([0-9.]+)\]", pdf)
    assert boxes
    for width, height in boxes:  # A4 is 210 x 297 mm: 595 x 842 points
        assert (float(width), float(height)) == pytest.approx((595.3, 841.9), abs=1)
