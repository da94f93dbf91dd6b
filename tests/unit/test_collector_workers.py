"""Several collector workers' metrics read as one collector's (collector.metrics.AllWorkers).

Each worker is an :class:`AllWorkers` over a registry of its own, in this process, told
apart by the process id it writes under: this process's own (alive), its parent's
(alive) and that of a process that has exited.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.metrics import ENDPOINTS, AllWorkers, Metrics
from tracker import cli
from tracker.settings import SettingsError, load

ACCEPTED = ("tracker_collector_events_total", {"endpoint": "pixel", "outcome": "accepted"})


class Worker:
    """One worker process's metrics, publishing under ``pid``."""

    def __init__(self, directory: Path, pid: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.shared = AllWorkers(self.registry, directory)
        self.pid = pid
        self._monkeypatch = monkeypatch

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._monkeypatch.context() as patch:
            patch.setattr(os, "getpid", lambda: self.pid)
            yield

    def publish(self, live: bool = True) -> None:
        with self.running():
            self.shared.publish(live=live)

    def scrape(self) -> str:
        with self.running():
            return generate_latest(self.shared).decode()


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Worker]:
    """Three workers: this process (alive), its parent (alive), one that exited."""
    pids = (os.getpid(), os.getppid(), _exited_pid())
    return [Worker(tmp_path, pid, monkeypatch) for pid in pids]


def _value(scraped: str, name: str, labels: dict[str, str] | None = None) -> float:
    for family in text_string_to_metric_families(scraped):
        for sample in family.samples:
            if sample.name == name and sample.labels == (labels or {}):
                return float(sample.value)
    raise AssertionError(f"{name}{labels or ''} not scraped")


def _counted(scraped: str) -> list[str]:
    """Lines of counters and histograms: gauges combine otherwise, creation times by min."""
    gauges = ("tracker_collector_buffered_events", "tracker_collector_goals_version")
    return [
        line
        for line in scraped.splitlines()
        if "_created" not in line and not any(gauge in line for gauge in gauges)
    ]


def _work(metrics: Metrics, rng: random.Random) -> None:
    """What requests and flushes count, at random: some of every per-request metric.

    Durations are multiples of 1/1024 s, whose sums are exact in any order.
    """
    for _ in range(500):
        endpoint = rng.choice(ENDPOINTS)
        metrics.accepted[endpoint].inc(rng.randint(1, 100))
        metrics.rejected[endpoint].inc()
        metrics.took[endpoint].observe(rng.randint(0, 300) / 1024)
        metrics.uncounted.labels(endpoint, rng.choice(["group", "page_ping"])).inc()
        metrics.goal_conversions.labels("signup", str(rng.randint(1, 3))).inc()
        metrics.flushed(rng.randint(1, 3000), rng.randint(0, 100) / 1024)
        metrics.unavailable.inc(rng.randint(0, 1))


@pytest.mark.parametrize("seed", range(3))
def test_counts_add_up_over_the_workers_exited_ones_included(
    workers: list[Worker], seed: int
) -> None:
    rng = random.Random(seed)
    reference = CollectorRegistry()
    one = Metrics(reference)  # the same work done in one process
    for worker in workers:
        seed_of_worker = rng.random()
        for metrics in (worker.metrics, one):
            _work(metrics, random.Random(seed_of_worker))
    mine, parent, exited = workers
    parent.publish()
    exited.publish()  # and then killed: it never marked itself stopped
    combined = mine.scrape()
    assert _counted(combined) == _counted(generate_latest(reference).decode())


def test_gauges_combine_over_the_live_workers(workers: list[Worker]) -> None:
    mine, parent, exited = workers
    for worker, buffered, version in zip(workers, (3, 4, 500), (7, 6, 1), strict=True):
        worker.metrics.buffered.set(buffered)
        worker.metrics.goals_version.set(version)
    parent.publish()
    exited.publish()
    scraped = mine.scrape()
    assert _value(scraped, "tracker_collector_buffered_events") == 3 + 4
    # The oldest version a live worker applies, not the newest.
    assert _value(scraped, "tracker_collector_goals_version") == 6
    parent.publish(live=False)  # stopped, its process not reaped yet
    scraped = mine.scrape()
    assert _value(scraped, "tracker_collector_buffered_events") == 3
    assert _value(scraped, "tracker_collector_goals_version") == 7


def test_a_creation_time_is_the_earliest(workers: list[Worker]) -> None:
    mine, parent, _ = workers
    parent.publish()
    created = "tracker_collector_unavailable_created"
    earliest = min(_value(w.scrape(), created) for w in (mine, parent))
    assert _value(mine.scrape(), created) == earliest


def test_no_scrape_shows_less_than_one_before_whichever_worker_answers(
    workers: list[Worker],
) -> None:
    mine, parent, _ = workers
    seen = 0.0
    for step in range(50):
        answering, other = (mine, parent) if step % 2 else (parent, mine)
        answering.metrics.accepted["pixel"].inc(1)
        other.metrics.accepted["pixel"].inc(1)  # not written out: a scrape misses it
        if step % 7 == 0:
            other.publish()  # its own round, now and then
        value = _value(answering.scrape(), *ACCEPTED)
        assert value >= seen
        seen = value
    mine.publish()
    parent.publish()
    assert _value(mine.scrape(), *ACCEPTED) == 100


def test_a_worker_writes_only_what_changed(workers: list[Worker], tmp_path: Path) -> None:
    mine = workers[0]
    mine.publish()
    path = tmp_path / f"{mine.pid}.json"
    written = path.stat().st_ino
    mine.publish()
    assert path.stat().st_ino == written
    mine.metrics.accepted["batch"].inc(100)
    mine.publish()
    assert path.stat().st_ino != written
    data = orjson.loads(path.read_bytes())
    events = data["families"]["tracker_collector_events"]
    assert [
        "tracker_collector_events_total",
        {"endpoint": "batch", "outcome": "accepted"},
        100.0,
    ] in (events)
    assert list(tmp_path.iterdir()) == [path]  # the staged file was renamed over it


def test_the_worker_count_is_bounded_and_has_a_short_flag() -> None:
    assert load(None, {}).collector_workers == 1
    assert load(cli.parser().parse_args(["collector", "--workers", "4"]), {}).collector_workers == 4
    assert load(None, {"TRACKER_COLLECTOR_WORKERS": "64"}).collector_workers == 64
    for wrong, error in (("0", "at least 1"), ("65", "at most 64")):
        with pytest.raises(SettingsError, match=f"^TRACKER_COLLECTOR_WORKERS: must be {error}"):
            load(None, {"TRACKER_COLLECTOR_WORKERS": wrong})
