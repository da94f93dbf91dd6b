"""A Kafka cluster of three brokers on this machine, for tests that lose brokers and for
``make bench-kafka``.

Run by ``deploy/local/kafka-cluster.sh``: a controller and three brokers, each a JVM of
its own, so a test can stop, kill, pause or cut off one broker by its number (1 to 3)
and bring it back. Beside, not instead of, the single broker the other tests use; with
an ``environment`` of its own (``TRACKER_KAFKA_CLUSTER_DIR`` and ports), a second such
cluster runs beside the first.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest

from harness.services import ROOT

SCRIPT = ROOT / "deploy/local/kafka-cluster.sh"

Act = Literal["start", "stop", "kill", "pause", "resume", "cut", "reconnect"]
"""What the script does to brokers: start (and wait until live), controlled stop (SIGTERM),
kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT), cut off the network and reconnect (for
brokers in ``TRACKER_KAFKA_CLUSTER_NETNS``)."""


def unstartable() -> str | None:
    """Why the cluster cannot be started here, or None when it can."""
    if shutil.which("java") is None:
        return "no java on PATH: deploy/local/kafka-cluster.sh runs Kafka on Java 17+"
    return None


def _env(environment: Mapping[str, str] | None) -> dict[str, str]:
    return {**os.environ, **(environment or {})}


def _script(*args: str, environment: Mapping[str, str] | None = None) -> str:
    """The script's output; it fails the test, its errors shown, unless it exits 0."""
    done = subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_env(environment),
    )
    assert done.returncode == 0, f"kafka-cluster.sh {' '.join(args)}:\n{done.stderr[-5000:]}"
    return done.stdout


def netns_unusable(environment: Mapping[str, str] | None = None) -> str | None:
    """Why brokers cannot run in network namespaces here (what failed), or None."""
    done = subprocess.run(
        ["bash", str(SCRIPT), "netns-check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_env(environment),
    )
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()[-2000:]


@dataclass(frozen=True, slots=True)
class Partition:
    leader: int
    """Broker id of the leader; -1 while there is none."""
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    """Those of the replicas in sync."""


async def _describe(bootstrap: str, topic: str, broker: int | None) -> dict[int, Partition]:
    # A short timeout: a cut-off broker answers nothing, and the default waits 40 s.
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await client.bootstrap()
    try:
        node = client.get_random_node() if broker is None else broker
        response = await client.send(node, MetadataRequest([topic]))
        (described,) = response.to_object()["topics"]
        return {
            p["partition"]: Partition(p["leader"], tuple(p["replicas"]), tuple(p["isr"]))
            for p in described["partitions"]
        }
    finally:
        await client.close()


def describe(bootstrap: str, topic: str, broker: int | None = None) -> dict[int, Partition]:
    """Each partition of ``topic``: its leader, replicas and those in sync, as broker
    ``broker`` (any, when None) has it now. Each broker has a view of its own, and one
    that was cut off keeps its old one for a moment after it is back: ask each to know.
    Raises when the broker does not answer within seconds."""
    return asyncio.run(asyncio.wait_for(_describe(bootstrap, topic, broker), 20))


@dataclass(frozen=True, slots=True)
class Cluster:
    bootstrap: str
    """The brokers' ``host:port`` list."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """``TRACKER_KAFKA_CLUSTER_*`` variables every call of the script gets."""

    def act(self, act: Act, *brokers: int) -> None:
        """Do ``act`` to ``brokers`` and return once done (a start: once they are live)."""
        _script(f"{act}-broker", *map(str, brokers), environment=self.environment)

    def acting(self, act: Act, *brokers: int) -> subprocess.Popen[bytes]:
        """:meth:`act` started, not awaited: ``wait()`` for its exit status."""
        return subprocess.Popen(
            ["bash", str(SCRIPT), f"{act}-broker", *map(str, brokers)],
            env=_env(self.environment),
        )

    def heal(self) -> None:
        """Every broker running and live again, whatever was done to them (but a cut:
        :meth:`act` ``reconnect`` mends that)."""
        _script("start", environment=self.environment)


@contextmanager
def running(environment: Mapping[str, str] | None = None) -> Iterator[Cluster]:
    """The cluster, started unless it runs; stopped at the end unless it ran before."""
    status = subprocess.run(
        ["bash", str(SCRIPT), "status"], capture_output=True, check=False, env=_env(environment)
    )
    _script("start", environment=environment)
    try:
        bootstrap = _script("bootstrap", environment=environment).strip()
        yield Cluster(bootstrap, dict(environment or {}))
    finally:
        if status.returncode != 0:
            _script("stop", environment=environment)
