"""``tracker replay-dead-letters`` end to end: rejected by the collector, replayed after a fix.

The collector rejects input in a currency it has no rate for; the operator adds the
rate and replays. The events reach the events topic once, however often the replay
runs, with their original context and a stable id.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
import urllib.request
from typing import Any

import orjson
import pytest

from harness.processes import command_output, tracker
from tests.kafka import records
from tracker.events import Event
from tracker.records import decode_dead_letter, decode_events
from tracker.settings import Settings

pytestmark = pytest.mark.services

UA = "Mozilla/5.0 (X11; Linux x86_64) replay-test"


def send(settings: Settings, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.collector_port}{path}",
        data=body,
        headers={"user-agent": UA, "cookie": "tid=visitor-7"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def replay(settings: Settings, *flags: str) -> str:
    return command_output(settings, "replay-dead-letters", *flags)


def events(settings: Settings) -> list[Event]:
    found = records(settings.kafka_bootstrap, settings.events_topic)
    return [event for _, _, value in found for event in decode_events(value)]


def letters(settings: Settings) -> list[tuple[int, int, dict[str, Any]]]:
    found = records(settings.kafka_bootstrap, settings.dead_letter_topic)
    return [(p, o, decode_dead_letter(value)) for p, o, value in found]


def test_replay_after_adding_a_rate_sends_each_event_once(settings: Settings) -> None:
    batch = [
        {"type": "click", "campaign": "yen", "click_id": "k-1"},
        {"type": "conversion", "campaign": "yen", "value": "1500", "currency": "JPY"},
        {"type": "teleport", "campaign": "yen"},  # stays rejected whatever the rates
    ]
    pixel = urllib.parse.urlencode({"type": "click", "utm_campaign": "yen", "cost": "12"})
    with tracker("collector", settings, f"http://127.0.0.1:{settings.collector_port}/healthz"):
        status, body = send(settings, "/v1/events", orjson.dumps(batch))
        assert status == 200
        assert orjson.loads(body)["accepted"] == 1
        assert send(settings, f"/p.gif?{pixel}&currency=jpy")[0] == 400
    (accepted,) = events(settings)
    rejected = {letter["raw"]: (p, o, letter) for p, o, letter in letters(settings)}
    assert len(rejected) == 3
    conversion_at = rejected[orjson.dumps(batch[1]).decode()]
    pixel_at = rejected[f"{pixel}&currency=jpy"]

    fixed = dataclasses.replace(settings, currency_rates="JPY=0.0067")
    report = replay(fixed, "--dry-run")
    assert "  would replay: 2 (2 events)" in report
    assert "  still rejected: 1" in report
    assert (
        "type: must be one of click, conversion, identify, impression, pageview, reset, spend"
        in report
    )
    assert events(settings) == [accepted]  # a dry run sends nothing

    report = replay(fixed)
    assert "  replayed: 2 (2 events)" in report
    assert "  already replayed earlier, skipped: 0" in report
    first = events(settings)
    assert len(first) == 3

    report = replay(fixed)  # again: nothing is sent twice
    assert "  replayed: 0 (0 events)" in report
    assert "  already replayed earlier, skipped: 2" in report
    assert "  still rejected: 1" in report
    assert sorted(e.event_id for e in events(settings)) == sorted(e.event_id for e in first)

    by_id = {e.event_id: e for e in first}
    p, o, letter = conversion_at
    assert by_id[f"dl-{p}-{o}-0"] == Event(
        event_id=f"dl-{p}-{o}-0",
        type="conversion",
        ts=letter["received_at"],  # when the collector received it, not when replayed
        received_at=letter["received_at"],
        channel="direct",
        campaign="yen",
        anonymous_id="visitor-7",  # the visitor cookie of the original request
        value=1_500_000_000,
        currency="JPY",
        goal="purchase",
        status="approved",
        user_agent=UA,
        ip="127.0.0.0",
    )
    p, o, letter = pixel_at
    replayed_pixel = by_id[f"dl-{p}-{o}-0"]
    assert (replayed_pixel.type, replayed_pixel.cost, replayed_pixel.currency) == (
        "click",
        12_000_000,
        "JPY",
    )
    assert (replayed_pixel.anonymous_id, replayed_pixel.user_agent, replayed_pixel.bot) == (
        "visitor-7",
        UA,
        False,
    )


def test_replay_since_skips_older_letters(settings: Settings) -> None:
    with tracker("collector", settings, f"http://127.0.0.1:{settings.collector_port}/healthz"):
        assert send(settings, "/p.gif?type=click&currency=JPY")[0] == 400
    ((_, _, letter),) = letters(settings)
    fixed = dataclasses.replace(settings, currency_rates="JPY=0.0067")
    later = str(letter["received_at"] + 60_000)
    report = replay(fixed, "--since", later)
    assert f"dead letters read from {settings.dead_letter_topic} since epoch ms {later}: 0" in (
        report
    )
    assert events(settings) == []
    report = replay(fixed, "--since", "2000-01-01T00:00:00Z")
    assert "  replayed: 1 (1 events)" in report
    assert len(events(settings)) == 1
