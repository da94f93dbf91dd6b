"""The collector's process on real Kafka: a stop loses no accepted hit, a dead parent no worker."""

from __future__ import annotations

import http.client
import os
import signal
import threading
from pathlib import Path

import pytest

from harness.processes import tracker, wait_for
from tests.kafka import records
from tracker.records import decode_events
from tracker.settings import Settings

pytestmark = pytest.mark.services


def _hits(port: int, prefix: str, answered: list[str], stop: threading.Event) -> None:
    """Pixel hits with ids of our own, one after another, until ``stop`` or refusal."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    while not stop.is_set():
        event_id = f"{prefix}-{n}"
        n += 1
        try:
            connection.request("GET", f"/p.gif?type=pageview&event_id={event_id}")
            answer = connection.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException):
            return  # the server stopped taking requests
        if answer.status == 200:
            answered.append(event_id)
        if answer.getheader("connection") == "close":
            return


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def test_sigterm_under_load_loses_no_answered_hit(settings: Settings) -> None:
    url = f"http://127.0.0.1:{settings.collector_port}/healthz"
    answered: list[str] = []
    stop = threading.Event()
    with tracker("collector", settings, url) as process:
        senders = [
            threading.Thread(target=_hits, args=(settings.collector_port, f"t{i}", answered, stop))
            for i in range(8)
        ]
        for sender in senders:
            sender.start()
        wait_for(lambda: len(answered) > 500, timeout=30, what="traffic flowing")
        process.send_signal(signal.SIGTERM)  # while the senders keep going
        assert process.wait(timeout=60) == 0
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
    in_kafka = {
        event.event_id
        for _, _, value in records(settings.kafka_bootstrap, settings.events_topic)
        for event in decode_events(value)
    }
    assert answered, "no hit was answered"
    assert set(answered) <= in_kafka  # a 200 means the hit is in Kafka, stop or no stop


def test_a_killed_server_takes_its_worker_along(settings: Settings) -> None:
    url = f"http://127.0.0.1:{settings.collector_port}/healthz"
    with tracker("collector", settings, url) as process:
        (worker,) = _children(process.pid)
        os.kill(process.pid, signal.SIGKILL)  # nothing forwards a signal to the worker

        def worker_gone() -> bool:
            try:
                state = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                return True
            return state == "Z"  # exited, waiting for whoever adopted it to reap it

        wait_for(worker_gone, timeout=40, what="the worker to stop after its parent died")
