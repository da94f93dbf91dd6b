from __future__ import annotations

from typing import Any

import orjson
import pytest

from collector.validation import (
    MAX_EVENT_BYTES,
    check_size,
    letter_context,
    parse_query,
    raw_item,
    restored_context,
    rules,
)
from tracker.events import Context, InvalidEvent, Rules
from tracker.settings import Settings


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_rules_follow_the_settings() -> None:
    made = rules(Settings(currency_rates="EUR=1.1", base_currency="usd", max_future_s=60))
    assert made.currencies == {"USD", "EUR"}
    assert (made.default_currency, made.max_future_ms) == ("USD", 60_000)
    assert made.is_bot("Googlebot/2.1")
    assert not made.is_bot("Mozilla/5.0")


def test_query_first_name_wins_and_blanks_are_kept() -> None:
    assert parse_query(b"a=1&b=&a=2&c=x%20y+z") == {"a": "1", "b": "", "c": "x y z"}


@pytest.mark.parametrize("raw", [b"campaign=%FF", b"campaign=%C3", b"c=\xff", "c=%ED%A0%80"])
def test_query_that_is_not_utf8_is_an_invalid_event(raw: bytes | str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_query(raw)
    assert caught.value.reasons == {"query": "is not valid UTF-8"}


def test_size_limit() -> None:
    padding = MAX_EVENT_BYTES - len(orjson.dumps({"type": "click", "url": ""}))
    check_size({"type": "click", "url": "a" * padding})  # exactly at the limit
    with pytest.raises(InvalidEvent, match="larger than 32768 bytes"):
        check_size({"type": "click", "url": "a" * (padding + 1)})


def test_items_nested_past_what_orjson_writes_are_rejected_not_crashed_on() -> None:
    deep = {"type": "click", "campaign": nested(300)}  # orjson reads 1024 levels, writes 254
    with pytest.raises(InvalidEvent, match="nested too deeply"):
        check_size(deep)
    assert orjson.loads(raw_item(deep)) == {"unrecorded": "item nested too deeply to keep"}
    assert orjson.loads(raw_item({"a": 1})) == {"a": 1}


def test_letter_context_round_trip_truncates_the_ip() -> None:
    context = Context(
        received_at=5, ip="198.51.100.23", user_agent="UA", referrer=None, anonymous_id="v"
    )
    kept = letter_context(context, Rules(currencies=frozenset(), default_currency="USD"))
    assert kept == {"user_agent": "UA", "anonymous_id": "v", "ip": "198.51.100.0"}
    restored = restored_context(7, kept)
    assert (restored.received_at, restored.ip, restored.user_agent, restored.anonymous_id) == (
        7,
        "198.51.100.0",
        "UA",
        "v",
    )


def test_letter_context_keeps_the_ip_whole_when_so_configured() -> None:
    keep_ip = Rules(currencies=frozenset(), default_currency="USD", truncate_ip=False)
    assert letter_context(Context(ip="198.51.100.23"), keep_ip) == {"ip": "198.51.100.23"}


@pytest.mark.parametrize("kept", [None, "x", {"ip": 5, "user_agent": ["a"]}])
def test_restored_context_of_old_or_odd_letters(kept: object) -> None:
    restored = restored_context(9, kept)
    assert (restored.received_at, restored.ip, restored.user_agent) == (9, None, None)
