"""Realistic traffic for demos, benchmarks and tests, sent through the collector.

Each simulated campaign has its own channel and funnel: impressions convert to
clicks at its CTR, clicks cost its CPC, clicks convert at its CVR with order
values around its average order value. Visitors browse as real browsers do, with
a user agent; a small share are crawlers. Everything derives from ``seed``.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from tracker.channels import CHANNELS
from tracker.events import new_id

log = structlog.get_logger(__name__)

PAID_CHANNELS = tuple(c for c in CHANNELS if c not in ("direct", "other"))
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0"
CRAWLER = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@dataclass(frozen=True, slots=True)
class Campaign:
    name: str
    channel: str
    ctr: float
    cvr: float
    cpc: float
    order_value: float


def campaigns(count: int, rng: random.Random) -> list[Campaign]:
    """``count`` campaigns spread over the paid channels, each with its own funnel."""
    return [
        Campaign(
            name=f"{channel}-{index:03d}",
            channel=channel,
            ctr=rng.uniform(0.01, 0.08),
            cvr=rng.uniform(0.01, 0.10),
            cpc=round(rng.uniform(0.2, 2.5), 2),
            order_value=round(rng.uniform(20, 180), 2),
        )
        for index in range(count)
        for channel in (PAID_CHANNELS[index % len(PAID_CHANNELS)],)
    ]


def funnel(
    campaign: Campaign, rng: random.Random, now_ms: int, bot_share: float = 0.02
) -> Iterator[dict[str, Any]]:
    """One visitor's events for one impression of ``campaign``."""
    bot = rng.random() < bot_share
    visitor = new_id(now_ms)
    common = {
        "campaign": campaign.name,
        "channel": campaign.channel,
        "anonymous_id": visitor,
        "user_agent": CRAWLER if bot else BROWSER,
        "ts": now_ms,
    }
    yield {"type": "impression", "event_id": new_id(now_ms), **common}
    if rng.random() >= campaign.ctr:
        return
    click_id = new_id(now_ms)
    yield {
        "type": "click",
        "event_id": new_id(now_ms),
        "click_id": click_id,
        "cost": campaign.cpc,
        **common,
    }
    if rng.random() >= campaign.cvr:
        return
    value = round(max(1.0, rng.gauss(campaign.order_value, campaign.order_value / 4)), 2)
    yield {
        "type": "conversion",
        "event_id": new_id(now_ms),
        "click_id": click_id,
        "order_id": new_id(now_ms),
        "value": value,
        "goal": "purchase",
        **common,
    }


def post_batch(collector_url: str, events: list[dict[str, Any]], timeout: float = 10.0) -> Any:
    """POST events to the collector's batch endpoint; returns its JSON answer."""
    request = urllib.request.Request(
        collector_url.rstrip("/") + "/v1/events",
        data=orjson.dumps(events),
        headers={"content-type": "application/json", "user-agent": BROWSER},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return orjson.loads(answer.read())


def run(
    collector_url: str,
    *,
    rate: float,
    duration: float | None,
    campaign_count: int,
    seed: int,
    batch_interval: float = 0.2,
) -> int:
    """Send about ``rate`` events a second for ``duration`` seconds (forever if None).

    Returns how many events the collector accepted.
    """
    rng = random.Random(seed)
    pool = campaigns(campaign_count, rng)
    weights = [rng.paretovariate(1.5) for _ in pool]  # a few big campaigns, a long tail
    accepted = 0
    started = time.monotonic()
    debt = 0.0
    while duration is None or time.monotonic() - started < duration:
        tick = time.monotonic()
        debt += rate * batch_interval
        events: list[dict[str, Any]] = []
        now_ms = int(time.time() * 1000)
        while len(events) < debt:
            campaign = rng.choices(pool, weights)[0]
            events.extend(funnel(campaign, rng, now_ms))
        debt -= len(events)
        for chunk in range(0, len(events), 1000):
            try:
                accepted += post_batch(collector_url, events[chunk : chunk + 1000])["accepted"]
            except (urllib.error.URLError, OSError) as exc:
                log.warning("collector did not take a batch", error=str(exc))
        time.sleep(max(0.0, batch_interval - (time.monotonic() - tick)))
    return accepted
