"""Exporter benchmark: /metrics scrape time and size by number of campaigns; /v1/kpis rate.

Fills a fresh Redis prefix with N campaigns (all-time totals and the current 1m, 1h
and 1d buckets, every metric the worker writes), runs ``tracker serve`` on it, and
times real scrapes over HTTP. Series count must not grow past the top-N campaigns.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from bench.conditions import describe
from harness.isolation import free_port
from harness.processes import http_get, tracker
from harness.services import redis_url
from tracker.events import Event
from tracker.settings import Settings
from tracker.stream.sink import Record, Sink


def fill(settings: Settings, campaigns: int) -> None:
    """Write ``campaigns`` campaigns through the worker's own sink, so every index
    ``/metrics`` relies on (rank, campaign sums, buckets) is as in production."""
    now = int(time.time() * 1000)
    channels = ("search", "social", "email", "affiliate", "display")

    def funnel(i: int) -> list[Event]:
        name, channel, person = f"c{i:05d}", channels[i % 5], f"p{i}"
        common: dict[str, Any] = {
            "ts": now,
            "received_at": now,
            "campaign": name,
            "channel": channel,
            "anonymous_id": person,
        }
        return [
            Event(event_id=f"i{i}", type="impression", cost=10_000, **common),
            Event(event_id=f"k{i}", type="click", click_id=f"k{i}", cost=250_000 + i, **common),
            Event(
                event_id=f"v{i}",
                type="conversion",
                value=40_000_000,
                order_id=f"o{i}",
                status="approved",
                goal="purchase",
                **common,
            ),
        ]

    async def write() -> None:
        redis = AsyncRedis.from_url(settings.redis_url)
        sink = Sink(redis, settings)
        for offset, start in enumerate(range(0, campaigns, 500)):
            events = [e for i in range(start, min(start + 500, campaigns)) for e in funnel(i)]
            await sink.apply([Record("bench", 0, offset, events)])
        await redis.aclose()

    asyncio.run(write())


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
            fill(settings, campaigns)
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
                rates = {}
                for dimension in ("channel", "campaign"):
                    query = f"{base}/v1/kpis?dimension={dimension}&window=1h"
                    started = time.perf_counter()
                    with ThreadPoolExecutor(4) as pool:
                        answers = list(
                            pool.map(lambda _, q=query: http_get(q, timeout=60), range(40))
                        )
                    assert all(status == 200 for status, _ in answers), answers[0]
                    rates[dimension] = 40 / (time.perf_counter() - started)
            print(
                f"{campaigns:>6} campaigns: scrape p50 {statistics.median(times) * 1000:6.1f} ms, "
                f"max {max(times) * 1000:6.1f} ms, {size / 1024:7.1f} KiB, {series} series; "
                f"/v1/kpis 1h: by channel {rates['channel']:6.1f}/s, "
                f"every campaign {rates['campaign']:6.1f}/s"
            )
            for key in redis.scan_iter(f"{prefix}:*"):
                redis.delete(key)
        redis.close()
    print(describe())


if __name__ == "__main__":
    main()
