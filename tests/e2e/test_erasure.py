"""An erased person stays erased through the real collector, Kafka, worker and exporter:
their later events count nowhere, whether sent after the erasure or already waiting in
Kafka for a worker that was down, and everyone else's count exactly."""

from __future__ import annotations

import urllib.parse
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from harness.processes import health_url, http_get, running, sample, tracker, wait_for
from tests.e2e.test_oracle import settled
from tests.e2e.test_pipeline import kpis, post
from tests.kafka import records
from tracker.records import decode_events
from tracker.settings import Settings
from tracker.suppression import erased_hash

pytestmark = pytest.mark.services

SLOW = 120.0
"""Seconds a wait may take: an erasure walks the whole test Redis."""


@dataclass(frozen=True)
class Person:
    device: str
    user: str

    @classmethod
    def new(cls, name: str) -> Person:
        tag = uuid.uuid4().hex[:8]
        return cls(f"{name}-device-{tag}", f"{name}-user-{tag}")


@dataclass(frozen=True)
class Traffic:
    """Events of one person for one campaign, and what they add to its KPIs."""

    events: list[dict[str, Any]]
    clicks: int
    conversions: int
    revenue: float


def traffic(person: Person, campaign: str, tag: str, clicks: int, revenue: float) -> Traffic:
    """Signing in, ``clicks`` clicks on the device, an order of ``revenue`` signed in;
    event ids start with ``tag``."""
    ids = {"anonymous_id": person.device}
    events: list[dict[str, Any]] = [
        {"type": "identify", "event_id": f"{tag}-i", **ids, "user_id": person.user}
    ]
    events += [
        {
            "type": "click",
            "event_id": f"{tag}-c{i}",
            "campaign": campaign,
            "channel": "search",
            "click_id": f"{tag}-k{i}",
            **ids,
        }
        for i in range(clicks)
    ]
    events.append(
        {
            "type": "conversion",
            "event_id": f"{tag}-v",
            "campaign": campaign,  # credited to it whatever the touches
            "channel": "search",
            "user_id": person.user,
            "order_id": f"{tag}-o",
            "value": f"{revenue:.2f}",
        }
    )
    return Traffic(events, clicks, 1, revenue)


def send(settings: Settings, *sent: Traffic) -> None:
    events = [event for t in sent for event in t.events]
    collector = f"http://127.0.0.1:{settings.collector_port}"
    status, answer = post(f"{collector}/v1/events", orjson.dumps(events))
    # Not all accepted, necessarily: the collector may drop an erased person's events.
    assert (status, answer["rejected"]) == (200, 0), answer


def totals(settings: Settings, campaign: str) -> tuple[int, int, float]:
    """(clicks, conversions, revenue) of ``campaign``, all days summed."""
    rows = kpis(settings, dimension="campaign", window="1d")["rows"]
    mine = [row for row in rows if row["value"] == campaign]
    return (
        sum(row["clicks"] for row in mine),
        sum(row["conversions"] for row in mine),
        round(sum(row["revenue"] for row in mine), 6),
    )


def expected(*counted: Traffic) -> tuple[int, int, float]:
    return (
        sum(t.clicks for t in counted),
        sum(t.conversions for t in counted),
        round(sum(t.revenue for t in counted), 6),
    )


def suppressed(settings: Settings) -> int:
    """``tracker_pipeline_suppressed_total`` as the exporter shows it."""
    url = f"http://127.0.0.1:{settings.exporter_port}/metrics"
    found = sample(url, "tracker_pipeline_suppressed_total")
    assert found is not None, "no tracker_pipeline_suppressed_total in /metrics"
    return int(found)


def people(settings: Settings, **person: str) -> tuple[int, Any]:
    query = urllib.parse.urlencode(person)
    status, body = http_get(f"http://127.0.0.1:{settings.exporter_port}/v1/people?{query}")
    return status, orjson.loads(body)


def erase(settings: Settings, user_id: str) -> dict[str, Any]:
    exporter = f"http://127.0.0.1:{settings.exporter_port}"
    status, answer = post(f"{exporter}/v1/erasure", orjson.dumps({"user_id": user_id}))
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


def held(settings: Settings, person: Person, orders: int) -> bool:
    """True once /v1/people shows the person's device and ``orders`` orders."""
    status, body = people(settings, user_id=person.user)
    return status == 200 and len(body["devices"]) == 1 and len(body["orders"]) == orders


def in_kafka(settings: Settings, person: Person, tag: str) -> int:
    """Events of ``person`` tagged ``tag`` that are in the events topic."""
    ids = {person.device, person.user}
    return sum(
        1
        for _, _, value in records(settings.kafka_bootstrap, settings.events_topic)
        for event in decode_events(value)
        if event.event_id.startswith(tag) and {event.anonymous_id, event.user_id} & ids
    )


def assert_erased(settings: Settings, person: Person) -> None:
    """Nothing is held about the person, and the audit log names them by hash only."""
    assert people(settings, user_id=person.user)[0] == 404
    assert people(settings, anonymous_id=person.device)[0] == 404
    (audited,) = records(settings.kafka_bootstrap, settings.audit_topic)
    record = orjson.loads(audited[2])
    assert (record["kind"], record["hash"]) == ("user_id", erased_hash("user_id", person.user))
    assert person.user.encode() not in audited[2]
    assert person.device.encode() not in audited[2]


def test_events_sent_after_an_erasure_count_nowhere(settings: Settings) -> None:
    campaign = f"erase-{uuid.uuid4().hex[:6]}"
    gone, other = Person.new("gone"), Person.new("other")
    first = [traffic(gone, campaign, "g1", 3, 10.0), traffic(other, campaign, "o1", 2, 5.0)]
    later_gone = traffic(gone, campaign, "g2", 4, 20.0)
    later_other = traffic(other, campaign, "o2", 3, 7.5)
    with running(settings, "worker", "collector", "serve"):
        send(settings, *first)
        wait_for(lambda: held(settings, gone, 1), timeout=60, what="the person held")
        wait_for(
            lambda: totals(settings, campaign) == expected(*first),
            timeout=60,
            what="the first events counted",
        )
        before = suppressed(settings)

        answer = erase(settings, gone.user)
        assert answer["suppressed"] == ["user_id", "anonymous_id"]
        assert answer["removed"]["orders_anonymised"] == 1
        send(settings, later_gone, later_other)

        wait_for(lambda: settled(settings), timeout=SLOW, what="every record applied")
        assert totals(settings, campaign) == expected(*first, later_other)
        # The collector may drop a known erased person's events itself: the worker
        # suppresses those that reached Kafka, every one of them.
        reached = in_kafka(settings, gone, "g2")
        assert suppressed(settings) - before == reached
        assert_erased(settings, gone)
        assert held(settings, other, 2)


def test_events_waiting_in_kafka_for_a_stopped_worker_are_dropped_after_an_erasure(
    settings: Settings,
) -> None:
    campaign = f"erase-{uuid.uuid4().hex[:6]}"
    gone, other = Person.new("gone"), Person.new("other")
    first = [traffic(gone, campaign, "g1", 2, 12.5), traffic(other, campaign, "o1", 1, 3.0)]
    waiting_gone = traffic(gone, campaign, "g2", 5, 40.0)
    waiting_other = traffic(other, campaign, "o2", 2, 8.0)
    with running(settings, "collector", "serve"), ExitStack() as workers:
        worker = workers.enter_context(tracker("worker", settings, health_url(settings, "worker")))
        send(settings, *first)
        wait_for(lambda: held(settings, gone, 1), timeout=60, what="the person held")
        wait_for(
            lambda: totals(settings, campaign) == expected(*first),
            timeout=60,
            what="the first events counted",
        )
        worker.kill()  # SIGKILL: no shutdown, no offset commit
        worker.wait()
        before = suppressed(settings)

        send(settings, waiting_gone, waiting_other)  # in Kafka: the worker is down
        assert in_kafka(settings, gone, "g2") == len(waiting_gone.events)
        erase(settings, gone.user)
        workers.enter_context(tracker("worker", settings, health_url(settings, "worker")))

        wait_for(lambda: settled(settings), timeout=SLOW, what="every record applied")
        assert totals(settings, campaign) == expected(*first, waiting_other)
        assert suppressed(settings) - before == len(waiting_gone.events)
        assert_erased(settings, gone)
        assert held(settings, other, 2)
