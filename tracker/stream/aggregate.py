"""The pure core of the worker: a batch of events -> the sums to add to Redis.

No I/O here. The sink reads what this needs into :class:`Lookups` (seen event ids,
spend figures, orders, clicks, touch paths, customers), calls :func:`fold` per
partition, and writes the resulting :class:`Delta` and the changed lookups in one
transaction with the source offsets.

Dimensions of a bucket: ``total``, ``channel``, ``campaign`` and ``goal``.
Impressions, clicks, pageviews, spend and bots count under the event's own campaign
and channel. Conversions and revenue count under ``total`` and ``goal`` as they
happened, and under campaign and channel as each attribution model credits them
(metrics ``conversions@<model>`` in micro-conversions, ``revenue@<model>``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from tracker import money
from tracker.attribution import MODELS, ONE, Touch, split, weights
from tracker.events import Event
from tracker.stream import identity
from tracker.stream.state import Acquisition, Click, Credit, Lookups, Order, SpendFigure
from tracker.types import EpochMs, Micros
from tracker.windows import ALL_TIME, MINUTE, WINDOWS, Calendar

TOTAL = "total"
DIRECT = "direct"
_SPREAD_WINDOWS = (*WINDOWS, ALL_TIME)
LATENESS_BUCKETS_S = (
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    2 * 86_400,
    7 * 86_400,
    30 * 86_400,
)
"""Upper bounds of the lateness histogram of late events, in seconds (then +Inf)."""

Cell = tuple[str, EpochMs, str, str, str]
"""(window, bucket start, dimension, dimension value, metric)."""
Audience = tuple[str, EpochMs, str, str]
"""(window, bucket start, dimension, dimension value): whose unique users to count."""


def attributed(metric: str, model: str) -> str:
    """The bucket metric holding ``metric`` as ``model`` credits it."""
    return f"{metric}@{model}"


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules of counting, from the settings."""

    grace_ms: int
    """How far behind its partition's newest event time an event may be before it is late."""
    calendar: Calendar
    """The reporting time zone's hours and days."""
    rates: Mapping[str, float]
    lookback_ms: Callable[[str], int]
    """Per channel: how long before a conversion a touch may still earn credit."""
    half_life_ms: int
    path_max: int
    skew_ms: int = 0
    """How far after a conversion a touch of the same person may be timed and still count:
    clocks of browsers and servers disagree by minutes."""
    max_ids: int = 100
    """Devices a user absorbs at most; more links to them are refused."""


@dataclass(slots=True)
class Delta:
    """What one batch adds: bucket sums, unique users, health counters."""

    sums: Counter[Cell] = field(default_factory=Counter)
    uniques: dict[Audience, set[str]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    """Event ids accepted by this batch, to remember for deduplication."""
    spend: dict[tuple[str, str], SpendFigure] = field(default_factory=dict)
    """(campaign, period) -> the figure that now stands."""
    health: Counter[str] = field(default_factory=Counter)
    unconvertible: list[str] = field(default_factory=list)
    """Ids of events in a currency without a configured rate: skipped, not counted."""
    watermark: EpochMs = 0
    newest: EpochMs = 0


LINKS = ("identify", "reset")
"""Event types that link a device to a user, or sign it out."""
RECENT_ORDERS = 20
"""Orders remembered per device and per user, for links that come after them."""


def person_of(event: Event) -> str | None:
    """Whom an event counts as a unique user for: the user, else the device."""
    return event.user_id or event.anonymous_id


def spend_key(event: Event, calendar: Calendar) -> tuple[str, str]:
    """The (campaign, period) a spend event reports; period defaults to its local day."""
    return (event.campaign or "", event.period or calendar.day_of(event.ts))


def fold(events: Iterable[Event], lookups: Lookups, *, watermark: EpochMs, policy: Policy) -> Delta:
    """Count a partition's batch of events, in their order, updating ``lookups``.

    Drops (and counts) duplicate event ids and re-fired orders; counts bots apart
    (never in KPIs). Late events (more than the grace behind the partition's newest
    event time) count like any other, in the buckets of their own time, and are
    also counted as late, with how late they were. Spend events replace their
    campaign and period's figure when newer. Refunds and rejections of a counted
    order take it back out.

    Apart from which copy of a re-sent order or event is the one kept, the result
    does not depend on the order of a batch's touches: that is what lets history
    be backfilled while live traffic flows.
    """
    delta = Delta(watermark=watermark)
    # Sum per (minute, campaign, channel) first, then spread to windows and
    # dimensions once per cell instead of once per event.
    cells: dict[tuple[EpochMs, str | None, str], tuple[Counter[str], set[str]]] = {}
    for event in events:
        if event.event_id in lookups.seen:
            delta.health["duplicates"] += 1
            continue
        if event.currency not in policy.rates:
            # The collector took it with a rate this worker lacks (settings differ):
            # counted and left unseen, so it counts once the rate is configured and the
            # topic replayed; a crash here would stop every partition behind it.
            delta.health["unconvertible"] += 1
            delta.unconvertible.append(event.event_id)
            continue
        behind = delta.watermark - event.ts
        if behind > policy.grace_ms:
            _count_late(delta, behind)
        lookups.seen.add(event.event_id)
        delta.seen.add(event.event_id)
        delta.watermark = max(delta.watermark, event.ts)
        delta.newest = max(delta.newest, event.received_at)
        delta.health["events"] += 1
        if event.type == "spend":
            _upsert_spend(event, delta, lookups, policy)
            continue
        if event.type in LINKS:  # who is who, not traffic
            if not event.bot and event.anonymous_id:
                user = event.user_id if event.type == "identify" else None
                _link(event.anonymous_id, user, event.ts, delta, lookups, policy)
            continue
        key = (event.ts - event.ts % MINUTE, event.campaign, event.channel)
        counts, people = cells.get(key) or cells.setdefault(key, (Counter(), set()))
        if event.bot:
            delta.health["bots"] += 1
            counts["bots"] += 1
            continue
        person = person_of(event)
        if person:
            people.add(person)
        if event.anonymous_id and event.user_id and event.anonymous_id != event.user_id:
            # Carrying both ids says they are one person.
            _link(event.anonymous_id, event.user_id, event.ts, delta, lookups, policy)
        if event.type == "conversion":
            _convert(event, delta, lookups, policy)
            continue
        counts[event.type + "s"] += 1
        if event.cost and event.type in ("impression", "click"):
            counts["spend"] += money.convert(event.cost, event.currency, policy.rates)
        if event.type == "click" or (event.type == "pageview" and event.campaign):
            _remember_touch(event, lookups, policy)
    for (minute, campaign, channel), (counts, people) in cells.items():
        dimensions = _dimensions(campaign, channel)
        _spread(delta, minute, dimensions, counts, policy.calendar)
        if people:
            for window in _SPREAD_WINDOWS:
                start = policy.calendar.bucket_start(minute, window)
                for dimension, value in dimensions:
                    delta.uniques.setdefault((window, start, dimension, value), set()).update(
                        people
                    )
    return delta


def _count_late(delta: Delta, behind_ms: int) -> None:
    """Count a late event in the lateness histogram (non-cumulative; the exporter sums)."""
    delta.health["late"] += 1
    delta.health["late_ms"] += behind_ms
    seconds = behind_ms / 1000
    bound = next((b for b in LATENESS_BUCKETS_S if seconds <= b), None)
    delta.health[f"late_le_{bound}" if bound else "late_le_inf"] += 1


def _dimensions(campaign: str | None, channel: str) -> list[tuple[str, str]]:
    dims = [(TOTAL, TOTAL), ("channel", channel)]
    if campaign:
        dims.append(("campaign", campaign))
    return dims


def _spread(
    delta: Delta,
    ts: EpochMs,
    dimensions: list[tuple[str, str]],
    metrics: Mapping[str, int],
    calendar: Calendar,
) -> None:
    for window in _SPREAD_WINDOWS:
        bucket = calendar.bucket_start(ts, window)
        for dimension, value in dimensions:
            for metric, amount in metrics.items():
                delta.sums[window, bucket, dimension, value, metric] += amount


def _remember_touch(event: Event, lookups: Lookups, policy: Policy) -> None:
    """Remember a touch on its device (else its user), and a click by its id."""
    touch = Touch(event.ts, event.campaign, event.channel)
    holder = event.anonymous_id or event.user_id
    if event.click_id and event.click_id not in lookups.clicks:
        lookups.clicks[event.click_id] = Click(touch, event.anonymous_id, event.user_id)
        lookups.dirty_clicks.add(event.click_id)
    if holder:
        path = lookups.paths.setdefault(holder, [])
        path.append(touch)
        path.sort(key=_touch_order)
        del path[: -policy.path_max]
        lookups.dirty_paths.add(holder)


def _touch_order(touch: Touch) -> tuple[EpochMs, str, str]:
    """Oldest first; touches of the same millisecond by name, not by arrival, so the
    order partitions interleave in never decides who is first or last."""
    return (touch.ts, touch.campaign or "", touch.channel)


def _touches(
    ts: EpochMs, click_id: str | None, customer: identity.Who, lookups: Lookups, policy: Policy
) -> list[Touch]:
    """The touches a conversion at ``ts`` by ``customer`` may credit, oldest first.

    A conversion that names a known click is credited to that click, last on the path
    that led to it (the clicker's): the click minted the id, so it came first, whatever
    either clock says; the lookback still applies, on the absolute gap between the
    two. So every copy of a re-sent order is credited alike, however its clock was
    set. Other conversions take their customer's touches up to their own time, and up
    to ``skew_ms`` after it, since a browser's clock and a server's disagree.
    """
    lookback = policy.lookback_ms
    click = lookups.clicks.get(click_id) if click_id else None
    named = click.touch if click is not None else None
    if named is not None and click is not None and abs(ts - named.ts) <= lookback(named.channel):
        clicker = identity.who(click.user, click.device, named.ts, lookups.links)
        before = [
            t
            for t in _path(clicker, lookups)
            if t.ts <= named.ts and named.ts - t.ts <= lookback(t.channel) and t != named
        ]
        return [*before, named][-policy.path_max :]
    latest = ts + policy.skew_ms
    path = _path(customer, lookups)
    eligible = [t for t in path if t.ts <= latest and abs(ts - t.ts) <= lookback(t.channel)]
    return eligible[-policy.path_max :]


def _path(customer: identity.Who, lookups: Lookups) -> list[Touch]:
    path = identity.path_of(customer, lookups.paths, lookups.devices, lookups.links)
    path.sort(key=_touch_order)
    return path


def _customer(
    user: str | None, device: str | None, ts: EpochMs, click_id: str | None, lookups: Lookups
) -> identity.Who:
    """Whose a conversion is; one naming only its click is the clicker's."""
    customer = identity.who(user, device, ts, lookups.links)
    click = lookups.clicks.get(click_id) if click_id else None
    if customer == (None, None) and click is not None:
        customer = identity.who(click.user, click.device, click.touch.ts, lookups.links)
    return customer


def _convert(event: Event, delta: Delta, lookups: Lookups, policy: Policy) -> None:
    if event.status in ("refund", "rejected"):
        _reverse(event, delta, lookups, policy.calendar)
        return
    order_id = event.order_id
    if order_id and order_id in lookups.orders:
        delta.health["duplicate_orders"] += 1
        return
    revenue = money.convert(event.value or 0, event.currency, policy.rates)
    customer = _customer(event.user_id, event.anonymous_id, event.ts, event.click_id, lookups)
    if event.campaign:  # a conversion that names its campaign keeps it
        touches = [Touch(event.ts, event.campaign, event.channel)]
    else:
        touches = _touches(event.ts, event.click_id, customer, lookups, policy)
    credits = {model: _credit(model, touches, revenue, policy) for model in MODELS}
    acquisition = None
    person = customer[0] or customer[1]
    if person:
        acquisition = lookups.customers.get(person)
        if acquisition is None:
            first = max(credits["last_click"], key=lambda c: c.conversions)
            acquisition = lookups.customers[person] = Acquisition(first.campaign, first.channel)
            lookups.dirty_customers.add(person)
            _spread_clv(delta, acquisition, customers=1, revenue=0)
        _spread_clv(delta, acquisition, customers=0, revenue=revenue)
    goal = event.goal or "conversion"
    order = Order(
        event.ts,
        goal,
        revenue,
        credits,
        acquisition,
        device=event.anonymous_id,
        user=event.user_id,
        click_id=event.click_id,
        named=bool(event.campaign),
    )
    _count_order(delta, order, policy.calendar, sign=1)
    if order_id:
        lookups.orders[order_id] = order
        lookups.dirty_orders.add(order_id)
        for holder in {event.anonymous_id, customer[0]} - {None}:
            _remember_order(holder or "", order_id, event.ts, lookups)


def _remember_order(holder: str, order_id: str, ts: EpochMs, lookups: Lookups) -> None:
    kept = lookups.recent.setdefault(holder, [])
    kept.append((order_id, ts))
    del kept[:-RECENT_ORDERS]
    lookups.dirty_recent.add(holder)


def _link(
    device: str, user: str | None, since: EpochMs, delta: Delta, lookups: Lookups, policy: Policy
) -> None:
    """Link ``device`` to ``user`` (``None``: sign it out) from ``since``, if the guards
    allow; then re-credit the orders the link changes (see :func:`_restitch`)."""
    if identity.junk(device) or (user is not None and identity.junk(user)):
        delta.health["identity_refused_junk_id"] += 1
        return
    segments = identity.relinked(lookups.links.get(device, []), user, since)
    if segments is None:
        return
    devices = lookups.devices.get(user, []) if user else []
    if user and device not in devices:
        if len(devices) >= policy.max_ids:
            delta.health["identity_refused_too_many_ids"] += 1
            return
        lookups.devices[user] = [*devices, device]
        lookups.dirty_devices.add(user)
    lookups.links[device] = segments
    lookups.dirty_links.add(device)
    delta.health["identity_links"] += 1
    _restitch(device, user, since, delta, lookups, policy)


def _restitch(
    device: str, user: str | None, since: EpochMs, delta: Delta, lookups: Lookups, policy: Policy
) -> None:
    """Re-credit the device's and user's recent orders that a new link changes.

    Within the grace before the link's time an order is re-credited (its old shares
    taken out of its own buckets, the new ones added; totals, revenue and lifetime
    value stay); an older one is left as counted, and counted as a late link.
    """
    candidates = {*lookups.recent.get(device, ()), *(lookups.recent.get(user, ()) if user else ())}
    for order_id, _ in sorted(candidates, key=lambda item: (item[1], item[0])):
        order = lookups.orders.get(order_id)
        if order is None or order.reversed or order.named:
            continue
        customer = _customer(order.user, order.device, order.ts, order.click_id, lookups)
        touches = _touches(order.ts, order.click_id, customer, lookups, policy)
        credits = {model: _credit(model, touches, order.revenue, policy) for model in MODELS}
        if credits == order.credits:
            continue
        if order.ts < since - policy.grace_ms:
            delta.health["identity_late_links"] += 1
            continue
        _count_order(delta, order, policy.calendar, sign=-1, totals=False)
        order.credits = credits
        _count_order(delta, order, policy.calendar, sign=1, totals=False)
        lookups.dirty_orders.add(order_id)
        delta.health["identity_restitched"] += 1


def _reverse(event: Event, delta: Delta, lookups: Lookups, calendar: Calendar) -> None:
    order = lookups.orders.get(event.order_id) if event.order_id else None
    if order is None:
        delta.health["unmatched_reversals"] += 1
        return
    if order.reversed:
        delta.health["repeated_reversals"] += 1
        return
    order.reversed = True
    lookups.dirty_orders.add(event.order_id or "")
    _count_order(delta, order, calendar, sign=-1)
    if order.acquisition is not None:
        _spread_clv(delta, order.acquisition, customers=0, revenue=-order.revenue)
    delta.health["reversals"] += 1


def _credit(model: str, touches: list[Touch], revenue: Micros, policy: Policy) -> list[Credit]:
    if not touches:
        return [Credit(None, DIRECT, ONE, revenue)]
    shares = weights(model, touches, policy.half_life_ms)
    merged: dict[tuple[str | None, str], tuple[int, int]] = {}
    for touch, conv, rev in zip(touches, split(ONE, shares), split(revenue, shares), strict=True):
        if conv or rev:
            before = merged.get((touch.campaign, touch.channel), (0, 0))
            merged[touch.campaign, touch.channel] = (before[0] + conv, before[1] + rev)
    return [Credit(c, ch, conv, rev) for (c, ch), (conv, rev) in merged.items()]


def _count_order(
    delta: Delta, order: Order, calendar: Calendar, sign: int, totals: bool = True
) -> None:
    """Add (or with ``sign=-1`` take back) an order in the buckets of its own time;
    ``totals=False`` only its campaign and channel shares (a re-credit).

    A take-back is also counted, all time, under ``<metric>_reversed``: added to the
    net figure it gives a gross total that never goes down, which is what
    Prometheus counters must be.
    """
    cells: list[tuple[list[tuple[str, str]], str, int, int]] = []
    if totals:
        cells.append(([(TOTAL, TOTAL), ("goal", order.goal)], "", 1, order.revenue))
    for model, shares in order.credits.items():
        for credit in shares:
            dims = [("channel", credit.channel)]
            if credit.campaign:
                dims.append(("campaign", credit.campaign))
            cells.append((dims, "@" + model, credit.conversions, credit.revenue))
    for dims, suffix, conversions, revenue in cells:
        # Totals count whole conversions; attributed shares are micro-conversions.
        metrics = {f"conversions{suffix}": sign * conversions, f"revenue{suffix}": sign * revenue}
        _spread(delta, order.ts, dims, metrics, calendar)
        if sign < 0:
            for dimension, value in dims:
                delta.sums[ALL_TIME, 0, dimension, value, f"conversions_reversed{suffix}"] += (
                    conversions
                )
                delta.sums[ALL_TIME, 0, dimension, value, f"revenue_reversed{suffix}"] += revenue


def _spread_clv(delta: Delta, acquisition: Acquisition, customers: int, revenue: Micros) -> None:
    """Customer lifetime value lives in all-time totals, per acquisition campaign/channel."""
    for dimension, value in _dimensions(acquisition.campaign, acquisition.channel):
        if customers:
            delta.sums[ALL_TIME, 0, dimension, value, "customers"] += customers
        if revenue:
            delta.sums[ALL_TIME, 0, dimension, value, "customer_revenue"] += revenue


def _upsert_spend(event: Event, delta: Delta, lookups: Lookups, policy: Policy) -> None:
    key = spend_key(event, policy.calendar)
    previous = lookups.spend.get(key)
    amount = money.convert(event.cost or 0, event.currency, policy.rates)
    # The newer report stands; of two reported at the same moment, the larger, so that
    # the order they arrive in never decides.
    if previous is not None and (previous.ts, previous.amount) > (event.ts, amount):
        delta.health["stale_spend"] += 1
        return
    lookups.spend[key] = delta.spend[key] = SpendFigure(event.ts, amount)
    change = amount - (previous.amount if previous else 0)
    if change:
        start = policy.calendar.period_start(key[1])
        dims = _dimensions(event.campaign, event.channel)
        _spread(delta, start, dims, {"spend": change}, policy.calendar)
        if change < 0:  # see _count_order: counters need a gross figure
            for dimension, value in dims:
                delta.sums[ALL_TIME, 0, dimension, value, "spend_revised_down"] -= change
