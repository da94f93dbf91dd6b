"""How the store's load spreads over a Redis Cluster's primaries (``make bench-shards``).

Applies the same synthetic events with the real sink to a three-primary Redis Cluster of
its own (ports 22501-22506, .run/bench-redis-cluster), as a worker would, and prints,
for each primary, the Redis CPU time and the memory it took, and which one serves the
store's own slot (every key but the counted ids, :mod:`tracker.seen`, and with
``TRACKER_REDIS_SPREAD_SUMS`` the partitions' sums, :func:`tracker.store.tally_prefix`,
and with ``TRACKER_REDIS_SPREAD_CLICKS`` the clicks, :func:`tracker.store.click_prefix`):
with everything but the ids in the store's slot, with the sums spread, and with the sums
and the clicks spread, and the ratios between them. Figures are shares of the cluster's
whole, measured in the same run; the machine's conditions are printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
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
        runs = []
        for sums, clicks in ((False, False), (True, False), (True, True)):
            settings = Settings(
                redis_url=cluster.url,
                redis_prefix=prefix,
                redis_spread_sums=sums,
                redis_spread_clicks=clicks,
            )
            runs.append(measure(cluster, settings, events, args))
            redis_cluster.forget_keys(settings)
    (still, still_cpu, _), (spread, spread_cpu, summed), (both, _, clicked) = runs
    print(
        f"sums spread against not, same events, same run: events/s {spread / still:.2f}x, "
        f"the cluster's Redis CPU {sum(spread_cpu.values()) / sum(still_cpu.values()):.2f}x, "
        f"the busiest primary's {max(spread_cpu.values()) / max(still_cpu.values()):.2f}x"
    )
    print(
        f"clicks spread too, against the sums alone: events/s {both / spread:.2f}x, the "
        f"store's slot's primary's memory {clicked / summed:.2f}x"
    )
    print(describe())


def measure(
    cluster: redis_cluster.Cluster, settings: Settings, events: list[Event], args: Any
) -> tuple[float, dict[int, float], int]:
    """Apply ``events``, print each primary's share; events/s, each primary's CPU s and
    the memory the store's slot's primary took."""
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
        f"TRACKER_REDIS_SPREAD_CLICKS={int(settings.redis_spread_clicks)}: "
        f"{args.events:,} events applied in "
        f"{seconds:.1f} s ({args.events / seconds:,.0f} events/s, one sink, "
        f"{PARTITIONS} partitions)"
    )
    for node in sorted(after):
        role = ", the store's slot" if node == own else ""
        if spread:
            role += f", the sums of {sums[node]} partitions"
        print(
            f"  primary {node}{role}: Redis CPU {spent[node]:.2f} s "
            f"({spent[node] / sum(spent.values()):.0%}), memory "
            f"{grown[node] / 2**20:+.1f} MiB ({grown[node] / sum(grown.values()):.0%})"
        )
    return args.events / seconds, spent, grown[own]


if __name__ == "__main__":
    main()
