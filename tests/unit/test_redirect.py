from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from collector.bots import is_bot
from collector.redirect import (
    AllowList,
    BadDestination,
    check_destination,
    click_event,
    location,
)
from tracker.events import Context, InvalidEvent, Rules
from tracker.settings import Settings, SettingsError, load

NOW = 1_714_557_600_000
RULES = Rules(currencies=frozenset({"USD"}), default_currency="USD", is_bot=is_bot)
ALLOWED = AllowList.from_settings(
    Settings(redirect_allow="Shop.Example, *.brand.example, pay.example:8443, 203.0.113.7")
)


# The allow-list setting


def test_allow_list_entries_are_lower_cased_with_ports() -> None:
    assert ALLOWED.hosts == (
        ("shop.example", None),
        ("*.brand.example", None),
        ("pay.example", 8443),
        ("203.0.113.7", None),
    )


def test_empty_allow_list_allows_nothing() -> None:
    assert Settings().redirect_hosts() == []


@pytest.mark.parametrize(
    "entry",
    [
        "https://shop.example",
        "shop.example/path",
        "*shop.example",
        "shop.*.example",
        "shop.example:0",
        "shop.example:70000",
        "shöp.example",
        "-shop.example",
        "shop..example",
        "user@shop.example",
    ],
)
def test_bad_allow_list_entries_fail_at_load(entry: str) -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_REDIRECT_ALLOW: .* is not a host"):
        load(None, {"TRACKER_REDIRECT_ALLOW": f"ok.example,{entry}"})


# Matching


@pytest.mark.parametrize(
    "to",
    [
        "https://shop.example/",
        "https://shop.example",
        "HTTPS://SHOP.EXAMPLE/Landing?Q=1",
        "http://shop.example/",
        "https://shop.example:443/",  # the default port, spelled out
        "http://shop.example:80/x",
        "https://a.brand.example/",
        "https://a.b.brand.example/",  # subdomains at any depth
        "https://xn--bcher-kva.brand.example/",  # an IDN subdomain in its xn-- form
        "https://pay.example:8443/checkout",
        "https://203.0.113.7/",
        "https://shop.example//evil.example/",  # a path, still on shop.example
        "https://shop.example/?next=https://evil.example",
        "https://shop.example/#@evil.example",
    ],
)
def test_allowed_destinations(to: str) -> None:
    assert check_destination(to, ALLOWED).hostname in {
        "shop.example",
        "a.brand.example",
        "a.b.brand.example",
        "xn--bcher-kva.brand.example",
        "pay.example",
        "203.0.113.7",
    }


@pytest.mark.parametrize(
    ("to", "reason"),
    [
        ("", "is required"),
        ("//evil.example/", "absolute http:// or https://"),
        ("///evil.example/", "absolute http:// or https://"),
        ("https:evil.example", "absolute http:// or https://"),
        ("https:/evil.example", "absolute http:// or https://"),
        ("https:///evil.example", "needs a plain host name"),
        ("javascript:alert(1)", "absolute http:// or https://"),
        ("data:text/html,hi", "absolute http:// or https://"),
        ("ftp://shop.example/", "absolute http:// or https://"),
        ("shop.example/", "absolute http:// or https://"),
        ("https://shop.example@evil.example/", "user info"),
        ("https://user:pw@shop.example/", "user info"),
        ("https://shop.example\\@evil.example/", "backslashes"),
        ("https:\\\\evil.example", "backslashes"),
        ("https://evil.example\\.shop.example/", "backslashes"),
        ("https://shop.example\t.evil.example/", "whitespace or control"),
        ("https://shop.example\n/", "whitespace or control"),
        ("https://shop.example\x00.evil.example/", "whitespace or control"),
        (" https://shop.example/", "whitespace or control"),
        ("https://shop.example /", "whitespace or control"),
        ("https://shöp.example/", "must be ASCII"),
        ("https://shop.example\u3002evil.example/", "must be ASCII"),  # ideographic full stop
        ("https://shop%2eexample/", "needs a plain host name"),
        ("https://evil.example%2f@shop.example/", "user info"),
        ("https://%73hop.example/", "needs a plain host name"),
        ("https://[::1]/", "needs a plain host name"),
        ("https://shop.example./", "needs a plain host name"),
        ("https://shop.example:8443/", "is not an allowed destination"),
        ("https://shop.example:80/", "is not an allowed destination"),  # not https's port
        ("https://shop.example:0443/", "needs a plain host name"),
        ("https://shop.example:99999/", "invalid port"),
        ("https://shop.example:/", "needs a plain host name"),
        ("https://pay.example/", "is not an allowed destination"),  # only :8443 allowed
        ("https://evil.example/", "is not an allowed destination"),
        ("https://shop.example.evil.example/", "is not an allowed destination"),
        ("https://evilshop.example/", "is not an allowed destination"),
        ("https://www.shop.example/", "is not an allowed destination"),  # no *. entry
        ("https://brand.example/", "is not an allowed destination"),  # *. is subdomains only
        ("https://evilbrand.example/", "is not an allowed destination"),
        ("https://2130706433/", "is not an allowed destination"),
        ("https://" + "a" * 2048 + ".shop.example/", "longer than 2048"),
    ],
)
def test_rejected_destinations(to: str, reason: str) -> None:
    with pytest.raises(BadDestination, match=reason):
        check_destination(to, ALLOWED)


def test_an_empty_allow_list_says_how_to_configure_it() -> None:
    with pytest.raises(BadDestination, match=r"set|TRACKER_REDIRECT_ALLOW") as caught:
        check_destination("https://shop.example/", AllowList(()))
    assert "TRACKER_REDIRECT_ALLOW" in str(caught.value)
    assert "*.shop.example" in str(caught.value)


def test_ports_allowed_per_entry() -> None:
    allowed = AllowList((("shop.example", 8443), ("shop.example", None)))
    assert allowed.permits("https", "shop.example", 8443)
    assert allowed.permits("https", "shop.example", None)
    assert allowed.permits("http", "shop.example", 80)
    assert not allowed.permits("https", "shop.example", 8080)
    assert AllowList((("shop.example", 443),)).permits("https", "shop.example", None)


# Where the browser goes


def test_location_appends_click_id_and_keeps_query_and_fragment() -> None:
    destination = check_destination("https://shop.example/land?a=1&b=x%20y#top", ALLOWED)
    assert location(destination, "CID", {}) == (
        "https://shop.example/land?a=1&b=x%20y&click_id=CID#top"
    )


def test_location_of_a_bare_host_gets_a_path() -> None:
    destination = check_destination("https://SHOP.example", ALLOWED)
    assert location(destination, "CID", {}) == "https://shop.example/?click_id=CID"


def test_location_passes_utm_and_platform_click_ids_on() -> None:
    destination = check_destination("https://shop.example/?utm_source=mine", ALLOWED)
    params = {
        "to": "ignored",
        "campaign": "spring",  # ours, not the landing page's
        "utm_source": "google",  # the destination's own wins
        "utm_medium": "cpc",
        "utm_term": "red shoes",
        "gclid": "G-1",
        "utm_content": "",
    }
    assert location(destination, "CID", params) == (
        "https://shop.example/?utm_source=mine&utm_medium=cpc&utm_term=red+shoes&gclid=G-1"
        "&click_id=CID"
    )


def test_location_replaces_a_click_id_of_the_destination() -> None:
    destination = check_destination("https://shop.example/?click_id=old&x=1", ALLOWED)
    assert location(destination, "new", {}) == "https://shop.example/?x=1&click_id=new"


def test_location_is_still_the_allowed_host() -> None:
    destination = check_destination("https://shop.example/?next=//evil.example", ALLOWED)
    assert urlsplit(location(destination, "CID", {"utm_source": "@evil"})).hostname == (
        "shop.example"
    )


# The click event


def context() -> Context:
    return Context(received_at=NOW, ip="198.51.100.23", user_agent="Mozilla/5.0", anonymous_id="v")


def test_click_event_carries_campaign_utm_and_the_minted_click_id() -> None:
    params = {
        "to": "https://shop.example/land",
        "utm_campaign": "spring",
        "utm_source": "google",
        "utm_medium": "cpc",
        "ad_group": "g1",
        "cost": "0.35",
        "gclid": "G-1",
    }
    event, destination = click_event(params, context(), RULES, ALLOWED, "CID")
    assert destination.geturl() == "https://shop.example/land"
    assert event.type == "click"
    assert event.click_id == "CID"  # ours wins over gclid's value...
    assert event.channel == "search"  # ...whose platform still names the channel
    assert (event.campaign, event.source, event.medium, event.ad_group) == (
        "spring",
        "google",
        "cpc",
        "g1",
    )
    assert event.cost == 350_000
    assert event.url == "https://shop.example/land"
    assert (event.anonymous_id, event.ip, event.ts) == ("v", "198.51.100.0", NOW)


def test_reserved_parameters_are_set_by_the_redirect() -> None:
    params = {
        "to": "https://shop.example/",
        "type": "conversion",
        "event_id": "fixed",
        "click_id": "fixed",
        "url": "https://elsewhere.example/",
        "ts": "0",  # would be too old: a link's time is not the click's
    }
    event, _ = click_event(params, context(), RULES, ALLOWED, "CID", event_id="E")
    assert (event.type, event.event_id, event.click_id) == ("click", "E", "CID")
    assert event.url == "https://shop.example/"
    assert event.ts == NOW


def test_click_event_reports_every_reason() -> None:
    params = {"to": "https://evil.example/", "cost": "-1", "nonsense": "1"}
    with pytest.raises(InvalidEvent) as caught:
        click_event(params, context(), RULES, ALLOWED, "CID")
    assert caught.value.reasons == {
        "to": "evil.example is not an allowed destination (see TRACKER_REDIRECT_ALLOW)",
        "cost": "must not be negative",
        "nonsense": "unknown field",
    }
