"""The collector on a Kafka cluster of three brokers, two of which are lost and come back.

Topics have 3 replicas and ``min.insync.replicas=2``; the collector produces with
``acks=all``. With two brokers gone, one copy is all Kafka could keep, so it refuses the
events and the collector answers 503, never 2xx; once one broker is back, 2xx again.
What was answered 2xx is read back from Kafka afterwards: all of it is there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import http.client
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest

from harness import kafka_cluster, services
from harness.isolation import isolated_settings
from harness.kafka_cluster import Act, Cluster
from harness.processes import command, health_url, tracker, wait_for
from tests.kafka import configs, records, replicas
from tracker.kafka import ensure_topics
from tracker.records import decode_events
from tracker.settings import Settings

WHY_NOT = kafka_cluster.unstartable()
pytestmark = [pytest.mark.services, pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))]

BROKERS = {1, 2, 3}
LOST = (1, 2)
BACK_WITHIN_S = 30.0
BATCH = 10
"""Events per batch request: spread over partitions, all or none acknowledged."""
RESTORE: dict[Act, Act] = {"stop": "start", "kill": "start", "pause": "resume"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with kafka_cluster.running() as started:
        yield started


@pytest.fixture(scope="module")
def redis() -> Iterator[str]:
    """Redis, for the collector's salt and suppressions (not on a request's path)."""
    with services.redis_url() as url:
        yield url


@pytest.fixture
def settings(cluster: Cluster, redis: str) -> Iterator[Settings]:
    """Isolated settings on the cluster, topics made as production makes them."""
    isolated = dataclasses.replace(
        isolated_settings((cluster.bootstrap, redis), kind="cluster"),
        topic_partitions=8,
        topic_replicas=3,
        topic_min_insync_replicas=2,
        produce_timeout_s=3.0,  # the 503's wait: short keeps the test short
    )
    yield isolated
    cluster.heal()  # for the next test, also when this one failed midway
    services.forget(cluster.bootstrap, redis, [isolated.redis_prefix])


def in_sync(settings: Settings, topic: str) -> bool:
    """Whether every partition of ``topic`` has its replicas on the 3 brokers, all in sync."""
    partitions = replicas(settings.kafka_bootstrap, topic)
    return bool(partitions) and all(
        set(replicas_) == set(isr) == BROKERS and len(replicas_) == len(BROKERS)
        for replicas_, isr in partitions.values()
    )


def test_every_partition_has_three_replicas_all_in_sync(
    settings: Settings, cluster: Cluster
) -> None:
    asyncio.run(ensure_topics(settings))

    # A topic just made may not be in the metadata of the broker asked yet (seen in CI).
    def described() -> dict[int, tuple[list[int], list[int]]] | None:
        found = replicas(settings.kafka_bootstrap, settings.events_topic)
        return found if len(found) == 8 else None

    events = wait_for(described, 30, "the events topic's 8 partitions in the brokers' metadata")
    assert sorted(events) == list(range(8))
    for partition, (replicas_, isr) in events.items():
        assert sorted(replicas_) == [1, 2, 3], partition
        assert sorted(isr) == [1, 2, 3], partition
    for topic in (settings.events_topic, settings.dead_letter_topic, settings.audit_topic):
        wait_for(functools.partial(in_sync, settings, topic), 30, f"{topic} in sync")
        assert configs(settings.kafka_bootstrap, topic)["min.insync.replicas"] == "2", topic
    # tracker check says so too, and, with a broker stopped, which partitions lag.
    done = command(settings, "check", timeout=120)
    said = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout
    assert said[0].endswith(": 3 brokers")
    assert said[1] == (
        f"kafka: {settings.events_topic}: 8 partitions, 3 replicas each, "
        "min.insync.replicas 2, retention 7 days, every replica in sync"
    )
    cluster.act("stop", 3)

    def lagging() -> list[str] | None:
        said = command(settings, "check", timeout=120).stdout.splitlines()
        return said if "WARN" in said[1] else None

    said = wait_for(lagging, 90, "tracker check to see broker 3's replicas out of sync")
    assert said[0].endswith(": 2 brokers")
    assert "replicas out of sync in partitions [0, 1, 2, 3, 4, 5, 6, 7]" in said[1]


@dataclass
class Answer:
    kind: str
    status: int
    at: float
    """time.monotonic() when the answer came."""


@dataclass
class Traffic:
    """Requests to a collector, pixel hits and batches in turn, each event with its own id.

    The pixel hits are one visitor's, so one partition's: while Kafka refuses, the first
    is retried without end, the second waits behind it and times out, and the third
    must still time out rather than join the second's expired record (it once hung).
    """

    port: int
    acknowledged: list[str] = field(default_factory=list)
    """Ids of the events of every request answered 2xx."""
    answers: list[Answer] = field(default_factory=list)

    def request(self) -> Answer:
        n = len(self.answers)
        if n % 2 == 0:
            kind, ids = "pixel", [f"px-{n}"]
            hit = {"type": "pageview", "event_id": ids[0], "anonymous_id": "v-pixel"}
            status, body = self._call("GET", f"/p.gif?{urllib.parse.urlencode(hit)}")
        else:
            kind, ids = "batch", [f"batch-{n}-{i}" for i in range(BATCH)]
            items = [
                {"type": "pageview", "event_id": event_id, "anonymous_id": f"v-{n}-{i}"}
                for i, event_id in enumerate(ids)
            ]
            status, body = self._call("POST", "/v1/events", orjson.dumps(items))
            if status == 200:
                assert orjson.loads(body)["accepted"] == BATCH, body
        if 200 <= status < 300:
            self.acknowledged += ids
        answer = Answer(kind, status, time.monotonic())
        self.answers.append(answer)
        return answer

    def _call(self, method: str, target: str, body: bytes | None = None) -> tuple[int, bytes]:
        """The status and body of the answer; status 0 when none came in 30 s."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, target, body)
            answer = connection.getresponse()
            return answer.status, answer.read()
        except TimeoutError:
            return 0, b""
        finally:
            connection.close()


@pytest.mark.parametrize("loss", ["stop", "kill", "pause"])
def test_two_brokers_lost_503_never_2xx_then_2xx_and_every_acknowledged_event_kept(
    settings: Settings, cluster: Cluster, loss: Act
) -> None:
    with tracker("collector", settings, health_url(settings, "collector")):
        # Healed from any earlier test: the events topic wholly in sync.
        wait_for(lambda: in_sync(settings, settings.events_topic), 60, "3 replicas in sync")
        traffic = Traffic(settings.collector_port)
        assert [traffic.request().status for _ in range(4)] == [200] * 4

        cluster.act(loss, *LOST)
        lost = [traffic.request() for _ in range(6)]
        assert [(a.kind, a.status) for a in lost] == [("pixel", 503), ("batch", 503)] * 3

        back = time.monotonic()
        restoring = cluster.acting(RESTORE[loss], *LOST)  # answers are awaited meanwhile
        first_2xx: dict[str, float] = {}
        try:
            while len(first_2xx) < 2:  # a pixel hit and a batch each acknowledged
                assert time.monotonic() - back < BACK_WITHIN_S, [
                    (a.kind, a.status) for a in traffic.answers[len(lost) + 4 :]
                ]
                answer = traffic.request()
                assert answer.status in (200, 503), answer
                if answer.status == 200:
                    first_2xx.setdefault(answer.kind, answer.at - back)
        finally:
            restoring.wait(timeout=180)
        assert max(first_2xx.values()) <= BACK_WITHIN_S, first_2xx
        assert restoring.returncode == 0

        wait_for(lambda: in_sync(settings, settings.events_topic), 60, "3 replicas in sync again")
        assert [traffic.request().status for _ in range(4)] == [200] * 4

    found = [
        event.event_id
        for _, _, value in records(settings.kafka_bootstrap, settings.events_topic)
        for event in decode_events(value)
    ]
    missing = set(traffic.acknowledged) - set(found)
    assert not missing, f"{len(missing)} of {len(traffic.acknowledged)} acknowledged events lost"
