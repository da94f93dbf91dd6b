"""Names and ports a test or a benchmark run has to itself, and forgetting them after."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from harness import services
from tracker.settings import Settings

RUNS: set[str] = set()
"""The ``<kind>-<random>`` names given to topics and keys in this process, for
:func:`forgotten` (or the tests' session) to delete at the end."""


_GIVEN: set[int] = set()
"""Ports :func:`free_port` handed out in this process, never handed out twice."""


def free_port() -> int:
    """A port nothing listens on now and this process was not given before.

    The kernel may give the same free port to two ``bind(0)`` calls in a row: a run's
    worker and its exporter once got one port, so the exporter's health check was
    answered by the worker and the exporter's tests by the worker's 404s.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def isolated_settings(servers: tuple[str, str], kind: str = "test") -> Settings:
    """Settings isolated from every other run: own topics, consumer group, keys, ports.

    Topics, consumer group and keys are named ``<kind>-<random>``.
    """
    bootstrap, redis = servers
    run = f"{kind}-{uuid.uuid4().hex[:10]}"
    RUNS.add(run)
    return Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis,
        redis_prefix=run,
        events_topic=f"{run}.events",
        dead_letter_topic=f"{run}.dead-letters",
        audit_topic=f"{run}.audit",
        app_id=run,
        collector_port=free_port(),
        exporter_port=free_port(),
        worker_port=free_port(),
        log_format="json",
    )


@contextmanager
def forgotten(servers: tuple[str, str]) -> Iterator[None]:
    """Delete what :func:`isolated_settings` named on ``servers`` when the block ends."""
    try:
        yield
    finally:
        services.forget(*servers, RUNS)
