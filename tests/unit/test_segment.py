"""Segment's messages in tracker's terms: the pure mapping, hand-checked examples."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from collector import segment, segment_messages, validation
from collector.bots import is_bot
from collector.segment import basic_user
from collector.segment_messages import (
    event_id,
    judge,
    merged,
    message_event,
    translate,
)
from tracker.events import Context, Event, InvalidEvent, Rules, Uncounted

# 2024-05-01T10:00:00Z in epoch ms.
NOW = 1_714_557_600_000
HOUR_MS = 3_600_000
RULES = Rules(
    currencies=frozenset({"USD", "EUR"}),
    default_currency="USD",
    is_bot=is_bot,
    conversion_events={"Signed Up": "signup", "Trial Started": "trial"},
)
REQUEST = Context(received_at=NOW, ip="203.0.113.7")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def event(message: Mapping[str, Any], rules: Rules = RULES, context: Context = REQUEST) -> Event:
    return message_event(message, context, rules)


def reasons(message: Mapping[str, Any], rules: Rules = RULES) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        event(message, rules)
    assert not isinstance(caught.value, Uncounted)
    return caught.value.reasons


def uncounted(message: Mapping[str, Any], rules: Rules = RULES) -> Uncounted:
    with pytest.raises(Uncounted) as caught:
        event(message, rules)
    return caught.value


def track(name: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "anonymousId": "dev-1", "properties": properties}


# A whole message, field by field


def test_a_page_view_from_analytics_js_maps_field_by_field() -> None:
    message_id = "ajs-next-0f3c8e1d2b6a4f0c9e7d5b3a1f2e4d6c"
    url = (
        "https://shop.example/land?utm_campaign=spring&utm_source=google"
        "&utm_medium=cpc&utm_content=banner-a&utm_term=red+shoes&gclid=G-1"
    )
    message = {
        "type": "page",
        "messageId": message_id,
        "anonymousId": "dev-1",
        "userId": None,
        "originalTimestamp": "2024-05-01T07:59:50.000Z",  # the device's clock: 2 h slow
        "sentAt": "2024-05-01T08:00:00.000Z",
        "context": {
            "ip": "198.51.100.23",
            "userAgent": BROWSER,
            "page": {
                "url": url,
                "referrer": "https://www.google.com/",
            },
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "traits": {"email": "someone@example.com"},
        },
        "properties": {"title": "Spring", "path": "/land"},
        "integrations": {"All": True},
        "_metadata": {"bundled": ["Segment.io"]},
    }
    assert event(message) == Event(
        event_id=message_id,
        type="pageview",
        ts=NOW - 10_000,  # 10 s before it was sent, whatever the device's clock said
        received_at=NOW,
        device_ts=NOW - 2 * HOUR_MS - 10_000,
        channel="search",
        campaign="spring",
        source="google",
        medium="cpc",
        creative="banner-a",
        click_id="G-1",
        anonymous_id="dev-1",
        currency="USD",
        url=url,
        referrer="https://www.google.com/",
        user_agent=BROWSER,
        ip="198.51.100.0",
    )


def test_an_order_completed_is_a_purchase_of_its_revenue() -> None:
    message = {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-9",
        "anonymousId": "dev-1",
        "messageId": "m-1",
        "timestamp": "2024-05-01T10:00:00Z",
        "properties": {
            "order_id": "O-77",
            "revenue": "25.00",
            "total": "30.50",
            "currency": "eur",
            "products": [{"product_id": "p1", "price": 25}],
            "coupon": "SPRING",
        },
    }
    assert event(message) == Event(
        event_id="m-1",
        type="conversion",
        ts=NOW,
        received_at=NOW,
        channel="direct",
        user_id="user-9",
        anonymous_id="dev-1",
        value=25_000_000,
        currency="EUR",
        goal="purchase",
        status="approved",
        order_id="O-77",
        ip="203.0.113.0",
    )


# Making a message self-contained


def test_merged_puts_the_batch_context_under_the_message_s_own() -> None:
    message = {"type": "track", "context": {"ip": "1.2.3.4", "page": {"url": "https://a"}}}
    batch = {"ip": "9.9.9.9", "userAgent": BROWSER, "page": {"referrer": "https://r"}}
    assert merged(message, batch, None, None)["context"] == {
        "ip": "1.2.3.4",  # the message's own key wins
        "userAgent": BROWSER,
        "page": {"url": "https://a"},  # whole keys: the message's page replaces the batch's
    }
    assert merged({"type": "page"}, batch, None, None)["context"] == batch
    assert message["context"] == {"ip": "1.2.3.4", "page": {"url": "https://a"}}  # untouched


def test_merged_takes_the_batch_s_sent_at_only_when_the_message_has_none() -> None:
    assert merged({"type": "page"}, None, "T-batch", None)["sentAt"] == "T-batch"
    assert merged({"sentAt": "T-own"}, None, "T-batch", None)["sentAt"] == "T-own"
    assert merged({"sentAt": None}, None, "T-batch", None)["sentAt"] == "T-batch"
    assert "sentAt" not in merged({"type": "page"}, None, None, None)


def test_merged_drops_the_write_key_and_takes_the_path_s_type() -> None:
    message = {"writeKey": "secret-ish", "event": "Order Completed", "type": "identify"}
    assert merged(message, None, None, "track") == {"event": "Order Completed", "type": "track"}
    assert merged({"type": "page"}, None, None, None) == {"type": "page"}


def test_a_batch_context_that_is_no_object_is_named_in_each_message() -> None:
    message = merged({"type": "page", "anonymousId": "d"}, "web", None, None)
    assert reasons(message) == {"context": "must be a JSON object"}


def test_the_batch_s_sent_at_corrects_a_message_s_clock() -> None:
    message = merged(
        {"type": "page", "anonymousId": "d", "timestamp": "2024-05-01T14:59:00Z"},
        None,
        "2024-05-01T15:00:00Z",  # the whole device is 5 h fast
        None,
    )
    found = event(message)
    assert found.ts == NOW - 60_000
    assert found.device_ts == NOW + 5 * HOUR_MS - 60_000


# Time


def test_original_timestamp_is_preferred_to_timestamp() -> None:
    found = event(
        {
            "type": "page",
            "anonymousId": "d",
            "originalTimestamp": "2024-05-01T09:00:00Z",
            "timestamp": "2024-05-01T09:30:00Z",
            "sentAt": "2024-05-01T09:00:30Z",
        }
    )
    assert (found.ts, found.device_ts) == (NOW - 30_000, NOW - HOUR_MS)


def test_without_sent_at_the_time_is_taken_as_it_is() -> None:
    found = event({"type": "page", "anonymousId": "d", "timestamp": "2024-05-01T09:00:00Z"})
    assert (found.ts, found.device_ts) == (NOW - HOUR_MS, None)


def test_without_a_time_the_event_is_timed_when_received() -> None:
    found = event({"type": "page", "anonymousId": "d", "sentAt": "2024-05-01T03:00:00Z"})
    assert (found.ts, found.device_ts) == (NOW, None)


def test_epoch_milliseconds_are_understood_too() -> None:
    found = event({"type": "page", "anonymousId": "d", "timestamp": NOW - 5, "sentAt": NOW})
    assert found.ts == NOW - 5


@pytest.mark.parametrize(
    ("times", "field"),
    [
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"originalTimestamp": "2024-05-01T09:00:00", "timestamp": "fine"}, "originalTimestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"sentAt": "soon"}, "sentAt"),
        ({"sentAt": "2024-01-01T00:00:00Z"}, "sentAt"),  # beyond the 30-day horizon
        ({"sentAt": NOW // 1000}, "sentAt"),  # epoch seconds: January 1970
        ({"timestamp": "2024-05-02T10:00:00Z"}, "timestamp"),  # a day ahead, uncorrected
        # corrected: the event would be a day after it was sent
        ({"timestamp": "2024-05-02T10:00:00Z", "sentAt": "2024-05-01T10:00:00Z"}, "timestamp"),
    ],
)
def test_bad_times_are_named_by_their_segment_field(times: dict[str, Any], field: str) -> None:
    found = reasons({"type": "page", "anonymousId": "d", **times})
    assert list(found) == [field]


def test_a_corrected_time_that_fails_says_it_was_corrected() -> None:
    message = {
        "type": "page",
        "anonymousId": "d",
        "timestamp": "2024-05-02T10:00:00Z",
        "sentAt": "2024-05-01T10:00:00Z",
    }
    assert reasons(message) == {"timestamp": "corrected by sent_at, is too far in the future"}


# Ids


def test_a_short_message_id_is_the_event_id() -> None:
    message_id = "x" * 64
    assert event({"type": "page", "anonymousId": "d", "messageId": message_id}).event_id == (
        message_id
    )


def test_a_long_message_id_becomes_a_stable_digest() -> None:
    message_id = "analytics-ruby-" + "f" * 60
    expected = "seg-" + hashlib.sha256(message_id.encode()).hexdigest()[:40]
    assert event_id(message_id) == expected
    assert event({"type": "page", "anonymousId": "d", "messageId": message_id}).event_id == (
        expected
    )
    assert len(expected) == 44


def test_a_message_without_an_id_gets_a_fresh_one() -> None:
    first = event({"type": "page", "anonymousId": "d"}).event_id
    assert first != event({"type": "page", "anonymousId": "d"}).event_id


def test_numbers_are_ids_as_in_segment() -> None:
    found = event({"type": "page", "anonymousId": 12345, "userId": 678, "messageId": 9})
    assert (found.anonymous_id, found.user_id, found.event_id) == ("12345", "678", "9")


def test_booleans_are_no_ids() -> None:
    found = reasons({"type": "page", "anonymousId": True, "messageId": False, "userId": "u"})
    assert found == {"anonymousId": "must be a string", "messageId": "must be a string"}


def test_a_message_names_someone() -> None:
    assert reasons({"type": "page", "anonymousId": "", "userId": None}) == {
        "anonymousId": "a message needs an anonymousId or a userId (as in Segment)"
    }
    assert event({"type": "page", "userId": "u-1"}).anonymous_id is None


def test_the_request_s_cookie_and_agent_are_not_the_message_s() -> None:
    """A library relays the messages of many people: nothing of its request but the IP
    and the receive time belongs to them."""
    relayed = Context(
        received_at=NOW, ip="203.0.113.7", user_agent=GOOGLEBOT, anonymous_id="cookie-1"
    )
    found = event({"type": "track", "event": "Signed Up", "userId": "u"}, context=relayed)
    assert (found.anonymous_id, found.user_agent, found.bot) == (None, None, False)


# Context


def test_the_message_s_ip_wins_over_the_request_s() -> None:
    assert event({"type": "page", "anonymousId": "d"}).ip == "203.0.113.0"
    found = event({"type": "page", "anonymousId": "d", "context": {"ip": "2001:db8:1:2::9"}})
    assert found.ip == "2001:db8:1::"
    assert reasons({"type": "page", "anonymousId": "d", "context": {"ip": "localhost"}}) == {
        "context.ip": "is not an IP address"
    }


def test_the_bot_verdict_comes_from_the_message_s_user_agent() -> None:
    crawler = {"type": "page", "anonymousId": "d", "context": {"userAgent": GOOGLEBOT}}
    found = event(crawler)
    assert (found.bot, found.user_agent) == (True, GOOGLEBOT)
    assert not event({"type": "page", "anonymousId": "d", "context": {"userAgent": BROWSER}}).bot


def test_a_page_call_s_own_url_and_referrer_come_first() -> None:
    message = {
        "type": "page",
        "anonymousId": "d",
        "properties": {"url": "https://shop.example/p?utm_source=mail", "referrer": "https://r"},
        "context": {"page": {"url": "https://shop.example/ctx", "referrer": "https://c"}},
    }
    found = event(message)
    assert (found.url, found.referrer, found.source) == (
        "https://shop.example/p?utm_source=mail",
        "https://r",
        "mail",
    )


def test_other_calls_take_url_and_referrer_from_the_context_only() -> None:
    message = {
        "type": "screen",
        "anonymousId": "d",
        "properties": {"url": "https://not.this", "referrer": "https://nor.this"},
        "context": {"page": {"url": "https://shop.example/ctx", "referrer": "https://c"}},
    }
    found = event(message)
    assert (found.type, found.url, found.referrer) == (
        "pageview",
        "https://shop.example/ctx",
        "https://c",
    )


def test_over_long_and_odd_values_are_named_by_their_segment_field() -> None:
    message = {
        "type": "page",
        "anonymousId": "d",
        "context": {
            "page": {"url": "https://a/" + "x" * 2048, "referrer": ["not", "text"]},
            "userAgent": "A" * 513,
            "campaign": {"name": "spring\nsale", "source": "s" * 257},
        },
    }
    assert reasons(message) == {
        "context.page.url": "longer than 2048 characters",
        "context.page.referrer": "must be a string",
        "context.userAgent": "longer than 512 characters",
        "context.campaign.name": "has control characters",
        "context.campaign.source": "longer than 256 characters",
    }


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"context": "web"}, "context"),
        ({"properties": ["a"]}, "properties"),
        ({"context": {"page": "home"}}, "context.page"),
        ({"context": {"campaign": "spring"}}, "context.campaign"),
    ],
)
def test_objects_that_are_not_objects_are_named(message: dict[str, Any], field: str) -> None:
    assert reasons({"type": "page", "anonymousId": "d", **message}) == {
        field: "must be a JSON object"
    }


# Campaigns


def test_the_context_campaign_is_the_campaign_and_term_is_dropped() -> None:
    message = {
        "type": "page",
        "anonymousId": "d",
        "context": {
            "campaign": {
                "name": "spring",
                "source": "newsletter",
                "medium": "email",
                "content": "hero",
                "term": "shoes",
            },
            # The context's campaign wins over the URL's utm_*; the URL's click id counts.
            "page": {"url": "https://shop.example/?utm_campaign=other&fbclid=F-1"},
        },
    }
    found = event(message)
    assert (found.campaign, found.source, found.medium, found.creative) == (
        "spring",
        "newsletter",
        "email",
        "hero",
    )
    assert (found.click_id, found.channel) == ("F-1", "social")


def test_without_a_context_campaign_the_url_s_utm_parameters_are_read() -> None:
    url = "https://shop.example/?utm_source=partner&utm_medium=affiliate&msclkid=M-1"
    message = {
        "type": "page",
        "anonymousId": "d",
        "context": {"campaign": {}, "page": {"url": url}},
    }
    found = event(message)
    assert (found.source, found.medium, found.campaign) == ("partner", "affiliate", None)
    assert (found.click_id, found.channel) == ("M-1", "search")  # Bing's click id names it


def test_a_url_s_campaign_that_is_too_long_names_the_url() -> None:
    url = "https://shop.example/?utm_campaign=" + "c" * 300
    message = {"type": "page", "anonymousId": "d", "context": {"page": {"url": url}}}
    assert reasons(message) == {"context.page.url (utm_campaign)": "longer than 256 characters"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://a.example/x?utm_source=google&utm_medium=cpc&utm_campaign=spring+sale"
            "&utm_content=b%C3%A4r&utm_term=shoes&gclid=G1&other=1#utm_source=no",
            {
                "utm_source": "google",
                "utm_medium": "cpc",
                "utm_campaign": "spring sale",
                "utm_content": "bär",
                "gclid": "G1",
            },
        ),
        ("https://a.example/?utm_source=first&utm_source=second", {"utm_source": "first"}),
        ("https://a.example/?utm_source=&utm_source=late", {"utm_source": "late"}),
        ("https://a.example/?utm_campaign=%FF&tclid=T1&x=%ZZ", {"tclid": "T1"}),
        ("https://a.example/landing", {}),
        ("", {}),
        ("not a url ?fbclid=F", {"fbclid": "F"}),
    ],
)
def test_landing_params(url: str, expected: dict[str, str]) -> None:
    assert validation.landing_params(url) == expected


# Types


def test_identify_links_the_device_to_the_user() -> None:
    found = event({"type": "identify", "anonymousId": "dev-1", "userId": "user-9"})
    assert (found.type, found.anonymous_id, found.user_id) == ("identify", "dev-1", "user-9")


def test_identify_without_a_device_is_not_counted_nor_kept() -> None:
    exc = uncounted({"type": "identify", "userId": "user-9", "traits": {"plan": "pro"}})
    assert (exc.kind, exc.keep) == ("identify", False)
    assert "links no device" in exc.reasons["type"]
    exc = uncounted({"type": "identify", "anonymousId": "dev-1", "traits": {"plan": "pro"}})
    assert (exc.kind, exc.keep) == ("identify", False)


def test_identify_of_a_device_as_itself_is_refused() -> None:
    assert reasons({"type": "identify", "anonymousId": "same", "userId": "same"}) == {
        "userId": "must differ from anonymous_id"
    }


def test_alias_is_an_identify_of_the_previous_id() -> None:
    found = event({"type": "alias", "previousId": "dev-1", "userId": "user-9", "anonymousId": "x"})
    assert (found.type, found.anonymous_id, found.user_id) == ("identify", "dev-1", "user-9")
    assert reasons({"type": "alias", "userId": "user-9", "anonymousId": "dev-1"}) == {
        "previousId": "an alias call needs a previousId"
    }
    assert reasons({"type": "alias", "previousId": "dev-1"}) == {
        "userId": "an alias call needs a userId"
    }


def test_group_is_not_counted_but_kept() -> None:
    exc = uncounted({"type": "group", "groupId": "acme", "userId": "u", "traits": {}})
    assert (exc.kind, exc.keep) == ("group", True)


@pytest.mark.parametrize("kind", [None, "Track", "pageview", "conversion", 3])
def test_unknown_types_are_refused(kind: Any) -> None:
    message = {"anonymousId": "d"} if kind is None else {"type": kind, "anonymousId": "d"}
    assert reasons(message) == {
        "type": "must be one of alias, group, identify, page, screen, track"
    }


# Conversions


def test_order_completed_falls_back_to_its_total() -> None:
    found = event(track("Order Completed", total=30.5, order_id=88))
    assert (found.value, found.currency, found.order_id) == (30_500_000, "USD", "88")


def test_order_completed_without_an_amount_is_a_purchase_of_nothing() -> None:
    found = event(track("Order Completed", order_id="O-1", revenue=None))
    assert (found.goal, found.value) == ("purchase", None)


def test_refunds_and_cancellations_undo_the_order_they_name() -> None:
    refund = event(track("Order Refunded", order_id="O-1", total=10))
    assert (refund.type, refund.status, refund.order_id, refund.value) == (
        "conversion",
        "refund",
        "O-1",
        None,  # the whole order is taken back, whatever part of it the refund names
    )
    cancel = event(track("Order Cancelled", order_id="O-2"))
    assert (cancel.status, cancel.order_id) == ("rejected", "O-2")
    assert reasons(track("Order Refunded", total=10)) == {
        "properties.order_id": "Order Refunded needs the order_id of the order it undoes"
    }


def test_named_conversion_events_take_revenue_else_value_else_total() -> None:
    found = event(track("Signed Up", value="5", total="7", currency="EUR", order_id="S-1"))
    assert (found.goal, found.value, found.currency, found.order_id) == (
        "signup",
        5_000_000,
        "EUR",
        "S-1",
    )
    assert event(track("Signed Up", revenue=1, value=5, total=7)).value == 1_000_000
    assert event(track("Trial Started", total=7)).value == 7_000_000
    assert event(track("Trial Started")).value is None


def test_the_setting_may_give_order_completed_a_goal_of_its_own() -> None:
    rules = Rules(
        currencies=RULES.currencies,
        default_currency="USD",
        conversion_events={"Order Completed": "sale"},
    )
    found = event(track("Order Completed", value=3, total=9), rules)
    assert (found.goal, found.value) == ("sale", 3_000_000)


def test_other_track_names_are_kept_until_a_setting_counts_them() -> None:
    exc = uncounted(track("Product Viewed", product_id="p1"))
    assert (exc.kind, exc.keep) == ("track", True)
    assert exc.reasons == {
        "type": "'Product Viewed' is no conversion: name it in a goal (PUT /v1/goals) or "
        "TRACKER_CONVERSION_EVENTS"
    }
    assert event(track("Signed Up")).goal == "signup"  # the same, once named


def test_names_are_exact() -> None:
    assert uncounted(track("order completed")).kind == "track"


def test_a_track_call_needs_a_name() -> None:
    message = {"type": "track", "anonymousId": "d", "event": ""}
    assert reasons(message) == {"event": "a track call needs an event name (a string)"}


def test_json_numbers_are_rounded_to_the_micro_unit() -> None:
    """JavaScript's 10.1 * 3 is 30.299999999999997: an order of 30.30, not a rejection."""
    assert event(track("Order Completed", revenue=10.1 * 3)).value == 30_300_000
    assert event(track("Order Completed", revenue=0.1 + 0.2)).value == 300_000


def test_amounts_given_as_text_are_taken_exactly() -> None:
    assert event(track("Order Completed", revenue="19.999999")).value == 19_999_999
    assert reasons(track("Order Completed", revenue="19.9999999")) == {
        "properties.revenue": "has more than 6 decimals"
    }


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"revenue": -5}, {"properties.revenue": "must not be negative"}),
        ({"total": "lots"}, {"properties.total": "'lots' is not a number"}),
        ({"revenue": {"amount": 5}}, {"properties.revenue": "must be a number"}),
        ({"currency": "XYZ"}, {"properties.currency": "no rate configured for 'XYZ'"}),
        ({"order_id": "o" * 257}, {"properties.order_id": "longer than 256 characters"}),
    ],
)
def test_bad_conversion_fields_are_named(
    properties: dict[str, Any], expected: dict[str, str]
) -> None:
    assert reasons(track("Order Completed", **properties)) == expected


def test_every_bad_field_is_named_at_once() -> None:
    message = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "d",
        "timestamp": "nope",
        "sentAt": "never",
        "properties": {"revenue": -1},
    }
    assert set(reasons(message)) == {"timestamp", "sentAt", "properties.revenue"}


# Size, write keys, replay


def test_a_message_over_32_kb_is_refused() -> None:
    small = track("Signed Up", note="x" * 32_000)
    validation.check_size(small, "message")
    with pytest.raises(InvalidEvent) as caught:
        validation.check_size(track("Signed Up", note="x" * 33_000), "message")
    assert caught.value.reasons["message"].endswith("larger than 32768 bytes")


@pytest.mark.parametrize(
    ("header", "user"),
    [
        ("Basic " + base64.b64encode(b"wk_123:").decode(), "wk_123"),
        ("basic  " + base64.b64encode(b"wk_123:ignored").decode(), "wk_123"),
        ("Basic " + base64.b64encode(b":").decode(), None),
        ("Basic not-base64!", None),
        ("Bearer abc", None),
        ("", None),
        (None, None),
    ],
)
def test_basic_user(header: str | None, user: str | None) -> None:
    assert basic_user(header) == user


def test_a_dead_letter_is_judged_as_the_collector_judged_it() -> None:
    """The letter is the merged message and the request context it kept: a replay
    with a setting that counts the name gives the event the collector would have."""
    message = merged(
        track("Trial Started", total="7", order_id="T-1") | {"messageId": "m-9"},
        {"ip": "198.51.100.23", "userAgent": BROWSER},
        "2024-05-01T09:59:00Z",
        None,
    ) | {"timestamp": "2024-05-01T09:58:00Z"}
    letter = orjson.dumps(message).decode()
    kept = validation.letter_context(REQUEST, RULES)
    restored = validation.restored_context(NOW, kept)
    without = Rules(currencies=RULES.currencies, default_currency="USD")
    with pytest.raises(Uncounted):
        judge(letter, restored, without, "dl-0-5-0")
    (replayed,) = judge(letter, restored, RULES, "dl-0-5-0")
    assert replayed == event(message)
    assert (replayed.ts, replayed.ip, replayed.user_agent) == (
        NOW - 60_000,
        "198.51.100.0",
        BROWSER,
    )


def test_a_replayed_message_without_an_id_gets_the_stable_fallback() -> None:
    letter = orjson.dumps({"type": "page", "anonymousId": "d"}).decode()
    (first,) = judge(letter, Context(received_at=NOW), RULES, "dl-3-14-0")
    (again,) = judge(letter, Context(received_at=NOW), RULES, "dl-3-14-0")
    assert first.event_id == again.event_id == "dl-3-14-0"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", {"raw": "is a request body that was not JSON"}),
        ("[1, 2]", {"message": "must be a JSON object"}),
        (
            '{"type": "page"}',
            {"anonymousId": "a message needs an anonymousId or a userId (as in Segment)"},
        ),
    ],
)
def test_letters_that_cannot_be_replayed(raw: str, expected: dict[str, str]) -> None:
    with pytest.raises(InvalidEvent) as caught:
        judge(raw, Context(received_at=NOW), RULES, "dl-0-0-0")
    assert caught.value.reasons == expected


def test_an_oversized_letter_stays_refused() -> None:
    letter = orjson.dumps(track("Signed Up", note="x" * 33_000)).decode()
    with pytest.raises(InvalidEvent) as caught:
        judge(letter, Context(received_at=NOW), RULES, "dl-0-0-0")
    assert list(caught.value.reasons) == ["message"]


def test_translate_is_the_pure_half() -> None:
    out = translate(track("Signed Up", total="7") | {"sentAt": NOW}, REQUEST, RULES)
    assert out.raw == {
        "type": "conversion",
        "goal": "signup",
        "value": "7",
        "anonymous_id": "dev-1",
    }
    assert (out.context.received_at, out.context.ip, out.context.sent_at) == (
        NOW,
        "203.0.113.7",
        NOW,
    )
    assert out.fields["value"] == "properties.total"


def test_every_path_names_a_type_segment_knows() -> None:
    assert {kind for kind in segment.PATHS.values() if kind} <= set(segment_messages.TYPES)
    assert [path for path, kind in segment.PATHS.items() if kind is None] == ["/v1/batch", "/v1/b"]
