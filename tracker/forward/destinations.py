"""What an ad platform is to the forwarder, and the platforms tracker forwards to.

Each platform is a module of the same few names (:class:`Destination`): the forwarder
reads conversions from Kafka, asks each configured destination whether it
:func:`~Destination.accepts` an event (counting the reasons it skips others), batches
what it accepts, sends each of :func:`~Destination.requests`' requests and reads the
answer with :func:`~Destination.outcome`. Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from tracker.events import Event
from tracker.forward import google, meta, tiktok
from tracker.forward.exchange import HttpRequest, Outcome
from tracker.settings import Settings
from tracker.types import EpochMs


class Destination(Protocol):
    """An ad platform conversions are sent to; each of its modules is one."""

    @property
    def name(self) -> str:
        """Its name in logs and metric labels: ``meta``, ``google_ads``, ``tiktok``."""
        ...

    @property
    def max_batch(self) -> int:
        """Events one request carries at most: the platform's limit."""
        ...

    def configured(self, settings: Settings) -> bool:
        """Whether its id and token are set; :class:`ValueError` naming the setting when
        what is set cannot be used (call it at start)."""
        ...

    def accepts(self, event: Event, settings: Settings, now_ms: EpochMs) -> str | None:
        """None when ``event`` is to be sent, else the reason it is skipped (not a
        conversion, too old, no gclid, consent withheld, ...); ``now_ms`` is the clock."""
        ...

    def requests(self, events: Sequence[Event], settings: Settings) -> list[HttpRequest]:
        """The requests that send ``events``, each accepted: every event in one request
        at most, in none when it repeats an earlier one of the same call."""
        ...

    def outcome(self, request: HttpRequest, status: int, body: bytes) -> Outcome:
        """What the platform's answer (HTTP status, body) to ``request`` says."""
        ...


ALL: Final[tuple[Destination, ...]] = (meta, google, tiktok)


def configured(settings: Settings) -> list[Destination]:
    """The destinations conversions go to; :class:`ValueError` naming a setting that is
    set but cannot be used."""
    return [destination for destination in ALL if destination.configured(settings)]


__all__ = ["ALL", "Destination", "configured"]
