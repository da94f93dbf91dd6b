"""Goals and targets through a real exporter and the real ``tracker goals``/``targets`` commands.

Saved whole or not at all, versioned, and read back where they are used: targets in
``/v1/kpis`` rows and ``/metrics``, goals by the collector (tests/e2e/test_oracle.py
follows a page view through the pipeline).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from harness.isolation import isolated_settings
from harness.processes import command
from tests.exporter import Exporter, ask, exporter
from tracker.settings import Settings
from tracker.store import Keys

pytestmark = pytest.mark.services

ADMIN_TOKEN = secrets.token_urlsafe(32)
READ_TOKEN = secrets.token_urlsafe(32)
ADMIN = f"Bearer {ADMIN_TOKEN}"
READ = f"Bearer {READ_TOKEN}"
GOALS = {
    "goals": [
        {"name": "lead", "page_url": "https://shop.example/thank-you*", "value": "10.00"},
        {"name": "signup", "event": "Signed Up"},
    ]
}
TARGETS = {
    "targets": [
        {"dimension": "campaign", "value": "spring", "cpa_max": 30, "roas_min": 2.5},
        {"dimension": "channel", "value": "search", "daily_spend_max": 500},
        {"dimension": "total", "cvr_min": 0.02},
    ]
}


@pytest.fixture(scope="module")
def settings(servers: tuple[str, str]) -> Settings:
    isolated = isolated_settings(servers, "rules")
    return dataclasses.replace(
        isolated, api_tokens=f"read:{READ_TOKEN},admin:{ADMIN_TOKEN}", max_goals=3
    )


@pytest.fixture(scope="module")
def running(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    with exporter(settings, tmp_path_factory.mktemp("rules") / "exporter.log") as started:
        yield started


def call(
    running: Exporter, method: str, path: str, body: Any = None, who: str = ADMIN
) -> tuple[int, Any]:
    raw = None if body is None else orjson.dumps(body)
    answer = ask(running.base, path, method, who, raw)
    return answer.status, orjson.loads(answer.body) if answer.body else None


def test_goals_are_saved_whole_as_versions_and_a_bad_document_saves_nothing(
    running: Exporter,
) -> None:
    assert call(running, "GET", "/v1/goals") == (200, {"version": 0, "saved_at": None})
    status, saved = call(running, "PUT", "/v1/goals", GOALS)
    assert status == 200, saved
    version = saved["version"]
    assert saved["goals"][0] == {
        "name": "lead",
        "page_url": "https://shop.example/thank-you*",
        "value": 10.0,
        "currency": "USD",
    }
    assert "from now on" in saved["applies"]
    status, again = call(running, "PUT", "/v1/goals", GOALS)
    assert (status, again["version"], again["saved_at"]) == (200, version, saved["saved_at"])
    assert again["applies"].startswith("unchanged")

    bad = {"goals": [GOALS["goals"][1], {"name": "lead", "page_url": "thank-you*"}]}
    status, refused = call(running, "PUT", "/v1/goals", bad)
    assert status == 400
    assert list(refused["reasons"]) == ["goals[1].page_url"]
    assert "must start with https://" in refused["error"]
    too_many = {"goals": [{"name": f"g{n}", "event": f"E{n}"} for n in range(4)]}
    assert call(running, "PUT", "/v1/goals", too_many)[0] == 400
    assert call(running, "PUT", "/v1/goals", {"goals": [{"name": "click", "event": "X"}]})[0] == 400

    status, current = call(running, "GET", "/v1/goals")
    assert (status, current["version"], current["goals"]) == (200, version, saved["goals"])
    status, emptied = call(running, "PUT", "/v1/goals", {"goals": []})
    assert (status, emptied["version"]) == (200, version + 1)
    status, earlier = call(running, "GET", f"/v1/goals?version={version}")
    assert (status, earlier["goals"]) == (200, saved["goals"])
    assert call(running, "GET", "/v1/goals?version=99")[0] == 404


def test_only_an_admin_changes_targets_and_a_reader_reads_them(running: Exporter) -> None:
    assert call(running, "PUT", "/v1/targets", TARGETS, who=READ)[0] == 403
    status, saved = call(running, "PUT", "/v1/targets", TARGETS)
    assert status == 200, saved
    status, read = call(running, "GET", "/v1/targets", who=READ)
    assert status == 200
    assert read["targets"] == [
        {"dimension": "campaign", "value": "spring", "cpa_max": 30.0, "roas_min": 2.5},
        {"dimension": "channel", "value": "search", "daily_spend_max": 500.0},
        {"dimension": "total", "cvr_min": 0.02},
    ]
    assert call(running, "GET", "/v1/goals", who=READ)[0] == 403


def test_kpi_rows_and_metrics_carry_the_targets(running: Exporter, settings: Settings) -> None:
    assert call(running, "PUT", "/v1/targets", TARGETS)[0] == 200
    keys = Keys(settings.redis_prefix)
    calendar = settings.calendar()
    now = int(time.time() * 1000)
    day = calendar.bucket_start(now, "1d")
    figures = {  # CPA 40 (over 30), ROAS 3 (over 2.5); the channel spent 600 of 500
        ("campaign", "spring"): {"spend": 400_000_000, "conversions@last_click": 10_000_000},
        ("channel", "search"): {"spend": 600_000_000},
    }
    with redis.Redis.from_url(settings.redis_url) as store:
        for (dimension, value), metrics in figures.items():
            fields = {keys.field(dimension, value, m): n for m, n in metrics.items()}
            fields[keys.field(dimension, value, "revenue@last_click")] = 1_200_000_000
            store.hset(keys.bucket("1d", day, dimension), mapping=fields)

    status, kpis = call(running, "GET", "/v1/kpis?dimension=campaign&window=1d", who=READ)
    assert status == 200, kpis
    [spring] = [r for r in kpis["rows"] if r["value"] == "spring"]
    assert spring["target"] == {"cpa_max": 30.0, "roas_min": 2.5}
    assert spring["met"] == {"cpa_max": False, "roas_min": True}
    assert spring["on_target"] is False
    status, channels = call(running, "GET", "/v1/kpis?dimension=channel&window=1d", who=READ)
    [search] = [r for r in channels["rows"] if r["value"] == "search"]
    assert (search["met"], search["on_target"]) == ({"daily_spend_max": False}, False)
    status, hourly = call(running, "GET", "/v1/kpis?dimension=channel&window=1h", who=READ)
    assert all(r["met"] in (None, {"daily_spend_max": None}) for r in hourly["rows"])

    exposed = ask(running.base, "/metrics", "GET", READ).body.decode()
    assert 'tracker_campaign_target_cpa_max{campaign="spring"} 30.0' in exposed
    assert 'tracker_channel_target_daily_spend_max{channel="search"} 500.0' in exposed
    assert "tracker_target_cvr_min 0.02" in exposed
    assert 'tracker_channel_daily_spend{channel="search"} 600.0' in exposed


def test_the_commands_save_a_file_as_the_api_does(settings: Settings, tmp_path: Path) -> None:
    local = dataclasses.replace(settings, redis_prefix=f"{settings.redis_prefix}-cli")
    path = tmp_path / "goals.json"
    path.write_bytes(orjson.dumps(GOALS))
    saved = command(local, "goals", "--file", str(path))
    assert saved.returncode == 0, saved.stderr
    assert orjson.loads(saved.stdout)["version"] == 1
    shown = command(local, "goals")
    assert orjson.loads(shown.stdout)["goals"][1] == {"name": "signup", "event": "Signed Up"}

    path.write_text('{"targets": [{"dimension": "campaign", "value": "a", "cpa_max": -1}]}')
    refused = command(local, "targets", "--file", str(path))
    assert refused.returncode == 2
    assert "targets[0].cpa_max: must not be negative" in refused.stderr
    assert orjson.loads(command(local, "targets").stdout)["version"] == 0
    missing = command(local, "targets", "--file", str(tmp_path / "nowhere.json"))
    assert (missing.returncode, "nowhere.json" in missing.stderr) == (2, True)
