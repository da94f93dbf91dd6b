"""Conversions: whom they are credited to, refunds, and links that come after them.

Pure functions over plain values, called by :func:`tracker.stream.aggregate.fold` for
each conversion, identify and reset, updating its :class:`Lookups` and :class:`Delta`.
"""

from __future__ import annotations

from collections import Counter

from tracker import money
from tracker.attribution import MODELS, ONE, Touch, split, weights
from tracker.events import Event
from tracker.stream import identity
from tracker.stream.delta import DIRECT, TOTAL, Delta, Policy, dimensions, spread
from tracker.stream.state import Acquisition, Credit, Customer, Lookups, Order
from tracker.types import EpochMs, Micros
from tracker.windows import Calendar

RECENT_ORDERS = 20
"""Orders remembered per device and per user, for links that come after them."""


def touch_order(touch: Touch) -> tuple[EpochMs, str, str, bool]:
    """Oldest first; touches of the same millisecond by name, not by arrival, so the
    order partitions interleave in never decides who is first or last. A total order,
    which :data:`tracker.store.TOUCHES` follows too."""
    return (touch.ts, touch.campaign or "", touch.channel, touch.campaign is not None)


def trimmed(path: list[Touch], most: int) -> list[Touch]:
    """``path`` in :func:`touch_order`, its newest ``most`` touches."""
    path.sort(key=touch_order)
    del path[:-most]
    return path


def joined(path: list[Touch], other: list[Touch], most: int) -> list[Touch]:
    """Two copies of one person's path as one: each touch as often as the copy that has
    it most often, the newest ``most`` kept. Joining a copy again, or an older one,
    changes nothing, so copies may be joined in any order (:data:`tracker.store.TOUCHES`
    does the same where the paths are spread)."""
    extra = Counter(other)
    extra.subtract(path)
    return trimmed([*path, *(t for t, n in extra.items() for _ in range(n) if n > 0)], most)


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
    path.sort(key=touch_order)
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


def convert(event: Event, delta: Delta, lookups: Lookups, policy: Policy) -> None:
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
        won = _acquire(person, (event.ts, order_id or event.event_id), credits, delta, lookups)
        _spend(won, revenue, delta)
        acquisition = won.acquisition
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
        customer=person,
    )
    _count_order(delta, order, policy.calendar, sign=1)
    if order_id:
        lookups.orders[order_id] = order
        lookups.dirty_orders.add(order_id)
        # Under its device and its customer, for the links of either that come after it:
        # a postback naming an anonymous clicker's click is that device's.
        for holder in {event.anonymous_id, person} - {None}:
            _remember_order(holder or "", order_id, event.ts, lookups)


def _acquire(
    person: str,
    conversion: tuple[EpochMs, str],
    credits: dict[str, list[Credit]],
    delta: Delta,
    lookups: Lookups,
) -> Customer:
    """``person``'s customer record with ``conversion`` (its time and id) counted in it,
    won by it with these ``credits`` if it is their earliest: the campaign and channel
    ``last_click`` credits it to. So who won a customer does not depend on the order
    their conversions come in (a postback and an order of one person on two
    partitions): an earlier one coming later moves the customer, and what they spent so
    far, to its acquisition.
    """
    won = _won(credits)
    customer = lookups.customers.get(person)
    if customer is None or customer.count == 0:
        customer = lookups.customers[person] = Customer(won, conversion, count=0)
        _spread_clv(delta, won, customers=1, revenue=0)
    elif customer.first is not None and conversion < customer.first:
        _move(customer, won, delta)
        customer.first = conversion
    if customer.count is not None:
        customer.count += 1
    lookups.dirty_customers.add(person)
    return customer


def _spend(customer: Customer, revenue: Micros, delta: Delta) -> None:
    """Add ``revenue`` (less, if negative) to what ``customer`` spent, where they are."""
    customer.revenue += revenue
    _spread_clv(delta, customer.acquisition, customers=0, revenue=revenue)


def _won(credits: dict[str, list[Credit]]) -> Acquisition:
    """Who wins a customer with a conversion so credited: ``last_click``'s share."""
    share = max(credits["last_click"], key=lambda c: c.conversions)
    return Acquisition(share.campaign, share.channel)


def _move(customer: Customer, won: Acquisition, delta: Delta) -> None:
    """Give ``customer``, and what they spent so far, to the acquisition ``won``: under
    the values they leave (not the total, nor a channel both share), and those they join.

    Counted all time under ``customers_moved`` where they leave: added to ``customers``
    it gives the customers ever won there, which never goes down, as Prometheus
    counters must not.
    """
    before = dimensions(customer.acquisition.campaign, customer.acquisition.channel)
    after = dimensions(won.campaign, won.channel)
    _leave(delta, [dim for dim in before if dim not in after], customer.revenue)
    joined = [dim for dim in after if dim not in before]
    delta.add_all_time(joined, "customers", 1)
    delta.add_all_time(joined, "customer_revenue", customer.revenue)
    customer.acquisition = won


def _remember_order(holder: str, order_id: str, ts: EpochMs, lookups: Lookups) -> None:
    kept = lookups.recent.setdefault(holder, [])
    kept.append((order_id, ts))
    del kept[:-RECENT_ORDERS]
    lookups.dirty_recent.add(holder)


def link(
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
    """Re-credit the device's and user's recent orders that a new link changes, and give
    each to the customer it now is (a guest's order to the user the guest signed in as).

    Within the grace before the link's time an order is re-credited (its old shares
    taken out of its own buckets, the new ones added; totals and revenue stay); an older
    one is left as counted, and counted as a late link if its credits would change.
    """
    candidates = {*lookups.recent.get(device, ()), *(lookups.recent.get(user, ()) if user else ())}
    for order_id, _ in sorted(candidates, key=lambda item: (item[1], item[0])):
        order = lookups.orders.get(order_id)
        if order is None:
            continue
        late = order.ts < since - policy.grace_ms
        customer = _customer(order.user, order.device, order.ts, order.click_id, lookups)
        if not (order.reversed or order.named):
            touches = _touches(order.ts, order.click_id, customer, lookups, policy)
            credits = {model: _credit(model, touches, order.revenue, policy) for model in MODELS}
            if credits != order.credits and late:
                delta.health["identity_late_links"] += 1
            elif credits != order.credits:
                _count_order(delta, order, policy.calendar, sign=-1, totals=False)
                order.credits = credits
                _count_order(delta, order, policy.calendar, sign=1, totals=False)
                lookups.dirty_orders.add(order_id)
                delta.health["identity_restitched"] += 1
        if not late:
            _rehome(order_id, order, customer[0] or customer[1], delta, lookups)


def _rehome(
    order_id: str, order: Order, person: str | None, delta: Delta, lookups: Lookups
) -> None:
    """Count ``order`` in ``person``'s customer record, and have the record follow what
    the order is credited to if it is the conversion that won them.

    A record left with no conversion is no customer any more (counted under
    ``customers_moved``, as in :func:`_move`): a guest who signed in is one customer,
    the user, not two. One left with others keeps its acquisition even if the order
    won it, as the others' credits are not at hand.
    """
    if order.customer is None:  # counted before orders kept it, or nobody's
        return
    key = (order.ts, order_id)
    if person and person != order.customer:
        old = lookups.customers.get(order.customer)
        known = lookups.customers.get(person)
        if old is not None and old.count == 1 and (known is None or known.count == 0):
            # Their only conversion, to one not a customer yet: the same customer, renamed.
            lookups.customers[person] = Customer(old.acquisition, old.first, old.revenue, 1)
            old.count, old.revenue = 0, 0
            lookups.dirty_customers.add(order.customer)
        else:
            new = _acquire(person, key, order.credits, delta, lookups)
            if old is not None:
                _take(old, order.customer, order, delta, lookups)
            if not order.reversed:
                _spend(new, order.revenue, delta)
        order.customer = person
        lookups.dirty_orders.add(order_id)
        lookups.dirty_customers.add(person)
    record = lookups.customers.get(order.customer)
    if record is not None and record.first == key:  # it won them
        _move(record, _won(order.credits), delta)
        lookups.dirty_customers.add(order.customer)


def _take(customer: Customer, person: str, order: Order, delta: Delta, lookups: Lookups) -> None:
    """Take ``order`` out of ``person``'s customer record, for another's."""
    if not order.reversed:
        _spend(customer, -order.revenue, delta)
    if customer.count is not None:
        customer.count -= 1
        if customer.count == 0:  # no conversion left: no customer
            won = customer.acquisition
            _leave(delta, dimensions(won.campaign, won.channel), 0)
    lookups.dirty_customers.add(person)


def _leave(delta: Delta, dims: list[tuple[str, str]], revenue: Micros) -> None:
    """A customer, and ``revenue`` of theirs, leave ``dims``: counted as moved there."""
    delta.add_all_time(dims, "customers", -1)
    delta.add_all_time(dims, "customers_moved", 1)
    if revenue:
        delta.add_all_time(dims, "customer_revenue", -revenue)


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
    customer = lookups.customers.get(order.customer) if order.customer else None
    if customer is not None:  # wherever they are now
        _spend(customer, -order.revenue, delta)
        lookups.dirty_customers.add(order.customer or "")
    elif order.acquisition is not None:  # counted before customers kept their revenue
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
        spread(delta, order.ts, dims, metrics, calendar)
        if sign < 0:
            delta.add_all_time(dims, f"conversions_reversed{suffix}", conversions)
            delta.add_all_time(dims, f"revenue_reversed{suffix}", revenue)


def _spread_clv(delta: Delta, acquisition: Acquisition, customers: int, revenue: Micros) -> None:
    """Customer lifetime value lives in all-time totals, per acquisition campaign/channel."""
    dims = dimensions(acquisition.campaign, acquisition.channel)
    if customers:
        delta.add_all_time(dims, "customers", customers)
    if revenue:
        delta.add_all_time(dims, "customer_revenue", revenue)
