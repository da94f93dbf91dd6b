"""Consent at the collector's edge, on a real process and real Kafka and Redis.

What a visitor agreed to decides whether the collector sets or reads its cookie, and
travels on the event in Kafka. Without consent to analytics storage (or under Global
Privacy Control) the visitor is counted by the day's keyed hash instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import orjson
import pytest
from redis.asyncio import Redis

from collector import validation
from collector.cookieless import Salts, day_of
from tests.integration.test_collector_edge import UA, Running, collector, query
from tracker.consent import Consent
from tracker.events import Context, Event, parse_event
from tracker.settings import Settings
from tracker.store import Keys, parse_bucket
from tracker.stream.sink import Record, Sink

pytestmark = pytest.mark.services

PAGE = "https://shop.example/spring?utm_campaign=spring"
DENIED = Consent(
    analytics_storage=False, ad_storage=False, ad_user_data=False, ad_personalization=False
)
GRANTED = Consent(
    analytics_storage=True, ad_storage=True, ad_user_data=True, ad_personalization=True
)


@pytest.fixture
def plain(settings: Settings) -> Iterator[Running]:
    yield from collector(settings)


@pytest.fixture
def required(settings: Settings) -> Iterator[Running]:
    """A collector for a site that must ask first: consent not stated is denied."""
    yield from collector(dataclasses.replace(settings, consent_required=True))


def pixel(
    running: Running,
    *,
    cookie: str | None = None,
    agent: str = UA,
    gpc: bool = False,
    **params: str,
) -> str:
    """Fire the pixel; the Set-Cookie it answered with ('' for none)."""
    headers = {"user-agent": agent}
    if cookie:
        headers["cookie"] = f"tid={cookie}"
    if gpc:
        headers["sec-gpc"] = "1"
    target = f"/p.gif?{query(type='pageview', url=PAGE, **params)}"
    answer = running.call("GET", target, None, headers)
    assert answer.status == 200, answer.headers
    return answer.headers.get("set-cookie", "")


def in_order(events: list[Event]) -> list[Event]:
    """Events as sent: Kafka keeps the order within a partition only."""
    return sorted(events, key=lambda event: (event.received_at, event.url or ""))


def test_without_analytics_consent_no_cookie_is_set_or_read(plain: Running) -> None:
    assert pixel(plain, cookie="known-visitor", analytics_storage="denied") == ""
    assert pixel(plain, analytics_storage="denied", ad_storage="granted") == ""  # the same
    assert pixel(plain, agent=f"{UA} other", analytics_storage="denied") == ""
    first, second, other = in_order(plain.events())
    # Neither the cookie sent nor one minted: the same visitor by IP, agent and site.
    assert first.anonymous_id == second.anonymous_id != "known-visitor"
    assert (first.anonymous_id or "").startswith("cl-")
    assert other.anonymous_id != first.anonymous_id
    # What is not stated is granted, as Consent Mode reads it, unless consent is required.
    assert first.consent == msgspec.structs.replace(GRANTED, analytics_storage=False)
    assert second.consent == first.consent


def test_with_consent_or_none_stated_the_cookie_is_set_as_before(plain: Running) -> None:
    minted = pixel(plain, analytics_storage="granted")
    assert minted.startswith("tid=")
    assert pixel(plain).startswith("tid=")
    granted, unstated = in_order(plain.events())
    assert granted.anonymous_id == minted.split(";")[0].removeprefix("tid=")
    assert granted.consent == GRANTED
    assert unstated.consent is None  # nothing stated, nothing required: as before consent


def test_global_privacy_control_denies_ads_and_the_cookie(plain: Running) -> None:
    assert pixel(plain, cookie="known-visitor", gpc=True) == ""
    assert pixel(plain, analytics_storage="granted", gpc=True) == ""
    unstated, granted = in_order(plain.events())
    assert unstated.consent == Consent(
        analytics_storage=True,
        ad_storage=False,
        ad_user_data=False,
        ad_personalization=False,
        gpc=True,
    )
    assert granted.consent == unstated.consent
    assert unstated.anonymous_id == granted.anonymous_id
    assert (unstated.anonymous_id or "").startswith("cl-")


def test_required_consent_counts_the_unstated_cookieless(required: Running) -> None:
    assert pixel(required) == ""
    assert pixel(required, analytics_storage="granted").startswith("tid=")
    unstated, granted = in_order(required.events())
    assert unstated.consent == DENIED
    assert (unstated.anonymous_id or "").startswith("cl-")
    assert granted.consent is not None
    assert granted.consent.cookies


def test_a_batch_carries_consent_and_drops_the_ids_it_may_not_keep(plain: Running) -> None:
    tcf_ads_only = "CO5VTlWO5VTlWH1AAAENAwCwAIAAAAAAAIAAAAoAAAAA.YAAAAAAAAAA"  # purpose 1
    body = orjson.dumps(
        [
            {"type": "pageview", "url": PAGE, "anonymous_id": "a-1", "user_id": "u-1",
             "gdpr": "1", "gdpr_consent": tcf_ads_only},
            {"type": "pageview", "url": PAGE, "anonymous_id": "a-2", "user_id": "u-2",
             "analytics_storage": "granted", "ad_user_data": "denied"},
        ]
    )  # fmt: skip
    answer = plain.call("POST", "/v1/events", body, {"content-type": "application/json"})
    assert answer.status == 200, answer.body
    tcf, stated = in_order(plain.events())
    # Purpose 1 alone: ad storage; measuring needs purposes 7 and 8 too.
    assert tcf.consent == msgspec.structs.replace(DENIED, ad_storage=True, tcf=tcf_ads_only)
    assert tcf.user_id is None
    assert (tcf.anonymous_id or "").startswith("cl-")
    assert (stated.anonymous_id, stated.user_id) == ("a-2", "u-2")
    assert stated.consent is not None
    assert not stated.consent.ad_user_data


def test_malformed_consent_is_rejected_with_its_reason_and_kept(plain: Running) -> None:
    cut_short = "CO5VTlWO5VTl"
    answer = plain.call("GET", f"/p.gif?{query(type='pageview', url=PAGE, gdpr_consent=cut_short)}")
    assert answer.status == 400
    assert "gdpr_consent" in answer.headers["x-tracker-error"]
    assert "set-cookie" not in answer.headers
    answer = plain.call("GET", f"/p.gif?{query(type='pageview', ad_storage='yes please')}")
    assert answer.status == 400
    assert plain.events() == []
    first, second = sorted(plain.dead_letters(), key=lambda letter: letter["received_at"])
    assert first["reasons"] == {
        "gdpr_consent": "is cut short: the TC string ends before its fields do"
    }
    assert second["reasons"] == {"ad_storage": "must be granted or denied"}


def test_an_identify_without_consent_links_nobody(plain: Running) -> None:
    event = {
        "type": "identify",
        "anonymous_id": "a-1",
        "user_id": "u-1",
        "analytics_storage": "denied",
    }
    answer = plain.call("POST", "/v1/events", orjson.dumps([event]))
    assert answer.status == 200
    assert answer.json()["rejected"] == 1
    assert plain.events() == []
    (letter,) = plain.dead_letters()
    assert "needs analytics consent" in letter["reasons"]["type"]


def test_the_day_salt_lives_in_redis_until_its_day_ends_and_never_after(
    settings: Settings,
) -> None:
    """Two days' salts differ, each expires when its UTC day ends, and every process of
    a day reads the same one."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    later = now + 3 * 86_400_000  # days ahead: a salt of a past day would expire at once

    async def main() -> None:
        redis = Redis.from_url(settings.redis_url)
        try:
            keys = Keys(settings.redis_prefix)
            one, another = Salts(redis, keys), Salts(redis, keys)
            await one.refresh(later)
            await another.refresh(later)
            assert one.today(later) == another.today(later) is not None
            await one.refresh(later + 86_400_000)
            assert one.today(later + 86_400_000) == another.today(later + 86_400_000)
            assert one.today(later) is None  # the past day is forgotten
            assert another.today(later) != one.today(later + 86_400_000)
            for day in (day_of(later), day_of(later) + 1, day_of(later) + 2):
                name = keys.salt(datetime.fromtimestamp(day * 86_400, UTC).date().isoformat())
                assert await redis.expiretime(name) == (day + 1) * 86_400
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_a_cookieless_visitor_is_not_followed_into_the_next_day(settings: Settings) -> None:
    """The same browser on two days is two visitors: a day's touches credit only that
    day's conversions. Through the real salts and the real sink."""
    day = day_of(int(datetime.now(UTC).timestamp() * 1000)) + 3  # ahead: salts expire at once
    noon = day * 86_400_000 + 12 * 3_600_000
    rules = validation.rules(settings)

    def visit(salt: bytes | None, at: int, **fields: str) -> Event:
        context = Context(received_at=at, ip="203.0.113.9", user_agent=UA, salt=salt)
        raw = {"url": PAGE, "analytics_storage": "denied", "event_id": f"{fields['type']}-{at}"}
        return parse_event({**raw, **fields}, context, rules)

    async def main() -> dict[str, int]:
        redis = Redis.from_url(settings.redis_url)
        try:
            salts = Salts(redis, Keys(settings.redis_prefix))
            await salts.refresh(noon)
            today, tomorrow = salts.today(noon), salts._by_day[day + 1]
            events = [
                visit(today, noon, type="click", campaign="spring", source="google", medium="cpc"),
                visit(today, noon + 60_000, type="conversion", value="10", order_id="o-1"),
                visit(tomorrow, noon + 86_400_000, type="conversion", value="30", order_id="o-2"),
            ]
            assert events[0].anonymous_id == events[1].anonymous_id != events[2].anonymous_id
            await Sink(redis, settings).apply([Record("t", 0, 1, events)])
            raw = await redis.hgetall(Keys(settings.redis_prefix).bucket("all", 0, "campaign"))
            return parse_bucket(raw).get(("campaign", "spring"), {})
        finally:
            await redis.aclose()

    spring = asyncio.run(main())
    # The same day's order is credited; the next day's (30) would make it 40.
    assert spring["revenue@last_click"] == 10_000_000
    assert spring["conversions@last_click"] == 1_000_000  # micro-conversions
