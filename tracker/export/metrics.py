"""The Prometheus view of the store: a custom collector built fresh on every scrape.

``collect()`` reads Redis in two pipelined round trips. Campaign labels are bounded:
the ``top_campaigns`` campaigns by all-time spend keep their name, the rest are
summed under ``campaign="other"``. Ratios with a zero denominator are left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis import Redis, RedisCluster

from tracker import rulebook, targets
from tracker.attribution import ONE
from tracker.channels import CHANNELS
from tracker.money import to_number
from tracker.redis_nodes import Node
from tracker.rows import totals
from tracker.settings import Settings
from tracker.store import CAMPAIGN_SUM, Keys, tally_keys
from tracker.stream.aggregate import LATENESS_BUCKETS_S
from tracker.stream.delta import attributed
from tracker.windows import ALL_TIME, WINDOWS

DEFAULT_MODEL = "last_click"
_LC = "@" + DEFAULT_MODEL


@dataclass(frozen=True, slots=True)
class Counted:
    """An all-time counter: the stored metrics it adds up, and its unit."""

    name: str
    stored: tuple[str, ...]
    scale: int = 1
    money: bool = False


# Per campaign and channel, conversions and revenue are as the default model credits
# them (conversions in micro-conversions, hence the scale). Counters are gross: what
# refunds and spend corrections took back is added again and counted on its own, so
# no counter ever goes down (Prometheus would read that as a restart).
COUNTED = (
    Counted("impressions", ("impressions",)),
    Counted("clicks", ("clicks",)),
    Counted("conversions", ("conversions" + _LC, "conversions_reversed" + _LC), ONE),
    Counted("conversions_reversed", ("conversions_reversed" + _LC,), ONE),
    Counted("spend", ("spend", "spend_revised_down"), money=True),
    Counted("spend_revised_down", ("spend_revised_down",), money=True),
    Counted("revenue", ("revenue" + _LC, "revenue_reversed" + _LC), money=True),
    Counted("revenue_reversed", ("revenue_reversed" + _LC,), money=True),
    Counted("bots", ("bots",)),
)
OTHER = "other"
_KPIS = ("ctr", "cvr", "cpc", "cpa", "roas")
_FIELDS = tuple(
    dict.fromkeys(
        [
            *(name for counted in COUNTED for name in counted.stored),
            "customers",
            "customers_moved",
            "customer_revenue",
            attributed("conversions", DEFAULT_MODEL),
            attributed("revenue", DEFAULT_MODEL),
        ]
    )
)
Rows = dict[tuple[str, str], dict[str, int]]
"""(dimension, value) -> metric -> amount."""


def _summed(values: tuple[bytes | None, ...]) -> int | None:
    """One field's values under each prefix holding sums, summed; None if none has it."""
    found = [int(v) for v in values if v is not None]
    return sum(found) if found else None


def _rows(wanted: list[tuple[str, str]], raw: list[int | None], fold: bool) -> Rows:
    """HMGET answers as rows; with ``fold``, the campaign sum less the named is ``other``."""
    rows: Rows = {}
    values = iter(raw)
    for row in wanted:
        rows[row] = {m: int(v) for m in _FIELDS if (v := next(values)) is not None}
    total = rows.pop(CAMPAIGN_SUM)
    if fold:
        named = [m for (d, _), m in rows.items() if d == "campaign"]
        rows["campaign", OTHER] = {
            m: total.get(m, 0) - sum(n.get(m, 0) for n in named) for m in _FIELDS
        }
    return {key: metrics for key, metrics in rows.items() if metrics}


class StoreCollector(Collector):
    def __init__(self, reader: Callable[[], Redis | RedisCluster], settings: Settings) -> None:
        """``reader`` gives the client of each scrape: on a Redis Cluster it is made when
        first given (redis-py reaches the cluster then), so the exporter starts, and
        answers its probes, while the cluster is down, as on one Redis."""
        self._reader = reader
        self._keys = Keys(settings.key_prefix)
        self._top = settings.top_campaigns
        self._calendar = settings.calendar()
        self._currency = settings.base_currency.upper()
        self._events_topic = settings.events_topic
        self.end_offsets: dict[int, int] | None = None
        """Set before each scrape from Kafka (see ``lag.py``); None when Kafka is away."""
        self.nodes: list[Node] | None = None
        """Set before each scrape (:mod:`tracker.redis_nodes`); None when Redis is away."""

    def collect(self) -> Iterator[Metric]:
        keys = self._keys
        now = int(time.time() * 1000)
        buckets = [(ALL_TIME, 0)] + [(w, self._calendar.bucket_start(now, w)) for w in WINDOWS]
        redis = self._reader()
        pipe = redis.pipeline(transaction=False)
        pipe.zrevrange(keys.rank, 0, self._top - 1)
        pipe.zcard(keys.rank)
        pipe.hgetall(keys.health)
        pipe.smembers(keys.sources)
        pipe.get(keys.targets)
        pipe.smembers(keys.tallies)
        top, ranked, health, sources, stored_targets, tallied = pipe.execute()
        bounds = targets.load(rulebook.decode(stored_targets))
        # The sums of a Redis Cluster's partitions are under hash tags of their own.
        tallies = tally_keys(keys, tallied)

        # Only the named campaigns, their sum and the channels are read: the scrape
        # costs the same for ten campaigns or ten thousand. A campaign with a target
        # keeps its name whatever it spends, so its alert can compare the two.
        named = list(dict.fromkeys([name.decode() for name in top] + bounds.named("campaign")))
        wanted = [("campaign", n) for n in named] + [CAMPAIGN_SUM]
        wanted += [("channel", c) for c in CHANNELS]
        dimensions = list(dict.fromkeys(d for d, _ in wanted))
        fields = {
            d: [keys.field(d, v, m) for dim, v in wanted if dim == d for m in _FIELDS]
            for d in dimensions
        }
        source_keys = sorted(sources)
        pipe = redis.pipeline(transaction=False)
        for window, start in buckets:
            for dimension in dimensions:
                for tally in tallies:
                    pipe.hmget(tally.bucket(window, start, dimension), fields[dimension])
        for source_key in source_keys:  # not MGET: RedisCluster pipelines refuse it
            pipe.get(source_key)
        results = pipe.execute()
        cells = len(results) - len(source_keys)
        results, progress = results[:cells], results[cells:]
        fold = ranked > len(top)
        replies = iter(results)
        rows = {}
        for window, _ in buckets:
            # HMGET answers in the order of ``wanted``, one dimension's hash at a time.
            raw = [
                _summed(value)
                for _ in dimensions
                for value in zip(*(next(replies) for _ in tallies), strict=True)
            ]
            rows[window] = _rows(wanted, raw, fold)

        yield from self._counters(rows[ALL_TIME])
        yield GaugeMetricFamily(
            "tracker_campaigns_folded",
            "Campaigns summed under campaign='other' to bound label cardinality",
            value=max(0, ranked - len(named)),
        )
        yield from self._window_kpis({w: rows[w] for w in WINDOWS})
        yield from self._targets(bounds, rows["1d"])
        yield from self._health(health, progress)
        yield from self._lag(source_keys, progress)
        yield from lifetime_values(rows[ALL_TIME], self._currency)
        if self.nodes is not None:
            yield from store_nodes(self.nodes)

    def _counters(self, folded: Rows) -> Iterator[Metric]:
        for dimension in ("campaign", "channel"):
            for counted in COUNTED:
                family = CounterMetricFamily(
                    f"tracker_{dimension}_{counted.name}",
                    f"All-time {counted.name.replace('_', ' ')} per {dimension}"
                    + (f", in {self._currency}" if counted.money else ""),
                    labels=[dimension],
                )
                for (dim, value), metrics in sorted(folded.items()):
                    if dim != dimension or not any(m in metrics for m in counted.stored):
                        continue
                    amount = sum(metrics.get(m, 0) for m in counted.stored)
                    family.add_metric(
                        [value], to_number(amount) if counted.money else amount / counted.scale
                    )
                yield family

    def _window_kpis(self, windows: Mapping[str, Rows]) -> Iterator[Metric]:
        families = {
            (dimension, kpi): GaugeMetricFamily(
                f"tracker_{dimension}_{kpi}",
                f"{kpi.upper()} per {dimension} over the current UTC bucket of each window",
                labels=[dimension, "window"],
            )
            for dimension in ("campaign", "channel")
            for kpi in _KPIS
        }
        for window, rows in windows.items():
            for (dimension, value), metrics in sorted(rows.items()):
                if dimension not in ("campaign", "channel"):
                    continue
                t = totals(dimension, metrics, DEFAULT_MODEL)
                for kpi in _KPIS:
                    result = getattr(t, kpi)()
                    if result is not None:
                        families[dimension, kpi].add_metric([value, window], result)
        yield from families.values()

    def _targets(self, bounds: targets.TargetSet, today: Rows) -> Iterator[Metric]:
        """Each target next to the KPI it bounds, and the day's spend the budget bounds."""
        for dimension in targets.DIMENSIONS:
            prefix = "tracker" if dimension == "total" else f"tracker_{dimension}"
            labels = [] if dimension == "total" else [dimension]
            spend = GaugeMetricFamily(
                f"{prefix}_daily_spend",
                f"Spend so far in the current {self._calendar.timezone} day"
                + ("" if dimension == "total" else f" per {dimension}")
                + f", in {self._currency} (what daily_spend_max bounds)",
                labels=labels,
            )
            if dimension == "total":
                day = sum(m.get("spend", 0) for (d, _), m in today.items() if d == "channel")
                spend.add_metric([], to_number(day))
            for (dim, value), metrics in sorted(today.items()):
                if dim == dimension and value != OTHER:
                    spend.add_metric([value], to_number(metrics.get("spend", 0)))
            yield spend
            for bound in targets.BOUNDS:
                family = GaugeMetricFamily(
                    f"{prefix}_target_{bound}",
                    f"Target {bound} set through PUT /v1/targets"
                    + ("" if dimension == "total" else f" per {dimension}")
                    + (f", in {self._currency}" if bound in targets.MONEY else ""),
                    labels=labels,
                )
                for target in bounds.targets:
                    number = target.bounds().get(bound)
                    if target.dimension == dimension and number is not None:
                        family.add_metric([target.value] if labels else [], number)
                yield family

    def _health(
        self, health: Mapping[bytes, bytes], progress: list[bytes | str | None]
    ) -> Iterator[Metric]:
        counts = {name.decode(): int(amount) for name, amount in health.items()}
        for name, meaning in (
            ("events", "Events applied to the store"),
            ("duplicates", "Events dropped as duplicates of an event already counted"),
            ("late", "Events counted late: more than the grace behind their partition's newest"),
            ("bots", "Events flagged as bots, kept out of KPIs"),
            ("unconvertible", "Events skipped by workers lacking a rate for their currency"),
            ("suppressed", "Events dropped because their person was erased (POST /v1/erasure)"),
        ):
            yield CounterMetricFamily(
                f"tracker_pipeline_{name}", meaning, value=counts.get(name, 0)
            )
        yield _lateness(counts)
        yield from _identity(counts)
        yield CounterMetricFamily(
            "tracker_pipeline_redis_write_seconds",
            "Time the workers' Redis transactions took, summed; divide by the count for the mean",
            value=counts.get("redis_write_us", 0) / 1e6,
        )
        yield CounterMetricFamily(
            "tracker_pipeline_redis_writes",
            "Redis transactions the workers timed",
            value=counts.get("redis_writes", 0),
        )
        yield CounterMetricFamily(
            "tracker_pipeline_redis_conflicts",
            "Redis transactions the workers applied again: a key they watched changed "
            "meanwhile (another partition's batch, an erasure, a partition moved)",
            value=counts.get("redis_conflicts", 0),
        )
        newest = max((orjson.loads(raw)["newest"] for raw in progress if raw), default=0)
        if newest:
            yield GaugeMetricFamily(
                "tracker_pipeline_newest_event_timestamp_seconds",
                "When the newest applied event was accepted by the collector",
                value=newest / 1000,
            )

    def _lag(
        self, source_keys: list[bytes], progress: list[bytes | str | None]
    ) -> Iterator[Metric]:
        """Records in Kafka not yet applied to the store, per partition of the events topic."""
        ends = self.end_offsets
        if ends is None:
            return
        applied: dict[int, int] = {}
        prefix = self._keys.source(self._events_topic, 0)[:-1].encode()
        for key, raw in zip(source_keys, progress, strict=True):
            if raw and key.startswith(prefix):
                applied[int(key[len(prefix) :])] = orjson.loads(raw)["offset"]
        family = GaugeMetricFamily(
            "tracker_pipeline_consumer_lag_records",
            "Records in the events topic not yet applied to the store, per partition",
            labels=["partition"],
        )
        for partition, end in sorted(ends.items()):
            family.add_metric([str(partition)], max(0, end - applied.get(partition, -1) - 1))
        yield family


def lifetime_values(folded: Rows, currency: str) -> Iterator[Metric]:
    """Lifetime value of the customers each campaign and channel acquired."""
    for dimension in ("campaign", "channel"):
        # A customer moves when an earlier conversion of theirs comes later, or a guest
        # signs in as a user who bought before: the counter keeps those that left, as
        # revenue's keeps refunds (``_moved`` says how many).
        customers = CounterMetricFamily(
            f"tracker_{dimension}_customers",
            f"Customers won per {dimension} by their earliest conversion, ever",
            labels=[dimension],
        )
        moved = CounterMetricFamily(
            f"tracker_{dimension}_customers_moved",
            f"Customers a {dimension} won who moved to another's (an earlier conversion "
            "of theirs came later, a guest signed in as a customer); customers less these "
            "are the customers it holds",
            labels=[dimension],
        )
        value = GaugeMetricFamily(
            f"tracker_{dimension}_customer_lifetime_value",
            f"Revenue per acquired customer, in {currency}, per {dimension}",
            labels=[dimension],
        )
        for (dim, name), metrics in sorted(folded.items()):
            count, left = metrics.get("customers", 0), metrics.get("customers_moved", 0)
            if dim != dimension or not (count or left):
                continue
            customers.add_metric([name], count + left)
            if left:
                moved.add_metric([name], left)
            if count:
                value.add_metric([name], to_number(metrics.get("customer_revenue", 0)) / count)
        yield customers
        yield moved
        yield value


def store_nodes(nodes: list[Node]) -> Iterator[Metric]:
    """Each Redis server of the store: how full, and whether it may evict keys."""
    used, limit = (
        GaugeMetricFamily(name, meaning, labels=["node"])
        for name, meaning in (
            ("tracker_store_memory_used_bytes", "Memory the Redis server uses (used_memory)"),
            ("tracker_store_memory_max_bytes", "Its maxmemory: 0 for no limit"),
        )
    )
    may_evict = GaugeMetricFamily(
        "tracker_store_may_evict",
        "1 when its maxmemory-policy (the label) is not noeviction: workers apply nothing",
        labels=["node", "policy"],
    )
    append_only = GaugeMetricFamily(
        "tracker_store_append_only",
        "1 when it writes an append-only file (appendonly yes): a restart keeps its writes",
        labels=["node"],
    )
    evicted = CounterMetricFamily(
        "tracker_store_evicted_keys",
        "Keys the Redis server evicted since it started",
        labels=["node"],
    )
    for node in nodes:
        used.add_metric([node.address], node.used_bytes)
        limit.add_metric([node.address], node.max_bytes)
        may_evict.add_metric([node.address, node.policy], int(node.may_evict))
        evicted.add_metric([node.address], node.evicted_keys)
        append_only.add_metric([node.address], int(node.append_only))
    yield from (used, limit, may_evict, evicted, append_only)


def _lateness(counts: Mapping[str, int]) -> Metric:
    """How far behind their partition's newest event time the late events were."""
    buckets: list[tuple[str, float]] = []
    seen = 0
    for bound in LATENESS_BUCKETS_S:
        seen += counts.get(f"late_le_{bound}", 0)
        buckets.append((str(float(bound)), seen))
    buckets.append(("+Inf", seen + counts.get("late_le_inf", 0)))
    return HistogramMetricFamily(
        "tracker_pipeline_lateness_seconds",
        "Late events by how far behind their partition's newest event time they were",
        buckets=buckets,
        sum_value=counts.get("late_ms", 0) / 1000,
    )


IDENTITY_REFUSALS = ("junk_id", "too_many_ids")
"""Why a link of a device to a user was refused (tracker/stream/identity.py)."""


def _identity(counts: Mapping[str, int]) -> Iterator[Metric]:
    """Who-is-who: links applied, refused by reason, and orders re-credited by late links."""
    yield CounterMetricFamily(
        "tracker_identity_links",
        "Devices linked to a user (identify, or an event with both ids) or signed out",
        value=counts.get("identity_links", 0),
    )
    refused = CounterMetricFamily(
        "tracker_identity_refused",
        "Links refused, by reason: junk_id (an id that names nobody), too_many_ids",
        labels=["reason"],
    )
    for reason in IDENTITY_REFUSALS:
        refused.add_metric([reason], counts.get(f"identity_refused_{reason}", 0))
    yield refused
    yield CounterMetricFamily(
        "tracker_identity_restitched",
        "Orders re-credited by a link that arrived after them, within the grace period",
        value=counts.get("identity_restitched", 0),
    )
    yield CounterMetricFamily(
        "tracker_identity_late_links",
        "Orders a link would have re-credited, had it come within the grace period",
        value=counts.get("identity_late_links", 0),
    )
