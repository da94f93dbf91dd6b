"""How the store's load spreads over a Redis Cluster's primaries (``make bench-shards``).

Applies the same synthetic events with the real sink to a three-primary Redis Cluster of
its own (ports 22501-22506, .run/bench-redis-cluster), as a worker would, and prints,
for each primary, the Redis CPU time and the memory it took, and which one serves the
store's own slot (every key but the counted ids, :mod:`tracker.seen`). Figures are
shares of the cluster's whole, measured in the same run; the machine's conditions are
printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from redis import Redis

from bench.conditions import describe, settle
from bench.pipeline import synthetic_events
from harness import redis_cluster
from harness.services import ROOT
from tracker.events import Event
from tracker.redis_clients import async_client
from tracker.settings import Settings
from tracker.store import Keys
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
        settings = Settings(redis_url=cluster.url, redis_prefix=f"bench-{uuid.uuid4().hex[:8]}")
        own = redis_cluster.primary_of(ENVIRONMENT, Keys(settings.key_prefix).health)
        before = primaries(cluster)
        seconds = asyncio.run(apply(settings, events, args.batch, args.per_record))
        after = primaries(cluster)
        spent = {node: cpu(after[node]) - cpu(before[node]) for node in after}
        grown = {node: after[node]["used_memory"] - before[node]["used_memory"] for node in after}
        print(
            f"{args.events:,} events applied in {seconds:.1f} s "
            f"({args.events / seconds:,.0f} events/s, one sink, {PARTITIONS} partitions)"
        )
        for node in sorted(after):
            role = ", the store's slot" if node == own else ""
            print(
                f"primary {node}{role}: Redis CPU {spent[node]:.2f} s "
                f"({spent[node] / sum(spent.values()):.0%}), memory "
                f"{grown[node] / 2**20:+.1f} MiB ({grown[node] / sum(grown.values()):.0%})"
            )
        redis_cluster.forget_keys(settings)
    print(describe())


if __name__ == "__main__":
    main()
