from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from collector.bots import is_bot
from tracker.events import (
    Context,
    Event,
    InvalidEvent,
    Rules,
    parse_event,
    parse_ts,
    redacted,
    truncate_ip,
)
from tracker.records import encode_events

# 2024-05-01T10:00:00Z: 19_844 days after 1970-01-01 (2024-01-01 is day 19_723, plus
# 31 + 29 + 31 + 30 = 121) -> 19_844 * 86_400_000 + 10 * 3_600_000.
NOW = 1_714_557_600_000
DAY_MS = 86_400_000
RULES = Rules(currencies=frozenset({"USD", "EUR"}), default_currency="USD")
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def parse(raw: Mapping[str, Any], context: Context | None = None, rules: Rules = RULES) -> Event:
    return parse_event(raw, context or Context(received_at=NOW), rules)


def reasons(raw: Mapping[str, Any], rules: Rules = RULES) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        parse(raw, rules=rules)
    return caught.value.reasons


def only_bad_user_agent(user_agent: str | None) -> bool:
    return user_agent == "BadBot"


# parse_ts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (NOW, NOW),
        (NOW + 0.9, NOW),  # fractions of a millisecond are dropped
        (str(NOW), NOW),
        (f" {NOW} ", NOW),
        ("2024-05-01T10:00:00Z", NOW),
        ("2024-05-01T12:00:00+02:00", NOW),  # 12:00 at +02:00 is 10:00 UTC
        ("2024-05-01T05:30:00-04:30", NOW),  # 05:30 at -04:30 is 10:00 UTC
        ("2024-05-01T10:00:00.250Z", NOW + 250),
        ("1970-01-01T00:00:00+00:00", 0),
    ],
)
def test_parse_ts_accepts(raw: object, expected: int) -> None:
    assert parse_ts(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("2024-05-01T10:00:00", "offset"),  # naive: whose 10:00?
        ("yesterday", "neither epoch milliseconds nor RFC 3339"),
        ("", "neither epoch milliseconds nor RFC 3339"),
        (True, "must be epoch milliseconds"),
        (None, "must be epoch milliseconds"),
        ([NOW], "must be epoch milliseconds"),
    ],
)
def test_parse_ts_rejects(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ts(raw)


def test_parse_ts_keeps_milliseconds_exact() -> None:
    # 2004-03-15: 12_418 days to 2004-01-01 (34 * 365 + 8 leap days) + 31 + 29 + 14 = 12_492
    # days -> 1_079_308_800 s; 07:55:47 = 28_547 s -> 1_079_337_347 s, plus 472 ms.
    assert parse_ts("2004-03-15T07:55:47.472Z") == 1_079_337_347_472


# truncate_ip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("203.0.113.77", "203.0.113.0"),  # IPv4 keeps /24
        ("10.1.2.255", "10.1.2.0"),
        (" 192.168.1.9 ", "192.168.1.0"),
        ("2001:db8:abcd:1234:5678::1", "2001:db8:abcd::"),  # IPv6 keeps /48
        ("2001:0db8:00ab:ffff::", "2001:db8:ab::"),
        ("::1", "::"),
    ],
)
def test_truncate_ip(raw: str, expected: str) -> None:
    assert truncate_ip(raw) == expected


@pytest.mark.parametrize("raw", ["not-an-ip", "256.1.1.1", "", "1.2.3"])
def test_truncate_ip_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="does not appear to be"):
        truncate_ip(raw)


# parse_event: defaults and fields


def test_minimal_click() -> None:
    event = parse({"type": "click"})
    assert event.ts == NOW  # no ts: the time it was received
    assert event.received_at == NOW
    assert event.channel == "direct"  # no source, medium or click id
    assert event.currency == "USD"
    assert (event.goal, event.status, event.cost, event.value) == (None, None, None, None)
    assert event.bot is False
    assert UUID7.match(event.event_id)
    assert uuid.UUID(event.event_id).int >> 80 == NOW  # minted at received_at


def test_conversion_defaults_goal_and_status() -> None:
    event = parse({"type": "conversion", "value": "19.99"})
    assert (event.goal, event.status) == ("purchase", "approved")
    assert event.value == 19_990_000  # 19.99 -> 19_990_000 micros


def test_given_fields_are_kept() -> None:
    event = parse(
        {
            "event_id": "e-1",
            "type": "conversion",
            "ts": NOW - 1_000,
            "campaign": "spring",
            "goal": "signup",
            "status": "pending",
            "order_id": "o-9",
            "cost": 0.35,
            "value": 12,
            "currency": "eur",
            "user_id": 42,  # numbers become strings
        }
    )
    assert event.event_id == "e-1"
    assert event.ts == NOW - 1_000
    assert (event.campaign, event.goal, event.status) == ("spring", "signup", "pending")
    assert (event.order_id, event.user_id) == ("o-9", "42")
    assert (event.cost, event.value) == (350_000, 12_000_000)  # 0.35 and 12 units
    assert event.currency == "EUR"  # upper-cased


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_values_are_absent(empty: str | None) -> None:
    event = parse({"type": "click", "campaign": empty, "ts": empty})
    assert event.campaign is None
    assert event.ts == NOW


def test_context_fills_what_the_event_does_not_say() -> None:
    context = Context(received_at=NOW, referrer="https://a.example/", anonymous_id="anon-1")
    assert parse({"type": "pageview"}, context).referrer == "https://a.example/"
    assert parse({"type": "pageview"}, context).anonymous_id == "anon-1"
    own = parse(
        {"type": "pageview", "referrer": "https://b.example/", "anonymous_id": "x"}, context
    )
    assert (own.referrer, own.anonymous_id) == ("https://b.example/", "x")


# parse_event: ts window


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        (NOW + 300_001, "is too far in the future"),  # 1 ms past the 5 minute default
        (NOW - 30 * DAY_MS - 1, "is older than the accepted horizon"),  # past 30 days
        ("2024-05-01T10:00:00", "RFC 3339 time needs an offset such as Z or +02:00"),
    ],
)
def test_ts_rejected(ts: object, reason: str) -> None:
    assert reasons({"type": "click", "ts": ts}) == {"ts": reason}


@pytest.mark.parametrize("ts", [NOW + 300_000, NOW - 30 * DAY_MS])
def test_ts_on_the_horizon_is_accepted(ts: int) -> None:
    assert parse({"type": "click", "ts": ts}).ts == ts


def test_ts_rfc3339_with_offset() -> None:
    assert parse({"type": "click", "ts": "2024-05-01T11:59:00+02:00"}).ts == NOW - 60_000


def test_ts_limits_come_from_rules() -> None:
    strict = Rules(RULES.currencies, "USD", max_future_ms=0, max_age_ms=1_000)
    assert reasons({"type": "click", "ts": NOW + 1}, strict) == {"ts": "is too far in the future"}
    assert "ts" in reasons({"type": "click", "ts": NOW - 1_001}, strict)


# parse_event: ts corrected by the sender's sent_at

HOUR_MS = 3_600_000


def sent(sent_at: int) -> Context:
    """A request received at NOW whose sender's clock said ``sent_at`` on sending."""
    return Context(received_at=NOW, sent_at=sent_at)


def correction_reasons(raw: Mapping[str, Any], context: Context) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        parse(raw, context)
    return caught.value.reasons


def test_a_clock_3_hours_fast_is_corrected() -> None:
    # The sender's clock reads 13:00 at our 10:00; its event was 2 s before sending.
    raw = {"type": "click", "ts": NOW + 3 * HOUR_MS - 2_000}
    assert reasons(raw) == {"ts": "is too far in the future"}  # as it was without sent_at
    event = parse(raw, sent(NOW + 3 * HOUR_MS))
    assert (event.ts, event.device_ts, event.received_at) == (
        NOW - 2_000,
        NOW + 3 * HOUR_MS - 2_000,
        NOW,
    )


def test_a_clock_30_hours_slow_is_corrected() -> None:
    # 2024-04-30T04:00:00Z on the sender's clock at our 2024-05-01T10:00:00Z; the event
    # a minute before, in RFC 3339 at +02:00.
    event = parse({"type": "click", "ts": "2024-04-30T05:59:00+02:00"}, sent(NOW - 30 * HOUR_MS))
    assert (event.ts, event.device_ts) == (NOW - 60_000, NOW - 30 * HOUR_MS - 60_000)


def test_an_event_without_ts_keeps_the_time_received() -> None:
    event = parse({"type": "click"}, sent(NOW + 3 * HOUR_MS))
    assert (event.ts, event.device_ts) == (NOW, None)


def test_without_sent_at_ts_is_taken_as_sent_and_device_ts_is_none() -> None:
    event = parse({"type": "click", "ts": NOW - 5_000})
    assert (event.ts, event.device_ts) == (NOW - 5_000, None)


@pytest.mark.parametrize(
    ("sent_at", "ts", "reason"),
    [
        # A clock 2 days fast: its ts of 29 days ago is 31 days ago once corrected.
        (NOW + 2 * DAY_MS, NOW - 29 * DAY_MS, "is older than the accepted horizon"),
        # Sent 10 minutes before it happened: a ts that did not come from this clock.
        (NOW - 3 * HOUR_MS, NOW - 3 * HOUR_MS + 600_000, "is too far in the future"),
        # The raw ts is "now", yet the sender says it sent 31 days after it.
        (NOW + 31 * DAY_MS, NOW, "is older than the accepted horizon"),
    ],
)
def test_a_corrected_time_out_of_range_is_rejected_saying_so(
    sent_at: int, ts: int, reason: str
) -> None:
    raw = {"type": "click", "ts": ts}
    assert correction_reasons(raw, sent(sent_at)) == {"ts": f"corrected by sent_at, {reason}"}


def test_the_corrected_time_is_judged_on_the_horizon_exactly() -> None:
    edge = sent(NOW + HOUR_MS)
    assert parse({"type": "click", "ts": NOW + HOUR_MS - 30 * DAY_MS}, edge).ts == NOW - 30 * DAY_MS
    late = {"type": "click", "ts": NOW + HOUR_MS - 30 * DAY_MS - 1}
    assert "ts" in correction_reasons(late, edge)


def test_a_bad_ts_is_rejected_as_ever_with_sent_at() -> None:
    raw = {"type": "click", "ts": "yesterday"}
    assert correction_reasons(raw, sent(NOW)) == {
        "ts": "'yesterday' is neither epoch milliseconds nor RFC 3339"
    }


def test_device_ts_is_derived_never_taken_from_input() -> None:
    assert reasons({"type": "click", "device_ts": NOW}) == {"device_ts": "unknown field"}


# parse_event: names


@pytest.mark.parametrize("name", ["colour", "received_at", "bot"])
def test_unknown_field_rejected(name: str) -> None:
    # received_at and bot are the collector's to set, never the client's
    assert reasons({"type": "click", name: "x"}) == {name: "unknown field"}


@pytest.mark.parametrize("name", ["_", "utm_term", "cb", "cb123", "rnd", "_ga"])
def test_noise_parameters_ignored(name: str) -> None:
    assert parse({"type": "click", name: "123"}).type == "click"


def test_aliases() -> None:
    event = parse(
        {
            "type": "click",
            "utm_campaign": "spring",
            "utm_source": "newsletter-42",
            "utm_medium": "email",
            "utm_content": "banner-a",
        }
    )
    assert (event.campaign, event.source, event.medium) == ("spring", "newsletter-42", "email")
    assert event.creative == "banner-a"
    assert event.channel == "email"  # derived from the medium


@pytest.mark.parametrize(
    ("name", "channel"),
    [("gclid", "search"), ("msclkid", "search"), ("fbclid", "social"), ("tclid", "social")],
)
def test_click_id_alias_implies_channel(name: str, channel: str) -> None:
    event = parse({"type": "click", name: "abc123"})
    assert (event.click_id, event.channel) == ("abc123", channel)


def test_click_id_hint_beats_medium_but_not_channel() -> None:
    assert parse({"type": "click", "gclid": "g", "utm_medium": "email"}).channel == "search"
    assert parse({"type": "click", "gclid": "g", "channel": "email"}).channel == "email"


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "click", "campaign": "canonical", "utm_campaign": "alias"},
        {"type": "click", "utm_campaign": "alias", "campaign": "canonical"},
    ],
)
def test_canonical_name_wins_over_alias(raw: dict[str, str]) -> None:
    assert parse(raw).campaign == "canonical"


def test_canonical_click_id_wins_over_gclid() -> None:
    event = parse({"type": "click", "click_id": "mine", "gclid": "google"})
    assert (event.click_id, event.channel) == ("mine", "search")


# parse_event: values


@pytest.mark.parametrize(
    ("name", "limit"),
    [("campaign", 256), ("event_id", 64), ("goal", 64), ("user_agent", 512), ("url", 2048)],
)
def test_string_limits(name: str, limit: int) -> None:
    assert getattr(parse({"type": "click", name: "a" * limit}), name) == "a" * limit
    too_long = reasons({"type": "click", name: "a" * (limit + 1)})
    assert too_long == {name: f"longer than {limit} characters"}


@pytest.mark.parametrize("value", [["spring"], {"a": 1}, True])
def test_non_string_dimension_rejected(value: object) -> None:
    assert reasons({"type": "click", "campaign": value}) == {"campaign": "must be a string"}


@pytest.mark.parametrize("campaign", ["spring\nsale", "tab\there", "nul\x00", "esc\x1b[31m"])
def test_control_characters_in_dimensions_rejected(campaign: str) -> None:
    assert reasons({"type": "click", "campaign": campaign}) == {
        "campaign": "has control characters"
    }


def test_printable_unicode_dimension_accepted() -> None:
    assert parse({"type": "click", "campaign": "Frühling 2024 ☀"}).campaign == "Frühling 2024 ☀"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"campaign": "spring"}, "type"),
        ({"type": "view"}, "type"),
        ({"type": "click", "channel": "tv"}, "channel"),
        ({"type": "conversion", "status": "maybe"}, "status"),
        ({"type": "click", "currency": "GBP"}, "currency"),
        ({"type": "click", "cost": "-1"}, "cost"),
        ({"type": "click", "cost": True}, "cost"),
        ({"type": "conversion", "value": "1.0000001"}, "value"),
        ({"type": "spend", "campaign": "c", "cost": 5, "period": "2024-13-01"}, "period"),
        ({"type": "spend", "campaign": "c", "cost": 5, "period": "May 1st"}, "period"),
    ],
)
def test_bad_value_names_its_field(raw: dict[str, object], field: str) -> None:
    assert list(reasons(raw)) == [field]


def test_every_bad_field_is_named_at_once() -> None:
    bad = reasons({"type": "nope", "cost": "-1", "channel": "tv", "colour": "red"})
    assert set(bad) == {"type", "cost", "channel", "colour"}
    with pytest.raises(InvalidEvent) as caught:
        parse({"type": "nope", "colour": "red"})
    assert str(caught.value) == (
        "colour: unknown field; type: must be one of "
        "click, conversion, identify, impression, pageview, reset, spend"
    )


def test_spend_needs_campaign_and_cost() -> None:
    assert reasons({"type": "spend"}) == {
        "campaign": "spend needs a campaign",
        "cost": "spend needs a cost",
    }
    # A cost that is there but wrong is reported as wrong, not as missing.
    assert reasons({"type": "spend", "campaign": "c", "cost": "abc"}) == {
        "cost": "'abc' is not a number"
    }


def test_spend_with_period() -> None:
    event = parse({"type": "spend", "campaign": "c", "cost": "100", "period": "2024-05-01T09"})
    assert (event.cost, event.period) == (100_000_000, "2024-05-01T09")


@pytest.mark.parametrize("raw", [{"type": ["click"]}, {"type": "conversion", "status": {}}])
def test_unhashable_type_or_status_rejected(raw: dict[str, object]) -> None:
    assert set(reasons(raw)) <= {"type", "status"}


def test_cost_with_huge_exponent_rejected() -> None:
    assert list(reasons({"type": "click", "cost": "1e1000000"})) == ["cost"]


# parse_event: identify and reset


def test_identify_links_its_anonymous_id_to_its_user_id() -> None:
    event = parse({"type": "identify", "anonymous_id": "a-1", "user_id": "u-1"})
    assert (event.type, event.anonymous_id, event.user_id) == ("identify", "a-1", "u-1")


def test_identify_takes_the_visitor_cookie_as_its_anonymous_id() -> None:
    cookie = Context(received_at=NOW, anonymous_id="tid-1")
    event = parse({"type": "identify", "user_id": "u-1"}, cookie)
    assert (event.anonymous_id, event.user_id) == ("tid-1", "u-1")
    own = parse({"type": "identify", "user_id": "u-1", "anonymous_id": "a-1"}, cookie)
    assert own.anonymous_id == "a-1"  # the event's own id wins, as for any event


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"user_id": "u-1"}, {"anonymous_id": "identify needs an anonymous_id"}),
        ({"anonymous_id": "a-1"}, {"user_id": "identify needs a user_id"}),
        ({"anonymous_id": "a-1", "user_id": ""}, {"user_id": "identify needs a user_id"}),
        ({"anonymous_id": "a-1", "user_id": " \t"}, {"user_id": "identify needs a user_id"}),
        (
            {"anonymous_id": "  ", "user_id": "u-1"},
            {"anonymous_id": "identify needs an anonymous_id"},
        ),
        (
            {},
            {
                "anonymous_id": "identify needs an anonymous_id",
                "user_id": "identify needs a user_id",
            },
        ),
        ({"anonymous_id": "same", "user_id": "same"}, {"user_id": "must differ from anonymous_id"}),
        ({"anonymous_id": 42, "user_id": "42"}, {"user_id": "must differ from anonymous_id"}),
    ],
)
def test_identify_needs_two_different_ids(raw: dict[str, object], expected: dict[str, str]) -> None:
    assert reasons({"type": "identify", **raw}) == expected


def test_identify_refuses_a_user_id_equal_to_the_visitor_cookie() -> None:
    cookie = Context(received_at=NOW, anonymous_id="tid-1")
    with pytest.raises(InvalidEvent) as caught:
        parse({"type": "identify", "user_id": "tid-1"}, cookie)
    assert caught.value.reasons == {"user_id": "must differ from anonymous_id"}


def test_no_request_header_gives_an_identify_its_user_id() -> None:
    """Cookie, agent and referrer fill what an event does not say; never who is signed in."""
    context = Context(
        received_at=NOW, ip="203.0.113.7", user_agent="u-1", referrer="u-1", anonymous_id="tid-1"
    )
    with pytest.raises(InvalidEvent) as caught:
        parse({"type": "identify"}, context)
    assert caught.value.reasons == {"user_id": "identify needs a user_id"}
    assert parse({"type": "pageview"}, context).user_id is None


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("user_id", "u" * 257, "longer than 256 characters"),
        ("anonymous_id", "a" * 257, "longer than 256 characters"),
        ("user_id", ["u-1"], "must be a string"),
    ],
)
def test_identify_ids_keep_their_limits(name: str, value: object, reason: str) -> None:
    raw = {"type": "identify", "anonymous_id": "a-1", "user_id": "u-1", name: value}
    assert reasons(raw) == {name: reason}  # said once, as what is wrong, not as missing


def test_identify_ids_at_their_limit_are_accepted() -> None:
    event = parse({"type": "identify", "anonymous_id": "a" * 256, "user_id": "u" * 256})
    assert (len(event.anonymous_id or ""), len(event.user_id or "")) == (256, 256)


def test_reset_signs_out_its_anonymous_id() -> None:
    event = parse({"type": "reset", "anonymous_id": "a-1"})
    assert (event.type, event.anonymous_id, event.user_id) == ("reset", "a-1", None)
    cookie = Context(received_at=NOW, anonymous_id="tid-1")
    assert parse({"type": "reset"}, cookie).anonymous_id == "tid-1"


def test_reset_needs_an_anonymous_id() -> None:
    assert reasons({"type": "reset"}) == {"anonymous_id": "reset needs an anonymous_id"}
    assert reasons({"type": "reset", "anonymous_id": " "}) == {
        "anonymous_id": "reset needs an anonymous_id"
    }
    assert reasons({"type": "reset", "user_id": "u-1"}) == {
        "anonymous_id": "reset needs an anonymous_id"
    }


@pytest.mark.parametrize("kind", ["click", "pageview", "conversion", "impression"])
def test_other_events_need_no_ids(kind: str) -> None:
    assert parse({"type": kind}).anonymous_id is None


# parse_event: ip


def test_ip_from_context_truncated() -> None:
    assert parse({"type": "click"}, Context(received_at=NOW, ip="203.0.113.77")).ip == "203.0.113.0"


def test_ip_from_event_truncated() -> None:
    event = parse({"type": "click", "ip": "2001:db8:abcd:1234::1"})
    assert event.ip == "2001:db8:abcd::"


def test_ip_kept_when_truncation_is_off() -> None:
    keep = Rules(RULES.currencies, "USD", truncate_ip=False)
    context = Context(received_at=NOW, ip="203.0.113.77")
    assert parse({"type": "click"}, context, keep).ip == "203.0.113.77"


@pytest.mark.parametrize(
    ("ip", "reason"), [("999.1.1.1", "is not an IP address"), (12345, "must be a string")]
)
def test_bad_ip_rejected(ip: object, reason: str) -> None:
    assert reasons({"type": "click", "ip": ip}) == {"ip": reason}


# parse_event: bots and user agent


def test_bot_flag_from_rules() -> None:
    rules = Rules(RULES.currencies, "USD", is_bot=only_bad_user_agent)
    assert parse({"type": "click", "user_agent": "BadBot"}, rules=rules).bot is True
    assert parse({"type": "click", "user_agent": "Mozilla/5.0"}, rules=rules).bot is False
    assert parse({"type": "click"}, rules=rules).bot is False  # no agent at all


def test_event_user_agent_wins_over_context() -> None:
    rules = Rules(RULES.currencies, "USD", is_bot=only_bad_user_agent)
    context = Context(received_at=NOW, user_agent="BadBot")
    own = parse({"type": "click", "user_agent": "Mozilla/5.0"}, context, rules)
    assert (own.user_agent, own.bot) == ("Mozilla/5.0", False)
    inherited = parse({"type": "click"}, context, rules)
    assert (inherited.user_agent, inherited.bot) == ("BadBot", True)


def test_spend_is_never_a_bot() -> None:
    rules = Rules(RULES.currencies, "USD", is_bot=only_bad_user_agent)
    raw = {"type": "spend", "campaign": "c", "cost": 1, "user_agent": "BadBot"}
    assert parse(raw, rules=rules).bot is False


def test_bot_flag_with_collector_rules() -> None:
    rules = Rules(RULES.currencies, "USD", is_bot=is_bot)
    context = Context(received_at=NOW, user_agent="curl/8.4.0")
    assert parse({"type": "pageview"}, context, rules).bot is True


def test_request_headers_are_clipped_not_rejected() -> None:
    context = Context(received_at=NOW, user_agent="M" * 100_000, referrer="https://r/" + "x" * 5000)
    event = parse({"type": "pageview"}, context)
    assert event.user_agent == "M" * 512
    assert event.referrer == "https://r/" + "x" * 2038
    with pytest.raises(InvalidEvent, match="longer than 512"):
        parse({"type": "pageview", "user_agent": "M" * 513})  # an event's own field is judged


# Keys for the ad platforms: personal data hashed on arrival, click ids by platform

EMAIL_SHA256 = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"
"""sha256("john.doe@example.com")"""
PHONE_SHA256 = "35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823"
"""sha256("442079460958"): Meta's rule, digits only"""
PHONE_E164_SHA256 = "f0bf0228144d9fe2bdf1da2d8ca698f17bf1410ee688b075c27062e47b6f0b6d"
"""sha256("+442079460958"): TikTok's and Google's rule"""
PERSONAL = {"email": " John.Doe@Example.com ", "phone": "+44 (0)20 7946 0958"}


def test_hashes_by_hand() -> None:
    assert hashlib.sha256(b"john.doe@example.com").hexdigest() == EMAIL_SHA256
    assert hashlib.sha256(b"442079460958").hexdigest() == PHONE_SHA256
    assert hashlib.sha256(b"+442079460958").hexdigest() == PHONE_E164_SHA256


def test_a_conversion_keeps_its_email_and_phone_hashed_only() -> None:
    event = parse({"type": "conversion", "order_id": "o-1", **PERSONAL})
    assert event.email_sha256 == EMAIL_SHA256
    assert (event.phone_sha256, event.phone_e164_sha256) == (PHONE_SHA256, PHONE_E164_SHA256)
    wire = encode_events([event])
    for raw in ("John.Doe", "john.doe@example.com", "example.com", "20 7946", "442079460958"):
        assert raw.encode() not in wire.lower()


def test_hashes_given_by_the_sender_are_kept_and_win() -> None:
    given = {"email_sha256": EMAIL_SHA256.upper(), "phone_sha256": PHONE_SHA256}
    event = parse({"type": "conversion", "email": "other@example.com", **given})
    assert (event.email_sha256, event.phone_sha256) == (EMAIL_SHA256, PHONE_SHA256)
    assert event.phone_e164_sha256 is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"type": "pageview", "email": "a@example.com"}, {"email": "only conversions carry"}),
        ({"type": "click", "phone_sha256": PHONE_SHA256}, {"phone_sha256": "only conversions"}),
        ({"type": "conversion", "email": 42}, {"email": "must be a string"}),
        ({"type": "conversion", "phone": ["+1 650 555 1234"]}, {"phone": "must be a string"}),
        ({"type": "conversion", "email": "a@x.com" + "x" * 250}, {"email": "longer than 254"}),
        ({"type": "conversion", "email_sha256": "abc"}, {"email_sha256": "SHA-256 in hex"}),
        (
            {"type": "conversion", "phone_e164_sha256": EMAIL_SHA256 + "0"},
            {"phone_e164_sha256": "longer than 64"},
        ),
    ],
)
def test_a_sender_mistake_with_personal_data_is_refused(
    raw: dict[str, object], expected: dict[str, str]
) -> None:
    found = reasons(raw)
    assert found.keys() == expected.keys()
    for name, words in expected.items():
        assert words in found[name]
        assert "@" not in found[name]  # never echoed
        assert "650" not in found[name]


def test_a_person_typo_is_left_out_and_the_conversion_counts() -> None:
    event = parse({"type": "conversion", "email": "john@gmail", "phone": "020 7946 0958"})
    assert (event.email_sha256, event.phone_sha256, event.phone_e164_sha256) == (None,) * 3
    assert b"john@gmail" not in encode_events([event])


@pytest.mark.parametrize(
    ("raw", "source", "ad_click_id", "click_id"),
    [
        ({"gclid": "G1"}, "gclid", "G1", "G1"),
        ({"msclkid": "M1"}, "msclkid", "M1", "M1"),
        ({"tclid": "T1"}, "tclid", "T1", "T1"),
        ({"fbclid": "F1", "gclid": "G1"}, "fbclid", "F1", "F1"),  # the first given
        # The redirect's own click id wins for attribution; Google still needs the gclid.
        ({"click_id": "ours", "gclid": "G1"}, "gclid", "G1", "ours"),
        ({"gclid": "G1", "click_id": "ours"}, "gclid", "G1", "ours"),
        ({"gclid": 12345}, "gclid", "12345", "12345"),
        ({"click_id": "ours"}, None, None, "ours"),
        ({"gclid": ""}, None, None, None),
    ],
)
def test_the_platform_of_a_click_id_is_kept(
    raw: dict[str, object], source: str | None, ad_click_id: str | None, click_id: str | None
) -> None:
    event = parse({"type": "conversion", **raw})
    assert (event.click_source, event.ad_click_id, event.click_id) == (
        source,
        ad_click_id,
        click_id,
    )


def test_a_platform_click_id_is_judged_under_its_own_name() -> None:
    found = reasons({"type": "conversion", "click_id": "ours", "gclid": "g" * 257})
    assert found == {"gclid": "longer than 256 characters"}
    assert reasons({"type": "conversion", "gclid": True}) == {
        "click_id": "must be a string",
        "gclid": "must be a string",
    }


@pytest.mark.parametrize("name", ["click_source", "ad_click_id"])
def test_the_click_source_is_derived_never_taken_from_input(name: str) -> None:
    assert reasons({"type": "conversion", name: "gclid"}) == {name: "unknown field"}


def test_fbc_is_built_from_an_fbclid_at_the_conversion_time() -> None:
    event = parse({"type": "conversion", "fbclid": "IwAR2F4-dbP0", "ts": NOW - 60_000})
    assert event.fbc == f"fb.1.{NOW - 60_000}.IwAR2F4-dbP0"
    corrected = parse({"type": "conversion", "fbclid": "IwAR2F4-dbP0", "ts": 5_000}, sent(65_000))
    assert corrected.fbc == f"fb.1.{NOW - 60_000}.IwAR2F4-dbP0"  # the corrected time
    assert parse({"type": "click", "fbclid": "IwAR2F4-dbP0"}).fbc is None  # conversions only


def test_fbc_and_fbp_given_are_kept_when_in_meta_form_only() -> None:
    fbc, fbp = "fb.1.1554763741205.AbCd", "fb.1.1596403881668.1116446470"
    event = parse({"type": "conversion", "fbclid": "IwAR2F4", "fbc": fbc, "fbp": fbp})
    assert (event.fbc, event.fbp) == (fbc, fbp)  # the cookie's own creation time wins
    stale = parse({"type": "conversion", "fbc": "garbage", "fbp": "fb.1.x.y"})
    assert (stale.fbc, stale.fbp) == (None, None)
    assert reasons({"type": "conversion", "fbp": ["fb.1.2.3"]}) == {"fbp": "must be a string"}


def test_a_dead_letter_keeps_no_raw_personal_data() -> None:
    raw = {"type": "conversion", "currency": "XXX", **PERSONAL}
    assert reasons(raw) == {"currency": "no rate configured for 'XXX'"}
    kept = redacted(raw)
    assert kept == {
        "type": "conversion",
        "currency": "XXX",
        "email_sha256": EMAIL_SHA256,
        "phone_sha256": PHONE_SHA256,
        "phone_e164_sha256": PHONE_E164_SHA256,
    }
    replayed = parse({**kept, "currency": "EUR"})  # a replay forwards it as it would have
    assert (replayed.email_sha256, replayed.phone_e164_sha256) == (EMAIL_SHA256, PHONE_E164_SHA256)
    assert redacted({"type": "conversion", "email": "typo@", "phone": 5}) == {"type": "conversion"}
    assert redacted({"email": "a@b.co", "email_sha256": PHONE_SHA256}) == {
        "email_sha256": PHONE_SHA256
    }


def test_only_a_conversion_keeps_the_platform_of_its_click() -> None:
    click = parse({"type": "click", "gclid": "G1"})
    assert (click.click_id, click.click_source, click.ad_click_id) == ("G1", None, None)
