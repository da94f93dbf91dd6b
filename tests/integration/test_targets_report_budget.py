"""``tracker report``, ``tracker budget --targets`` and ``/metrics`` against saved targets.

Four weeks of day buckets are written in the store's own layout, from curves known
exactly: search earns 1000 s / (s + 100) a day and display 1000 s / (s + 400), one
conversion per 50 of revenue. Both spend 350 a day in the last week, display's last
three days 340, 360 and 350. Targets are saved as ``PUT /v1/targets`` saves them
(:class:`tracker.rulebook.Rulebook`), under the test's own key prefix.

The last three days, by hand: search spends 1,050 for 2,333.33 (ROAS 2.22, CPA 22.50):
on target for CPA 25 and ROAS 2. Display spends 350 a day on average, within 355 a
day, but 360 on the second day: off target. Everything: 2,100 spent for 3,733.33,
ROAS 1.78, off a total ROAS target of 3.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from redis.asyncio import Redis

from harness.processes import command, command_output
from tests.conftest import with_redis
from tracker.asgi import Message, Request, Response
from tracker.attribution import ONE
from tracker.decide.curves import Curve
from tracker.export.decisions import DecisionApi
from tracker.export.metrics import StoreCollector
from tracker.redis_clients import sync_client
from tracker.rulebook import Rulebook
from tracker.settings import Settings
from tracker.store import Keys
from tracker.targets import TargetSet, parse
from tracker.windows import ALL_TIME, WINDOWS, calendar, rfc3339

pytestmark = pytest.mark.services

DAY = WINDOWS["1d"]
M = 1_000_000
END = 20_000 * DAY
"""2024-10-04, UTC: the history and the report end before it."""
DAYS = calendar("UTC").days_before(END, 28)
CURVES = {"search": Curve(1000.0, 100.0), "display": Curve(1000.0, 400.0)}
SWEEP = [100.0 + 500.0 * i / 20 for i in range(21)]
SPEND = {
    "search": [*SWEEP, *[350.0] * 7],
    "display": [*SWEEP, 350.0, 350.0, 350.0, 350.0, 340.0, 360.0, 350.0],
}
TARGETS = {
    "targets": [
        {"dimension": "channel", "value": "search", "cpa_max": 25, "roas_min": 2},
        {"dimension": "channel", "value": "display", "daily_spend_max": 355},
        {"dimension": "total", "roas_min": 3},
    ]
}


async def seed(redis: Redis, keys: Keys) -> None:
    """Each day's channel and total buckets, as the worker would have left them."""
    for index, day in enumerate(DAYS):
        channels: dict[str, dict[str, int]] = {}
        total = {"spend": 0, "revenue": 0, "clicks": 0}
        for channel, curve in CURVES.items():
            spend = SPEND[channel][index]
            revenue = curve.outcome(spend)
            figures = {
                "spend": round(spend * M),
                "clicks": round(spend / 2),
                "revenue@last_click": round(revenue * M),
                "conversions@last_click": round(revenue / 50 * ONE),
            }
            channels[channel] = figures
            total["spend"] += figures["spend"]
            total["revenue"] += figures["revenue@last_click"]
            total["clicks"] += figures["clicks"]
        total["conversions"] = round(total["revenue"] / M / 50)
        await redis.hset(
            keys.bucket("1d", day, "channel"),
            mapping={
                keys.field("channel", c, k): v for c, f in channels.items() for k, v in f.items()
            },
        )
        await redis.hset(
            keys.bucket("1d", day, "total"),
            mapping={keys.field("total", "total", k): v for k, v in total.items()},
        )


def save(settings: Settings, document: dict[str, Any]) -> None:
    """Save ``document`` as the targets in force, checked as the API checks it."""
    checked = TargetSet(targets=parse(document, settings.max_targets)).as_json()

    async def body(redis: Redis, keys: Keys) -> None:
        await Rulebook(redis, keys.targets).save(checked)

    with_redis(settings, body)


def report(settings: Settings, tmp_path: Path, fmt: str) -> str:
    out = tmp_path / f"report.{fmt}"
    span = ("--from", rfc3339(DAYS[-3]), "--to", rfc3339(END))
    command_output(settings, "report", *span, "--format", fmt, "--out", str(out))
    return out.read_text()


def budget(settings: Settings, *args: str) -> dict[str, Any]:
    span = ("--total", "4900", "--period", "7d", "--to", rfc3339(END))
    found: dict[str, Any] = json.loads(command_output(settings, "budget", *span, "--json", *args))
    return found


def unit(found: dict[str, Any], name: str) -> dict[str, Any]:
    return next(u for u in found["units"] if u["value"] == name)


@pytest.fixture
def seeded(settings: Settings) -> Settings:
    with_redis(settings, seed)
    return settings


def test_the_report_marks_rows_on_and_off_target(seeded: Settings, tmp_path: Path) -> None:
    before = json.loads(report(seeded, tmp_path, "json"))
    assert {r["target_status"] for r in before["summary"]} == {"no target"}
    assert before["targets"]["version"] == 0
    assert "against target" not in report(seeded, tmp_path, "html")

    save(seeded, TARGETS)
    found = json.loads(report(seeded, tmp_path, "json"))
    assert found["window"] == "1d"
    rows = {r["value"]: r for r in found["summary"]}
    assert rows["search"]["met"] == {"cpa_max": True, "roas_min": True}
    assert rows["search"]["target_status"] == "on target"
    assert rows["display"]["spend"] == 1050.0  # 350 a day on average: within 355 a day ...
    assert rows["display"]["met"] == {"daily_spend_max": False}  # ... but not on the 2nd
    assert (found["total"]["target_status"], found["targets"]["version"]) == ("off target", 1)

    page = report(seeded, tmp_path, "html")
    assert 'data-status="on target">on target</td>' in page
    assert 'data-status="off target">off target: daily spend</td>' in page
    assert "off target: ROAS</strong>" in page
    lines = csv.reader(io.StringIO(report(seeded, tmp_path, "csv")))
    by_key = {tuple(line[:4]): line[4] for line in lines}
    assert by_key["summary", "", "display", "met.daily_spend_max"] == "false"
    assert by_key["summary", "", "display", "target_status"] == "off target"


def test_budget_takes_targets_as_maximums_only_when_asked(seeded: Settings) -> None:
    save(seeded, TARGETS)
    plain = budget(seeded)
    assert plain["targets"] is None
    assert unit(plain, "display")["recommended"] == pytest.approx(2800, abs=3)  # the curves'
    assert unit(plain, "display")["target_limits"] == []

    found = budget(seeded, "--targets")
    assert found["targets"]["version"] == 1
    display, search = unit(found, "display"), unit(found, "search")
    assert (display["recommended"], search["recommended"]) == (2485.0, 2415.0)  # 355 x 7
    assert display["explanation"].endswith(
        "; at most 2,485 USD by its daily spend target of 355 USD over 7 days"
    )
    assert "the most its target allows" in display["explanation"]
    # Search's ROAS of 2 allows 1000 / 2 - 100 = 400 a day by its curve; its CPA target
    # cannot bound a revenue objective, and says so.
    roas, cpa = search["target_limits"]
    assert (roas["bound"], roas["maximum"]) == ("roas_min", pytest.approx(2800, abs=3))
    assert (cpa["maximum"], cpa["in_force"]) == (None, False)
    assert (
        "its CPA target of 25 USD sets no limit: the curves are fitted on revenue"
        in (search["explanation"])
    )

    lower = budget(seeded, "--targets", "--max", "display=2400")
    assert unit(lower, "display")["recommended"] == 2400.0  # the explicit maximum is lower
    assert unit(lower, "display")["target_limits"][0]["in_force"] is False

    answer = recommendations(seeded, total=4900, to=rfc3339(END), targets="true")
    assert unit(answer, "display")["recommended"] == 2485.0


def test_targets_that_exclude_the_total_are_refused_clearly(seeded: Settings) -> None:
    save(
        seeded,
        {
            "targets": [
                {"dimension": "channel", "value": "search", "daily_spend_max": 300},
                {"dimension": "channel", "value": "display", "daily_spend_max": 300},
            ]
        },
    )
    span = ("--total", "4900", "--to", rfc3339(END), "--targets")
    done = command(seeded, "budget", *span)
    assert done.returncode == 2, done.stderr
    assert (
        "the limits allow between 3,920 USD and 4,200 USD, not 4,900 USD: loosen the minimums, "
        "maximums or the largest change per step; the maximums of display, search come from "
        "targets"
    ) in done.stderr
    assert command(seeded, "budget", *span[:-1]).returncode == 0  # without them, as before


def recommendations(settings: Settings, **query: Any) -> dict[str, Any]:
    """``GET /v1/recommendations`` answered by the exporter's handler on the real Redis."""
    scope = {"type": "http", "method": "GET", "query_string": urlencode(query).encode()}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def body(redis: Redis, keys: Keys) -> Response:
        return await DecisionApi(redis, settings).recommendations(Request(scope, receive))

    answer = with_redis(settings, body)
    assert answer.status == 200, answer.body
    found: dict[str, Any] = orjson.loads(answer.body)
    return found


def test_a_campaign_with_a_target_keeps_its_name_in_metrics_whatever_it_spends(
    settings: Settings,
) -> None:
    """Past ``top_campaigns`` a campaign is summed under ``other``, unless it has a target:
    its CPA alert compares its own figures with it."""
    settings = dataclasses.replace(settings, top_campaigns=1)
    spent = {"big": 900 * M, "small": 3 * M}

    async def body(redis: Redis, keys: Keys) -> None:
        await redis.zadd(keys.rank, dict(spent))
        await redis.hset(
            keys.bucket(ALL_TIME, 0, "campaign"),
            mapping={
                keys.field("campaign", name, "spend"): amount for name, amount in spent.items()
            },
        )

    with_redis(settings, body)

    def spending() -> set[str]:
        """The campaign labels of spend: its alerts' figures, not the target's own gauge."""
        client = sync_client(settings)
        try:
            return {
                sample.labels["campaign"]
                for family in StoreCollector(lambda: client, settings).collect()
                if family.name == "tracker_campaign_spend"
                for sample in family.samples
            }
        finally:
            client.close()

    assert spending() == {"big", "other"}
    save(settings, {"targets": [{"dimension": "campaign", "value": "small", "cpa_max": 40}]})
    assert spending() == {"big", "small", "other"}
