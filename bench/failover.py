"""Failover benchmark: how long the store stands still when Redis Sentinel replaces its
primary, and what the promoted replica lacked.

``python -m bench.failover`` starts a primary, its replica and three Sentinels of its
own (harness/redis_sentinel.py), and writes through tracker's own client
(``TRACKER_REDIS_URL=redis+sentinel://...``) every few milliseconds, as a worker's
transactions come: an ``INCR``, whose answer is the count acknowledged so far. Then it
SIGKILLs the primary, and again once the old one is back as the new one's replica,
``--runs`` times for each ``--down-after-ms`` (how long the Sentinels wait before they
hold a primary down; Redis's default is 30,000).

Printed per failover: the pause (the last write acknowledged before the kill to the
first after it, on the promoted primary), and the writes the old primary acknowledged
that the promoted one lacked. The worker reads those batches again from Kafka (README,
Running at scale); a save that must outlive a failover (goals, an erasure) waits for
the replica instead, and is never among them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from redis.exceptions import ConnectionError, TimeoutError

from bench.conditions import describe, settle
from harness import redis_sentinel
from tracker.redis_clients import async_client
from tracker.settings import Settings

_EVERY_S = 0.005
"""Between writes: 200 a second, a busy worker's transactions and more."""


async def failover(setup: redis_sentinel.Sentinels, settings: Settings) -> tuple[float, int]:
    """One failover under writes: the pause in seconds, and the acknowledged writes lost."""
    client = async_client(settings)
    key = f"{settings.key_prefix}:bench:failover"
    try:
        acknowledged = 0
        for _ in range(200):  # writes flowing before the crash
            acknowledged = int(await client.incr(key))
            await asyncio.sleep(_EVERY_S)
        old = setup.primary()
        last = time.monotonic()
        setup.kill(old)
        while True:
            try:
                after = int(await client.incr(key))
                break
            except (ConnectionError, TimeoutError):
                await asyncio.sleep(_EVERY_S)
        pause = time.monotonic() - last
        await asyncio.to_thread(setup.start, old)  # back, as the promoted one's replica
        return pause, acknowledged - (after - 1)
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="failovers per setting")
    parser.add_argument(
        "--down-after-ms", type=int, nargs="+", default=[1000, 5000],
        help="the Sentinels' down-after-milliseconds, each in a setup of its own",
    )  # fmt: skip
    args = parser.parse_args()
    print(describe())
    print(settle())
    print(f"{'down after':>10} {'failover':>8} {'pause s':>8} {'lost writes':>11}")
    for down_after in args.down_after_ms:
        pauses = []
        with (
            tempfile.TemporaryDirectory() as folder,
            redis_sentinel.running(Path(folder), down_after_ms=down_after) as setup,
        ):
            settings = Settings(redis_url=setup.url)
            for run in range(1, args.runs + 1):
                pause, lost = asyncio.run(failover(setup, settings))
                pauses.append(pause)
                print(f"{down_after:>8}ms {run:>8} {pause:>8.2f} {lost:>11}")
        spread = f"{min(pauses):.2f}-{max(pauses):.2f}"
        print(
            f"down after {down_after} ms: pause median {statistics.median(pauses):.2f} s ({spread})"
        )


if __name__ == "__main__":
    main()
