"""A seeded event log with every hard case, and a deliberately simple reference count.

The reference shares no code with the pipeline: it re-states the rules from the
README (dedup, bots, late events, spend upserts, causality over clocks, attribution
models, refunds, the reporting time zone's days, identity: devices signed in to users,
refused junk ids, links that come after their orders; unique users; customers and their
lifetime value) in the plainest Python, with exact fractions and the standard library's
``zoneinfo``, so a pipeline bug cannot hide in both.
"""

from __future__ import annotations

import random
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterator
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
GRACE_MS = HOUR  # TRACKER_GRACE_S's default
MAX_IDS_PER_USER = 100  # TRACKER_MAX_IDS_PER_USER's default
SEGMENTS_MAX = 50  # a device's newest segments kept
ORDERS_MAX = 20  # a device's and a user's last orders, looked at again when a link comes
JUNK_IDS = frozenset(
    {
        "anonymous", "guest", "distinctid", "distinct_id", "id", "not_authenticated",
        "email", "undefined", "true", "false", "null", "none", "nil", "0", "-1",
        "[object object]", "nan", "unknown",
    }
)  # fmt: skip
"""Ids a buggy page sends for everyone alike (lower-cased and stripped): never linked."""
IDENTITY_COUNTERS = (
    "identity_restitched",
    "identity_late_links",
    "identity_refused_junk_id",
    "identity_refused_too_many_ids",
)
CLOCK = "_clock_ms"
"""Marks an event sent by a client whose clock is off by this much: the sender moves its
``ts`` and the batch's ``sent_at`` by it; the reference counts it at its true time."""
CLOCKS_OFF = (3 * HOUR, -30 * HOUR)
SDK_EVENT = "_sdk_event"
"""Marks a conversion sent as an SDK event of this name (Segment's ``track``, Snowplow's
structured event) that a goal rule names: the rule, not the event, says its goal and value."""
SIGNUP_EVENT = "Newsletter Joined"
GOAL_RULES: dict[str, list[dict[str, str]]] = {
    "goals": [
        {"name": "lead", "page_url": "https://shop.example/thank-you*", "value": "10.00"},
        {"name": "newsletter", "page_url": "/newsletter/welcome"},
        {"name": "signup", "event": SIGNUP_EVENT, "value": "2.50", "currency": "EUR"},
    ]
}
"""The goals in force while the log is sent (PUT /v1/goals): a page view whose URL matches
converts, the whole URL for an absolute pattern, path and query for one starting with /."""
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
    _identity_cases(log, seed, ev, serial)
    _privacy_cases(log, seed, ev, serial)
    _goal_cases(log, seed, ev, serial)
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


def _identity_cases(
    log: Log, seed: int, ev: Callable[..., dict[str, Any]], serial: Iterator[int]
) -> None:
    """Sign-ins before and after orders, a shared device, junk ids, a user of too many devices.

    Drawn from a random stream of their own, after all other cases, so those stay as
    they were. Kafka keeps order only among events of one key (the device, else the
    user, else the click id) within a phase: what a case's events depend on is sent
    under the same key or in an earlier phase. Phase 0 is sent in any order at all, so
    it holds touches and links that commute (one user per device, no order yet).
    """
    rng = random.Random(f"{seed}:identity")
    first, second, third = log.phases
    serial_of_orders = iter(range(1, 10**6))

    def touch(minute: int, campaign: str = "", kind: str = "", **who: Any) -> dict[str, Any]:
        campaign = campaign or rng.choice(list(CAMPAIGNS))
        if kind == "click" or (not kind and rng.random() < 0.7):
            return ev(
                "click",
                minute,
                campaign=campaign,
                channel=CAMPAIGNS[campaign],
                click_id=f"k{next(serial)}",
                cost=f"{rng.randint(5, 300) / 100:.2f}",
                **who,
            )
        return ev(
            "pageview",
            minute,
            campaign=campaign,
            channel=CAMPAIGNS[campaign],
            url="https://shop.example/",
            **who,
        )

    def visits(device: str, count: int, low: int = 0, high: int = 30, **fields: Any) -> None:
        first.extend(
            touch(rng.randint(low, high), anonymous_id=device, **fields) for _ in range(count)
        )

    def order(minute: int, **fields: Any) -> dict[str, Any]:
        return ev(
            "conversion",
            minute,
            order_id=f"io{next(serial_of_orders)}",
            value=f"{rng.randint(500, 20000) / 100:.2f}",
            currency=rng.choice(["USD", "EUR", "GBP"]),
            goal=rng.choice(["purchase", "purchase", "lead"]),
            **fields,
        )

    def identify(minute: int, device: str, user: str) -> dict[str, Any]:
        return ev("identify", minute, anonymous_id=device, user_id=user)

    # Signed in by a server whose HTTP client looks like a bot: it still links.
    visits("server-signin", 2)
    second.append(identify(31, "server-signin", "server-member") | {"user_agent": CRAWLER})
    third.append(order(42, user_id="server-member"))

    # Signed in before the order: the user's order (user id only, the next phase, as
    # it is keyed apart from the device) gets the device's anonymous past. The first
    # one also has a touch of the user's own, without a device (an email click).
    for i in range(3):
        device, user = f"signin-{i}", f"member-{i}"
        visits(device, rng.randint(1, 3))
        if i == 0:
            first.append(touch(rng.randint(0, 30), user_id=user))
        second.append(identify(rng.randint(0, 31), device, user))
        third.append(order(rng.randint(35, 45), user_id=user))

    # Signed in after the order (order in phase 1, its link in phase 2).
    # 30 minutes after: within the grace, the order moves from direct to the touches.
    visits("late-signin-0", 2, 0, 10)
    second.append(order(15, user_id="late-member-0"))
    third.append(identify(45, "late-signin-0", "late-member-0"))
    # Two hours after: beyond the grace, it stays direct (a late link).
    visits("old-signin-0", 2, -100, -90)
    second.append(order(-80, user_id="old-member-0"))
    third.append(identify(40, "old-signin-0", "old-member-0"))
    # Refunded before its link (same key, in order): never re-credited.
    visits("refunded-signin-0", 2, 0, 10)
    refunded = order(16, user_id="refunded-member-0")
    second.append(refunded)
    second.append(
        ev(
            "conversion",
            20,
            order_id=refunded["order_id"],
            status="refund",
            user_id="refunded-member-0",
        )
    )
    third.append(identify(46, "refunded-signin-0", "refunded-member-0"))
    # Names its campaign: keeps it, whoever signs in.
    visits("named-signin-0", 2, 0, 10)
    second.append(order(17, user_id="named-member-0", campaign="o-aff-1", channel="affiliate"))
    third.append(identify(47, "named-signin-0", "named-member-0"))
    # An anonymous order, then the device signs in to a user with a touch of their own:
    # the order is now the user's, with both paths (re-credited, within the grace).
    visits("guest-buyer-0", 2, campaign="o-search-1")
    first.append(touch(rng.randint(0, 30), "o-email-1", user_id="returning-0"))
    second.append(order(38, anonymous_id="guest-buyer-0"))
    third.append(identify(44, "guest-buyer-0", "returning-0"))
    # The same for a user with nothing else: the credits stay as they were, no count.
    visits("guest-buyer-1", 2)
    second.append(order(38, anonymous_id="guest-buyer-1"))
    third.append(identify(44, "guest-buyer-1", "new-member-1"))
    # A postback naming only the click of a device nobody has signed in on yet, and then
    # somebody does, with a touch of their own before it: the order is theirs, on both
    # paths (re-credited within the grace), as a customer too.
    clicked = touch(20, "o-display-1", kind="click", anonymous_id="postback-clicker-0")
    first.append(clicked)
    first.append(touch(5, "o-email-1", user_id="postback-member-0"))
    second.append(order(30, click_id=clicked["click_id"], user_agent=None))
    third.append(identify(50, "postback-clicker-0", "postback-member-0"))
    # A guest who signs in as a user who bought before: one customer, not two, won by
    # the user's own earlier order, now credited to the guest's touches before it.
    visits("guest-buyer-2", 2, 0, 10, campaign="o-social-1")
    second.append(order(12, user_id="buyer-member-2"))
    second.append(order(39, anonymous_id="guest-buyer-2"))
    third.append(identify(45, "guest-buyer-2", "buyer-member-2"))

    # A shared device: a-user signs in at 5, out at 15, b-user in at 20. Each user's
    # order gets only their own touches; a-user also the anonymous past before 5.
    shared = "shared-device-0"
    for minute in (1, 3, 7, 12, 16, 18, 22):
        first.append(touch(minute, anonymous_id=shared))
    named = touch(27, kind="click", anonymous_id=shared)
    first.append(named)
    second.append(identify(5, shared, "a-user"))
    second.append(ev("reset", 15, anonymous_id=shared))
    second.append(identify(20, shared, "b-user"))
    second.append(order(17, anonymous_id=shared))  # signed out: nobody's touches only
    third.append(order(40, user_id="a-user"))
    third.append(order(41, user_id="b-user"))
    # A postback naming the 27th minute's click: the path of that click's customer.
    third.append(order(42, click_id=named["click_id"], user_agent=None))

    # A user signing in on more devices than TRACKER_MAX_IDS_PER_USER. The first ones
    # sign in a phase before the rest, so which are refused does not hang on
    # partition order; the refused devices' touches are the newest, so the order
    # would show them if they counted.
    devices = [f"many-{i:03}" for i in range(MAX_IDS_PER_USER + 5)]
    for i, device in enumerate(devices):
        if i < MAX_IDS_PER_USER:
            visits(device, 1, 0, 25)
            second.append(identify(31, device, "many-devices"))
        else:
            visits(device, 1, 29, 29, campaign="o-display-1")
            third.append(identify(31, device, "many-devices"))
    third.append(identify(33, devices[0], "many-devices"))  # one of its own: no change
    third.append(order(42, user_id="many-devices"))

    # Junk ids: a page signing everyone in as "undefined" links nobody; each device's
    # order keeps its own touches. A device id "null" shared by many visitors is not
    # linked either (nor reset), and a click carrying user id "undefined" implies no link.
    for i, junk in enumerate(
        ["undefined", "undefined", "undefined", "null", " Guest ", "[object Object]"]
    ):
        device = f"junk-signin-{i}"
        visits(device, rng.randint(1, 2))
        second.append(identify(31, device, junk))
        third.append(order(rng.randint(35, 45), anonymous_id=device))
    visits("null", 2)
    second.append(identify(31, "null", "junk-victim"))
    second.append(ev("reset", 32, anonymous_id="NULL"))
    third.append(order(43, user_id="junk-victim"))
    visits("junk-clicker-0", 1)
    visits("junk-clicker-0", 2, kind="click", user_id="undefined")
    third.append(order(44, anonymous_id="junk-clicker-0"))

    # Links implied by events carrying both ids: an order (its device's touches join
    # the user's own), and a click (the user's order gets the device's past).
    visits("both-device-0", 2, campaign="o-social-1")
    first.append(touch(rng.randint(0, 30), "o-email-1", user_id="both-user-0"))
    second.append(order(rng.randint(35, 45), anonymous_id="both-device-0", user_id="both-user-0"))
    visits("click-signin-0", 2)
    visits("click-signin-0", 1, kind="click", user_id="click-member-0")
    second.append(order(rng.randint(35, 45), user_id="click-member-0"))


COOKIELESS_AGENT = f"{BROWSER} cookieless"


def _privacy_cases(
    log: Log, seed: int, ev: Callable[..., dict[str, Any]], serial: Iterator[int]
) -> None:
    """Visitors who did not consent to analytics storage: counted cookieless, by IP,
    agent and site, for the day. Their own ids are not kept, so an order naming a user
    gets only the touches of the same browser on the same site, not the user's.

    Every event says its page (``url``), as the snippet does: the site is part of who
    a cookieless visitor is. All of them are sent within one UTC day (test_oracle waits
    out midnight), so none is split across two days' ids.
    """
    rng = random.Random(f"{seed}:privacy")
    first, second, _ = log.phases
    denied = {"analytics_storage": "denied", "user_agent": COOKIELESS_AGENT}

    def touch(minute: int, campaign: str, site: str, **fields: Any) -> dict[str, Any]:
        return ev(
            "click",
            minute,
            campaign=campaign,
            channel=CAMPAIGNS[campaign],
            click_id=f"k{next(serial)}",
            cost="1.00",
            url=f"https://{site}/landing",
            **fields,
        )

    # The user this browser's order names has a consented device with touches of its
    # own; were the user id kept, the order would credit o-email-1 too.
    own = "consented-own"
    first.append(touch(rng.randint(0, 20), "o-email-1", "shop.example", anonymous_id=own))
    second.append(ev("identify", 31, anonymous_id=own, user_id="cookieless-member"))
    first.extend(
        touch(rng.randint(0, 30), "o-social-1", "shop.example", anonymous_id=f"ignored-{i}",
              user_id="cookieless-member", **denied)
        for i in range(2)
    )  # fmt: skip
    # The same browser on another site is another visitor: its touch credits nothing here.
    first.append(touch(rng.randint(0, 30), "o-display-1", "blog.example", **denied))
    second.append(
        ev(
            "conversion",
            40,
            order_id=f"cl-order-{next(serial)}",
            value=f"{rng.randint(500, 20000) / 100:.2f}",
            currency="EUR",
            url="https://shop.example/thank-you",
            user_id="cookieless-member",
            **denied,
        )
    )


def _goal_cases(
    log: Log, seed: int, ev: Callable[..., dict[str, Any]], serial: Iterator[int]
) -> None:
    """Conversions no site sent: page views of a goal's pages, and an SDK event a goal names.

    Each visitor clicks a campaign first (phase 0), so the goal's conversion is credited
    to it. A page view sent twice converts once; a crawler's converts nothing; pages the
    patterns do not match, nothing either.
    """
    rng = random.Random(f"{seed}:goals")
    first, second, third = log.phases

    def clicked(person: str, campaign: str) -> None:
        first.append(
            ev("click", rng.randint(0, 15), campaign=campaign, channel=CAMPAIGNS[campaign],
               click_id=f"k{next(serial)}", cost="2.00", anonymous_id=person)
        )  # fmt: skip

    def page(person: str, url: str, **fields: Any) -> dict[str, Any]:
        return ev("pageview", rng.randint(20, 40), url=url, anonymous_id=person, **fields)

    for number, campaign in enumerate(("o-search-1", "o-social-1", "o-email-1", "o-aff-1")):
        clicked(f"goal-{number}", campaign)
    twice = page("goal-1", "https://shop.example/thank-you")
    second.extend(
        [
            page("goal-0", f"https://shop.example/thank-you?order={rng.randint(1, 99)}"),
            twice,
            page("goal-0", "https://shop.example/thanks"),
            page("goal-2", "https://blog.example/newsletter/welcome"),
            page("goal-2", "https://blog.example/newsletter/welcome?from=mail"),
            page("goal-crawler", "https://shop.example/thank-you", user_agent=CRAWLER),
            ev("conversion", rng.randint(20, 40), goal="signup", value="99.00",
               anonymous_id="goal-3", **{SDK_EVENT: SIGNUP_EVENT}),
        ]
    )  # fmt: skip
    third.append(dict(twice))


def with_goals(e: dict[str, Any]) -> list[dict[str, Any]]:
    """``e`` as the collector passes it on under :data:`GOAL_RULES`: a page view with the
    conversions of the goals its URL reaches, an SDK event with its goal's name and value."""
    rules = GOAL_RULES["goals"]
    if SDK_EVENT in e:
        [rule] = [r for r in rules if r.get("event") == e[SDK_EVENT]]
        kept = {k: v for k, v in e.items() if k != SDK_EVENT}
        return [kept | {"goal": rule["name"], "value": rule["value"], "currency": rule["currency"]}]
    if e["type"] != "pageview" or not e.get("url"):
        return [e]
    parts = urllib.parse.urlsplit(e["url"])
    local = parts.path + (f"?{parts.query}" if parts.query else "")
    whole = f"{parts.scheme}://{parts.netloc}{local}"
    made = [
        {k: v for k, v in e.items() if k not in ("type", "cost")}
        | {"type": "conversion", "event_id": f"{e['event_id']}:{r['name']}", "goal": r["name"]}
        | {"value": r.get("value", "0"), "currency": r.get("currency", "USD")}
        for r in rules
        if "page_url" in r and globbed(r["page_url"], local if r["page_url"][0] == "/" else whole)
    ]
    return [e, *made]


def globbed(pattern: str, text: str) -> bool:
    """Whether ``text`` is ``pattern`` with each ``*`` standing for any characters."""
    if "*" not in pattern:
        return text == pattern
    first, *middle, last = pattern.split("*")
    if len(text) < len(first) + len(last):
        return False
    if not (text.startswith(first) and text.endswith(last)):
        return False
    at, end = len(first), len(text) - len(last)
    for piece in middle:  # leftmost is enough: a later piece can only gain room
        found = text.find(piece, at, end)
        if found < 0:
            return False
        at = found + len(piece)
    return True


COOKIELESS = "cookieless "
"""What the reference's name of a cookieless visitor starts with: the collector names
them by a salted hash this test cannot know, so only how many there are is known."""


def cookieless(e: dict[str, Any]) -> dict[str, Any]:
    """``e`` as the collector keeps it without analytics consent: the visitor is the
    agent on the site (the IP is the test's own, the same for all), no id of its own."""
    site = urllib.parse.urlsplit(e.get("url") or "").hostname or ""
    kept = {k: v for k, v in e.items() if k not in ("anonymous_id", "user_id")}
    return kept | {"anonymous_id": f"{COOKIELESS}{e.get('user_agent')} {site}"}


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
Rows = dict[str, dict[Key, dict[str, int]]]  # per model
Touch = tuple[int, str | None, str]  # (ts, campaign, channel)
Customer = tuple[str, str]  # ("user", user id) or ("device", anonymous id)
Credits = dict[str, dict[tuple[str | None, str], tuple[int, int]]]
"""Per model: (campaign, channel) -> (micro-conversions, revenue micros)."""


def is_junk(name: str) -> bool:
    return name.strip().lower() in JUNK_IDS


@dataclass
class People:
    """Who is who: each device's segments ``(since, user or None)``, each user's devices,
    and the touches remembered per device (events with an anonymous id), else per user."""

    max_ids: int
    segments: dict[str, list[tuple[int, str | None]]] = field(default_factory=dict)
    devices: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    on_device: dict[str, list[Touch]] = field(default_factory=lambda: defaultdict(list))
    of_user: dict[str, list[Touch]] = field(default_factory=lambda: defaultdict(list))

    def owner(self, device: str, ts: int) -> str | None:
        """The user of the device's last segment with ``since <= ts``; before its first
        segment, that segment's user (the anonymous past); no segment: nobody (None)."""
        history = self.segments.get(device, [])
        user = history[0][1] if history else None
        for since, who in history:
            if since <= ts:
                user = who
        return user

    def link(self, device: str, user: str | None, ts: int) -> str:
        """Applies a link (``user`` None: a reset); says junk_id, too_many_ids, unchanged
        or applied."""
        if is_junk(device) or (user is not None and is_junk(user)):
            return "junk_id"
        if self.owner(device, ts) == user:
            return "unchanged"
        mine = self.devices[user] if user is not None else set()
        if user is not None and len(mine) >= self.max_ids and device not in mine:
            return "too_many_ids"
        inserted = sorted(
            [s for s in self.segments.get(device, []) if s[0] != ts] + [(ts, user)],
            key=lambda s: s[0],
        )
        kept: list[tuple[int, str | None]] = []
        for segment in inserted:
            if not kept or kept[-1][1] != segment[1]:
                kept.append(segment)
        self.segments[device] = kept[-SEGMENTS_MAX:]
        if user is not None:
            self.devices[user].add(device)
        return "applied"

    def customer(self, user: str | None, device: str | None, ts: int) -> Customer | None:
        if user:
            return ("user", user)
        if device:
            owner = self.owner(device, ts)
            return ("user", owner) if owner else ("device", device)
        return None

    def path(self, customer: Customer | None) -> list[Touch]:
        """The customer's touches, in time order; at the same millisecond, by their names."""
        found: list[Touch] = []
        if customer and customer[0] == "device":
            device = customer[1]
            found = [t for t in self.on_device[device] if self.owner(device, t[0]) is None]
        elif customer:
            user = customer[1]
            found = list(self.of_user[user])
            for device in self.devices[user]:
                found += [t for t in self.on_device[device] if self.owner(device, t[0]) == user]
        return sorted(found, key=lambda t: (t[0], t[1] or "", t[2]))


@dataclass
class Order:
    day: int
    goal: str
    revenue: int
    credits: Credits
    event: dict[str, Any]
    customer: Customer | None = None
    """Whose conversion it is: as counted, then as each link within the grace says."""
    reversed: bool = False


def attribute(touches: list[Touch], revenue: int) -> Credits:
    """Each model's split of one conversion and its revenue over ``touches``."""
    credits: Credits = {}
    for m in MODELS:
        if not touches:
            credits[m] = {(None, "direct"): (1_000_000, revenue)}
            continue
        parts = shares(m, [t[0] for t in touches])
        merged: dict[tuple[str | None, str], tuple[int, int]] = {}
        for t, conv, rev in zip(
            touches, divide(1_000_000, parts), divide(revenue, parts), strict=True
        ):
            if conv or rev:
                before = merged.get((t[1], t[2]), (0, 0))
                merged[t[1], t[2]] = (before[0] + conv, before[1] + rev)
        credits[m] = merged
    return credits


def reference(log: Log, max_ids_per_user: int = MAX_IDS_PER_USER) -> Rows:
    """Per model: (local day, dimension, value) -> sums, as /v1/kpis must show them."""
    return _count(log, max_ids_per_user)[0]


def identity_counts(log: Log, max_ids_per_user: int = MAX_IDS_PER_USER) -> dict[str, int]:
    """The identity counters of the health hash once the whole log is applied."""
    return _count(log, max_ids_per_user)[1]


def unique_people(log: Log) -> dict[Key, set[str]]:
    """(local day, dimension, value) -> the people seen there, whose number is the row's
    ``users``: each event's user id, else its visitor id, under its own campaign and
    channel and in total, bots, spend and links apart; an event with neither is nobody's."""
    return _count(log, MAX_IDS_PER_USER)[2]


def lifetime_values(log: Log) -> dict[tuple[str, str], dict[str, int]]:
    """(dimension, value) -> ``customers`` and ``customer_revenue`` (micros), all time, as
    /v1/clv must show them. A customer is won by the campaign and channel ``last_click``
    credits their earliest conversion to (by time, then order or event id), as credited
    in the end; all their revenue, less refunds, goes there."""
    return _count(log, MAX_IDS_PER_USER)[3]


Counted = tuple[Rows, dict[str, int], dict[Key, set[str]], dict[tuple[str, str], dict[str, int]]]


def _count(log: Log, max_ids_per_user: int) -> Counted:
    zone = log.timezone
    seen: set[str] = set()
    rows: Rows = {m: defaultdict(lambda: defaultdict(int)) for m in MODELS}
    seen_people: dict[Key, set[str]] = defaultdict(set)
    values: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    conversions: list[Order] = []
    counts = dict.fromkeys(IDENTITY_COUNTERS, 0)
    spend_reports: dict[tuple[str, str], tuple[int, int, str]] = {}
    people = People(max_ids_per_user)
    clicks: dict[str, tuple[Touch, str | None, str | None]] = {}  # -> (touch, user, device)
    orders: dict[str, Order] = {}
    orders_of: dict[Customer, list[str]] = defaultdict(list)  # the last ORDERS_MAX each

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

    def book(day: int, credits: Credits, sign: int) -> None:
        """Adds (``sign`` 1) or takes out (-1) an order's campaign and channel credits."""
        for m, credit in credits.items():
            for (c_campaign, c_channel), (conv, rev) in credit.items():
                for dim, value in [("channel", c_channel)] + (
                    [("campaign", c_campaign)] if c_campaign else []
                ):
                    add(day, dim, value, "conversions", sign * conv, (m,))
                    add(day, dim, value, "revenue", sign * rev, (m,))

    def customer_of(e: dict[str, Any]) -> Customer | None:
        if e.get("user_id") or e.get("anonymous_id"):
            return people.customer(e.get("user_id"), e.get("anonymous_id"), e["ts"])
        click = clicks.get(e.get("click_id", ""))  # a postback: the named click's customer
        return people.customer(click[1], click[2], click[0][0]) if click else None

    def credits_of(e: dict[str, Any]) -> Credits:
        ts, campaign, channel = e["ts"], e.get("campaign"), e.get("channel", "direct")
        click = clicks.get(e.get("click_id", ""))
        if campaign:
            touches = [(ts, campaign, channel)]
        elif click and abs(ts - click[0][0]) <= LOOKBACK_MS:
            # The named click came first, whatever the clocks say: it is the last
            # touch, after the path of its customer that led to it.
            named = click[0]
            by_time = people.path(people.customer(click[1], click[2], named[0]))
            led = [t for t in by_time if t[0] <= named[0] and t != named]
            touches = [t for t in led if named[0] - t[0] <= LOOKBACK_MS] + [named]
        else:
            touches = [
                t
                for t in people.path(customer_of(e))
                if t[0] <= ts + SKEW_MS and abs(ts - t[0]) <= LOOKBACK_MS
            ]
        return attribute(touches[-PATH_MAX:], micros(e.get("value", "0"), e.get("currency", "USD")))

    def link(device: str, user: str | None, ts: int) -> None:
        """Applies a link or reset, then looks again at the orders it may concern."""
        outcome = people.link(device, user, ts)
        if outcome in ("junk_id", "too_many_ids"):
            counts[f"identity_refused_{outcome}"] += 1
        if outcome != "applied":
            return
        concerned = orders_of[("device", device)] + (orders_of[("user", user)] if user else [])
        for order_id in sorted(set(concerned), key=lambda o: orders[o].event["ts"]):
            order = orders[order_id]
            at = order.event["ts"]
            if ts - at > LOOKBACK_MS:  # no longer kept
                continue
            late = at < ts - GRACE_MS
            if not late and order.customer:  # a guest's order is the user's once signed in
                order.customer = customer_of(order.event) or order.customer
            if order.reversed or order.event.get("campaign"):
                continue
            now = credits_of(order.event)
            if now == order.credits:
                continue
            if late:
                counts["identity_late_links"] += 1
                continue
            book(order.day, order.credits, -1)
            book(order.day, now, 1)
            order.credits = now
            counts["identity_restitched"] += 1

    for phase in log.phases:
        for e in (made for sent in phase for made in with_goals(sent)):
            if e["event_id"] in seen:
                continue
            seen.add(e["event_id"])  # however late: late is not lost
            if e.get("analytics_storage") == "denied":
                e = cookieless(e)
            ts = e["ts"]
            user, device = e.get("user_id"), e.get("anonymous_id")
            # A sign-in or sign-out says who is who, whatever agent sent it (a server's
            # HTTP client looks like a bot); other events of bots count for nothing.
            if e["type"] == "reset":
                link(e["anonymous_id"], None, ts)  # required of a reset
                continue
            if e["type"] == "identify":
                link(e["anonymous_id"], e["user_id"], ts)  # both required of an identify
                continue  # not traffic
            day = day_start(ts, zone)
            campaign, channel = e.get("campaign"), e.get("channel", "direct")
            dims = [("total", "total"), ("channel", channel)] + (
                [("campaign", campaign)] if campaign else []
            )
            if e.get("user_agent") == CRAWLER:  # counted as such, in no other figure
                for dim, value in dims:
                    add(day, dim, value, "bots", 1)
                continue
            if user and device and user != device:  # implied by an event with both ids
                link(device, user, ts)
            if e["type"] != "spend" and (person := user or device):
                for dim, value in dims:
                    seen_people[day, dim, value].add(person)
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
                    if e.get("click_id") and e["click_id"] not in clicks:
                        clicks[e["click_id"]] = (touch, user, device)
                    if device:
                        people.on_device[device].append(touch)
                    elif user:
                        people.of_user[user].append(touch)
                continue
            # conversions
            order_id = e.get("order_id")
            if e.get("status") in ("refund", "rejected"):
                reversal = orders.get(order_id or "")
                if reversal and not reversal.reversed:
                    reversal.reversed = True
                    for dim, value in (("total", "total"), ("goal", reversal.goal)):
                        add(reversal.day, dim, value, "conversions", -1_000_000)
                        add(reversal.day, dim, value, "revenue", -reversal.revenue)
                    book(reversal.day, reversal.credits, -1)
                continue
            if order_id and order_id in orders:
                continue
            revenue = micros(e.get("value", "0"), e.get("currency", "USD"))
            credits = credits_of(e)
            goal = e.get("goal", "purchase")
            for dim, value in (("total", "total"), ("goal", goal)):
                add(day, dim, value, "conversions", 1_000_000)
                add(day, dim, value, "revenue", revenue)
            book(day, credits, 1)
            customer = customer_of(e)
            counted = Order(day, goal, revenue, credits, e, customer)
            conversions.append(counted)
            if order_id:
                orders[order_id] = counted
                # Remembered for its device and its customer, to be looked at again
                # when a link of either comes.
                remembered = {customer, ("device", device) if device else None}
                for who in remembered:
                    if who:
                        orders_of[who] = [*orders_of[who], order_id][-ORDERS_MAX:]
    for (campaign, period), (_, amount, channel) in spend_reports.items():
        day = midnight(date.fromisoformat(period), zone)
        for dim, value in (("total", "total"), ("channel", channel), ("campaign", campaign)):
            add(day, dim, value, "spend", amount)
    conversions_of: dict[Customer, list[Order]] = defaultdict(list)
    for counted in conversions:
        if counted.customer:
            conversions_of[counted.customer].append(counted)
    for theirs in conversions_of.values():
        first = min(
            theirs,
            key=lambda o: (o.event["ts"], o.event.get("order_id") or o.event["event_id"]),
        )
        [(campaign, channel)] = first.credits["last_click"]  # the last touch's one share
        for dim, value in [("channel", channel)] + ([("campaign", campaign)] if campaign else []):
            values[dim, value]["customers"] += 1
            values[dim, value]["customer_revenue"] += sum(
                o.revenue for o in theirs if not o.reversed
            )
    return rows, counts, seen_people, values
