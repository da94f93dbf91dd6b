"""Every number /v1/kpis shows equals an independent reference count of the same log."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.e2e import oracle
from tests.kafka import caught_up
from tests.processes import http_get, running, wait_for
from tracker.settings import Settings

pytestmark = pytest.mark.services
METRICS = ("impressions", "clicks", "conversions", "spend", "revenue")


def send(
    settings: Settings,
    events: list[dict[str, Any]],
    after_chunk: Callable[[int], None] = lambda index: None,
    size: int = 50,
) -> None:
    """POST ``events`` in chunks, retrying a chunk the collector answered 503."""
    url = f"http://127.0.0.1:{settings.collector_port}/v1/events"
    for index, start in enumerate(range(0, len(events), size)):
        chunk = [
            {k: v for k, v in e.items() if v is not None} for e in events[start : start + size]
        ]
        request = urllib.request.Request(
            url, data=orjson.dumps(chunk), method="POST", headers={"user-agent": oracle.BROWSER}
        )

        def post(request: urllib.request.Request = request) -> Any:
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return orjson.loads(answer.read())
            except urllib.error.HTTPError as exc:
                if exc.code == 503:  # Kafka away: the collector said so; try again
                    return None
                raise

        result = wait_for(post, timeout=120, what="chunk accepted")
        assert result["rejected"] == 0, result
        assert result["accepted"] == len(chunk)
        after_chunk(index)


def kpis(settings: Settings, start: int, model: str, dimension: str) -> dict[tuple[int, str], Any]:
    query = urllib.parse.urlencode(
        {
            "dimension": dimension,
            "window": "1d",
            "model": model,
            "from": start - oracle.DAY,
            "to": start + oracle.DAY,
        }
    )
    status, body = http_get(f"http://127.0.0.1:{settings.exporter_port}/v1/kpis?{query}")
    assert status == 200, body
    found = {}
    for row in orjson.loads(body)["rows"]:
        day = oracle.DAY * (
            int(time.mktime(time.strptime(row["bucket"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)
            * 1000
            // oracle.DAY
        )
        sums = {
            "impressions": row["impressions"],
            "clicks": row["clicks"],
            "conversions": round(row["conversions"] * 1_000_000),
            "spend": round(row["spend"] * 1_000_000),
            "revenue": round(row["revenue"] * 1_000_000),
        }
        if any(sums.values()):
            found[day, row["value"]] = sums
    return found


def expected(rows: dict[oracle.Key, dict[str, int]], dimension: str) -> dict[tuple[int, str], Any]:
    out = {}
    for (day, dim, value), sums in rows.items():
        if dim == dimension:
            picked = {m: sums.get(m, 0) for m in METRICS}
            if any(picked.values()):
                out[day, value] = picked
    return out


def settled(settings: Settings) -> bool:
    return caught_up(settings.kafka_bootstrap, settings.app_id, settings.events_topic)


def oracle_settings(settings: Settings) -> Settings:
    return replace(
        settings,
        currency_rates=oracle.RATES_SETTING,
        half_life_days=oracle.HALF_LIFE_MS / oracle.DAY,
    )


def check(settings: Settings, log: oracle.Log) -> None:
    reference = oracle.reference(log)
    for model in oracle.MODELS:
        for dimension in ("campaign", "channel"):
            got = kpis(settings, log.start, model, dimension)
            assert got == expected(reference[model], dimension), (model, dimension)
    for dimension in ("total", "goal"):
        got = kpis(settings, log.start, "last_click", dimension)
        assert got == expected(reference["last_click"], dimension), dimension


def run_log(
    settings: Settings, seed: int, after_chunk: Callable[[int], None] = lambda index: None
) -> oracle.Log:
    """Send the oracle's log phase by phase, each once the previous one is applied."""
    log = oracle.generate(seed=seed, now_ms=int(time.time() * 1000))
    for number, phase in enumerate(log.phases):
        send(settings, phase, after_chunk if number == 0 else lambda index: None)
        wait_for(lambda: settled(settings), timeout=120, what="phase applied")
    return log


def test_kpis_equal_an_independent_reference_for_every_model(settings: Settings) -> None:
    settings = oracle_settings(settings)
    with running(settings, "worker", "collector", "serve"):
        log = run_log(settings, seed=20261127)
        check(settings, log)
