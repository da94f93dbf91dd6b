"""How the store's load spreads over a Redis Cluster's primaries (``make bench-shards``).

Applies the same synthetic events with the real sink to a three-primary Redis Cluster of
its own (ports 22501-22506, .run/bench-redis-cluster), as a worker would, and prints,
for each primary, the Redis CPU time and the memory it took, and which one serves the
store's own slot (every key but the counted ids, :mod:`tracker.seen`, and with
``TRACKER_REDIS_SPREAD_SUMS`` the partitions' sums, :func:`tracker.store.tally_prefix`,
and with ``TRACKER_REDIS_SPREAD_CLICKS`` the clicks, :func:`tracker.store.click_prefix`,
and with ``TRACKER_REDIS_SPREAD_PATHS`` the touch paths, :func:`tracker.store.path_prefix`):
with everything but the ids in the store's slot, with the sums spread, with the sums
and the clicks spread, and with the paths too, and the ratios between them. Figures are
shares of the cluster's whole, measured in the same run; the machine's conditions are
printed before and after.

The store's slot gets a primary of its own first (:func:`harness.redis_cluster.isolate`
moves the slots of the other hash tags off it), so that primary's Redis CPU is what the
store's slot costs: every worker's transaction runs there, one at a time, so its cost
an event sets the rate no number of workers can pass.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from redis import Redis

from bench.conditions import describe, settle
from bench.pipeline import synthetic_events
from harness import redis_cluster
from harness.services import ROOT
from tracker.events import Event
from tracker.redis_clients import async_client
from tracker.settings import Settings
from tracker.store import Keys, tally_prefix
from tracker.stream.sink import Record, Sink

ENVIRONMENT = {
    "TRACKER_REDIS_CLUSTER_PORT": "22501",
    "TRACKER_REDIS_CLUSTER_DIR": str(ROOT / ".run/bench-redis-cluster"),
}
PARTITIONS = 8


async def apply(settings: Settings, events: list[Event], batch: int, per_record: int) -> float:
    """Apply ``events`` in batches as a worker does; seconds taken."""
    records = [
        Record("events", (i // per_record) % PARTITIONS, i // per_record // PARTITIONS, chunk)
        for i in range(0, len(events), per_record)
        for chunk in [events[i : i + per_record]]
    ]
    client = async_client(settings)
    sink = Sink(client, settings)
    started = time.perf_counter()
    try:
        for start in range(0, len(records), batch):
            await sink.apply(records[start : start + batch])
        return time.perf_counter() - started
    finally:
        await sink.aclose()
        await client.aclose()


def primaries(cluster: redis_cluster.Cluster) -> dict[int, dict[str, Any]]:
    """Each primary's number -> its INFO (cpu, memory)."""
    found = {}
    for node in range(1, redis_cluster.NODES + 1):
        client = Redis(host="127.0.0.1", port=cluster.port(node))
        info = client.info()
        client.close()
        if info["role"] == "master":
            found[node] = info
    return found


def cpu(info: dict[str, Any]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-record", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100, help="records a transaction")
    args = parser.parse_args()
    print(describe())
    print(settle())
    events = synthetic_events(args.events, seed=3)
    with redis_cluster.running(ENVIRONMENT) as cluster:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        alone = isolate_store(cluster, Settings(redis_url=cluster.url, redis_prefix=prefix))
        print(f"primary {alone} serves the store's slot and none of its shards' or partitions'")
        runs = []
        layouts = ((False, False, False), (True, False, False), (True, True, False), (True,) * 3)
        for sums, clicks, paths in layouts:
            settings = Settings(
                redis_url=cluster.url,
                redis_prefix=prefix,
                redis_spread_sums=sums,
                redis_spread_clicks=clicks,
                redis_spread_paths=paths,
            )
            runs.append(measure(cluster, settings, events, args))
            redis_cluster.forget_keys(settings)
    still, spread, both, everything = runs
    print(
        f"sums spread against not, same events, same run: events/s "
        f"{spread.rate / still.rate:.2f}x, the cluster's Redis CPU "
        f"{sum(spread.cpu.values()) / sum(still.cpu.values()):.2f}x, the busiest primary's "
        f"{max(spread.cpu.values()) / max(still.cpu.values()):.2f}x, the store's slot's "
        f"{spread.cpu[spread.own] / still.cpu[still.own]:.2f}x"
    )
    print(
        f"clicks spread too, against the sums alone: events/s {both.rate / spread.rate:.2f}x, "
        f"the store's slot's Redis CPU {both.cpu[both.own] / spread.cpu[spread.own]:.2f}x "
        f"and memory {both.memory[both.own] / spread.memory[spread.own]:.2f}x"
    )
    print(
        f"paths spread too, against the sums and clicks: events/s "
        f"{everything.rate / both.rate:.2f}x, the cluster's Redis CPU "
        f"{sum(everything.cpu.values()) / sum(both.cpu.values()):.2f}x, the store's slot's "
        f"{everything.cpu[everything.own] / both.cpu[both.own]:.2f}x and memory "
        f"{everything.memory[everything.own] / both.memory[both.own]:.2f}x"
    )
    print(describe())


@dataclass(frozen=True, slots=True)
class Run:
    rate: float
    """Events/s of the one sink."""
    cpu: dict[int, float]
    """Each primary's Redis CPU (s)."""
    memory: dict[int, int]
    """Each primary's memory grown (bytes)."""
    own: int
    """The primary of the store's slot."""


def isolate_store(cluster: redis_cluster.Cluster, settings: Settings) -> int:
    """Move every other hash tag of ``settings``' keys off the primary of the store's slot,
    so that its Redis CPU and memory are the store's slot's alone; that primary."""
    root = settings.key_prefix
    tags = redis_cluster.shard_prefixes(root) + [tally_prefix(root, p) for p in range(PARTITIONS)]
    return redis_cluster.isolate(cluster, Keys(root).health, (f"{tag}:" for tag in tags))


def held_by_kind(
    cluster: redis_cluster.Cluster, node: int, prefix: str
) -> dict[str, tuple[int, int]]:
    """Of the keys under ``prefix`` on ``node``, by kind (``path`` of ``P:path:<id>``), how
    many and their bytes by ``MEMORY USAGE``, the most bytes first."""
    client = Redis(host="127.0.0.1", port=cluster.port(node))
    try:
        names = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.memory_usage(name)
        sizes = pipe.execute()
    finally:
        client.close()
    kinds: dict[str, tuple[int, int]] = {}
    for name, size in zip(names, sizes, strict=True):
        kind = name.decode()[len(prefix) + 1 :].split(":")[0]
        count, total = kinds.get(kind, (0, 0))
        kinds[kind] = (count + 1, total + (size or 0))
    return dict(sorted(kinds.items(), key=lambda item: -item[1][1]))


def measure(
    cluster: redis_cluster.Cluster, settings: Settings, events: list[Event], args: Any
) -> Run:
    """Apply ``events``, print each primary's share and what the store's slot costs."""
    own = redis_cluster.primary_of(ENVIRONMENT, Keys(settings.key_prefix).health)
    sums = Counter(
        redis_cluster.primary_of(ENVIRONMENT, tally_prefix(settings.key_prefix, p))
        for p in range(PARTITIONS)
    )
    before = primaries(cluster)
    seconds = asyncio.run(apply(settings, events, args.batch, args.per_record))
    after = primaries(cluster)
    spent = {node: cpu(after[node]) - cpu(before[node]) for node in after}
    grown = {node: after[node]["used_memory"] - before[node]["used_memory"] for node in after}
    spread = settings.redis_spread_sums
    print(
        f"TRACKER_REDIS_SPREAD_SUMS={int(spread)} "
        f"TRACKER_REDIS_SPREAD_CLICKS={int(settings.redis_spread_clicks)} "
        f"TRACKER_REDIS_SPREAD_PATHS={int(settings.redis_spread_paths)}: "
        f"{args.events:,} events applied in "
        f"{seconds:.1f} s ({args.events / seconds:,.0f} events/s, one sink, "
        f"{PARTITIONS} partitions)"
    )
    for node in sorted(after):
        role = ", the store's slot alone" if node == own else ""
        if spread:
            role += f", the sums of {sums[node]} partitions"
        print(
            f"  primary {node}{role}: Redis CPU {spent[node]:.2f} s "
            f"({spent[node] / sum(spent.values()):.0%}), memory "
            f"{grown[node] / 2**20:+.1f} MiB ({grown[node] / sum(grown.values()):.0%})"
        )
    held = ", ".join(
        f"{kind} {count:,} ({size / count:,.0f} B each)"
        for kind, (count, size) in held_by_kind(cluster, own, settings.key_prefix).items()
    )
    print(f"  the store's slot holds, by kind of key: {held}")
    per_event, cluster_per_event = spent[own] / args.events, sum(spent.values()) / args.events
    print(
        f"  Redis CPU an event: {cluster_per_event * 1e6:.1f} us in all, "
        f"{per_event * 1e6:.2f} us of it the store's slot's, so that one Redis core would "
        f"apply {1 / per_event:,.0f} events/s, {seconds / args.events / per_event:.1f}x this "
        f"sink's rate (on paper: Redis runs commands on one thread)"
    )
    return Run(args.events / seconds, spent, grown, own)


if __name__ == "__main__":
    main()
