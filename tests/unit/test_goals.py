"""Goal rules: what a document may say, what a page view or an SDK event matches."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from collector.segment_messages import message_event
from collector.snowplow_events import parse as snowplow_event
from tracker.events import Context, Event, InvalidEvent, Rules, parse_event
from tracker.goals import Goal, GoalSet, _subjects, load, parse
from tracker.rulebook import RulesError

CURRENCIES = frozenset({"USD", "EUR"})
RULES = Rules(currencies=CURRENCIES, default_currency="USD")


def goals_of(*items: dict[str, Any], max_rules: int = 100) -> tuple[Goal, ...]:
    return parse({"goals": list(items)}, CURRENCIES, "USD", max_rules)


def refused(body: Any, max_rules: int = 100) -> dict[str, str]:
    with pytest.raises(RulesError) as caught:
        parse(body, CURRENCIES, "USD", max_rules)
    return caught.value.reasons


def pageview(url: str, event_id: str = "pv-1") -> Event:
    return Event(event_id=event_id, type="pageview", ts=1, received_at=1, channel="direct", url=url)


def test_the_issue_example_parses_and_round_trips_through_its_stored_form() -> None:
    found = goals_of(
        {"name": "lead", "page_url": "https://shop.example/thank-you*", "value": "10.00"},
        {"name": "signup", "event": "Signed Up"},
    )
    assert found == (
        Goal("lead", page_url="https://shop.example/thank-you*", value=10_000_000, currency="USD"),
        Goal("signup", event="Signed Up"),
    )
    stored = {"version": 3, "saved_at": 5, **GoalSet(goals=found).as_json()}
    assert load(stored) == GoalSet(3, 5, found)


@pytest.mark.parametrize(
    ("url", "matched"),
    [
        ("https://shop.example/thank-you", True),
        ("https://shop.example/thank-you?order=7#top", True),
        ("HTTPS://Shop.Example/thank-you/again", True),
        ("https://shop.example/Thank-You", False),  # paths keep their case
        ("https://shop.example/thanks", False),
        ("https://other.example/thank-you", False),
        ("https://shop.example.evil/thank-you", False),
        ("http://shop.example/thank-you", False),
    ],
)
def test_an_absolute_pattern_matches_the_whole_url_without_its_fragment(
    url: str, matched: bool
) -> None:
    goals = GoalSet(1, 0, goals_of({"name": "lead", "page_url": "https://shop.example/thank-you*"}))
    assert [g.name for g in goals.for_page(url)] == (["lead"] if matched else [])


def test_a_path_pattern_matches_path_and_query_on_any_site_and_only_star_is_special() -> None:
    goals = GoalSet(
        1,
        0,
        goals_of(
            {"name": "signup", "page_url": "/welcome?step=*"},
            {"name": "odd", "page_url": "/a.b[c]?d*"},
        ),
    )
    assert [g.name for g in goals.for_page("https://x.example/welcome?step=3")] == ["signup"]
    assert goals.for_page("https://x.example/welcome") == []
    assert [g.name for g in goals.for_page("https://x.example/a.b[c]?d=1")] == ["odd"]
    assert goals.for_page("https://x.example/aXb[c]?d=1") == []  # "." is literal


def test_a_page_view_makes_one_conversion_per_goal_it_reaches_with_a_stable_id() -> None:
    goals = GoalSet(
        7,
        0,
        goals_of(
            {"name": "lead", "page_url": "/thank-you*", "value": 10, "currency": "EUR"},
            {"name": "visit", "page_url": "https://shop.example/*you"},
            {"name": "signup", "event": "Signed Up"},
        ),
    )
    view = pageview("https://shop.example/thank-you")
    made = goals.conversions([view, pageview("https://shop.example/", "pv-2")])
    assert [(e.type, e.goal, e.value, e.currency, e.goal_version) for e in made] == [
        ("pageview", None, None, "USD", None),
        ("conversion", "lead", 10_000_000, "EUR", 7),
        ("conversion", "visit", None, "USD", 7),
        ("pageview", None, None, "USD", None),
    ]
    again = goals.conversions([view])
    assert [e.event_id for e in again] == [e.event_id for e in made[:3]]
    assert len({e.event_id for e in made}) == 4
    assert (made[1].url, made[1].status) == (view.url, "approved")


@pytest.mark.parametrize(
    ("item", "where", "reason"),
    [
        ({"name": "lead", "page_url": "thank-you*"}, "goals[0].page_url", "must start with"),
        ({"name": "lead", "page_url": "/*"}, "goals[0].page_url", "every page"),
        ({"name": "lead", "page_url": "https://shop.example/*"}, "goals[0].page_url", "every"),
        ({"name": "lead", "page_url": "https://*.example/x"}, "goals[0].page_url", "host"),
        ({"name": "lead", "page_url": "/a b"}, "goals[0].page_url", "no spaces"),
        ({"name": "lead", "page_url": "/x", "event": "E"}, "goals[0]", "not both"),
        ({"name": "lead"}, "goals[0]", "either page_url or event"),
        ({"name": "pageview", "event": "E"}, "goals[0].name", "built in"),
        ({"name": "purchase", "event": "E"}, "goals[0].name", "built in"),
        ({"name": "", "event": "E"}, "goals[0].name", "required"),
        ({"name": "x" * 65, "event": "E"}, "goals[0].name", "64"),
        ({"name": "buy", "event": "Order Completed"}, "goals[0].event", "counted already"),
        ({"name": "back", "event": "Order Refunded"}, "goals[0].event", "counted already"),
        ({"name": "lead", "event": "E", "value": -1}, "goals[0].value", "negative"),
        ({"name": "lead", "event": "E", "value": "ten"}, "goals[0].value", "not a number"),
        ({"name": "lead", "event": "E", "value": 1, "currency": "XYZ"}, "goals[0].currency", ""),
        ({"name": "lead", "event": "E", "currency": "EUR"}, "goals[0].currency", "only with"),
        ({"name": "lead", "event": "E", "url": "/x"}, "goals[0].url", "unknown field"),
    ],
)
def test_a_bad_rule_is_refused_naming_it(item: dict[str, Any], where: str, reason: str) -> None:
    reasons = refused({"goals": [item]})
    assert reason in reasons[where]


def test_every_bad_rule_is_named_and_nothing_of_the_document_passes() -> None:
    reasons = refused(
        {
            "goals": [
                {"name": "ok", "event": "Fine"},
                {"name": "lead", "page_url": "nope"},
                "not an object",
                {"name": "again", "event": "Fine"},
            ]
        }
    )
    assert set(reasons) == {"goals[1].page_url", "goals[2]", "goals[3].event"}
    assert "goals[0]" in reasons["goals[3].event"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ([], "body"),
        ({"goals": {}}, "goals"),
        ({"goals": [], "extra": 1}, "extra"),
        ({"goals": [{"name": f"g{i}", "event": f"E{i}"} for i in range(4)]}, "goals"),
    ],
)
def test_the_document_itself_is_checked(body: Any, where: str) -> None:
    assert where in refused(body, max_rules=3)


def test_an_empty_list_removes_every_rule() -> None:
    assert goals_of() == ()


def test_an_sdk_event_a_rule_names_becomes_a_conversion_stamped_with_the_version() -> None:
    goals = GoalSet(4, 0, goals_of({"name": "signup", "event": "Signed Up", "value": "2.5"}))
    rules = Rules(
        currencies=CURRENCIES,
        default_currency="USD",
        conversion_events={"Signed Up": "other"},
        goals=goals,
    )
    message = {
        "type": "track",
        "event": "Signed Up",
        "anonymousId": "a-1",
        "messageId": "m-1",
        "properties": {"revenue": 99},
    }
    event = message_event(message, Context(received_at=1_000), rules)
    assert (event.type, event.goal, event.value, event.goal_version) == (
        "conversion",
        "signup",
        2_500_000,
        4,
    )
    structured = {"e": "se", "se_ca": "c", "se_ac": "Signed Up", "duid": "d-1", "eid": "e-1"}
    found = snowplow_event(structured, Context(received_at=1_000), rules)
    assert (found.goal, found.value, found.goal_version) == ("signup", 2_500_000, 4)


def test_without_a_rule_the_setting_still_counts_and_stamps_no_version() -> None:
    rules = Rules(
        currencies=CURRENCIES,
        default_currency="USD",
        conversion_events={"Signed Up": "signup"},
        goals=GoalSet(),
    )
    message = {"type": "track", "event": "Signed Up", "anonymousId": "a", "messageId": "m"}
    event = message_event(message, Context(received_at=1_000), rules)
    assert (event.goal, event.goal_version) == ("signup", None)


def test_a_client_cannot_claim_a_goal_version() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(
            {"type": "conversion", "goal": "lead", "goal_version": 9, "anonymous_id": "a"},
            Context(received_at=1_000),
            RULES,
        )
    assert caught.value.reasons == {"goal_version": "unknown field"}


@pytest.mark.parametrize(
    "url",
    [
        "https://Shop.Example/thank-you?o=1#x",
        "https://x.example",
        "https://x.example?q=1",
        "HTTPS://X.EXAMPLE/A/B/",
        "https://user:pw@x.example:8080/a?b#c",
        "https://x.example/a#b?c",
        "https://x.example/?",
        "https://x.example/a?b?c/d",
        "/relative/path?q",
    ],
)
def test_urls_are_split_as_urlsplit_splits_them(url: str) -> None:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    whole = f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}" if parts.scheme else url
    assert _subjects(url) == (whole, path if parts.scheme else url)
