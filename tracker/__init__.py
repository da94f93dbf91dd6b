"""tracker: a real-time tracker for performance marketing.

Data flow: ``collector`` (HTTP) -> Kafka -> ``tracker.stream`` (Faust workers)
-> Redis (``tracker.store``) -> ``tracker.export`` (Prometheus and JSON).
"""

from __future__ import annotations

from tracker.events import Event, InvalidEvent
from tracker.settings import Settings

__all__ = ["Event", "InvalidEvent", "Settings"]
__version__ = "0.1.0"
