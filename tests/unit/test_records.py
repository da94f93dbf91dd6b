from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from tracker.events import Event
from tracker.records import (
    MAX_DEAD_LETTER_RAW,
    decode_dead_letter,
    decode_events,
    encode_dead_letter,
    encode_events,
    encode_records,
    murmur2,
    partition_key,
    partition_of,
)

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def event(event_id: str, **fields: Any) -> Event:
    base: dict[str, Any] = {
        "event_id": event_id,
        "type": "click",
        "ts": NOW,
        "received_at": NOW,
        "channel": "direct",
    }
    return Event(**(base | fields))


FULL = Event(
    event_id="0190f3b4-0000-7000-8000-000000000001",
    type="conversion",
    ts=NOW - 5,
    received_at=NOW,
    channel="search",
    campaign="Frühling ☀",
    source="google",
    medium="cpc",
    ad_group="g",
    creative="c",
    click_id="gclid-1",
    user_id="u1",
    anonymous_id="a1",
    cost=350_000,
    value=19_990_000,
    currency="EUR",
    goal="purchase",
    status="pending",
    order_id="o1",
    period="2024-05-01",
    url="https://shop.example/thanks?x=1",
    referrer="https://www.google.com/",
    user_agent="Mozilla/5.0",
    ip="203.0.113.0",
    bot=True,
)


def test_round_trip() -> None:
    events = [FULL, event("minimal"), event("spend", type="spend", campaign="c", cost=1)]
    assert decode_events(encode_events(events)) == events


def test_round_trip_of_nothing() -> None:
    assert encode_events([]) == b"[]"
    assert decode_events(b"[]") == []


def test_wire_form_is_an_array_of_objects() -> None:
    items = orjson.loads(encode_events(iter([event("e1", cost=5)])))
    assert isinstance(items, list)
    assert items[0]["event_id"] == "e1"
    assert items[0]["cost"] == 5  # micros stay integers
    assert items[0]["campaign"] is None


@pytest.mark.parametrize("value", [b'{"event_id": "e1"}', b'"e1"', b"1", b"null"])
def test_decode_of_a_non_array_raises(value: bytes) -> None:
    with pytest.raises(ValueError, match="Expected `array`"):
        decode_events(value)


def test_decode_of_invalid_json_raises() -> None:
    with pytest.raises(ValueError, match="not an events record: JSON is malformed"):
        decode_events(b"not json")


@pytest.mark.parametrize(
    "value",
    [b'[{"foo": 1}]', b"[1]", b'[{"event_id": "e1"}]', b'[{"event_id": 1, "type": "click"}]'],
)
def test_decode_of_foreign_items_raises_value_error(value: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        decode_events(value)


def test_partition_key_prefers_the_device() -> None:
    assert partition_key(event("e", user_id="u", anonymous_id="a", click_id="c")) == "a"
    assert partition_key(event("e", user_id="u", click_id="c")) == "u"
    assert partition_key(event("e", anonymous_id="a", click_id="c")) == "a"
    assert partition_key(event("e", click_id="c")) == "c"
    assert partition_key(event("e")) == "e"


@pytest.mark.parametrize(
    ("user", "partitions", "expected"),
    [
        # Kafka's murmur2 test vectors: "foobar" -> -790332482, "21" -> -973932308.
        # -790332482 & 0x7fffffff = 1_357_151_166; % 4 = 2
        ("foobar", 4, 2),
        # -973932308 & 0x7fffffff = 1_173_551_340; % 4 = 0, % 7 = 3 (7 * 167_650_191 + 3)
        ("21", 4, 0),
        ("21", 7, 3),
        ("foobar", 1, 0),
    ],
)
def test_partition_of_agrees_with_kafka(user: str, partitions: int, expected: int) -> None:
    assert partition_of(event("e", user_id=user), partitions) == expected


@pytest.mark.parametrize("partitions", [1, 3, 4, 12, 100])
def test_partition_of_within_range(partitions: int) -> None:
    found = {partition_of(event(f"e{n}"), partitions) for n in range(500)}
    assert found <= set(range(partitions))
    if partitions <= 4:
        assert found == set(range(partitions))  # 500 keys reach every one of a few


def test_partition_of_is_stable() -> None:
    first = [partition_of(event(f"e{n}"), 12) for n in range(100)]
    assert [partition_of(event(f"e{n}"), 12) for n in range(100)] == first


def test_events_of_one_device_share_a_partition() -> None:
    """Before and after signing in: a visitor's events stay in order."""
    mine = [
        event("e1", anonymous_id="a-1"),
        event("e2", user_id="u-42", type="conversion", anonymous_id="a-1"),
        event("e3", anonymous_id="a-1", click_id="gclid-9", ts=NOW + 1),
    ]
    assert len({partition_of(item, 12) for item in mine}) == 1
    anonymous = [event(f"x{n}", anonymous_id="a-7") for n in range(5)]
    assert len({partition_of(item, 12) for item in anonymous}) == 1


def test_dead_letter_round_trip() -> None:
    encoded = encode_dead_letter(b'{"type": "x"}', {"type": "bad"}, "batch", NOW)
    assert decode_dead_letter(encoded) == {
        "raw": '{"type": "x"}',
        "reasons": {"type": "bad"},
        "endpoint": "batch",
        "received_at": NOW,
    }


def test_dead_letter_of_text_and_of_invalid_utf8() -> None:
    assert decode_dead_letter(encode_dead_letter("a=1", {}, "pixel", 0))["raw"] == "a=1"
    letter = decode_dead_letter(encode_dead_letter(b"ok\xff", {"body": "x"}, "batch", 0))
    assert letter["raw"] == "ok\ufffd"  # undecodable bytes replaced, never lost whole


@pytest.mark.parametrize("value", [b"[]", b'"x"', b"null"])
def test_decode_dead_letter_of_a_non_object_raises(value: bytes) -> None:
    with pytest.raises(ValueError, match="JSON object"):
        decode_dead_letter(value)


def test_dead_letter_keeps_the_request_context() -> None:
    kept = {"user_agent": "Mozilla/5.0", "anonymous_id": "v1", "ip": "203.0.113.0"}
    letter = decode_dead_letter(encode_dead_letter("a=1", {}, "pixel", NOW, kept))
    assert letter["context"] == kept
    assert "context" not in decode_dead_letter(encode_dead_letter("a=1", {}, "pixel", NOW))


def test_dead_letter_of_a_huge_input_is_cut_to_fit_a_kafka_record() -> None:
    raw = b"x" * (2 * 1024 * 1024)
    encoded = encode_dead_letter(raw, {"body": "invalid JSON"}, "batch", NOW)
    letter = decode_dead_letter(encoded)
    assert len(letter["raw"]) == MAX_DEAD_LETTER_RAW
    assert letter["truncated"] is True
    assert len(encoded) < 100 * 1024
    assert "truncated" not in decode_dead_letter(encode_dead_letter(b"x", {}, "batch", NOW))


def test_events_split_into_records_under_the_size_limit_in_order() -> None:
    events = [event(f"e{i}", url="https://shop.example/" + "a" * 900) for i in range(50)]
    whole = encode_events(events)
    assert encode_records(events) == [whole]  # one record while it fits
    records = encode_records(events, max_bytes=len(whole) // 5)
    assert len(records) > 1
    assert all(len(value) <= len(whole) // 5 for value in records)
    assert [e for value in records for e in decode_events(value)] == events


def test_an_event_larger_than_the_limit_is_a_record_of_its_own() -> None:
    events = [event("small"), event("big", url="x" * 5000), event("small2")]
    records = encode_records(events, max_bytes=1000)
    assert [[e.event_id for e in decode_events(v)] for v in records] == [
        ["small"],
        ["big"],
        ["small2"],
    ]


def test_murmur2_is_kafkas_on_every_length() -> None:
    """Our compiled murmur2 with Kafka's seed agrees with aiokafka's pure-Python one."""
    from aiokafka.partitioner import murmur2 as reference

    rng = random.Random(11)
    for length in range(70):
        for _ in range(10):
            data = rng.randbytes(length)
            assert murmur2(data) == reference(data), data
