from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from collector.postback import sign
from collector.redirect import AllowList
from collector.validation import letter_context, rules, without_personal_data
from tracker.deadletters import Summary, derived_id, judge
from tracker.events import Context, Event, InvalidEvent, parse_event
from tracker.records import decode_dead_letter, encode_dead_letter
from tracker.settings import Settings

NOW = 1_714_557_600_000
WITH_JPY = Settings(currency_rates="JPY=0.0067")
CONTEXT = {"user_agent": "Mozilla/5.0", "anonymous_id": "visitor-1", "ip": "203.0.113.0"}


def letter(raw: bytes | str, endpoint: str, context: Mapping[str, str | int] | None = None) -> Any:
    return decode_dead_letter(encode_dead_letter(raw, {"x": "y"}, endpoint, NOW, context))


def replay(
    value: Any, settings: Settings = WITH_JPY, partition: int = 2, offset: int = 41
) -> list[Event]:
    allowed = AllowList.from_settings(settings)
    return judge(value, partition, offset, rules(settings), allowed)


def reasons(value: Any, settings: Settings = WITH_JPY) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        replay(value, settings)
    return caught.value.reasons


def test_derived_ids_are_stable_and_short() -> None:
    assert derived_id(2, 41) == "dl-2-41-0"
    assert len(derived_id(2**31, 2**63)) <= 64


def test_a_batch_item_passes_once_its_currency_has_a_rate() -> None:
    item = {"type": "conversion", "campaign": "c", "value": "1000", "currency": "JPY"}
    value = letter(orjson.dumps(item), "batch", CONTEXT)
    assert reasons(value, Settings()) == {"currency": "no rate configured for 'JPY'"}
    (event,) = replay(value)
    assert event.event_id == "dl-2-41-0"
    assert (event.value, event.currency, event.ts, event.received_at) == (
        1_000_000_000,
        "JPY",
        NOW,
        NOW,
    )
    # The request's context comes back from the letter.
    assert (event.anonymous_id, event.user_agent, event.ip) == (
        "visitor-1",
        "Mozilla/5.0",
        "203.0.113.0",
    )
    assert replay(value) == [event]  # the same letter, the same event


def test_an_item_keeps_its_own_event_id() -> None:
    item = {"event_id": "mine", "type": "click", "currency": "JPY"}
    assert [e.event_id for e in replay(letter(orjson.dumps(item), "batch"))] == ["mine"]


def test_a_pixel_query_passes_and_is_judged_for_bots_again() -> None:
    value = letter(b"type=click&utm_campaign=c&cost=0.5&currency=JPY", "pixel", CONTEXT)
    (event,) = replay(value)
    assert (event.event_id, event.campaign, event.cost, event.bot) == (
        "dl-2-41-0",
        "c",
        500_000,
        False,
    )
    bot = letter(b"type=click&currency=JPY", "pixel", {"user_agent": "Googlebot/2.1"})
    assert replay(bot)[0].bot is True


def test_a_redirect_passes_once_its_host_is_allowed() -> None:
    value = letter(b"to=https%3A%2F%2Fshop.example%2F&utm_campaign=c", "redirect", CONTEXT)
    assert "TRACKER_REDIRECT_ALLOW" in reasons(value)["to"]
    (event,) = replay(value, Settings(redirect_allow="shop.example"))
    assert (event.type, event.event_id, event.click_id) == ("click", "dl-2-41-0", "dl-2-41-0")
    assert (event.campaign, event.url) == ("c", "https://shop.example/")


def test_a_postback_keeps_the_id_its_signature_gave_it() -> None:
    params = {"partner": "n", "ts": "1", "txid": "T", "payout": "5", "currency": "JPY"}
    params["sig"] = sign(params, "0123456789abcdef")
    (event,) = replay(letter(orjson.dumps(params), "postback"))
    assert (event.event_id, event.order_id, event.source) == ("pb-" + params["sig"][:32], "T", "n")
    unsigned = {"txid": "T", "payout": "5"}
    assert replay(letter(orjson.dumps(unsigned), "postback"))[0].event_id == "dl-2-41-0"


# Batches sent in an envelope: {"sent_at": T, "events": [...]}

HOUR = 3_600_000
DAY = 86_400_000
FAST = NOW + 3 * HOUR
"""A sender's clock 3 hours fast: its ``sent_at`` when we received the batch at NOW."""


def enveloped_letter(item: dict[str, Any], settings: Settings = WITH_JPY) -> Any:
    """The dead letter the collector writes for ``item`` of an envelope sent at FAST."""
    context = Context(received_at=NOW, user_agent="Mozilla/5.0", ip="203.0.113.9", sent_at=FAST)
    kept = letter_context(context, rules(settings))
    return letter(orjson.dumps(item), "batch", kept)


def test_the_letter_of_an_enveloped_item_keeps_sent_at() -> None:
    value = enveloped_letter({"type": "click"})
    assert value["context"] == {"user_agent": "Mozilla/5.0", "ip": "203.0.113.0", "sent_at": FAST}


def test_an_enveloped_item_is_corrected_on_replay_as_the_collector_corrects_it() -> None:
    item = {
        "event_id": "e1",
        "type": "conversion",
        "value": "1000",
        "currency": "JPY",
        "ts": FAST - 60_000,  # a minute before sending, on the sender's clock
    }
    value = enveloped_letter(item)
    assert reasons(value, Settings()) == {"currency": "no rate configured for 'JPY'"}
    (event,) = replay(value)
    collector_context = Context(received_at=NOW, user_agent="Mozilla/5.0", sent_at=FAST)
    collector = parse_event(item, collector_context, rules(WITH_JPY))
    assert (event.ts, event.device_ts) == (collector.ts, collector.device_ts)
    assert (event.ts, event.device_ts, event.received_at) == (NOW - 60_000, FAST - 60_000, NOW)


def test_a_corrected_time_out_of_range_stays_rejected_until_the_horizon_allows_it() -> None:
    value = enveloped_letter({"type": "click", "ts": FAST - 31 * DAY})
    expected = {"ts": "corrected by sent_at, is older than the accepted horizon"}
    assert reasons(value) == expected
    (event,) = replay(value, Settings(currency_rates="JPY=0.0067", max_age_days=40))
    assert (event.ts, event.device_ts) == (NOW - 31 * DAY, FAST - 31 * DAY)


@pytest.mark.parametrize("sent_at", [True, "1714557600000", None, 1.5e12])
def test_a_letter_without_a_sound_sent_at_is_not_corrected(sent_at: object) -> None:
    value = letter(orjson.dumps({"type": "click", "ts": NOW - 5}), "batch")
    value["context"] = {"sent_at": sent_at}  # only letter_context's integers count
    (event,) = replay(value)
    assert (event.ts, event.device_ts) == (NOW - 5, None)


def envelope_letter(envelope: dict[str, Any]) -> Any:
    """The letter of a whole envelope the collector refused, as it writes it."""
    return letter(orjson.dumps(envelope), "batch", {"user_agent": "Mozilla/5.0"})


def test_a_refused_envelope_replays_whole_once_its_sent_at_is_within_the_horizon() -> None:
    sent_at = NOW - 35 * DAY  # a clock 35 days slow: beyond the default 30-day horizon
    items = [{"type": "click", "ts": sent_at - 1_000}, {"event_id": "own", "type": "pageview"}]
    value = envelope_letter({"sent_at": sent_at, "events": items})
    assert list(reasons(value)) == ["sent_at"]
    assert "30 days" in reasons(value)["sent_at"]
    first, second = replay(value, Settings(max_age_days=40))
    assert (first.event_id, first.ts, first.device_ts) == (
        "dl-2-41-0",
        NOW - 1_000,
        sent_at - 1_000,
    )
    assert (second.event_id, second.ts, second.device_ts) == ("own", NOW, None)
    assert first.user_agent == "Mozilla/5.0"


@pytest.mark.parametrize(
    ("envelope", "expected"),
    [
        (
            {"sent_at": "soon", "events": []},
            {"sent_at": "'soon' is neither epoch milliseconds nor RFC 3339"},
        ),
        (
            {"sent_at": NOW, "events": {"type": "click"}},
            {"events": "must be a JSON array of events"},
        ),
        (
            {"events": [], "batch": [], "sentAt": NOW},
            {"batch": "unknown field", "sentAt": "unknown field"},
        ),
        (
            {"sent_at": NOW, "events": [{"type": "click"}, {"type": "click", "cost": "-1"}, 5]},
            {"events[1].cost": "must not be negative", "events[2].event": "must be a JSON object"},
        ),
    ],
)
def test_envelopes_that_stay_rejected(envelope: dict[str, Any], expected: dict[str, str]) -> None:
    assert reasons(envelope_letter(envelope)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (letter(b"{not json", "batch"), {"raw": "is a request body that was not JSON"}),
        (letter(b'[{"type": "click"}]', "batch"), {"event": "must be a JSON object"}),
        (letter(b"c=%FF&type=click", "pixel"), {"query": "is not valid UTF-8"}),
        (letter(b"[1]", "postback"), {"raw": "is not a postback's parameters"}),
        (letter(b"x", "worker"), {"endpoint": "letters from 'worker' cannot be replayed"}),
        (
            letter(b'{"type": "click", "u": "' + b"x" * 70_000 + b'"}', "batch"),
            {"raw": "was cut to fit the dead letter and cannot be replayed"},
        ),
        ({"endpoint": "pixel"}, {"letter": "has no raw payload or receive time"}),
    ],
)
def test_letters_that_stay_rejected(value: Any, expected: dict[str, str]) -> None:
    assert reasons(value) == expected


def test_letters_still_invalid_keep_their_reasons() -> None:
    assert set(reasons(letter(b"type=nope&cost=-1", "pixel"))) == {"type", "cost"}


def test_summary() -> None:
    summary = Summary("dl", None, dry_run=True, read=5, replayed=2, events=2, skipped=1)
    summary.rejected = 2
    summary.reasons = Counter({"currency: no rate configured for 'JPY'": 2, "type: bad": 1})
    assert summary.render() == "\n".join(
        [
            "dead letters read from dl since the beginning: 5",
            "  would replay: 2 (2 events)",
            "  already replayed earlier, skipped: 1",
            "  still rejected: 2",
            "top reasons still rejected:",
            "        2  currency: no rate configured for 'JPY'",
            "        1  type: bad",
        ]
    )


# Personal data in what a dead letter keeps


@pytest.mark.parametrize(
    "raw",
    [
        b"type=conversion&email=Ann%40Shop.example&phone=%2B1+650+555+0100",
        b'{"type": "conversion", "email": "ann@shop.example", "phone": "+16505550100"}',
        b'{"sent_at": 1, "events": [{"type": "conversion", "email": "ann@shop.example"}]}',
        b'[{"type": "pageview"}, {"type": "conversion", "phone": "+16505550100"}]',
        b'{"type": "pageview"}\n{"type": "conversion", "email": "ann@shop.example"}',
        b'{"batch": [{"traits": {"email": "ann@shop.example"}}]}',
        b'{"type": "conversion", "email": "ann@shop.example"',  # cut short
        b'\xff{"email": "ann@shop.example"}',  # not UTF-8
    ],
)
def test_a_dead_letter_keeps_no_raw_email_or_phone(raw: bytes) -> None:
    kept = without_personal_data(raw)
    text = kept.encode() if isinstance(kept, str) else kept
    for secret in (b"ann", b"Ann", b"6505550100", b"650+555"):
        assert secret not in text


def test_the_hashes_stand_in_for_what_a_replay_needs() -> None:
    kept = without_personal_data(b"type=conversion&email=Ann%40Shop.example&utm_medium=email")
    assert kept == (
        "type=conversion&utm_medium=email&email_sha256="
        + hashlib.sha256(b"ann@shop.example").hexdigest()
    )


@pytest.mark.parametrize("raw", [b"type=pageview&utm_medium=email", b'{"note": "no names"}'])
def test_input_without_personal_data_is_kept_as_it_came(raw: bytes) -> None:
    assert without_personal_data(raw) is raw
