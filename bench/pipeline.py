"""Pipeline benchmark: a worker's sustained events/s and acceptance-to-visibility delay.

Run with ``make bench`` (Kafka and Redis are started when missing). In one run:

1. preloads a fresh topic with records as the collector writes them;
2. ceiling: a bare aiokafka consumer (getmany, orjson, one dict increment per event);
3. one ``tracker worker`` process through the full processing into Redis, with the
   event ids of two earlier days remembered first, as after two days of traffic: its
   lookups search three days of seen ids, as they do from then on;
4. the Redis memory of the deduplication state, against a key per event id (the layout
   before the seen buckets of :mod:`tracker.store`) written for the same ids;
5. freshness: under steady load through the collector, the delay from a pixel's 200
   to its campaign appearing in ``/v1/kpis`` (p50, p90, p99 and the slowest), and how
   many AOF rewrites Redis ran meanwhile (each forks and, with ``appendfsync always``,
   can hold up the writes of the moment) and the longest stall of each kind its latency
   monitor saw (a fork, an fsync, a slow command).

Figures are printed with the ratio to the ceiling measured in the same run, since
these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis import Redis

from bench.conditions import describe, settle
from harness.isolation import forgotten, isolated_settings
from harness.processes import http_get, tracker, wait_for
from harness.services import all_services
from tracker import simulate
from tracker.events import Context, Event, Rules, parse_event
from tracker.kafka import ensure_topics
from tracker.market import BROWSER
from tracker.records import encode_events, partition_of
from tracker.redis_clients import async_client
from tracker.seen import (
    CLAIMS_KEPT_S,
    GENERATION_S,
    SEEN_TTL_S,
    SHARDS,
    Claim,
    Claims,
    seen_generations,
    shard_prefix,
)
from tracker.settings import Settings
from tracker.store import Keys


def synthetic_events(count: int, seed: int) -> list[Event]:
    rules = Rules(currencies=frozenset({"USD"}), default_currency="USD")
    now = int(time.time() * 1000)
    raw = simulate.sample(count, seed, now, campaign_count=50)
    return [parse_event(item, Context(received_at=now), rules) for item in raw]


async def preload(settings: Settings, events: list[Event], per_record: int) -> int:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        partitions: dict[int, list[Event]] = {}
        for event in events:
            partitions.setdefault(partition_of(event, settings.topic_partitions), []).append(event)
        sends = []
        for partition, items in partitions.items():
            for start in range(0, len(items), per_record):
                chunk = encode_events(items[start : start + per_record])
                sends.append(await producer.send(settings.events_topic, chunk, partition=partition))
        await asyncio.gather(*sends)
        return len(sends)
    finally:
        await producer.stop()


async def bare_consumer(settings: Settings, total: int) -> float:
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    seen = 0
    started = None
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            started = started or time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    for item in orjson.loads(message.value):
                        counts[item["type"]] += 1
                        seen += 1
        return total / (time.perf_counter() - (started or 0))
    finally:
        await consumer.stop()


def faust_counter(settings: Settings, records: int) -> float:
    """Records/s of a Faust agent that only counts what ``stream.take()`` hands it."""
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.faust_counter",
            "--topic",
            settings.events_topic,
            "--records",
            str(records),
            "--app-id",
            settings.app_id + "-counter",
            "--bootstrap",
            settings.kafka_bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    return float(output.split("faust-counter ")[1].split()[0])


def memory_usage(redis: Redis, names: Iterable[bytes | str]) -> int:
    """Bytes Redis spends on the keys ``names`` (MEMORY USAGE of each), whatever else it holds.

    MEMORY USAGE leaves out a key's entry in the expiry table and its hash-table slots,
    some 64 bytes a key: less of a layout's cost the fewer keys it spreads over.
    """
    total = 0
    batch: list[bytes | str] = []
    for key in [*names, None]:
        if key is not None:
            batch.append(key)
        if len(batch) == 5000 or (key is None and batch):
            pipe = redis.pipeline(transaction=False)
            for name in batch:
                pipe.memory_usage(name, samples=0)
            total += sum(size or 0 for size in pipe.execute())
            batch = []
    return total


def prefix_memory(redis: Redis, prefix: str) -> int:
    """Bytes Redis spends on this run's keys, but the claims (:func:`claims_memory`)."""
    names = redis.scan_iter(f"{prefix}:*", count=5000)
    return memory_usage(redis, (name for name in names if b":claims:" not in name))


def claims_memory(settings: Settings) -> tuple[int, int]:
    """Bytes of the claims of counted ids (:mod:`tracker.seen`), and how many they hold:
    the ids of the last minute, whatever the day holds."""
    redis = Redis.from_url(settings.redis_url)
    names = list(redis.scan_iter(f"{settings.key_prefix}:*:claims:*", count=5000))
    pipe = redis.pipeline(transaction=False)
    for name in names:
        if not name.endswith(b":marks"):
            pipe.zcard(name)
    held = sum(pipe.execute())
    used = memory_usage(redis, names)
    redis.close()
    return used, held


def remember_earlier_days(settings: Settings, count: int) -> None:
    """``count`` new event ids counted one day ago and as many two days ago."""

    async def remember() -> None:
        redis = async_client(settings)
        claims = Claims(settings, redis)
        now = int(time.time())
        for days in (1, 2):
            ids = [str(uuid.uuid4()) for _ in range(count)]
            for start in range(0, count, 5000):
                firsts = {event_id: start for event_id in ids[start : start + 5000]}
                claim = Claim(f"earlier-{days}", 0, start - 1, firsts)
                await claims.claim([claim], now - days * GENERATION_S)
        await claims.aclose()
        await redis.aclose()

    asyncio.run(remember())


def dedup_memory(settings: Settings) -> tuple[int, int, int]:
    """Bytes of the seen generations of every shard, their keys, their ids."""
    redis = Redis.from_url(settings.redis_url)
    names: list[str] = []
    ids = 0
    for shard in range(SHARDS):
        keys = Keys(shard_prefix(settings.key_prefix, shard))
        for generation in seen_generations(int(time.time())):
            meta = redis.hgetall(keys.seen(generation))
            if meta:
                ids += int(meta[b"ids"])
                names.append(keys.seen(generation))
                buckets = range(int(meta[b"buckets"]))
                names += [keys.seen_bucket(generation, bucket) for bucket in buckets]
    used = memory_usage(redis, names)
    redis.close()
    return used, len(names), ids


def key_per_id_memory(settings: Settings, ids: Sequence[str]) -> int:
    """Bytes of a key per id with a 48 h TTL, the layout before the seen buckets, written
    for ``ids`` and deleted again."""
    redis = Redis.from_url(settings.redis_url)
    # The key the worker wrote before, under the same prefix: a longer name could take
    # a larger allocation.
    names = [Keys(settings.key_prefix).legacy_seen(event_id) for event_id in ids]
    for start in range(0, len(names), 5000):
        pipe = redis.pipeline(transaction=False)
        for name in names[start : start + 5000]:
            pipe.set(name, "1", ex=SEEN_TTL_S)
        pipe.execute()
    used = memory_usage(redis, names)
    for start in range(0, len(names), 5000):
        redis.unlink(*names[start : start + 5000])
    redis.close()
    return used


def worker_throughput(settings: Settings, total: int, workers: int = 1) -> tuple[float, int]:
    """Events/s of ``workers`` worker processes, and Redis memory used per event."""
    redis = Redis.from_url(settings.redis_url)
    health = Keys(settings.key_prefix).health

    def applied() -> int:
        return int(redis.hget(health, "events") or 0)

    with ExitStack() as stack:
        for index in range(workers):
            port = settings.worker_port + index
            stack.enter_context(
                tracker(
                    "worker",
                    dataclasses.replace(settings, worker_port=port),
                    f"http://127.0.0.1:{port}/healthz",
                )
            )
        wait_for(applied, timeout=120, what="worker applying")
        first, started = applied(), time.perf_counter()
        wait_for(lambda: applied() >= total, timeout=600, what="every event applied")
        elapsed = time.perf_counter() - started
    memory = prefix_memory(redis, settings.redis_prefix)
    redis.close()
    return (total - first) / elapsed, memory


@dataclasses.dataclass
class Stalls:
    """What held Redis up during a block of :func:`stalls`."""

    threshold_ms: int
    """Stalls shorter than this go unseen."""
    rewrites: int = 0
    """AOF rewrites run."""
    longest: dict[str, int] = dataclasses.field(default_factory=dict)
    """The longest stall of each kind Redis's latency monitor saw (``fork``,
    ``aof-fsync-always``, ``command``...), in ms, of those over the threshold."""


@contextmanager
def stalls(settings: Settings, threshold_ms: int = 50) -> Iterator[Stalls]:
    """Redis's latency monitor (``LATENCY LATEST``) over the block, set to
    ``threshold_ms`` and back after: it tells a fork's or a slow fsync's stall from the
    tracker's own delays."""
    found = Stalls(threshold_ms)
    with Redis.from_url(settings.redis_url) as redis:
        setting = "latency-monitor-threshold"
        was = redis.config_get(setting)[setting]
        before = int(redis.info("persistence")["aof_rewrites"])
        redis.config_set(setting, threshold_ms)
        redis.execute_command("LATENCY", "RESET")
        try:
            yield found
        finally:
            for name, _, _, longest in redis.execute_command("LATENCY", "LATEST"):
                found.longest[name.decode() if isinstance(name, bytes) else name] = int(longest)
            found.rewrites = int(redis.info("persistence")["aof_rewrites"]) - before
            redis.config_set(setting, was)


def freshness(settings: Settings, rate: float, probes: int) -> list[float]:
    collector = f"http://127.0.0.1:{settings.collector_port}"
    exporter = f"http://127.0.0.1:{settings.exporter_port}"
    stop = threading.Event()

    def load() -> None:
        rng = random.Random(7)
        pool = simulate.campaigns(50, rng)
        while not stop.is_set():
            tick = time.monotonic()
            now = int(time.time() * 1000)
            batch: list[dict[str, object]] = []
            while len(batch) < rate / 10:
                batch.extend(simulate.funnel(rng.choice(pool), rng, now))
            simulate.post_batch(collector, batch)
            time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))

    delays: list[float] = []
    with (
        tracker("worker", settings, f"http://127.0.0.1:{settings.worker_port}/healthz"),
        tracker("collector", settings, f"{collector}/healthz"),
        tracker("serve", settings, f"{exporter}/healthz"),
    ):
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(3)  # warm-up: let the load reach its steady state before probing
        for _ in range(probes):
            campaign = f"probe-{uuid.uuid4().hex[:8]}"
            query = urllib.parse.urlencode({"type": "click", "campaign": campaign})
            request = urllib.request.Request(
                f"{collector}/p.gif?{query}", headers={"user-agent": BROWSER}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
            accepted = time.perf_counter()
            since = int(time.time() * 1000) - 120_000
            url = f"{exporter}/v1/kpis?dimension=campaign&window=1m&from={since}"

            def visible(campaign: str = campaign, url: str = url) -> bool:
                rows = orjson.loads(http_get(url)[1])["rows"]
                return any(row["value"] == campaign for row in rows)

            wait_for(visible, timeout=60, what="probe visible")
            delays.append(time.perf_counter() - accepted)
        stop.set()
        loader.join()
    return delays


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-record", type=int, default=500, help="events per Kafka record")
    parser.add_argument("--rate", type=float, default=2000.0, help="steady load, events/s")
    parser.add_argument(
        "--probes",
        type=int,
        default=200,
        help="one after another; with 40, p99 was the slowest probe, and one probe moved it",
    )
    args = parser.parse_args()

    # Its topics and keys deleted after: left behind, runs piled up on the broker.
    with all_services() as servers, forgotten(servers):
        settings = dataclasses.replace(isolated_settings(servers, "bench"), log_level="warning")
        run = settings.app_id
        print(describe())
        print(settle())
        events = synthetic_events(args.events, seed=1)
        records = asyncio.run(preload(settings, events, args.per_record))
        print(
            f"preloaded {len(events)} events in {records} records "
            f"({args.per_record} events per record)"
        )
        ceiling = asyncio.run(bare_consumer(settings, len(events)))
        counter = faust_counter(settings, records)
        two = dataclasses.replace(settings, redis_prefix=f"{run}-two", app_id=f"{run}-two")
        for each in (settings, two):
            remember_earlier_days(each, len(events))
        earlier, _, _ = dedup_memory(settings)
        worker, memory = worker_throughput(settings, len(events))
        dedup, dedup_keys, dedup_ids = dedup_memory(settings)
        claimed, claims = claims_memory(settings)
        ids = sorted({event.event_id for event in events})
        key_per_id = key_per_id_memory(settings, ids)
        two_workers, _ = worker_throughput(two, len(events), workers=2)
        print(f"bare aiokafka consumer (ceiling):     {ceiling:12,.0f} events/s")
        print(
            f"Faust agent counting take() batches:  {counter:12,.0f} records/s "
            f"(= {counter * args.per_record:,.0f} events/s at {args.per_record} per record)"
        )
        print(
            f"one tracker worker, full processing:  {worker:12,.0f} events/s "
            f"({worker / ceiling:.1%} of the bare consumer)"
        )
        print(
            f"two tracker workers:                  {two_workers:12,.0f} events/s "
            f"({two_workers / worker:.2f}x one worker, on {os.cpu_count()} cores shared "
            "with Kafka and Redis)"
        )
        print(
            f"Redis memory: {(memory - earlier) / len(events) * 1e6 / 2**20:,.0f} MiB per "
            "million events (each a distinct event id; the earlier days' ids left out)"
        )
        print(
            f"deduplication: {dedup / dedup_ids * 1e6 / 2**20:,.1f} MiB per million event ids "
            f"({dedup_ids:,} ids of three days in {dedup_keys:,} keys); a key per id, as "
            f"before: {key_per_id / len(ids) * 1e6 / 2**20:,.1f} MiB per million (this run's "
            f"{len(ids):,} ids; both by MEMORY USAGE, which leaves out some 64 bytes a key)"
        )
        print(
            f"claims: {claimed / claims:,.0f} bytes each, {claims:,} held (every id claimed "
            f"in the last {CLAIMS_KEPT_S} s, here this run's and the earlier days')"
        )
        live = dataclasses.replace(
            settings,
            redis_prefix=f"{run}-live",
            events_topic=f"{run}.live",
            app_id=f"{run}-live",
        )
        with stalls(live) as held:
            delays = freshness(live, args.rate, args.probes)
        longest = ", ".join(f"{name} {ms} ms" for name, ms in sorted(held.longest.items()))
        print(
            f"freshness at {args.rate:,.0f} events/s through the collector, "
            f"{len(delays)} probes: p50 {percentile(delays, 0.5) * 1000:.0f} ms, "
            f"p90 {percentile(delays, 0.9) * 1000:.0f} ms, "
            f"p99 {percentile(delays, 0.99) * 1000:.0f} ms, "
            f"slowest {max(delays) * 1000:.0f} ms, "
            f"mean {statistics.mean(delays) * 1000:.0f} ms; "
            f"Redis ran {held.rewrites} AOF rewrite(s) meanwhile; its longest stalls over "
            f"{held.threshold_ms} ms: {longest or 'none'}"
        )
        print(describe())


if __name__ == "__main__":
    main()
