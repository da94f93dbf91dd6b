"""A worker's ``/readyz``: 200 only once it is in its group with its partitions, while
``/healthz`` answers as soon as it serves (the Helm chart gates rolling updates on the
first and restarts a worker on the second)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from harness.processes import health_url, http_get, tracker, wait_for
from tests.kafka import group
from tracker.kafka import ensure_topics
from tracker.settings import Settings

pytestmark = pytest.mark.services


def test_a_worker_is_ready_only_in_a_stable_group(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings))
    seen: list[tuple[int, str, tuple[str, int] | None]] = []

    def ready() -> bool:
        code, body = http_get(f"http://127.0.0.1:{settings.worker_port}/readyz")
        status: str = orjson.loads(body)["status"]
        # Asked at once, while the worker says it is ready: its group has formed around it.
        formed = group(settings.kafka_bootstrap, settings.app_id) if status == "ready" else None
        seen.append((code, status, formed))
        return status == "ready"

    with tracker("worker", settings, health_url(settings, "worker")):
        wait_for(ready, 90, "worker ready")
    wrong = [
        answer
        for answer in seen
        if (answer[0] == 200) != (answer[1] == "ready")
        or answer[1] not in ("joining", "rebalancing", "ready")
        or (answer[1] == "ready" and answer[2] != ("Stable", 1))
    ]
    assert not wrong, seen
