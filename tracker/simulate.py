"""Realistic traffic for demos, benchmarks and tests, sent through the collector.

Each simulated campaign has its own channel and funnel: impressions convert to
clicks at its CTR, clicks cost its CPC, clicks convert at its CVR with order
values around its average order value. Visitors browse as real browsers do, with
a user agent; a small share are crawlers. Everything derives from ``seed``.

With known response curves (:mod:`tracker.market`), :func:`backfill` sends days of
history at once and :func:`run_curves` continues in real time.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from tracker.channels import CHANNELS
from tracker.ids import new_id
from tracker.market import BROWSER, ChannelCurve, day_events
from tracker.windows import Calendar

if TYPE_CHECKING:
    from tracker.scenarios import Scenario

log = structlog.get_logger(__name__)

PAID_CHANNELS = tuple(c for c in CHANNELS if c not in ("direct", "other"))
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


def sample(count: int, seed: int, now_ms: int, campaign_count: int = 20) -> list[dict[str, Any]]:
    """``count`` events of visitors' funnels over ``campaign_count`` campaigns: the
    benchmarks' realistic input. The same seed gives the same events but for their
    ids, which are minted fresh."""
    rng = random.Random(seed)
    pool = campaigns(campaign_count, rng)
    events: list[dict[str, Any]] = []
    while len(events) < count:
        events.extend(funnel(rng.choice(pool), rng, now_ms))
    return events[:count]


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
    scenario: Scenario | None = None,
) -> int:
    """Send about ``rate`` events a second for ``duration`` seconds (forever if None).

    ``scenario`` (:mod:`tracker.scenarios`) sets the campaigns' shares and changes their
    funnels as the run goes on; without one, each keeps its own for the whole run.
    Returns how many events the collector accepted.
    """
    rng = random.Random(seed)
    pool = campaigns(campaign_count, rng)
    weights = [rng.paretovariate(1.5) for _ in pool]  # a few big campaigns, a long tail
    if scenario is not None:
        pool, weights = scenario.market(pool, weights)
    accepted = 0
    started = time.monotonic()
    debt = 0.0
    while duration is None or time.monotonic() - started < duration:
        tick = time.monotonic()
        debt += rate * batch_interval
        events: list[dict[str, Any]] = []
        now_ms = int(time.time() * 1000)
        shaped = pool if scenario is None else [scenario.at(c, tick - started) for c in pool]
        while len(events) < debt:
            campaign = rng.choices(shaped, weights)[0]
            events.extend(funnel(campaign, rng, now_ms))
        debt -= len(events)
        for chunk in range(0, len(events), 1000):
            try:
                accepted += post_batch(collector_url, events[chunk : chunk + 1000])["accepted"]
            except (urllib.error.URLError, OSError) as exc:
                log.warning("collector did not take a batch", error=str(exc))
        time.sleep(max(0.0, batch_interval - (time.monotonic() - tick)))
    return accepted


def send(collector_url: str, events: list[dict[str, Any]], deadline_s: float = 60.0) -> int:
    """POST ``events`` in batches, in order, retrying a batch the collector could not take.

    Returns how many were accepted; raises ``TimeoutError`` when the collector does not
    take a batch within ``deadline_s``. Order matters for history: the worker judges
    lateness per partition against the newest event time it has seen there.
    """
    accepted = 0
    for chunk in range(0, len(events), 1000):
        batch = events[chunk : chunk + 1000]
        deadline = time.monotonic() + deadline_s
        delay = 0.1
        while True:
            try:
                answer = post_batch(collector_url, batch)
                break
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    raise TimeoutError(f"the collector did not take a batch: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        accepted += answer["accepted"]
        if answer["rejected"]:
            reasons = [r.get("reasons") for r in answer["results"] if r["status"] == "rejected"]
            log.warning("collector rejected events", count=answer["rejected"], first=reasons[0])
    return accepted


def backfill(
    collector_url: str,
    curves: list[ChannelCurve],
    *,
    days: int,
    seed: int,
    calendar: Calendar,
    now_ms: int | None = None,
) -> int:
    """Send ``days`` whole past local days of the curves' traffic, oldest day first.

    Returns how many events the collector accepted. The days must lie within the
    collector's ``max_age_days``, and the topic's partitions must not have seen newer
    events yet (those would make the history late): backfill before live traffic.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    accepted = 0
    for day in calendar.days_before(now_ms, days):
        accepted += send(collector_url, day_events(curves, day, seed, calendar))
        log.info("backfilled a day", day=calendar.day_of(day), accepted=accepted)
    return accepted


def run_curves(
    collector_url: str,
    curves: list[ChannelCurve],
    *,
    duration: float | None,
    seed: int,
    calendar: Calendar,
    batch_interval: float = 1.0,
) -> int:
    """Live traffic of the curves: each local day's events sent as their time comes.

    The part of today already past is sent at once. Runs ``duration`` seconds
    (forever if None); returns how many events the collector accepted.
    """
    started = time.monotonic()
    now_ms = int(time.time() * 1000)
    day = calendar.bucket_start(now_ms, "1d")
    pending = day_events(curves, day, seed, calendar)
    accepted = 0
    while duration is None or time.monotonic() - started < duration:
        now_ms = int(time.time() * 1000)
        if now_ms >= calendar.bucket_end(day, "1d"):
            day = calendar.bucket_end(day, "1d")
            pending += day_events(curves, day, seed, calendar)
        due = next((i for i, e in enumerate(pending) if e["ts"] > now_ms), len(pending))
        if due:
            try:
                accepted += send(collector_url, pending[:due], deadline_s=batch_interval * 10)
            except TimeoutError as exc:
                log.warning("collector did not take a batch", error=str(exc))
            del pending[:due]
        time.sleep(max(0.0, min(batch_interval, duration or batch_interval)))
    return accepted
