"""The worker's fold, without servers, against the e2e oracle's independent reference.

The e2e oracle checks the whole pipeline; this checks the pure core on the same log
in milliseconds, and that the order in which Kafka's partitions interleave (a
person's events stay in order, nothing else does) never changes a campaign's totals.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import bots
from collector.segment_messages import message_event
from tests.e2e import oracle, protocols
from tests.unit.test_aggregate import uniques
from tracker import goals
from tracker.attribution import ONE
from tracker.events import Context, Event, Rules, parse_event
from tracker.goals import GoalSet
from tracker.records import partition_key
from tracker.stream.aggregate import fold
from tracker.stream.delta import Delta, Policy
from tracker.stream.state import Lookups
from tracker.windows import ALL_TIME, calendar

NOW = 1_764_800_000_000  # 2025-12-03T22:13:20Z: a log of three days, near midnight UTC
RATES = {currency: float(rate) for currency, rate in oracle.RATES.items()}


GOALS = GoalSet(1, 0, goals.parse(oracle.GOAL_RULES, frozenset(RATES), "USD", 100))
RULES = Rules(
    currencies=frozenset(RATES),
    default_currency="USD",
    max_age_ms=400 * oracle.DAY,
    is_bot=bots.is_bot,
    goals=GOALS,
)


CONTEXT = Context(received_at=NOW, salt=b"a day's salt")
"""Cookieless visitors' ids take a day's salt: one for the whole log, as when sent."""


def events_of(log: oracle.Log) -> list[list[Event]]:
    """The log's events as the collector passes them on (goal rules applied)."""
    return [[e for raw in phase for e in collected(raw, CONTEXT)] for phase in log.phases]


def collected(raw: dict[str, Any], context: Context) -> list[Event]:
    # A client whose clock is off is counted at its true time (the collector corrects
    # it by sent_at; tests/e2e checks that part).
    raw = {k: v for k, v in raw.items() if k != oracle.CLOCK}
    if oracle.SDK_EVENT in raw:  # only an SDK can name it: as Segment's API says it
        message = protocols.segment_message(raw)
        assert message is not None
        return [message_event(message, context, RULES)]
    return GOALS.conversions([parse_event(raw, context, RULES)])


def policy(timezone: str) -> Policy:
    return Policy(
        grace_ms=oracle.HOUR,
        calendar=calendar(timezone),
        rates=RATES,
        lookback_ms=lambda channel: oracle.LOOKBACK_MS,
        half_life_ms=oracle.HALF_LIFE_MS,
        path_max=oracle.PATH_MAX,
        skew_ms=oracle.SKEW_MS,
        max_ids=oracle.MAX_IDS_PER_USER,
    )


def folded(phases: list[list[Event]], timezone: str) -> list[Delta]:
    lookups, rule = Lookups(), policy(timezone)
    return [fold(phase, lookups, watermark=0, policy=rule) for phase in phases]


def counted(
    phases: list[list[Event]], timezone: str
) -> dict[str, dict[oracle.Key, dict[str, int]]]:
    """Per model, the day buckets the fold writes, in the reference's shape."""
    deltas = folded(phases, timezone)
    rows: dict[str, dict[oracle.Key, dict[str, int]]] = {
        m: defaultdict(lambda: defaultdict(int)) for m in oracle.MODELS
    }
    for delta in deltas:
        for (window, day, dimension, value, metric), amount in delta.sums.items():
            if window != "1d" or not amount:
                continue
            name, _, model = metric.partition("@")
            if name not in METRICS:
                continue
            if dimension in ("total", "goal"):
                scale = ONE if name == "conversions" else 1
                for m in oracle.MODELS:
                    rows[m][day, dimension, value][name] += amount * scale
            elif model:
                rows[model][day, dimension, value][name] += amount
            elif name not in ("conversions", "revenue"):
                for m in oracle.MODELS:
                    rows[m][day, dimension, value][name] += amount
    return rows


METRICS = ("impressions", "clicks", "spend", "conversions", "revenue", "bots")


def nonzero(rows: dict[oracle.Key, dict[str, int]]) -> dict[oracle.Key, dict[str, int]]:
    found = {key: {m: sums[m] for m in METRICS if sums.get(m)} for key, sums in rows.items()}
    return {key: sums for key, sums in found.items() if sums}


def campaign_totals(rows: dict[oracle.Key, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Each campaign's sums over the whole range, whatever day they fell on."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (_, dimension, value), sums in rows.items():
        if dimension == "campaign":
            for metric, amount in sums.items():
                if metric in METRICS and amount:
                    totals[value][metric] += amount
    return {campaign: dict(sums) for campaign, sums in totals.items() if any(sums.values())}


@pytest.mark.parametrize(
    ("seed", "timezone"),
    [(20261127, "America/New_York"), (7, "UTC"), (11, "Asia/Kolkata"), (5, "Europe/Berlin")],
)
def test_the_fold_equals_the_reference(seed: int, timezone: str) -> None:
    log = oracle.generate(seed, NOW, timezone)
    expected, got = oracle.reference(log), counted(events_of(log), timezone)
    for model in oracle.MODELS:
        assert nonzero(got[model]) == nonzero(expected[model]), model
    deltas = folded(events_of(log), timezone)
    health = sum((delta.health for delta in deltas), Counter[str]())
    assert {name: health[name] for name in oracle.IDENTITY_COUNTERS} == oracle.identity_counts(log)
    want = {key: nonzero_sums(sums) for key, sums in oracle.lifetime_values(log).items()}
    assert len(want) > 5
    assert lifetime_values(deltas) == want
    # Readers read the all-time totals from its one bucket: a sum anywhere else is lost.
    assert {start for d in deltas for (window, start, *_) in d.sums if window == ALL_TIME} == {0}


def lifetime_values(deltas: list[Delta]) -> dict[tuple[str, str], dict[str, int]]:
    """(dimension, value) -> the customers and their revenue the fold writes, all time."""
    values: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for delta in deltas:
        for (window, _, dimension, value, metric), amount in delta.sums.items():
            if window == ALL_TIME and metric in ("customers", "customer_revenue"):
                values[dimension, value][metric] += amount
    found = {key: nonzero_sums(sums) for key, sums in values.items() if key[0] != "total"}
    return {key: sums for key, sums in found.items() if sums}


def nonzero_sums(sums: dict[str, int]) -> dict[str, int]:
    return {metric: amount for metric, amount in sums.items() if amount}


@pytest.mark.parametrize(("seed", "timezone"), [(20261127, "America/New_York"), (7, "UTC")])
def test_the_folds_people_are_the_references(seed: int, timezone: str) -> None:
    """Who each day's unique users are, to the person. The collector names cookieless
    visitors by a salted hash the reference does not make: those are matched by number."""
    log = oracle.generate(seed, NOW, timezone)
    cookieless = {
        e.anonymous_id
        for phase in log.phases
        for raw in phase
        if raw.get("analytics_storage") == "denied"
        for e in collected(raw, CONTEXT)
    }
    got: dict[oracle.Key, set[str]] = defaultdict(set)
    for delta in folded(events_of(log), timezone):
        for (window, day, dimension, value), people in uniques(delta).items():
            if window == "1d":
                got[day, dimension, value] |= people
    want = oracle.unique_people(log)
    assert got.keys() == want.keys()
    for key, people in want.items():
        named = {p for p in people if not p.startswith(oracle.COOKIELESS)}
        assert got[key] - cookieless == named, key
        assert len(got[key] & cookieless) == len(people - named), key


def interleaved(phase: list[Event], rng: random.Random) -> list[Event]:
    """``phase`` as one worker may see it: each key's events in order, the keys mixed."""
    queues: dict[str, list[Event]] = defaultdict(list)
    for event in phase:
        queues[partition_key(event)].append(event)
    lanes = [queue[::-1] for queue in queues.values()]
    out: list[Event] = []
    while lanes:
        lane = rng.choice(lanes)
        out.append(lane.pop())
        if not lane:
            lanes.remove(lane)
    return out


LOG = oracle.generate(20261127, NOW, "America/New_York")
PHASES = events_of(LOG)
IN_ORDER = {m: campaign_totals(rows) for m, rows in counted(PHASES, LOG.timezone).items()}
LIFETIME_IN_ORDER = lifetime_values(folded(PHASES, LOG.timezone))


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_interleaving_partitions_never_changes_a_campaigns_totals(seed: int) -> None:
    """Nor its customers and their lifetime value."""
    rng = random.Random(seed)
    # Touches depend on nothing: any order at all. Later phases keep each key's order.
    touches = rng.sample(PHASES[0], len(PHASES[0]))
    phases = [touches, *(interleaved(phase, rng) for phase in PHASES[1:])]
    got = counted(phases, LOG.timezone)
    for model in oracle.MODELS:
        assert campaign_totals(got[model]) == IN_ORDER[model], model
    # Who won each customer: their earliest conversion, whichever partition counts first.
    assert lifetime_values(folded(phases, LOG.timezone)) == LIFETIME_IN_ORDER


def test_the_log_has_the_hard_cases() -> None:
    """The cases the reference is meant to catch are really in the log."""
    everything: list[dict[str, Any]] = [e for phase in LOG.phases for e in phase]
    assert sum(1 for e in everything if oracle.CLOCK in e) >= 6
    assert min(e["ts"] for e in everything) < LOG.start - 7 * oracle.DAY  # history and DST days
    assert oracle.clock_changes(LOG.timezone, NOW)
    orders: dict[str, list[int]] = defaultdict(list)
    clicks = {e["click_id"]: e["ts"] for e in everything if e["type"] == "click"}
    for e in LOG.phases[1]:
        if e.get("order_id") and e.get("click_id") in clicks:
            orders[e["order_id"]].append(e["ts"] - clicks[e["click_id"]])
    assert any(len(gaps) == 2 and gaps[0] < 0 < gaps[1] for gaps in orders.values())
    # Identity: sign-ins and a sign-out after the touches they claim (never in phase 0,
    # which is sent in any order), orders with a user id only and with both ids, links
    # after their orders within and beyond the grace, junk ids, too many devices.
    assert not any(e["type"] in ("identify", "reset") for e in LOG.phases[0])
    assert any(e["type"] == "reset" for e in LOG.phases[1])
    conversions = [e for e in everything if e["type"] == "conversion" and e.get("order_id")]
    assert any(e.get("user_id") and not e.get("anonymous_id") for e in conversions)
    assert any(e.get("user_id") and e.get("anonymous_id") for e in conversions)
    counts = oracle.identity_counts(LOG)
    assert counts["identity_refused_too_many_ids"] == 5, counts
    assert all(counts.values()), counts
    # Customers: a guest signing in as a user who bought before them (two records, one
    # customer), and a postback of an anonymous clicker who signs in later.
    signins = [(e["anonymous_id"], e["user_id"]) for e in LOG.phases[2] if e["type"] == "identify"]
    buyers = {e.get("anonymous_id") or e.get("user_id") for e in conversions}
    assert any(device in buyers and user in buyers for device, user in signins)
    clickers = {e["click_id"]: e.get("anonymous_id") for e in everything if e["type"] == "click"}
    postbacks = [e for e in conversions if not e.get("anonymous_id") and not e.get("user_id")]
    assert any(clickers.get(e.get("click_id")) in dict(signins) for e in postbacks)
