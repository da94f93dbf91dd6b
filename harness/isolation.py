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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
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
