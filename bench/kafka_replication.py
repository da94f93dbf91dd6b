"""What Kafka's replication costs on this machine (``make bench-kafka``).

Kafka's own producer benchmark (``org.apache.kafka.tools.ProducerPerformance``, from
the jars ``deploy/local`` fetched) sends the same records, tracker's own (JSON arrays of
100 simulated events, zstd, ``acks=all``, idempotent, as the collector sends them), as
fast as it can: first to the single dev broker (a topic of 8 partitions, one replica),
then to a three-broker cluster of its own (``deploy/local/kafka-cluster.sh``, ports
29190-29194, .run/bench-kafka-cluster; 8 partitions, 3 replicas, ``min.insync.replicas``
2). It prints each one's events/s, MB/s and latencies, and the cluster's against the
single broker's, measured in the same run; the machine's conditions before and after.
Both share this machine's cores, so the figures are what replication costs here, not
what three machines hold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.conditions import describe, settle
from bench.pipeline import synthetic_events
from harness import kafka_cluster
from harness.services import ROOT, kafka_bootstrap
from tracker.records import encode_records

ENVIRONMENT = {
    "TRACKER_KAFKA_CLUSTER_PORT": "29192",
    "TRACKER_KAFKA_CLUSTER_CONTROLLER_PORT": "29190",
    "TRACKER_KAFKA_CLUSTER_DIR": str(ROOT / ".run/bench-kafka-cluster"),
}
PARTITIONS = 8
EVENTS_PER_RECORD = 100
RESULT = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)
"""ProducerPerformance's last line."""


@dataclass(frozen=True, slots=True)
class Result:
    records_per_s: float
    mb_per_s: float
    p50_ms: int
    p99_ms: int


def libs() -> Path:
    """The Kafka jars ``deploy/local`` fetched (``make up`` or ``make test`` fetch them)."""
    cache = Path(os.environ.get("TRACKER_CACHE_DIR", ROOT / ".cache"))
    found = sorted(stamp.parent / "libs" for stamp in cache.glob("kafka-*/libs.complete"))
    if not found:
        raise SystemExit(f"no Kafka jars under {cache}: run bash deploy/local/kafka.sh start")
    return found[-1]


def payload(path: Path, count: int) -> int:
    """Write ``count`` records of tracker's own, a line each; their mean size in bytes."""
    events = synthetic_events(count * EVENTS_PER_RECORD, seed=5)
    records = [
        record
        for start in range(0, len(events), EVENTS_PER_RECORD)
        for record in encode_records(events[start : start + EVENTS_PER_RECORD])
    ]
    assert all(b"\n" not in record for record in records)  # the file's delimiter
    path.write_bytes(b"\n".join(records))
    return sum(map(len, records)) // len(records)


@asynccontextmanager
async def new_topic(bootstrap: str, replicas: int) -> AsyncIterator[str]:
    """A topic of its own, of :data:`PARTITIONS` and ``replicas`` (``min.insync.replicas``
    one fewer), deleted after."""
    name = f"bench-kafka-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {"min.insync.replicas": str(replicas - 1)} if replicas > 1 else {}
        await admin.create_topics([NewTopic(name, PARTITIONS, replicas, topic_configs=configs)])
        yield name
    finally:
        await admin.delete_topics([name])
        await admin.close()


async def produce(bootstrap: str, replicas: int, records: int, file: Path) -> Result:
    """Kafka's producer benchmark on a topic of its own of ``replicas`` replicas."""
    async with new_topic(bootstrap, replicas) as topic:
        done = await asyncio.to_thread(
            subprocess.run,
            [
                "java", "-Xmx512m", "-cp", f"{libs()}/*",
                "org.apache.kafka.tools.ProducerPerformance",
                "--topic", topic, "--num-records", str(records), "--throughput", "-1",
                "--payload-file", str(file), "--payload-delimiter", "\n",
                "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all",
                "enable.idempotence=true", "compression.type=zstd", "linger.ms=5",
                "max.request.size=8388608",
            ],
            capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
    last = RESULT.search(done.stdout.strip().splitlines()[-1])
    assert last is not None, done.stdout[-2000:]
    return Result(float(last["rate"]), float(last["mb"]), int(last["p50"]), int(last["p99"]))


def show(name: str, result: Result, record_bytes: int) -> None:
    events = result.records_per_s * EVENTS_PER_RECORD
    print(
        f"{name}: {events:,.0f} events/s ({result.records_per_s:,.0f} records of "
        f"{EVENTS_PER_RECORD} events, {result.mb_per_s:.1f} MB/s before compression, "
        f"{record_bytes:,} bytes a record), latency p50 {result.p50_ms} ms, "
        f"p99 {result.p99_ms} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records each run")
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "records"
        record_bytes = payload(file, 500)
        with kafka_bootstrap() as single:
            print(settle())
            alone = asyncio.run(produce(single, 1, args.records, file))
        show("one broker, 1 replica", alone, record_bytes)
        with kafka_cluster.running(ENVIRONMENT) as cluster:
            print(settle())
            replicated = asyncio.run(produce(cluster.bootstrap, 3, args.records, file))
        show("three brokers, 3 replicas, min.insync.replicas 2", replicated, record_bytes)
    print(
        f"three brokers against one, same records, same run: events/s "
        f"{replicated.records_per_s / alone.records_per_s:.2f}x, latency p99 "
        f"{replicated.p99_ms / max(alone.p99_ms, 1):.2f}x"
    )
    print(describe())


if __name__ == "__main__":
    main()
