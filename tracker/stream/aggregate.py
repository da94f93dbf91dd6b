"""The pure core of the worker: a batch of events -> the sums to add to Redis.

No I/O here. The sink reads what this needs into :class:`Lookups` (seen event ids,
spend figures, orders, clicks, touch paths, customers), calls :func:`fold` per
partition, and writes the resulting :class:`Delta` and the changed lookups in one
transaction with the source offsets.

Dimensions of a bucket: ``total``, ``channel``, ``campaign`` and ``goal``.
Impressions, clicks, pageviews, spend and bots count under the event's own campaign
and channel. Conversions and revenue count under ``total`` and ``goal`` as they
happened, and under campaign and channel as each attribution model credits them
(metrics ``conversions@<model>`` in micro-conversions, ``revenue@<model>``):
:mod:`tracker.stream.conversions` decides that, and applies identify and reset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tracker import money
from tracker.attribution import Touch
from tracker.events import Event
from tracker.stream import conversions
from tracker.stream.delta import SPREAD_WINDOWS, Delta, Policy, dimensions, spread
from tracker.stream.state import Click, Lookups, SpendFigure
from tracker.types import EpochMs
from tracker.windows import MINUTE, Calendar

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

LINKS = ("identify", "reset")
"""Event types that link a device to a user, or sign it out."""


def person_of(event: Event) -> str | None:
    """Whom an event counts as a unique user for: the user, else the device."""
    return event.user_id or event.anonymous_id


def spend_key(event: Event, calendar: Calendar) -> tuple[str, str]:
    """The (campaign, period) a spend event reports; period defaults to its local day."""
    return (event.campaign or "", event.period or calendar.day_of(event.ts))


def convertible(event: Event, policy: Policy) -> bool:
    """Whether this worker can count ``event``: it has a rate for its currency."""
    return event.currency in policy.rates


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
        if not convertible(event, policy):
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
        delta.watermark = max(delta.watermark, event.ts)
        delta.newest = max(delta.newest, event.received_at)
        delta.health["events"] += 1
        if event.type == "spend":
            _upsert_spend(event, delta, lookups, policy)
            continue
        if event.type in LINKS:  # who is who, not traffic; whatever agent sent it, as
            # a server's HTTP client looks like a bot
            if event.anonymous_id:
                user = event.user_id if event.type == "identify" else None
                conversions.link(event.anonymous_id, user, event.ts, delta, lookups, policy)
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
            conversions.link(event.anonymous_id, event.user_id, event.ts, delta, lookups, policy)
        if event.type == "conversion":
            conversions.convert(event, delta, lookups, policy)
            continue
        counts[event.type + "s"] += 1
        if event.cost and event.type in ("impression", "click"):
            counts["spend"] += money.convert(event.cost, event.currency, policy.rates)
        if is_touch(event):
            _remember_touch(event, lookups, policy)
    for (minute, campaign, channel), (counts, people) in cells.items():
        dims = dimensions(campaign, channel)
        spread(delta, minute, dims, counts, policy.calendar)
        if people:
            audiences = tuple(
                (window, start, dimension, value)
                for window in SPREAD_WINDOWS
                for start in [policy.calendar.bucket_start(minute, window)]
                for dimension, value in dims
            )
            delta.crowds.setdefault(audiences, set()).update(people)
    return delta


def _count_late(delta: Delta, behind_ms: int) -> None:
    """Count a late event in the lateness histogram (non-cumulative; the exporter sums)."""
    delta.health["late"] += 1
    delta.health["late_ms"] += behind_ms
    seconds = behind_ms / 1000
    bound = next((b for b in LATENESS_BUCKETS_S if seconds <= b), None)
    delta.health[f"late_le_{bound}" if bound else "late_le_inf"] += 1


def is_touch(event: Event) -> bool:
    """A click, or a campaign's pageview: what a conversion may be credited to."""
    return event.type == "click" or (event.type == "pageview" and bool(event.campaign))


def holder_of(event: Event) -> str | None:
    """Whose path a touch joins: its device, else its user (its partition key's)."""
    return event.anonymous_id or event.user_id


def _remember_touch(event: Event, lookups: Lookups, policy: Policy) -> None:
    """Remember a touch on its holder's path, and a click by its id."""
    touch = Touch(event.ts, event.campaign, event.channel)
    holder = holder_of(event)
    if event.click_id and event.click_id not in lookups.clicks:
        lookups.clicks[event.click_id] = Click(touch, event.anonymous_id, event.user_id)
        lookups.dirty_clicks.add(event.click_id)
    if holder:
        path = lookups.paths.setdefault(holder, [])
        path.append(touch)
        conversions.trimmed(path, policy.path_max)
        lookups.dirty_paths.add(holder)


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
        dims = dimensions(event.campaign, event.channel)
        spread(delta, start, dims, {"spend": change}, policy.calendar)
        if change < 0:  # see conversions._count_order: counters need a gross figure
            delta.add_all_time(dims, "spend_revised_down", -change)
