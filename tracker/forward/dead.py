"""Conversions a platform will not take: one dead-letter topic per destination.

``<forward_dead_letter_topic>.<destination>`` (``tracker.forward-dead.meta``) holds a
:class:`DeadLetter` per refusal: the events as they were read from the events topic (so
a replay builds the same request again, with today's settings) and the failure that
stopped them. One partition each: letters are few, and read in the order they came.
``<that topic>.replayed`` records the letters ``tracker replay-forwarding`` re-sent, as
``tracker.deadletters`` does for the collector's, so a second run skips them.

The letters carry what the events carry: hashed emails and phones, truncated IPs, never
raw personal data; both topics keep ``events_retention_days``, as the events topic does,
so an erased person's letters go with their events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec
from aiokafka import AIOKafkaProducer

from tracker.events import Event
from tracker.forward.exchange import Failure
from tracker.kafka import DAY_MS, RETENTION
from tracker.settings import Settings
from tracker.types import EpochMs


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """Events one destination refused, and why."""

    destination: str
    kind: str
    """The failure's :data:`~tracker.forward.exchange.Kind`: ``permanent``, or ``throttled``
    and ``transient`` that outlasted ``forward_give_up_s``."""
    code: str
    message: str
    attempts: int
    dead_at: EpochMs
    events: list[Event]

    @classmethod
    def of(
        cls,
        destination: str,
        events: Iterable[Event],
        failure: Failure,
        attempts: int,
        dead_at: EpochMs,
    ) -> DeadLetter:
        return cls(
            destination=destination,
            kind=failure.kind,
            code=failure.code,
            message=failure.message,
            attempts=attempts,
            dead_at=dead_at,
            events=list(events),
        )


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(DeadLetter)


def encode(letter: DeadLetter) -> bytes:
    return _ENCODER.encode(letter)


def decode(value: bytes) -> DeadLetter:
    """A letter from its record; ``ValueError`` when the record is none."""
    try:
        return _DECODER.decode(value)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a forwarding dead letter: {exc}") from None


def topic(settings: Settings, destination: str) -> str:
    """Where ``destination``'s dead letters go."""
    return f"{settings.forward_dead_letter_topic}.{destination}"


def replayed_topic(settings: Settings, destination: str) -> str:
    """Where the letters of ``destination`` that were re-sent are recorded."""
    return f"{topic(settings, destination)}.replayed"


def topics(settings: Settings, destinations: Iterable[str]) -> dict[str, dict[str, str]]:
    """The dead-letter topics of ``destinations`` and their replay records, with their
    configs: for :func:`tracker.kafka.ensure_topics`."""
    retention = {RETENTION: str(settings.events_retention_days * DAY_MS)}
    made: dict[str, dict[str, str]] = {}
    for destination in destinations:
        made[topic(settings, destination)] = retention
        made[replayed_topic(settings, destination)] = retention
    return made


async def write(producer: AIOKafkaProducer, settings: Settings, letter: DeadLetter) -> None:
    """Send ``letter`` to its topic and wait for Kafka's acknowledgement; raises aiokafka's
    ``KafkaError`` when Kafka does not take it."""
    await producer.send_and_wait(topic(settings, letter.destination), encode(letter))


__all__ = ["DeadLetter", "decode", "encode", "replayed_topic", "topic", "topics", "write"]
