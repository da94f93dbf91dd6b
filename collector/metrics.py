"""The collector's metrics: counted on the request path in plain Python, written out when scraped.

prometheus_client's Counter and Histogram take a lock on every update, and a
histogram looks for its bucket in a Python loop: a pixel hit's count and duration
cost 1.1 us that way, of the 14 us its handler took (0.34 us an increment, 0.73 an
observation; here 0.09 and 0.14). The collector's app runs on one thread (the event
loop, which also answers ``/metrics``), so its per-request metrics need no lock:
:class:`Counters` and :class:`Histograms` add to plain numbers (``bisect`` finds the
bucket), and prometheus_client reads them at scrape time through its custom
collector interface, in its own exposition format. Metrics off the request path stay
prometheus_client's own.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

ENDPOINTS = ("pixel", "batch", "redirect", "postback", "segment", "snowplow")
S = TypeVar("S")


class Count:
    """One counter series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class Buckets:
    """One histogram series: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last for +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # first bound >= value: le
        self.sum += value


class _Family(Collector, Generic[S]):
    """Series by label values, made by ``new`` on first use (or bound ahead, to exist at 0)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], new: Callable[[], S]
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._new = new
        self._series: dict[tuple[str, ...], S] = {}

    def labels(self, *values: str) -> S:
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = self._new()
        return series


class Counters(_Family[Count]):
    """A counter by labels, as prometheus_client's ``Counter`` but without its lock."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, labelnames, Count)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in self._series.items():
            family.add_metric(values, series.value)
        yield family


class Histograms(_Family[Buckets]):
    """A histogram by labels, as prometheus_client's ``Histogram`` but without its lock."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
    ) -> None:
        bounds = tuple(float(bound) for bound in buckets)
        super().__init__(name, documentation, labelnames, lambda: Buckets(bounds))
        # The bucket names prometheus_client's own Histogram writes (an untyped helper).
        names = [floatToGoString(bound) for bound in bounds]  # type: ignore[no-untyped-call]
        self._names: list[str] = [*names, "+Inf"]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in self._series.items():
            cumulative = list(zip(self._names, accumulate(series.counts), strict=True))
            family.add_metric(list(values), cumulative, series.sum)
        yield family


class Metrics:
    """The collector's own metrics, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counters(
            "tracker_collector_events",
            "Events by outcome (accepted, rejected)",
            ["endpoint", "outcome"],
        )
        self.latency = Histograms(
            "tracker_collector_request_duration_seconds",
            "Time from request to answer, Kafka acknowledgement included",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            ["endpoint"],
        )
        flush_events = Histograms(
            "tracker_collector_kafka_flush_events",
            "Events per partition per flush to Kafka: grows with the load (group commit)",
            (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
        )
        flush_seconds = Histograms(
            "tracker_collector_kafka_flush_seconds",
            "Time from a partition's flush to Kafka's acknowledgement, retries included",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0),
        )
        self.uncounted = Counters(
            "tracker_collector_uncounted",
            "Well-formed input that counts in no KPI, by kind (a Segment group call, an "
            "unknown self-describing event): acknowledged, and kept in the dead-letter "
            "topic unless it never counts (page pings, transaction items)",
            ["endpoint", "kind"],
        )
        limited = Counters(
            "tracker_collector_rate_limited",
            "Requests answered 429 because their sender (client address, verified postback "
            "partner or write key) was over its rate limit; never dead-lettered",
            ["endpoint"],
        )
        suppressed = Counters(
            "tracker_collector_suppressed",
            "Events dropped because they carry the id of a person erased (POST /v1/erasure): "
            "acknowledged, never written to Kafka",
            ["endpoint"],
        )
        self.goal_conversions = Counters(
            "tracker_collector_goal_conversions",
            "Conversions made by a goal rule (PUT /v1/goals) from a page view or an SDK "
            "event, by goal and the version of the rules that made them",
            ["goal", "version"],
        )
        families = (
            self.events, self.latency, self.uncounted, limited, suppressed, flush_events,
            flush_seconds, self.goal_conversions,
        )  # fmt: skip
        for family in families:
            registry.register(family)
        self.unavailable = Counter(
            "tracker_collector_unavailable",
            "Requests answered 503 because Kafka did not take their events",
            registry=registry,
        )
        self.goals_version = Gauge(
            "tracker_collector_goals_version",
            "Version of the goal rules (PUT /v1/goals) the collector applies; 0 before any",
            registry=registry,
        )
        self.buffered = Gauge(
            "tracker_collector_buffered_events",
            "Events accepted and not yet acknowledged by Kafka; at TRACKER_BUFFER_MAX_EVENTS "
            "requests get 503",
            registry=registry,
        )
        # Bound once, so every series exists from the start (at 0) and a request
        # does not look its series up on its way.
        self.accepted = {e: self.events.labels(e, "accepted") for e in ENDPOINTS}
        self.rejected = {e: self.events.labels(e, "rejected") for e in ENDPOINTS}
        self.took = {e: self.latency.labels(e) for e in ENDPOINTS}
        self.rate_limited = {e: limited.labels(e) for e in ENDPOINTS}
        self.suppressed = {e: suppressed.labels(e) for e in ENDPOINTS}
        self._flush_events = flush_events.labels()
        self._flush_seconds = flush_seconds.labels()

    def flushed(self, events: int, seconds: float) -> None:
        self._flush_events.observe(events)
        self._flush_seconds.observe(seconds)
