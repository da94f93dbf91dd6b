"""Real Kafka and Redis for tests and benchmarks: the environment's, a container, or local
processes.

Order of preference: ``TRACKER_KAFKA_BOOTSTRAP`` / ``TRACKER_REDIS_URL`` when set;
else testcontainers where a Docker engine answers; else the project's own scripts
in ``deploy/local/`` start (or reuse) local servers, once per test session.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import warnings
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

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
        # Database 1: apart from what `make up` keeps in 0, so the session's cleanup
        # (forget) scans the tests' keys only.
        yield "redis://127.0.0.1:6379/1"


@contextmanager
def all_services() -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        yield stack.enter_context(kafka_bootstrap()), stack.enter_context(redis_url())


def forget(bootstrap: str, redis_url: str | None, runs: Collection[str]) -> None:
    """Delete the Kafka topics and Redis keys named after ``runs`` (``<kind>-<random>``);
    only the topics without ``redis_url``.

    Left behind, a test session's topics piled up on a developer's broker (11,000
    partitions and 34 GB after a few days of runs, its G1 pauses grown to 17-19 ms) and
    its keys in Redis (8.8 million, 2 GB; customers and all-time uniques never expire).
    Best effort: a failure warns, and Kafka's retention and Redis's TTLs take over.
    """
    if runs:
        try:
            asyncio.run(_forget(bootstrap, redis_url, tuple(runs)))
        except Exception as exc:  # the tests' verdicts stand either way
            warnings.warn(f"topics and keys of this session left behind: {exc!r}", stacklevel=2)


async def _forget(bootstrap: str, redis_url: str | None, runs: tuple[str, ...]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [topic for topic in await admin.list_topics() if topic.startswith(runs)]
        for start in range(0, len(topics), 500):
            await admin.delete_topics(topics[start : start + 500])
    finally:
        await admin.close()
    if not redis_url:
        return
    redis = Redis.from_url(redis_url)
    try:
        for kind in {run.rsplit("-", 1)[0] for run in runs}:  # one pass over the keys each
            keys = [
                key
                async for key in redis.scan_iter(match=f"{kind}-*", count=10_000)
                if key.decode(errors="replace").startswith(runs)
            ]
            for start in range(0, len(keys), 10_000):
                await redis.unlink(*keys[start : start + 10_000])
    finally:
        await redis.aclose()
