"""The forwarder's metrics, served on its own port (``forward_port``) at ``/metrics``.

Counted in events, per destination: taken by the platform (``sent``), refused in an
attempt (``failed``, by kind: one event refused three times before it was taken
counts three), left out (``skipped``, by reason) and dead-lettered. ``lag_seconds`` is
the age of the oldest record read but not yet done (sent, skipped or dead-lettered, so
its offset committed), 0 when there is none: the forwarder's delay behind the
collector. ``up`` is 0 while the platform refuses the destination's setup.

Every series of a configured destination exists from the start, at 0, so that rates
and alerts see the first failure. A skip's reason is the destination's own text with
quoted values (a goal's name, which a sender chooses) replaced by ``…``, so that the
label takes a few values only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge

from tracker.forward.exchange import Kind

KINDS: Final = get_args(Kind)
_QUOTED: Final = re.compile(r"(?<!\w)(?:'[^']*'|\"[^\"]*\")(?!\w)")
"""A value in quotes (a goal's ``repr``), not the apostrophe of ``Meta's``."""
_MAX_REASON: Final = 120


def reason_label(reason: str) -> str:
    """A skip's reason as a label value: quoted values out, at most 120 characters."""
    return _QUOTED.sub("…", reason)[:_MAX_REASON]


class Metrics:
    """The forwarder's series, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, destinations: Sequence[str]) -> None:
        self.sent = Counter(
            "tracker_forward_sent",
            "Conversions the ad platform took",
            ["destination"],
            registry=registry,
        )
        self.failed = Counter(
            "tracker_forward_failed",
            "Conversions an attempt failed for, by failure kind (retried unless dead-lettered)",
            ["destination", "kind"],
            registry=registry,
        )
        self.skipped = Counter(
            "tracker_forward_skipped",
            "Events not sent to the destination, by reason",
            ["destination", "reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "tracker_forward_dead_lettered",
            "Conversions written to the destination's dead-letter topic",
            ["destination"],
            registry=registry,
        )
        self.lag = Gauge(
            "tracker_forward_lag_seconds",
            "Age of the oldest event read and not yet sent, skipped or dead-lettered; 0: none",
            ["destination"],
            registry=registry,
        )
        self.up = Gauge(
            "tracker_forward_up",
            "1 while the destination accepts its setup (credentials, ids), else 0",
            ["destination"],
            registry=registry,
        )
        for destination in destinations:
            self.sent.labels(destination)
            self.dead_lettered.labels(destination)
            for kind in KINDS:
                self.failed.labels(destination, kind)
            self.up.labels(destination).set(1)
            self.lag.labels(destination).set(0)

    def measure_lag(self, destination: str, lag_s: Callable[[], float]) -> None:
        """Read ``destination``'s lag from ``lag_s`` at each scrape."""
        self.lag.labels(destination).set_function(lag_s)

    def skip(self, destination: str, reason: str, events: int = 1) -> None:
        self.skipped.labels(destination, reason_label(reason)).inc(events)


__all__ = ["KINDS", "Metrics", "reason_label"]
