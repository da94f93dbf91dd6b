from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from collector.metrics import Counters, Histograms, Metrics

BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 5000)


def _scraped(registry: CollectorRegistry) -> list[str]:
    """The exposition's lines, without the creation times only prometheus_client writes."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


@pytest.mark.parametrize("seed", range(5))
def test_counts_and_timings_scrape_as_prometheus_clients_own(seed: int) -> None:
    rng = random.Random(seed)
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("t_events", "Events", ["endpoint", "outcome"], registry=theirs)
    histogram = Histogram("t_seconds", "Seconds", ["endpoint"], buckets=BOUNDS, registry=theirs)
    counts = Counters("t_events", "Events", ["endpoint", "outcome"])
    timings = Histograms("t_seconds", "Seconds", BOUNDS, ["endpoint"])
    ours.register(counts)
    ours.register(timings)
    for _ in range(2_000):
        endpoint = rng.choice(["pixel", "batch"])
        # On a bound, between bounds, past the last one, and zero.
        value = rng.choice([*BOUNDS, rng.uniform(0, 6), rng.uniform(5000, 9000), 0.0])
        histogram.labels(endpoint).observe(value)
        timings.labels(endpoint).observe(value)
        amount = rng.randint(1, 100)
        counter.labels(endpoint, "accepted").inc(amount)
        counts.labels(endpoint, "accepted").inc(amount)
    assert _scraped(ours) == _scraped(theirs)
    assert any(
        line.startswith('t_seconds_bucket{endpoint="pixel",le="+Inf"}') for line in _scraped(ours)
    )


def test_the_collectors_series_exist_from_the_start() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    scraped = _scraped(registry)
    for endpoint in ("pixel", "batch", "redirect", "postback"):
        for outcome in ("accepted", "rejected"):
            series = f'tracker_collector_events_total{{endpoint="{endpoint}",outcome="{outcome}"}}'
            assert f"{series} 0.0" in scraped
        bucket = (
            f'tracker_collector_request_duration_seconds_bucket{{endpoint="{endpoint}",le="0.001"}}'
        )
        assert f"{bucket} 0.0" in scraped
    assert 'tracker_collector_kafka_flush_seconds_bucket{le="+Inf"} 0.0' in scraped
    assert "tracker_collector_kafka_flush_events_count 0.0" in scraped
    assert "tracker_collector_buffered_events 0.0" in scraped
