"""What a batch of events adds, and the rules it is counted by, as plain values.

:class:`Delta` holds the sums a batch adds to the buckets of Redis, keyed by
:data:`Cell`; :class:`Policy` the rules of counting from the settings; :func:`spread`
puts one amount in every window's bucket and every dimension it counts under.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from tracker.stream.state import SpendFigure
from tracker.types import EpochMs
from tracker.windows import ALL_TIME, WINDOWS, Calendar

TOTAL = "total"
DIRECT = "direct"
SPREAD_WINDOWS = (*WINDOWS, ALL_TIME)
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
    """What one batch adds: bucket sums, unique people, health counters."""

    sums: Counter[Cell] = field(default_factory=Counter)
    crowds: dict[tuple[Audience, ...], set[str]] = field(default_factory=dict)
    """Unique people: the audiences (HyperLogLogs) the events of a minute, campaign and
    channel count in, and the people among them (:func:`tracker.store.group_people`
    gives each person's audiences once)."""
    spend: dict[tuple[str, str], SpendFigure] = field(default_factory=dict)
    """(campaign, period) -> the figure that now stands."""
    health: Counter[str] = field(default_factory=Counter)
    unconvertible: list[str] = field(default_factory=list)
    """Ids of events in a currency without a configured rate: skipped, not counted."""
    watermark: EpochMs = 0
    newest: EpochMs = 0

    def add_all_time(self, dims: Iterable[tuple[str, str]], metric: str, amount: int) -> None:
        """``amount`` to ``metric``'s all-time total under each of ``dims``: the one
        bucket of :data:`ALL_TIME`, which starts at 0 and is what readers read."""
        for dimension, value in dims:
            self.sums[ALL_TIME, 0, dimension, value, metric] += amount


def dimensions(campaign: str | None, channel: str) -> list[tuple[str, str]]:
    dims = [(TOTAL, TOTAL), ("channel", channel)]
    if campaign:
        dims.append(("campaign", campaign))
    return dims


def spread(
    delta: Delta,
    ts: EpochMs,
    dimensions: list[tuple[str, str]],
    metrics: Mapping[str, int],
    calendar: Calendar,
) -> None:
    for window in SPREAD_WINDOWS:
        bucket = calendar.bucket_start(ts, window)
        for dimension, value in dimensions:
            for metric, amount in metrics.items():
                delta.sums[window, bucket, dimension, value, metric] += amount
