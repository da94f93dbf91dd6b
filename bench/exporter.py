"""Exporter benchmark: /metrics scrape time and size by number of campaigns; /v1/kpis rate.

Fills a fresh Redis prefix with N campaigns (all-time totals and the current 1m, 1h
and 1d buckets, every metric the worker writes), runs ``tracker serve`` on it, and
times real scrapes over HTTP. Series count must not grow past the top-N campaigns.
"""

from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from redis import Redis

from bench.conditions import describe
from tests.conftest import free_port
from tests.processes import http_get, tracker
from tests.services import redis_url
from tracker.attribution import MODELS
from tracker.settings import Settings
from tracker.store import Keys
from tracker.windows import ALL_TIME, WINDOWS, bucket_start


def fill(redis: Redis, keys: Keys, campaigns: int) -> None:
    now = int(time.time() * 1000)
    buckets = [(ALL_TIME, 0)] + [(w, bucket_start(now, w)) for w in WINDOWS]
    channels = ("search", "social", "email", "affiliate", "display")
    pipe = redis.pipeline(transaction=False)
    for window, start in buckets:
        mapping: dict[str, int] = {}
        for i in range(campaigns):
            for dim, value in (("campaign", f"c{i:05d}"), ("channel", channels[i % 5])):
                for metric, amount in (
                    ("impressions", 1000 + i),
                    ("clicks", 50),
                    ("spend", 25_000_000 + i),
                    ("bots", 3),
                    ("customers", 2),
                    ("customer_revenue", 90_000_000),
                ):
                    mapping[keys.field(dim, value, metric)] = amount
                for model in MODELS:
                    mapping[keys.field(dim, value, f"conversions@{model}")] = 2_000_000
                    mapping[keys.field(dim, value, f"revenue@{model}")] = 80_000_000
        pipe.hset(keys.bucket(window, start), mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(keys.bucket(window, start), 3600)
    pipe.execute()


def main() -> None:
    print(describe())
    with redis_url() as url:
        redis = Redis.from_url(url)
        for campaigns in (100, 1_000, 10_000):
            prefix = f"bench-exp-{uuid.uuid4().hex[:6]}"
            settings = Settings(
                redis_url=url,
                redis_prefix=prefix,
                exporter_port=free_port(),
                events_topic=f"{prefix}.events",
                log_level="warning",
            )
            keys = Keys(prefix)
            fill(redis, keys, campaigns)
            base = f"http://127.0.0.1:{settings.exporter_port}"
            with tracker("serve", settings, f"{base}/healthz"):
                http_get(f"{base}/metrics")  # warm-up
                times, size, series = [], 0, 0
                for _ in range(10):
                    started = time.perf_counter()
                    status, body = http_get(f"{base}/metrics", timeout=30)
                    times.append(time.perf_counter() - started)
                    assert status == 200
                    size = len(body)
                    series = sum(
                        1 for line in body.splitlines() if line and not line.startswith(b"#")
                    )
                query = f"{base}/v1/kpis?dimension=campaign&window=1h"
                started = time.perf_counter()
                with ThreadPoolExecutor(8) as pool:
                    answers = pool.map(lambda _, q=query: http_get(q, timeout=30), range(200))
                    for status, _ in answers:
                        assert status == 200
                rate = 200 / (time.perf_counter() - started)
            print(
                f"{campaigns:>6} campaigns: scrape p50 {statistics.median(times) * 1000:6.1f} ms, "
                f"max {max(times) * 1000:6.1f} ms, {size / 1024:7.1f} KiB, {series} series; "
                f"/v1/kpis (all campaigns, 1h) {rate:6.1f} requests/s"
            )
            for key in redis.scan_iter(f"{prefix}:*"):
                redis.delete(key)
        redis.close()
    print(describe())


if __name__ == "__main__":
    main()
