"""The Prometheus view of the store: a custom collector built fresh on every scrape.

``collect()`` reads Redis in two pipelined round trips. Campaign labels are bounded:
the ``top_campaigns`` campaigns by all-time spend keep their name, the rest are
summed under ``campaign="other"``. Ratios with a zero denominator are left out.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis

from tracker.attribution import ONE
from tracker.export.rows import totals
from tracker.money import to_number
from tracker.settings import Settings
from tracker.store import Keys, parse_bucket
from tracker.stream.aggregate import attributed
from tracker.windows import ALL_TIME, WINDOWS, bucket_start

COUNTED = ("impressions", "clicks", "conversions", "spend", "revenue", "bots")
DEFAULT_MODEL = "last_click"
# Per campaign and channel, conversions and revenue are as the default model credits
# them (conversions in micro-conversions, hence the scale).
_STORED = {
    "conversions": (attributed("conversions", DEFAULT_MODEL), ONE),
    "revenue": (attributed("revenue", DEFAULT_MODEL), 1),
}
OTHER = "other"
_KPIS = ("ctr", "cvr", "cpc", "cpa", "roas")


class StoreCollector(Collector):
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._keys = Keys(settings.redis_prefix)
        self._top = settings.top_campaigns
        self._currency = settings.base_currency.upper()
        self._events_topic = settings.events_topic
        self.end_offsets: dict[int, int] | None = None
        """Set before each scrape from Kafka (see ``lag.py``); None when Kafka is away."""

    def collect(self) -> Iterator[Metric]:
        keys = self._keys
        now = int(time.time() * 1000)
        windows = {w: bucket_start(now, w) for w in WINDOWS}
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.bucket(ALL_TIME, 0))
        for window, start in windows.items():
            pipe.hgetall(keys.bucket(window, start))
        pipe.hgetall(keys.health)
        pipe.smembers(keys.sources)
        all_time, *current, health, sources = pipe.execute()
        source_keys = sorted(sources)
        progress = self._redis.mget(source_keys) if source_keys else []

        everything = parse_bucket(all_time)
        named = self._top_campaigns(everything)
        yield from self._counters(everything, named)
        yield from self._window_kpis(
            {w: parse_bucket(raw) for w, raw in zip(windows, current, strict=True)}, named
        )
        yield from self._health(health, progress)
        yield from self._lag(source_keys, progress)
        yield from self._clv(everything, named)

    def _top_campaigns(self, rows: Mapping[tuple[str, str], Mapping[str, int]]) -> set[str]:
        campaigns = [(m.get("spend", 0), v) for (d, v), m in rows.items() if d == "campaign"]
        campaigns.sort(reverse=True)
        return {name for _, name in campaigns[: self._top]}

    def _fold(
        self, rows: Mapping[tuple[str, str], Mapping[str, int]], named: set[str]
    ) -> dict[tuple[str, str], dict[str, int]]:
        """Rows with campaigns outside ``named`` summed under ``other``."""
        folded: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for (dimension, value), metrics in rows.items():
            if dimension == "campaign" and value not in named:
                value = OTHER
            for metric, amount in metrics.items():
                folded[dimension, value][metric] += amount
        return folded

    def _counters(
        self, rows: Mapping[tuple[str, str], Mapping[str, int]], named: set[str]
    ) -> Iterator[Metric]:
        folded = self._fold(rows, named)
        for dimension in ("campaign", "channel"):
            for metric in COUNTED:
                money = metric in ("spend", "revenue")
                family = CounterMetricFamily(
                    f"tracker_{dimension}_{metric}",
                    f"All-time {metric} per {dimension}"
                    + (f", in {self._currency}" if money else ""),
                    labels=[dimension],
                )
                stored, scale = _STORED.get(metric, (metric, 1))
                for (dim, value), metrics in sorted(folded.items()):
                    if dim == dimension and stored in metrics:
                        amount = metrics[stored]
                        family.add_metric([value], to_number(amount) if money else amount / scale)
                yield family
        yield GaugeMetricFamily(
            "tracker_campaigns_folded",
            "Campaigns summed under campaign='other' to bound label cardinality",
            value=max(0, sum(1 for d, _ in rows if d == "campaign") - len(named)),
        )

    def _window_kpis(
        self,
        windows: Mapping[str, Mapping[tuple[str, str], Mapping[str, int]]],
        named: set[str],
    ) -> Iterator[Metric]:
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
            for (dimension, value), metrics in sorted(self._fold(rows, named).items()):
                if dimension not in ("campaign", "channel"):
                    continue
                t = totals(dimension, metrics, DEFAULT_MODEL)
                for kpi in _KPIS:
                    result = getattr(t, kpi)()
                    if result is not None:
                        families[dimension, kpi].add_metric([value, window], result)
        yield from families.values()

    def _health(
        self, health: Mapping[bytes, bytes], progress: list[bytes | str | None]
    ) -> Iterator[Metric]:
        counts = {name.decode(): int(amount) for name, amount in health.items()}
        for name, meaning in (
            ("events", "Events applied to the store"),
            ("duplicates", "Events dropped as duplicates of an event already counted"),
            ("late", "Events dropped for arriving after the grace period"),
            ("bots", "Events flagged as bots, kept out of KPIs"),
        ):
            yield CounterMetricFamily(
                f"tracker_pipeline_{name}", meaning, value=counts.get(name, 0)
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

    def _clv(
        self, rows: Mapping[tuple[str, str], Mapping[str, int]], named: set[str]
    ) -> Iterator[Metric]:
        """Lifetime value of the customers each campaign and channel acquired."""
        folded = self._fold(rows, named)
        for dimension in ("campaign", "channel"):
            customers = CounterMetricFamily(
                f"tracker_{dimension}_customers",
                f"Customers acquired per {dimension} (their first attributed conversion)",
                labels=[dimension],
            )
            value = GaugeMetricFamily(
                f"tracker_{dimension}_customer_lifetime_value",
                f"Revenue per acquired customer, in {self._currency}, per {dimension}",
                labels=[dimension],
            )
            for (dim, name), metrics in sorted(folded.items()):
                count = metrics.get("customers", 0)
                if dim == dimension and count:
                    customers.add_metric([name], count)
                    value.add_metric([name], to_number(metrics.get("customer_revenue", 0)) / count)
            yield customers
            yield value
