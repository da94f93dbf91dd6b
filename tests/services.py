"""Real Kafka and Redis for the tests: the environment's, a container, or local processes.

Order of preference: ``TRACKER_KAFKA_BOOTSTRAP`` / ``TRACKER_REDIS_URL`` when set;
else testcontainers where a Docker engine answers; else the project's own scripts
in ``deploy/local/`` start (or reuse) local servers, once per test session.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _docker_answers() -> bool:
    """True when a Docker engine answers its ping on the local socket."""
    path = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return b" 200" in status_line


def _script(name: str, action: str = "start") -> None:
    subprocess.run(["bash", str(ROOT / "deploy/local" / f"{name}.sh"), action], check=True)


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    if bootstrap := os.environ.get("TRACKER_KAFKA_BOOTSTRAP"):
        yield bootstrap
    elif _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.0").with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        _script("kafka")
        yield "127.0.0.1:9092"


@contextmanager
def redis_url() -> Iterator[str]:
    if url := os.environ.get("TRACKER_REDIS_URL"):
        yield url
    elif _docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
    else:
        _script("redis")
        yield "redis://127.0.0.1:6379/0"


@contextmanager
def all_services() -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        yield stack.enter_context(kafka_bootstrap()), stack.enter_context(redis_url())
