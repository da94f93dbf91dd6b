"""The collector with several worker processes on real Kafka: one port, one /metrics, no
acknowledged hit lost on a stop, no count going back when a worker is killed."""

from __future__ import annotations

import dataclasses
import http.client
import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import http_get, tracker, wait_for
from tests.kafka import records
from tracker.records import decode_events
from tracker.settings import Settings

pytestmark = pytest.mark.services

WORKERS = 2
CONNECTIONS = 16
"""Keep-alive connections of the first load: the kernel spreads connections over the
workers, so with 16 of them each worker gets some but once in 2**15 runs."""
PER_CONNECTION = 100


def _children(pid: int) -> set[int]:
    return {
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    }


def _send(port: int, ids: list[str], answered: list[str]) -> None:
    """Pixel hits of ``ids``, in order, on one keep-alive connection; each must be answered 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for event_id in ids:
        connection.request("GET", f"/p.gif?type=pageview&event_id={event_id}")
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, event_id
        answered.append(event_id)
    connection.close()


def _hits(port: int, prefix: str, answered: list[str], stop: threading.Event) -> None:
    """Pixel hits until ``stop`` or refusal, a new connection every ``PER_CONNECTION`` hits
    (as browsers come and go) and after a failed one."""
    n = 0
    while not stop.is_set():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(PER_CONNECTION):
                if stop.is_set():
                    return
                event_id = f"{prefix}-{n}"
                n += 1
                connection.request("GET", f"/p.gif?type=pageview&event_id={event_id}")
                answer = connection.getresponse()
                answer.read()
                if answer.status == 200:
                    answered.append(event_id)
                if answer.getheader("connection") == "close":
                    return  # the server is stopping
        except (OSError, http.client.HTTPException):
            time.sleep(0.01)  # a worker killed under this connection, or the server gone
        finally:
            connection.close()


def _accepted(port: int) -> float:
    """The collector's count of accepted pixel hits, as one scrape of /metrics has it."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            wanted = {"endpoint": "pixel", "outcome": "accepted"}
            if sample.name == "tracker_collector_events_total" and sample.labels == wanted:
                return float(sample.value)
    raise AssertionError("no accepted pixel hits in /metrics")


def _served(temp: Path) -> dict[int, float]:
    """Accepted pixel hits by worker process id, as each last wrote them."""
    served = {}
    for path in temp.glob("tracker-collector-*/*.json"):
        families = orjson.loads(path.read_bytes())["families"]
        for name, labels, value in families["tracker_collector_events"]:
            if name.endswith("_total") and labels == {"endpoint": "pixel", "outcome": "accepted"}:
                served[int(path.stem)] = value
    return served


def _in_kafka(settings: Settings) -> set[str]:
    return {
        event.event_id
        for _, _, value in records(settings.kafka_bootstrap, settings.events_topic)
        for event in decode_events(value)
    }


@pytest.fixture
def workers(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of a collector of two workers, which makes its metrics directory in
    ``tmp_path`` (TMPDIR), for the test to see which process served what."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return dataclasses.replace(settings, collector_workers=WORKERS)


def test_workers_count_as_one_collector_and_a_stop_loses_no_answered_hit(
    workers: Settings, tmp_path: Path
) -> None:
    port = workers.collector_port
    answered: list[str] = []
    with tracker("collector", workers, f"http://127.0.0.1:{port}/healthz") as process:
        assert len(_children(process.pid)) == WORKERS
        # Healthy once one worker listens; each writes its numbers a second after its start.
        wait_for(lambda: len(_served(tmp_path)) == WORKERS, timeout=30, what="both workers")
        senders = [
            threading.Thread(
                target=_send,
                args=(port, [f"c{c}-{n}" for n in range(PER_CONNECTION)], answered),
            )
            for c in range(CONNECTIONS)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=120)
        sent = CONNECTIONS * PER_CONNECTION
        assert len(answered) == sent

        # Each worker writes its numbers within a second; then they add up to every hit,
        # served by more than one process.
        def written() -> dict[int, float] | None:
            served = _served(tmp_path)
            return served if sum(served.values()) == sent else None

        served = wait_for(written, timeout=10, what="every worker's count written")
        assert len([count for count in served.values() if count > 0]) == WORKERS, served
        # Whichever worker answers, a scrape says the whole collector's count.
        assert [_accepted(port) for _ in range(30)] == [sent] * 30

        # A stop under load: every hit answered 200 is in Kafka.
        stop = threading.Event()
        flowing = [
            threading.Thread(target=_hits, args=(port, f"t{i}", answered, stop)) for i in range(8)
        ]
        for sender in flowing:
            sender.start()
        wait_for(lambda: len(answered) > sent + 500, timeout=30, what="traffic flowing")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        stop.set()
        for sender in flowing:
            sender.join(timeout=30)
    assert len(answered) > sent + 500
    assert set(answered) <= _in_kafka(workers)
    assert not list(tmp_path.glob("tracker-collector-*")), "the metrics directory outlived the run"


def test_a_killed_worker_is_replaced_and_the_count_never_goes_back(
    workers: Settings, tmp_path: Path
) -> None:
    port = workers.collector_port
    answered: list[str] = []
    stop = threading.Event()
    with tracker("collector", workers, f"http://127.0.0.1:{port}/healthz") as process:
        before = _children(process.pid)
        senders = [
            threading.Thread(target=_hits, args=(port, f"k{i}", answered, stop)) for i in range(8)
        ]
        for sender in senders:
            sender.start()
        try:
            scrapes = [_accepted(port)]

            def counted(least: float) -> bool:
                scrapes.append(_accepted(port))
                return scrapes[-1] >= least

            # Both workers counting and their counts written, then one killed outright.
            def both_serving() -> bool:
                served = _served(tmp_path)
                return len(served) == WORKERS and all(count > 0 for count in served.values())

            wait_for(both_serving, timeout=30, what="both workers serving")
            wait_for(lambda: counted(500), timeout=30, what="hits counted")
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            at_kill = scrapes[-1]

            def replaced() -> bool:
                scrapes.append(_accepted(port))
                children = _children(process.pid)
                return victim not in children and len(children) == WORKERS

            wait_for(replaced, timeout=30, what="granian to start a worker in its place")
            (newcomer,) = _children(process.pid) - before
            wait_for(lambda: _served(tmp_path).get(newcomer, 0) > 0, timeout=30, what="it serving")
            wait_for(lambda: counted(at_kill + 500), timeout=30, what="more hits counted")
        finally:
            stop.set()
            for sender in senders:
                sender.join(timeout=30)
        # Settled: every scrape says the same, whichever worker answers.
        wait_for(lambda: len({_accepted(port) for _ in range(10)}) == 1, timeout=10, what="settled")
        scrapes += [_accepted(port) for _ in range(10)]
        assert process.poll() is None  # one worker killed does not stop the collector
    # What the killed worker counted since it last wrote (a second at most) it may have
    # taken along, but no scrape showed less than one before.
    assert scrapes == sorted(scrapes), "a scrape showed fewer accepted hits than one before"
