"""Every number /v1/kpis shows equals an independent reference count of the same log."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from harness.processes import http_get, running, wait_for
from tests.applied import behind
from tests.e2e import oracle, protocols
from tests.kafka import caught_up
from tracker.redis_clients import sync_client
from tracker.settings import Settings

pytestmark = pytest.mark.services
METRICS = ("impressions", "clicks", "conversions", "spend", "revenue", "bots")


def send(
    settings: Settings,
    events: list[dict[str, Any]],
    after_chunk: Callable[[int], None] = lambda index: None,
    size: int = 50,
) -> None:
    """POST ``events`` in chunks, retrying a request the collector answered 503.

    A third of the people send through Segment's API and a third through Snowplow's
    protocol (:mod:`tests.e2e.protocols`), what those cannot say through the batch
    API; requests go in the log's order, consecutive events of one protocol together.
    Events of a client whose clock is off (``oracle.CLOCK``) go in requests of their own
    whose ``sent_at`` that clock reads when they are sent, so the collector corrects them.
    """
    for index, start in enumerate(range(0, len(events), size)):
        runs: list[tuple[str, int, list[dict[str, Any]]]] = []
        for event in events[start : start + size]:
            event = {k: v for k, v in event.items() if v is not None}
            off = event.pop(oracle.CLOCK, 0)
            kind = protocols.protocol_of(event)
            if kind == "batch" and oracle.SDK_EVENT in event:
                kind = "segment"  # the batch API has no SDK event names
            if kind == "segment" and protocols.segment_message(event) is None:
                kind = "batch"
            if kind == "snowplow" and protocols.snowplow_params(event) is None:
                kind = "batch"
            if runs and runs[-1][:2] == (kind, off):
                runs[-1][2].append(event)
            else:
                runs.append((kind, off, [event]))
        for kind, off, run in runs:
            post(settings, kind, run, off)
        after_chunk(index)


PATHS = {
    "batch": "/v1/events",
    "segment": "/v1/batch",
    "snowplow": "/com.snowplowanalytics.snowplow/tp2",
}


def post(settings: Settings, protocol: str, events: list[dict[str, Any]], clock_off: int) -> None:
    url = f"http://127.0.0.1:{settings.collector_port}{PATHS[protocol]}"

    def body() -> Any:
        """The request as the sender's clock times it, at the moment of sending."""
        sent_at = int(time.time() * 1000) + clock_off
        said = sent_at if clock_off else None
        if protocol == "segment":
            messages = [protocols.segment_message(e, clock_off) for e in events]
            return protocols.segment_batch([m for m in messages if m], said)
        if protocol == "snowplow":
            params = [protocols.snowplow_params(e, clock_off) for e in events]
            return protocols.snowplow_payload([p for p in params if p], said)
        if clock_off:
            return {
                "sent_at": sent_at,
                "events": [{**e, "ts": e["ts"] + clock_off} for e in events],
            }
        return events

    def attempt() -> Any:
        request = urllib.request.Request(
            url,
            data=orjson.dumps(body()),
            method="POST",
            headers={"user-agent": oracle.BROWSER, "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return orjson.loads(answer.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 503:  # Kafka away: the collector said so; try again
                return None
            raise

    result = wait_for(attempt, timeout=120, what="chunk accepted")
    assert result["rejected"] == 0, f"{protocol}: {result}"
    assert result["accepted"] == len(events), (protocol, result)


def spans(days: set[int]) -> list[tuple[int, int]]:
    """Ranges covering a day either side of each of ``days``, merged."""
    merged: list[tuple[int, int]] = []
    for day in sorted(days):
        start, end = day - oracle.DAY, day + 2 * oracle.DAY
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def kpis(
    settings: Settings, days: set[int], model: str, dimension: str
) -> dict[tuple[int, str], Any]:
    """Each day's sums of /v1/kpis around ``days``, keyed by the day's start in epoch ms."""
    found = {}
    for (day, value), row in rows(settings, days, model, dimension).items():
        sums = {
            "impressions": row["impressions"],
            "clicks": row["clicks"],
            "conversions": round(row["conversions"] * 1_000_000),
            "spend": round(row["spend"] * 1_000_000),
            "revenue": round(row["revenue"] * 1_000_000),
            "bots": row["bots"],
        }
        if any(sums.values()):
            found[day, value] = sums
    return found


def rows(
    settings: Settings, days: set[int], model: str, dimension: str
) -> dict[tuple[int, str], dict[str, Any]]:
    """Each day's row of /v1/kpis around ``days``, keyed by the day's start in epoch ms."""
    found = {}
    for start, end in spans(days):
        found.update(rows_between(settings, start, end, model, dimension))
    return found


def rows_between(
    settings: Settings, start: int, end: int, model: str, dimension: str
) -> dict[tuple[int, str], dict[str, Any]]:
    query = urllib.parse.urlencode(
        {"dimension": dimension, "window": "1d", "model": model, "from": start, "to": end}
    )
    status, body = http_get(f"http://127.0.0.1:{settings.exporter_port}/v1/kpis?{query}")
    assert status == 200, body
    answer = orjson.loads(body)
    assert answer["timezone"] == settings.timezone
    return {
        (int(datetime.fromisoformat(row["bucket"]).timestamp() * 1000), row["value"]): row
        for row in answer["rows"]
    }


def expected(rows: dict[oracle.Key, dict[str, int]], dimension: str) -> dict[tuple[int, str], Any]:
    out = {}
    for (day, dim, value), sums in rows.items():
        if dim == dimension:
            picked = {m: sums.get(m, 0) for m in METRICS}
            if any(picked.values()):
                out[day, value] = picked
    return out


def settled(settings: Settings) -> bool:
    """Every record in the topic now is committed in Kafka and applied in the store (which
    may be behind Kafka after it lost writes: the worker then reads them again)."""
    topic = settings.events_topic
    return caught_up(settings.kafka_bootstrap, settings.app_id, topic) and not behind(settings)


def oracle_settings(settings: Settings, timezone: str = "UTC") -> Settings:
    return replace(
        settings,
        currency_rates=oracle.RATES_SETTING,
        half_life_days=oracle.HALF_LIFE_MS / oracle.DAY,
        timezone=timezone,
        conversion_events=protocols.CONVERSION_EVENTS,
        # The last two clock changes of a zone with daylight saving time lie within a year.
        max_age_days=400,
    )


def check(settings: Settings, log: oracle.Log) -> None:
    reference = oracle.reference(log)
    days = {day for rows in reference.values() for day, _, _ in rows}
    for model in oracle.MODELS:
        for dimension in ("campaign", "channel"):
            got = kpis(settings, days, model, dimension)
            assert got == expected(reference[model], dimension), (model, dimension)
    for dimension in ("total", "goal"):
        got = kpis(settings, days, "last_click", dimension)
        assert got == expected(reference["last_click"], dimension), dimension
    samples = scraped(settings)
    assert identity_metrics(samples) == oracle.identity_counts(log)
    check_users(settings, log, days)
    check_lifetime_values(settings, log, samples)
    check_counters(reference, samples)


def scraped(settings: Settings) -> list[Sample]:
    """Every sample the exporter's /metrics shows now."""
    status, body = http_get(f"http://127.0.0.1:{settings.exporter_port}/metrics")
    assert status == 200
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def check_lifetime_values(settings: Settings, log: oracle.Log, samples: list[Sample]) -> None:
    """/v1/clv's customers and their revenue, by the campaign and channel that won them."""
    reference = oracle.lifetime_values(log)
    for dimension in ("campaign", "channel"):
        url = f"http://127.0.0.1:{settings.exporter_port}/v1/clv?dimension={dimension}"
        status, body = http_get(url)
        assert status == 200, body
        got = {
            row["value"]: (row["customers"], round(row["customer_revenue"] * 1_000_000))
            for row in orjson.loads(body)["rows"]
        }
        want = {
            value: (sums["customers"], sums["customer_revenue"])
            for (dim, value), sums in reference.items()
            if dim == dimension and sums["customers"]
        }
        assert got == want, dimension
        # /metrics: customers ever won, less those that moved away since, are those held.
        won, moved = (
            metric_values(samples, f"tracker_{dimension}_customers{kind}_total", dimension)
            for kind in ("", "_moved")
        )
        held = {value: won[value] - moved.get(value, 0) for value in won}
        assert {value: count for value, count in held.items() if count} == {
            value: customers for value, (customers, _) in want.items()
        }, dimension


def metric_values(samples: list[Sample], name: str, label: str, scale: int = 1) -> dict[str, int]:
    """``name``'s values, times ``scale``, by ``label``."""
    return {s.labels[label]: round(s.value * scale) for s in samples if s.name == name}


TAKEN_BACK = {"conversions": "conversions_reversed", "spend": "spend_revised_down",
              "revenue": "revenue_reversed"}  # fmt: skip
"""Counters are gross: what refunds and lowered spend reports took back, counted apart."""


def check_counters(reference: oracle.Rows, samples: list[Sample]) -> None:
    """/metrics' all-time counters per campaign and channel, less what they count as taken
    back, equal the reference's sums over every day (``last_click``)."""
    for dimension in ("campaign", "channel"):
        want: dict[str, dict[str, int]] = {}
        for (_, dim, value), sums in reference["last_click"].items():
            if dim == dimension:
                for metric in METRICS:
                    want.setdefault(value, dict.fromkeys(METRICS, 0))[metric] += sums.get(metric, 0)
        got: dict[str, dict[str, int]] = {value: dict.fromkeys(METRICS, 0) for value in want}
        for metric in METRICS:
            scale = 1 if metric in ("impressions", "clicks", "bots") else 1_000_000
            name = f"tracker_{dimension}_{metric}_total"
            for value, amount in metric_values(samples, name, dimension, scale).items():
                got.setdefault(value, dict.fromkeys(METRICS, 0))[metric] += amount
            if metric in TAKEN_BACK:
                back = f"tracker_{dimension}_{TAKEN_BACK[metric]}_total"
                for value, amount in metric_values(samples, back, dimension, scale).items():
                    got[value][metric] -= amount
        assert got == want, dimension


def check_users(settings: Settings, log: oracle.Log, days: set[int]) -> None:
    """Each row's ``users`` is what Redis's HyperLogLog estimates for the reference's people.

    An estimate depends on nothing but the set it was given, so it is reproduced exactly
    from the people the reference names, through ``PFCOUNT`` of a key of the test's own:
    a person lost or counted under another value moves it, almost always. Only the
    collector knows its cookieless visitors' ids: adding one moves an estimate of these
    sizes up by one or not at all (a register it sets may be set already), and one more
    for rounding.
    """
    people = oracle.unique_people(log)
    days = days | {day for day, _, _ in people}
    scratch = f"{settings.key_prefix}:oracle-people"
    compared = 0
    with sync_client(settings) as redis:

        def estimate(members: list[str]) -> int:
            redis.delete(scratch)
            if members:
                redis.pfadd(scratch, *members)
            count = int(redis.pfcount(scratch))
            redis.delete(scratch)
            return count

        for dimension in ("total", "channel", "campaign"):
            for (day, value), row in rows(settings, days, "last_click", dimension).items():
                want = people.get((day, dimension, value), set())
                known = sorted(p for p in want if not p.startswith(oracle.COOKIELESS))
                unknown = len(want) - len(known)
                least = estimate(known)
                most = least + unknown + (1 if unknown else 0)
                assert least <= row["users"] <= most, (dimension, day, value, row["users"], want)
                compared += bool(want)
    assert compared, "no row counted anybody"


def identity_metrics(samples: list[Sample]) -> dict[str, int]:
    """The identity counters as the exporter's /metrics shows them."""
    found: dict[str, int] = {}
    for sample in samples:
        if sample.name == "tracker_identity_refused_total":
            found[f"identity_refused_{sample.labels['reason']}"] = int(sample.value)
        elif sample.name in (
            "tracker_identity_restitched_total",
            "tracker_identity_late_links_total",
        ):
            found[sample.name.removeprefix("tracker_").removesuffix("_total")] = int(sample.value)
    return found


SENDING_MS = 5 * 60_000
"""How long sending a log takes at most, faults included."""


def _to_midnight_ms() -> int:
    now = int(time.time() * 1000)
    return oracle.DAY - now % oracle.DAY


def save_goals(settings: Settings) -> None:
    """The log's goal rules, saved through the exporter, once the collector applies them."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.exporter_port}/v1/goals",
        data=orjson.dumps(oracle.GOAL_RULES),
        method="PUT",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        version = orjson.loads(answer.read())["version"]

    def taken() -> bool:
        status, body = http_get(f"http://127.0.0.1:{settings.collector_port}/metrics")
        assert status == 200
        for family in text_string_to_metric_families(body.decode()):
            if family.name == "tracker_collector_goals_version":
                return bool(family.samples[0].value >= version)
        return False

    wait_for(taken, timeout=30, what="the collector applying the goal rules")


def run_log(
    settings: Settings, seed: int, after_chunk: Callable[[int], None] = lambda index: None
) -> oracle.Log:
    """Send the oracle's log phase by phase, each once the previous one is applied.

    Not across midnight UTC: cookieless visitors are who they are for a UTC day, so a
    log sent across it would split them (``oracle._privacy_cases``).
    """
    wait_for(lambda: _to_midnight_ms() > SENDING_MS, timeout=SENDING_MS / 1000 + 60,
             what="midnight UTC passed")  # fmt: skip
    save_goals(settings)
    log = oracle.generate(seed=seed, now_ms=int(time.time() * 1000), timezone=settings.timezone)
    for number, phase in enumerate(log.phases):
        send(settings, phase, after_chunk if number == 0 else lambda index: None)
        wait_for(lambda: settled(settings), timeout=120, what="phase applied")
    return log


def test_kpis_equal_an_independent_reference_for_every_model(settings: Settings) -> None:
    """In a reporting zone with daylight saving time, its 23- and 25-hour days included."""
    settings = oracle_settings(settings, "America/New_York")
    with running(settings, "worker", "collector", "serve"):
        log = run_log(settings, seed=20261127)
        check(settings, log)
