"""What the battery runs on: its own Kafka cluster and Redis Cluster, and tracker processes.

Both are the battery's alone, beside the servers other tests share, so that killing
and cutting them off hurts no one else: a three-broker cluster at 29092-29094 (files in
``.run/faults/kafka-cluster``; broker 3 in a network namespace of its own, to be cut
off) and a Redis Cluster of three primaries with a replica each at 22401-22406
(``.run/faults/redis-cluster``), both run by the deploy/local scripts. Each is stopped
at the end unless it ran before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import kafka_cluster, redis_cluster
from harness.isolation import free_port, isolated_settings
from harness.kafka_cluster import Cluster
from harness.processes import environment, health_url, http_get, tracker, wait_for
from harness.services import ROOT, forget
from tracker.settings import Settings

RUN = ROOT / ".run/faults"
CUT = 3
"""The broker that runs in a network namespace, to be cut off."""
CLUSTER = {
    "TRACKER_KAFKA_CLUSTER_DIR": str(RUN / "kafka-cluster"),
    "TRACKER_KAFKA_CLUSTER_PORT": "29092",
    "TRACKER_KAFKA_CLUSTER_CONTROLLER_PORT": "29090",
}
REDIS_CLUSTER = {
    "TRACKER_REDIS_CLUSTER_PORT": "22401",
    "TRACKER_REDIS_CLUSTER_DIR": str(RUN / "redis-cluster"),
}
PARTITIONS = 8


@dataclass(frozen=True, slots=True)
class Stage:
    cluster: Cluster
    redis_url: str
    netns: str | None
    """Why broker :data:`CUT` is not in a network namespace, or None when it is."""

    def settings(self, scenario: str, **changes: Any) -> Settings:
        """Settings of a scenario's own: topics, consumer group, Redis keys and ports, and
        topics made as production makes them (3 replicas, 2 in sync, 8 partitions); and
        ``changes``."""
        return dataclasses.replace(
            isolated_settings((self.cluster.bootstrap, self.redis_url), kind=f"faults-{scenario}"),
            topic_partitions=PARTITIONS,
            topic_replicas=3,
            topic_min_insync_replicas=2,
            log_level="warning",
            **changes,
        )

    def forget(self, settings: Settings) -> None:
        """Delete a scenario's topics and keys."""
        forget(self.cluster.bootstrap, None, [settings.redis_prefix])
        redis_cluster.forget_keys(settings)

    def fail_over(self, settings: Settings) -> int:
        """SIGKILL the primary holding a scenario's keys; once a replica serves its slot,
        the killed node's number."""
        primary = redis_cluster.primary_of(REDIS_CLUSTER, settings.key_prefix)
        redis_cluster.kill_node(REDIS_CLUSTER, primary)
        redis_cluster.wait_ok(REDIS_CLUSTER, 60)
        return primary

    def rejoin(self, node: int) -> None:
        """Start a killed node again: back as its successor's replica, in sync."""
        redis_cluster.start_node(REDIS_CLUSTER, node)


@contextmanager
def staged() -> Iterator[Stage]:
    """The battery's Kafka cluster and Redis Cluster, started unless they run; stopped
    after, unless they ran before."""
    netns = kafka_cluster.netns_unusable(CLUSTER)
    environment = CLUSTER if netns else {**CLUSTER, "TRACKER_KAFKA_CLUSTER_NETNS": str(CUT)}
    with (
        redis_cluster.running(REDIS_CLUSTER) as store,
        kafka_cluster.running(environment) as cluster,
    ):
        yield Stage(cluster, store.url, netns)


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of process ``pid`` and its children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # gone
        return 0.0
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            children += [int(child) for child in task.read_text().split()]
    # Fields 14-17 of stat: utime, stime, cutime, cstime (after pid and comm: index 11-14).
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK") + sum(map(cpu_seconds, children))


class Workers:
    """``tracker worker`` processes of one consumer group, as a deployment runs them.

    Each has a slot: a number and a port. ``static`` gives it the group instance id
    ``w<number>`` (``TRACKER_WORKER_INSTANCE_ID``), as the Helm chart's StatefulSet gives
    a pod its name, so that a worker started again in its slot takes its partitions back
    without a rebalance. It must come back at the same address, as a pod does: Faust
    asserts that the assignment it gets back names its own URL, and one that does not
    stays healthy yet stuck, consuming nothing (seen here, with a new port).

    Started side by side (one rebalance, not one per worker); :meth:`kill` and
    :meth:`terminate` take the oldest. Every one still running is stopped (SIGTERM) when
    the ``with`` block ends.
    """

    def __init__(self, settings: Settings, logs: Path, static: bool = False) -> None:
        self._settings = settings
        self._logs = logs
        self._static = static
        self.running: list[tuple[int, subprocess.Popen[bytes]]] = []
        self._stack = ExitStack()
        self._ports: list[int] = []
        self._started = 0

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume()  # a stopped process would not act on SIGTERM
        for _, process in self.running:
            process.terminate()
        for _, process in self.running:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._stack.close()

    def start(self, count: int = 1, slot: int | None = None) -> None:
        """``count`` more workers in new slots (or one in ``slot``), each healthy."""
        if slot is None:
            slots = list(range(len(self._ports), len(self._ports) + count))
            self._ports += [free_port() for _ in slots]
        else:
            slots = [slot]
        new = []
        for number in slots:
            settings = dataclasses.replace(
                self._settings,
                worker_port=self._ports[number],
                worker_instance_id=f"w{number}" if self._static else "",
            )
            self._started += 1
            log = self._stack.enter_context((self._logs / f"worker-{self._started}.log").open("wb"))
            process = subprocess.Popen(
                [sys.executable, "-m", "tracker.cli", "worker"],
                env=environment(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            new.append((number, process, health_url(settings, "worker")))
        for _, process, url in new:

            def healthy(process: subprocess.Popen[bytes] = process, url: str = url) -> bool:
                if process.poll() is not None:
                    raise SystemExit(f"a worker exited with {process.returncode}; see {self._logs}")
                return http_get(url)[0] == 200

            wait_for(healthy, 90, "worker healthy")
        self.running += [(number, process) for number, process, _ in new]

    def kill(self) -> int:
        """SIGKILL the oldest: no shutdown, no commit, its partitions wait for the group (or
        for a worker in its slot). Its slot."""
        slot, process = self.running.pop(0)
        process.kill()
        process.wait()
        return slot

    def terminate(self) -> None:
        """SIGTERM the oldest: it commits and leaves the group (a static member does not
        leave: its partitions wait for the session timeout)."""
        _, process = self.running.pop(0)
        process.terminate()
        process.wait(60)

    def pause(self) -> None:
        """SIGSTOP every running worker: it holds its partitions and does nothing (for
        less than the group's session timeout, or the group drops it)."""
        for _, process in self.running:
            process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for _, process in self.running:
            process.send_signal(signal.SIGCONT)

    def cpu_seconds(self) -> float:
        """CPU time the running workers have used so far."""
        return sum(cpu_seconds(process.pid) for _, process in self.running)


@contextmanager
def collector(settings: Settings) -> Iterator[None]:
    """``tracker collector`` on the scenario's settings, once healthy."""
    with tracker("collector", settings, health_url(settings, "collector")):
        yield


def log_dir(scenario: str) -> Path:
    """Where a scenario's worker logs go (kept after the run, for a look)."""
    path = RUN / "logs" / scenario
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.log"):
        old.unlink()
    return path


def read_again(scenario: str) -> int:
    """How often a scenario's workers found the store behind Kafka and read a partition
    again from the store's offset (tracker.stream.app.Rewinds), by their logs."""
    logs = (RUN / "logs" / scenario).glob("*.log")
    return sum(log.read_text(errors="replace").count("the store is behind Kafka") for log in logs)
