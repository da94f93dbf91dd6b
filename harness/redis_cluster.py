"""A Redis Cluster of three primaries, each with one replica, for tests that lose nodes.

Run by ``deploy/local/redis-cluster.sh``: six redis-server processes, numbered 1 to 6,
so a test can ask which node is primary for a key, kill that node and start it again.
Beside, not instead of, the single Redis the other tests use. Every function takes the
script's environment overrides (``TRACKER_REDIS_CLUSTER_PORT``, ``..._DIR``, ...): a
test gives the cluster its own ports and folder with them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import RedisError

from harness.processes import wait_for
from harness.services import ROOT
from tracker.redis_clients import sync_client
from tracker.seen import SHARDS, shard_prefix
from tracker.settings import Settings
from tracker.store import Keys, click_prefixes, people_prefixes

SCRIPT = ROOT / "deploy/local/redis-cluster.sh"
NODES = 6
SCHEME = "redis+cluster://"


def unstartable() -> str | None:
    """Why the cluster cannot be started here, or None when it can."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        return "no redis-server/redis-cli on PATH: deploy/local/redis.sh start installs them"
    return None


def _run(
    environment: Mapping[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _script(environment: Mapping[str, str], *args: str, timeout: float = 180) -> str:
    """The script's output; it fails the test, its errors shown, unless it exits 0."""
    done = _run(environment, *args, timeout=timeout)
    assert done.returncode == 0, f"redis-cluster.sh {' '.join(args)}:\n{done.stderr[-5000:]}"
    return done.stdout


@dataclass(frozen=True, slots=True)
class Cluster:
    url: str
    """``redis+cluster://127.0.0.1:<first port>/0``, as the script prints it."""
    ports: tuple[int, ...]
    """Node N listens at ``ports[N - 1]``."""

    @classmethod
    def from_url(cls, url: str) -> Cluster:
        assert url.startswith(SCHEME), url
        first = int(urllib.parse.urlsplit(url).netloc.split(",")[0].rpartition(":")[2])
        return cls(url, tuple(range(first, first + NODES)))

    def port(self, node: int) -> int:
        return self.ports[node - 1]

    def node(self, port: int) -> int:
        """The number of the node at ``port``."""
        return self.ports.index(port) + 1

    def client(self) -> RedisCluster:
        """redis-py's cluster client (which reads no URL of several nodes), seeded with every
        node, so that it finds the cluster whichever node is down."""
        return RedisCluster(
            decode_responses=True,
            startup_nodes=[ClusterNode("127.0.0.1", port) for port in self.ports],
        )


@contextmanager
def running(environment: Mapping[str, str]) -> Iterator[Cluster]:
    """The cluster, started unless it runs; stopped at the end unless it ran before.

    ``start`` is called either way: it returns at once when all is well and heals a
    cluster that a failed test left with a node down.
    """
    status = _run(environment, "status")
    heal(environment)
    try:
        yield Cluster.from_url(_script(environment, "url").strip())
    finally:
        if status.returncode != 0:
            _script(environment, "stop")


def heal(environment: Mapping[str, str]) -> None:
    """Every node running and every slot served, a replica in sync for each primary."""
    _script(environment, "start")


def primary_of(environment: Mapping[str, str], key: str) -> int:
    """The number of the node that is primary for the slot of ``key`` now."""
    return int(_script(environment, "primary-of", key))


def kill_node(environment: Mapping[str, str], node: int) -> None:
    """SIGKILL node ``node``: a crash, no shutdown at all."""
    _script(environment, "kill-node", str(node))


def start_node(environment: Mapping[str, str], node: int) -> None:
    """Start node ``node``; return once it is back in the cluster and, as a replica, in
    sync (a primary that was replaced comes back as its successor's replica)."""
    _script(environment, "start-node", str(node))


def wait_ok(environment: Mapping[str, str], timeout: float = 30) -> None:
    """Return once every slot is served by a live primary, as every live node sees it."""

    def served() -> bool:
        done = _run(environment, "wait-ok", "0", timeout=30)  # 0: check once
        assert done.returncode == 0, done.stderr.strip()  # wait_for reports the last one
        return True

    wait_for(served, timeout, "every slot served by a live primary")


def isolate(cluster: Cluster, key: str, others: Iterable[str]) -> int:
    """Move the slots of the keys ``others`` that the primary of ``key`` serves, but
    ``key``'s own, to the other primaries, so that of them all it serves ``key``'s slot
    alone; the number of that primary.

    As Redis Cluster's resharding moves a slot (``CLUSTER SETSLOT``): the new primary
    imports it, the old one migrates it and hands over its keys (``MIGRATE``), and every
    primary is told the new owner, the importing one first, so that it bumps its epoch
    and the cluster takes its word.
    """
    nodes = {port: Redis(host="127.0.0.1", port=port) for port in cluster.ports}
    try:
        owner = _owners(nodes[cluster.ports[0]])
        keep = key_slot(key.encode())
        source = owner[keep]
        targets = sorted(set(owner.values()) - {source})
        ids = {port: _command(nodes[port], "CLUSTER MYID") for port in [source, *targets]}
        slots = {key_slot(other.encode()) for other in others}
        moving = sorted(slot for slot in slots - {keep} if owner[slot] == source)
        for i, slot in enumerate(moving):
            target = targets[i % len(targets)]
            try:
                _command(nodes[target], "CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
                _command(nodes[source], "CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
                while names := _command(nodes[source], "CLUSTER GETKEYSINSLOT", slot, 1000):
                    migrate = ["MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *names]
                    _command(nodes[source], *migrate)
            except RedisError:  # not left half moved, redirecting every client that asks
                for port in (target, source):
                    _command(nodes[port], "CLUSTER SETSLOT", slot, "STABLE")
                raise
            for port in [target, source, *(t for t in targets if t != target)]:
                _command(nodes[port], "CLUSTER SETSLOT", slot, "NODE", ids[target])

        def agreed() -> bool:
            views = [_owners(node) for node in nodes.values()]
            return all(
                view[keep] == source and all(view[slot] != source for slot in moving)
                for view in views
            )

        wait_for(agreed, 30, "every node to see the slots moved")
        return cluster.node(source)
    finally:
        for node in nodes.values():
            node.close()


def _command(node: Redis, *args: Any) -> Any:
    return node.execute_command(*args)  # type: ignore[no-untyped-call]  # untyped in redis-py


def _owners(node: Redis) -> dict[int, int]:
    """Slot -> the port of its primary, as ``node`` sees it."""
    owner = {}
    for start, end, primary, *_ in _command(node, "CLUSTER SLOTS"):
        owner.update(dict.fromkeys(range(start, end + 1), int(primary[1])))
    return owner


def shard_prefixes(prefix: str) -> list[str]:
    """The prefixes under hash tags of their own that a deployment's workers write besides
    their partitions' sums: the deduplication shards', the click shards' and the people's."""
    return [
        *(shard_prefix(prefix, shard) for shard in range(SHARDS)),
        *click_prefixes(prefix)[1:],
        *people_prefixes(prefix)[1:],
    ]


def forget_keys(settings: Settings) -> None:
    """Delete the keys of ``settings``' prefix, of its shards, of its partitions' sums and
    of its clicks and paths, on the cluster its URL names."""
    prefixes = shard_prefixes(settings.key_prefix)
    with sync_client(settings) as store:
        prefixes += [name.decode() for name in store.smembers(Keys(settings.key_prefix).tallies)]
    for prefix in [settings.key_prefix, *prefixes]:
        with sync_client(settings, following=prefix) as store:
            names = list(store.scan_iter(match=f"{prefix}:*", count=10_000))
            for start in range(0, len(names), 10_000):
                store.unlink(*names[start : start + 10_000])
