"""A seeded event log with every hard case, and a deliberately simple reference count.

The reference shares no code with the pipeline: it re-states the rules from the
README (dedup, bots, late events, spend upserts, causality over clocks, attribution
models, refunds, the reporting time zone's days) in the plainest Python, with exact
fractions and the standard library's ``zoneinfo``, so a pipeline bug cannot hide in
both.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
RATES = {"USD": Decimal(1), "EUR": Decimal("1.08"), "GBP": Decimal("1.27")}
RATES_SETTING = "EUR=1.08,GBP=1.27"
HALF_LIFE_MS = MINUTE  # so whole-minute gaps give exact powers of two in time_decay
SKEW_MS = 300_000  # TRACKER_CLOCK_SKEW_S's default
LOOKBACK_MS = 30 * DAY  # TRACKER_LOOKBACK_DAYS's default
PATH_MAX = 20  # TRACKER_PATH_MAX_TOUCHES's default
CLOCK = "_clock_ms"
"""Marks an event sent by a client whose clock is off by this much: the sender moves its
``ts`` and the batch's ``sent_at`` by it; the reference counts it at its true time."""
CLOCKS_OFF = (3 * HOUR, -30 * HOUR)
MODELS = ("last_click", "first_click", "linear", "time_decay", "position_based")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
CRAWLER = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
CAMPAIGNS = {
    "o-search-1": "search",
    "o-search-2": "search",
    "o-social-1": "social",
    "o-email-1": "email",
    "o-aff-1": "affiliate",
    "o-display-1": "display",
}


@dataclass
class Log:
    """Three phases, each sent after the previous one is fully applied."""

    start: int
    timezone: str = "UTC"
    phases: list[list[dict[str, Any]]] = field(default_factory=lambda: [[], [], []])


def day_start(ts: int, timezone: str) -> int:
    """Epoch ms of the local midnight that starts the day holding ``ts``."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(ts / 1000, zone).date()
    return midnight(local, timezone)


def midnight(day: date, timezone: str) -> int:
    return int(datetime.combine(day, time(), tzinfo=ZoneInfo(timezone)).timestamp() * 1000)


def local_day(ts: int, timezone: str) -> str:
    return datetime.fromtimestamp(ts / 1000, ZoneInfo(timezone)).strftime("%Y-%m-%d")


def clock_changes(timezone: str, now_ms: int, count: int = 2) -> list[date]:
    """The last ``count`` local days before ``now_ms`` on which the zone's clocks changed."""
    zone = ZoneInfo(timezone)
    found: list[date] = []
    day = datetime.fromtimestamp(now_ms / 1000, zone).date() - timedelta(days=1)
    for _ in range(400):
        first = datetime.combine(day, time(), tzinfo=zone).utcoffset()
        last = datetime.combine(day, time(23, 59), tzinfo=zone).utcoffset()
        if first != last:
            found.append(day)
            if len(found) == count:
                break
        day -= timedelta(days=1)
    return found


def generate(seed: int, now_ms: int, timezone: str = "UTC") -> Log:
    rng = random.Random(seed)
    start = now_ms - now_ms % MINUTE - 50 * MINUTE
    log = Log(start, timezone)
    touches, persons, orders = log.phases
    clicks = persons  # postbacks (click id only) go with the conversions
    serial = iter(range(1, 10**6))

    def ev(kind: str, minute: int, **fields: Any) -> dict[str, Any]:
        return {
            "event_id": f"e{next(serial)}",
            "type": kind,
            "ts": start + minute * MINUTE,
            "user_agent": BROWSER,
            **fields,
        }

    people = [f"anon-{i}" for i in range(60)]
    user_of = {p: f"user-{i}" for i, p in enumerate(people[:10])}
    click_ids: list[tuple[str, str, int, dict[str, str]]] = []  # (click id, person, minute, who)
    for person in people:
        who = {"anonymous_id": person} | ({"user_id": user_of[person]} if person in user_of else {})
        for _ in range(rng.randint(0, 6)):
            campaign = rng.choice(list(CAMPAIGNS))
            touches.append(
                ev(
                    "impression",
                    rng.randint(0, 30),
                    campaign=campaign,
                    channel=CAMPAIGNS[campaign],
                    cost="0.002",
                    **who,
                )
            )
        for _ in range(rng.randint(1, 4)):
            campaign = rng.choice(list(CAMPAIGNS))
            minute = rng.randint(0, 30)
            if rng.random() < 0.7:
                click_id = f"k{next(serial)}"
                click_ids.append((click_id, person, minute, who))
                currency = rng.choice(["USD", "EUR", "GBP"])
                touches.append(
                    ev(
                        "click",
                        minute,
                        campaign=campaign,
                        channel=CAMPAIGNS[campaign],
                        click_id=click_id,
                        cost=f"{rng.randint(5, 300) / 100:.2f}",
                        currency=currency,
                        **who,
                    )
                )
            else:
                touches.append(
                    ev(
                        "pageview",
                        minute,
                        campaign=campaign,
                        channel=CAMPAIGNS[campaign],
                        url="https://shop.example/",
                        **who,
                    )
                )
        if rng.random() < 0.15:  # a crawler behind the same campaign links
            touches.append(
                ev(
                    "click",
                    rng.randint(0, 30),
                    campaign=rng.choice(list(CAMPAIGNS)),
                    user_agent=CRAWLER,
                    click_id=f"k{next(serial)}",
                    cost="1.00",
                    anonymous_id=f"bot-{person}",
                )
            )
    day = local_day(start, timezone)
    for campaign in ("o-search-1", "o-social-1", "o-display-1"):
        for minute in rng.sample(range(1, 31), 3):  # re-reports of the day, newest wins
            touches.append(
                ev(
                    "spend",
                    minute,
                    campaign=campaign,
                    channel=CAMPAIGNS[campaign],
                    period=day,
                    cost=f"{rng.randint(1000, 9000) / 100:.2f}",
                )
            )
    touches.extend(dict(e) for e in rng.sample(touches, len(touches) // 10))  # exact re-sends
    rng.shuffle(touches)  # out of order, all within the grace period

    order_serial = iter(range(1, 10**6))
    sold: list[str] = []
    pending: list[str] = []

    def sale(minute: int, **fields: Any) -> dict[str, Any]:
        order_id = f"o{next(order_serial)}"
        status = "pending" if rng.random() < 0.1 else "approved"
        (pending if status == "pending" else sold).append(order_id)
        return ev(
            "conversion",
            minute,
            order_id=order_id,
            status=status,
            value=f"{rng.randint(500, 20000) / 100:.2f}",
            currency=rng.choice(["USD", "EUR", "GBP"]),
            goal=rng.choice(["purchase", "purchase", "lead"]),
            **fields,
        )

    for person in rng.sample(people, 25):
        who = {"anonymous_id": person} | ({"user_id": user_of[person]} if person in user_of else {})
        persons.append(sale(rng.randint(35, 45), **who))
    for click_id, *_ in rng.sample(click_ids, 8):  # postback style: only the click id
        clicks.append(sale(rng.randint(35, 45), click_id=click_id, user_agent=None))
    # One order reported twice; the copy applied first was timed by a clock a few
    # minutes slow, before its own click. Both name the click: it gets the order.
    for click_id, _, minute, who in rng.sample(click_ids, 6):
        early, late = minute - 8, rng.randint(35, 45)
        if day_start(start + early * MINUTE, timezone) != day_start(
            start + late * MINUTE, timezone
        ):
            continue  # the copies would count on different days; the check is per day
        first = sale(early, click_id=click_id, **who)
        again = {**first, "event_id": f"e{next(serial)}", "ts": start + late * MINUTE}
        persons.extend([first, again])
    # A browser clock two minutes slow, no click named: its person's clicks still count.
    for _, _, minute, who in rng.sample(click_ids, 4):
        persons.append(sale(minute - 2, **who))
    # Clients whose clocks are hours off, corrected by the batch's sent_at.
    for off in CLOCKS_OFF:
        campaign = rng.choice(list(CAMPAIGNS))
        who = {"anonymous_id": f"clock-{off}"}
        persons.append(
            ev("impression", 36, campaign=campaign, channel=CAMPAIGNS[campaign], **who)
            | {CLOCK: off}
        )
        persons.append(
            sale(40, campaign=campaign, channel=CAMPAIGNS[campaign], **who) | {CLOCK: off}
        )
        click_id, _, _, clicker = rng.choice(click_ids)
        persons.append(sale(41, click_id=click_id, **clicker) | {CLOCK: off})
    for campaign in rng.sample(list(CAMPAIGNS), 3):  # names its campaign: keeps it
        persons.append(
            sale(
                40, campaign=campaign, channel=CAMPAIGNS[campaign], anonymous_id=rng.choice(people)
            )
        )
    for i in range(3):  # nobody we know: direct
        persons.append(sale(41, anonymous_id=f"stranger-{i}"))
    persons.append(ev("conversion", 42, value="10.00", anonymous_id=people[0]))  # no order id
    persons.append(
        ev(
            "conversion",
            42,
            value="99.00",
            order_id="bot-order",
            anonymous_id="bot-x",
            user_agent=CRAWLER,
        )
    )
    refires = rng.sample(persons[:25], 5)
    persons.extend({**e, "event_id": f"e{next(serial)}"} for e in refires)  # same order again
    persons.extend(dict(e) for e in rng.sample(persons, 4))  # same event again
    # Conversions are keyed like their people; a page's pixel fires in order.

    for order_id in rng.sample(sold, 4):
        orders.append(ev("conversion", 48, order_id=order_id, status="refund"))
    for order_id in pending[:2]:
        orders.append(ev("conversion", 48, order_id=order_id, status="rejected"))
    orders.append(ev("conversion", 48, order_id="never-sold", status="refund"))
    if sold:
        orders.append(ev("conversion", 49, order_id=sold[0], status="refund"))
        orders.append(ev("conversion", 49, order_id=sold[0], status="refund"))  # twice
    # History sent while live traffic flows: a day and a week old, far behind the
    # partitions' newest events. Late is not lost: every bucket still kept counts it.
    for age in (DAY, 7 * DAY):
        campaign = rng.choice(list(CAMPAIGNS))
        channel = CAMPAIGNS[campaign]
        for i in range(3):
            who = {"anonymous_id": f"history-{age // DAY}-{i}"}
            minute = rng.randint(0, 600) - age // MINUTE
            click_id = f"k{next(serial)}"
            orders.append(ev("impression", minute, campaign=campaign, channel=channel, **who))
            orders.append(
                ev(
                    "click",
                    minute + 1,
                    campaign=campaign,
                    channel=channel,
                    click_id=click_id,
                    cost="0.75",
                    **who,
                )
            )
            orders.append(sale(minute + 5, click_id=click_id, **who))
        orders.append(
            ev(
                "spend",
                -age // MINUTE,
                campaign=campaign,
                channel=channel,
                period=local_day(start - age, timezone),
                cost="42.00",
            )
        )
    if timezone != "UTC":
        _clock_change_days(log, rng, serial, sale, now_ms)
    for person in rng.sample(people, 5):  # more than the grace behind: late
        orders.append(
            ev(
                "click",
                -180,
                campaign="o-search-1",
                channel="search",
                click_id=f"k{next(serial)}",
                cost="5.00",
                anonymous_id=person,
            )
        )
    return log


def _clock_change_days(log: Log, rng: random.Random, serial: Any, sale: Any, now_ms: int) -> None:
    """Traffic on the last days the reporting zone's clocks changed (23 and 25 hours)."""
    touches, persons, _ = log.phases
    zone = ZoneInfo(log.timezone)
    for day in clock_changes(log.timezone, now_ms):
        campaign = rng.choice(list(CAMPAIGNS))
        channel = CAMPAIGNS[campaign]
        moments = [(0, 30, 0), (1, 30, 0), (1, 30, 1), (12, 0, 0), (23, 30, 0)]
        seen: set[int] = set()
        for hour, minute, fold in moments:
            at = datetime.combine(day, time(hour, minute), tzinfo=zone).replace(fold=fold)
            ts = int(at.timestamp() * 1000)
            if ts in seen or datetime.fromtimestamp(ts / 1000, zone).hour != hour:
                continue  # one moment, or one the clocks skipped
            seen.add(ts)
            who = {"anonymous_id": f"dst-{day}-{hour}-{fold}"}
            base = {"user_agent": BROWSER, "campaign": campaign, "channel": channel, **who}
            click_id = f"k{next(serial)}"
            touches.append({"event_id": f"e{next(serial)}", "type": "impression", "ts": ts, **base})
            touches.append(
                {
                    "event_id": f"e{next(serial)}",
                    "type": "click",
                    "ts": ts + MINUTE,
                    "click_id": click_id,
                    "cost": "0.40",
                    **base,
                }
            )
            order = sale(0, click_id=click_id, **who)
            persons.append({**order, "ts": ts + 10 * MINUTE})
        touches.append(
            {
                "event_id": f"e{next(serial)}",
                "type": "spend",
                "ts": log.start,
                "campaign": campaign,
                "channel": channel,
                "period": day.isoformat(),
                "cost": "123.45",
                "user_agent": BROWSER,
            }
        )


def micros(amount: str, currency: str) -> int:
    exact = Decimal(amount) * 1_000_000 * RATES[currency]
    return int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))


def shares(model: str, touch_ts: list[int]) -> list[Fraction]:
    n = len(touch_ts)
    if n == 1:
        return [Fraction(1)]
    if model == "last_click":
        return [Fraction(0)] * (n - 1) + [Fraction(1)]
    if model == "first_click":
        return [Fraction(1)] + [Fraction(0)] * (n - 1)
    if model == "linear":
        return [Fraction(1, n)] * n
    if model == "time_decay":  # halves per half-life of age, from the newest touch
        raw = [Fraction(1, 2 ** ((max(touch_ts) - t) // HALF_LIFE_MS)) for t in touch_ts]
        return [w / sum(raw) for w in raw]
    if n == 2:
        return [Fraction(1, 2)] * 2
    return [Fraction(2, 5)] + [Fraction(1, 5) / (n - 2)] * (n - 2) + [Fraction(2, 5)]


def divide(amount: int, parts: list[Fraction]) -> list[int]:
    """Largest remainder; ties to the earlier part."""
    exact = [amount * p for p in parts]
    out = [int(x) for x in exact]
    order = sorted(range(len(parts)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: amount - sum(out)]:
        out[i] += 1
    return out


Key = tuple[int, str, str]  # (day bucket, dimension, value)


def reference(log: Log) -> dict[str, dict[Key, dict[str, int]]]:
    """Per model: (local day, dimension, value) -> sums, as /v1/kpis must show them."""
    zone = log.timezone
    seen: set[str] = set()
    rows: dict[str, dict[Key, dict[str, int]]] = {
        m: defaultdict(lambda: defaultdict(int)) for m in MODELS
    }
    spend_reports: dict[tuple[str, str], tuple[int, int, str]] = {}
    paths: dict[str, list[tuple[int, str | None, str]]] = defaultdict(list)
    click_at: dict[str, tuple[tuple[int, str | None, str], str | None]] = {}
    orders: dict[str, tuple[int, str, int, dict[str, list[tuple[str | None, str, int, int]]]]] = {}
    reversed_orders: set[str] = set()

    def add(
        day: int,
        dimension: str,
        value: str,
        metric: str,
        amount: int,
        models: tuple[str, ...] = MODELS,
    ) -> None:
        for m in models:
            rows[m][day, dimension, value][metric] += amount

    for phase in log.phases:
        for e in phase:
            if e["event_id"] in seen:
                continue
            seen.add(e["event_id"])  # however late: late is not lost
            if e.get("user_agent") == CRAWLER:
                continue
            ts = e["ts"]
            day = day_start(ts, zone)
            campaign, channel = e.get("campaign"), e.get("channel", "direct")
            person = e.get("user_id") or e.get("anonymous_id")
            dims = [("total", "total"), ("channel", channel)] + (
                [("campaign", campaign)] if campaign else []
            )
            if e["type"] == "spend":
                key = (campaign or "", e["period"])
                report = (ts, micros(e["cost"], "USD"))
                if key not in spend_reports or spend_reports[key][:2] < report:
                    spend_reports[key] = (*report, channel)
                continue
            if e["type"] in ("impression", "click", "pageview"):
                for dim, value in dims:
                    add(day, dim, value, e["type"] + "s", 1)
                    if e.get("cost"):
                        add(day, dim, value, "spend", micros(e["cost"], e.get("currency", "USD")))
                touch = (ts, campaign, channel)
                if e["type"] == "click" or (e["type"] == "pageview" and campaign):
                    if e.get("click_id") and e["click_id"] not in click_at:
                        click_at[e["click_id"]] = (touch, person)
                    if person:
                        paths[person].append(touch)
                continue
            # conversions
            order_id = e.get("order_id")
            if e.get("status") in ("refund", "rejected"):
                if order_id in orders and order_id not in reversed_orders:
                    reversed_orders.add(order_id)
                    o_day, goal, revenue, given = orders[order_id]
                    for dim, value in (("total", "total"), ("goal", goal)):
                        add(o_day, dim, value, "conversions", -1_000_000)
                        add(o_day, dim, value, "revenue", -revenue)
                    for m, credit in given.items():
                        for c_campaign, c_channel, conv, rev in credit:
                            for dim, value in [("channel", c_channel)] + (
                                [("campaign", c_campaign)] if c_campaign else []
                            ):
                                add(o_day, dim, value, "conversions", -conv, (m,))
                                add(o_day, dim, value, "revenue", -rev, (m,))
                continue
            if order_id and order_id in orders:
                continue
            revenue = micros(e.get("value", "0"), e.get("currency", "USD"))
            click = click_at.get(e.get("click_id", ""))
            person = person or (click[1] if click else None)
            # Touches of the same millisecond in order of their names, not of arrival.
            by_time = sorted(paths.get(person or "", []), key=lambda t: (t[0], t[1] or "", t[2]))
            if campaign:
                touches = [(ts, campaign, channel)]
            elif click and abs(ts - click[0][0]) <= LOOKBACK_MS:
                # The named click came first, whatever the clocks say: it is the last
                # touch, after the path that led to it.
                named = click[0]
                led = [t for t in by_time if t[0] <= named[0] and t != named]
                touches = [t for t in led if named[0] - t[0] <= LOOKBACK_MS] + [named]
            else:
                touches = [
                    t for t in by_time if t[0] <= ts + SKEW_MS and abs(ts - t[0]) <= LOOKBACK_MS
                ]
            touches = touches[-PATH_MAX:]
            credits: dict[str, list[tuple[str | None, str, int, int]]] = {}
            for m in MODELS:
                if not touches:
                    credits[m] = [(None, "direct", 1_000_000, revenue)]
                    continue
                parts = shares(m, [t[0] for t in touches])
                merged: dict[tuple[str | None, str], list[int]] = {}
                for t, conv, rev in zip(
                    touches, divide(1_000_000, parts), divide(revenue, parts), strict=True
                ):
                    if conv or rev:
                        acc = merged.setdefault((t[1], t[2]), [0, 0])
                        acc[0] += conv
                        acc[1] += rev
                credits[m] = [(c, ch, v[0], v[1]) for (c, ch), v in merged.items()]
            goal = e.get("goal", "purchase")
            for dim, value in (("total", "total"), ("goal", goal)):
                add(day, dim, value, "conversions", 1_000_000)
                add(day, dim, value, "revenue", revenue)
            for m, credit in credits.items():
                for c_campaign, c_channel, conv, rev in credit:
                    for dim, value in [("channel", c_channel)] + (
                        [("campaign", c_campaign)] if c_campaign else []
                    ):
                        add(day, dim, value, "conversions", conv, (m,))
                        add(day, dim, value, "revenue", rev, (m,))
            if order_id:
                orders[order_id] = (day, goal, revenue, credits)
    for (campaign, period), (_, amount, channel) in spend_reports.items():
        day = midnight(date.fromisoformat(period), zone)
        for dim, value in (("total", "total"), ("channel", channel), ("campaign", campaign)):
            add(day, dim, value, "spend", amount)
    return rows
