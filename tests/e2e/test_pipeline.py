"""Hits through the collector's HTTP endpoints come out exact in /v1/kpis and /metrics."""

from __future__ import annotations

import dataclasses
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.processes import http_get, tracker, wait_for
from tests.kafka import caught_up
from tracker.settings import Settings

pytestmark = pytest.mark.services


def post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"user-agent": "Mozilla/5.0 test"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def kpis(settings: Settings, **params: str) -> dict[str, Any]:
    query = urllib.parse.urlencode(params)
    status, body = http_get(f"http://127.0.0.1:{settings.exporter_port}/v1/kpis?{query}")
    assert status == 200, body
    result: dict[str, Any] = orjson.loads(body)
    return result


def campaign_row(settings: Settings, campaign: str) -> dict[str, Any] | None:
    rows = kpis(settings, dimension="campaign", window="1d")["rows"]
    return next((r for r in rows if r["value"] == campaign), None)


def test_pixel_and_batch_hits_reach_kpis_and_metrics_exactly(settings: Settings) -> None:
    campaign = f"launch-{uuid.uuid4().hex[:6]}"
    collector = f"http://127.0.0.1:{settings.collector_port}"
    with (
        tracker("worker", settings, f"http://127.0.0.1:{settings.worker_port}/healthz"),
        tracker("collector", settings, f"{collector}/healthz"),
        tracker("serve", settings, f"http://127.0.0.1:{settings.exporter_port}/healthz"),
    ):
        for i in range(200):
            query = urllib.parse.urlencode(
                {
                    "type": "impression",
                    "utm_campaign": campaign,
                    "utm_medium": "cpc",
                    "event_id": f"imp-{i}",
                    "cost": "0.01",
                }
            )
            request = urllib.request.Request(
                f"{collector}/p.gif?{query}", headers={"user-agent": "Mozilla/5.0 test"}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
                assert answer.headers["content-type"] == "image/gif"
        batch = [
            {
                "type": "click",
                "campaign": campaign,
                "channel": "search",
                "event_id": f"c-{i}",
                "click_id": f"k-{i}",
                "cost": "0.25",
            }
            for i in range(8)
        ]
        batch += [
            {
                "type": "conversion",
                "campaign": campaign,
                "channel": "search",
                "event_id": "v-1",
                "value": "49.90",
                "order_id": "o-1",
            },
            dict(batch[0]),  # the same event again, as a retrying client sends it
            {"type": "click", "campaign": campaign, "cost": "-1"},  # rejected
        ]
        status, answer = post(f"{collector}/v1/events", orjson.dumps(batch))
        assert status == 200
        assert answer["accepted"] == 10
        assert answer["rejected"] == 1
        assert answer["results"][10]["reasons"] == {"cost": "must not be negative"}

        row = wait_for(
            lambda: (r := campaign_row(settings, campaign)) and r["conversions"] == 1 and r,
            timeout=30,
            what="campaign visible in /v1/kpis",
        )
        # 200 impressions at 0.01 + 8 clicks at 0.25 = 4.00 spend; the duplicate click is gone.
        assert row["impressions"] == 200
        assert row["clicks"] == 8
        assert row["spend"] == 4.0
        assert row["revenue"] == 49.9
        assert row["ctr"] == 8 / 200
        assert row["cpa"] == 4.0
        assert row["roas"] == pytest.approx(49.9 / 4.0)

        status, body = http_get(f"http://127.0.0.1:{settings.exporter_port}/metrics")
        assert status == 200
        text = body.decode()
        assert f'tracker_campaign_impressions_total{{campaign="{campaign}"}} 200.0' in text
        assert f'tracker_campaign_clicks_total{{campaign="{campaign}"}} 8.0' in text
        assert "tracker_pipeline_duplicates_total 1.0" in text
    # Faust's data directory defaults to one per app id in the working directory.
    assert not Path(f"{settings.app_id}-data").exists(), "the worker left its data directory"


def test_replaying_the_topic_counts_nothing_twice(settings: Settings) -> None:
    """A second consumer group re-reads every record; the store must not change."""
    campaign = f"replay-{uuid.uuid4().hex[:6]}"
    collector = f"http://127.0.0.1:{settings.collector_port}"
    events = [
        {"type": "click", "campaign": campaign, "channel": "email", "cost": "0.5"}
        for _ in range(300)
    ]
    with tracker("collector", settings, f"{collector}/healthz"):
        for start in range(0, 300, 100):
            status, answer = post(
                f"{collector}/v1/events", orjson.dumps(events[start : start + 100])
            )
            assert status == 200
            assert answer["accepted"] == 100
    with tracker("serve", settings, f"http://127.0.0.1:{settings.exporter_port}/healthz"):
        with tracker("worker", settings, f"http://127.0.0.1:{settings.worker_port}/healthz"):
            first = wait_for(
                lambda: (r := campaign_row(settings, campaign)) and r["clicks"] == 300 and r,
                what="first pass applied",
            )
        replay = dataclasses.replace(settings, app_id=settings.app_id + "-replay")
        with tracker("worker", replay, f"http://127.0.0.1:{settings.worker_port}/healthz"):
            wait_for(
                lambda: caught_up(settings.kafka_bootstrap, replay.app_id, settings.events_topic),
                what="replay consumed every record",
            )
            assert campaign_row(settings, campaign) == first
