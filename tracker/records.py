"""The Kafka wire format: what the collector writes and the workers read.

An events record's value is a JSON array of events (orjson of :class:`Event`): the
collector hands Kafka one record per partition per flush, carrying every event that
arrived meanwhile, so Kafka's and Faust's per-record costs are paid once per batch.
All events of a record share a partition, chosen by :func:`partition_of` from the
event's person (user, else anonymous visitor, else click), so one person's events
stay in order on one partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from tracker.events import Event
from tracker.types import EpochMs


def partition_key(event: Event) -> str:
    return event.user_id or event.anonymous_id or event.click_id or event.event_id


def partition_of(event: Event, partitions: int) -> int:
    """Kafka's default partitioner on :func:`partition_key`, so keyed producers agree."""
    hashed: int = murmur2(partition_key(event).encode())
    return (hashed & 0x7FFFFFFF) % partitions


def encode_events(events: Iterable[Event]) -> bytes:
    return orjson.dumps(list(events))


def decode_events(value: bytes) -> list[Event]:
    """The events of one record; raises ``ValueError`` on a record that is not ours."""
    items = orjson.loads(value)
    if not isinstance(items, list):
        raise ValueError("an events record holds a JSON array")
    try:
        return [Event(**item) for item in items]
    except TypeError as exc:
        raise ValueError(f"an item is not an event: {exc}") from None


def encode_dead_letter(
    raw: bytes | str, reasons: Mapping[str, str], endpoint: str, received_at: EpochMs
) -> bytes:
    """A rejected input with why it was rejected, kept for ``tracker replay-dead-letters``."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return orjson.dumps(
        {"raw": text, "reasons": reasons, "endpoint": endpoint, "received_at": received_at}
    )


def decode_dead_letter(value: bytes) -> dict[str, Any]:
    letter = orjson.loads(value)
    if not isinstance(letter, dict):
        raise ValueError("a dead letter is a JSON object")
    return letter
