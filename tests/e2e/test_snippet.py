"""The JS snippet in a real headless Chromium: its pageviews and conversions reach Kafka.

A page on ``localhost`` loads ``t.js`` from the collector on ``127.0.0.1`` (another
site, as on the web) with UTM parameters and a gclid in its URL; the events the
browser sends are read back from the events topic. The consent tests also look inside
the browser over the DevTools protocol: its cookies, the page's sessionStorage and the
beacons it sent.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from harness.processes import http_get, tracker, wait_for
from tests.e2e.chromium import HEADLESS, Tab, devtools, stop_group
from tracker.consent import FIELDS, SIGNALS, Consent
from tracker.events import Event
from tracker.records import decode_events
from tracker.settings import Settings

pytestmark = pytest.mark.services

# Headless Chromium names itself "HeadlessChrome", which the collector rightly
# flags as a bot; a desktop agent lets the test follow a human's events.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
LANDING = "utm_campaign=spring-sale&utm_source=google&utm_medium=cpc&gclid=g-123"


@contextmanager
def site(pages: dict[str, str]) -> Iterator[int]:
    """Serve ``pages`` (path -> HTML) on a loopback port for the test's duration."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = pages.get(self.path.split("?", 1)[0])
            body = (page or "not found").encode()
            self.send_response(200 if page else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest's output for failures

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def browser(executable: str, url: str, profile: Path) -> Iterator[Path]:
    """Headless Chromium showing ``url`` until the block ends; yields its log file."""
    log_path = profile / "chromium.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                executable,
                *HEADLESS,
                f"--user-data-dir={profile}",
                f"--user-agent={USER_AGENT}",
                "--enable-logging=stderr",  # console messages and JS errors, for failures
                url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its renderer and GPU helpers go with it
        )
        try:
            yield log_path
        finally:
            stop_group(process)


async def _read_until(
    settings: Settings, done: Callable[[list[Event]], bool], deadline: float
) -> list[Event]:
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    events: list[Event] = []
    try:
        while not done(events) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    assert message.value is not None
                    events.extend(decode_events(message.value))
        return events
    finally:
        await consumer.stop()


def events_until(
    settings: Settings, done: Callable[[list[Event]], bool], timeout: float = 30.0
) -> list[Event]:
    """Every event of the topic once ``done`` holds (or the deadline passed)."""
    return asyncio.run(_read_until(settings, done, time.monotonic() + timeout))


def by_type(events: list[Event]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    for event in events:
        found.setdefault(event.type, []).append(event)
    return found


def one_each(*types: str) -> Callable[[list[Event]], bool]:
    return lambda events: all(t in by_type(events) for t in types)


def fail_with_log(log_path: Path, events: list[Event]) -> str:
    """The events seen and the page's console (JS errors included), for a failure."""
    console = [line for line in log_path.read_text().splitlines() if ":CONSOLE" in line]
    return f"events: {events}\n--- chromium console ---\n" + "\n".join(console[-30:])


@pytest.mark.parametrize("transport", ["beacon", "pixel"])
def test_pageview_and_conversion_from_a_landing_page(
    settings: Settings, chromium: str, transport: str, tmp_path: Path
) -> None:
    collector = f"http://127.0.0.1:{settings.collector_port}"
    # Without sendBeacon (old browsers) the snippet falls back to the GIF pixel.
    strip_beacon = "<script>delete Navigator.prototype.sendBeacon</script>"
    page = f"""<!doctype html><title>thanks</title>
{strip_beacon if transport == "pixel" else ""}
<script src="{collector}/t.js"></script>
<script>tracker.conversion({{value: "49.90", order_id: "o-1"}});</script>"""
    started = int(time.time() * 1000)
    with (
        tracker("collector", settings, f"{collector}/healthz"),
        site({"/thanks.html": page}) as port,
    ):
        url = f"http://localhost:{port}/thanks.html?{LANDING}"
        with browser(chromium, url, tmp_path) as log_path:
            events = events_until(settings, one_each("pageview", "conversion"))
        metrics = http_get(f"{collector}/metrics")[1].decode()
    found = by_type(events)
    assert sorted(found) == ["conversion", "pageview"], fail_with_log(log_path, events)
    assert len(found["pageview"]) == len(found["conversion"]) == 1, events
    endpoint = "batch" if transport == "beacon" else "pixel"
    assert f'events_total{{endpoint="{endpoint}",outcome="accepted"}} 2.0' in metrics
    (pageview,), (conversion,) = found["pageview"], found["conversion"]
    for event in (pageview, conversion):
        assert event.campaign == "spring-sale"
        assert (event.source, event.medium) == ("google", "cpc")
        assert event.click_id == "g-123"
        assert event.channel == "search"
        assert event.url == url
        assert event.user_agent == USER_AGENT
        assert not event.bot
        assert started <= event.ts <= int(time.time() * 1000)
        assert uuid.UUID(event.event_id).version == 4  # minted in the browser
        if transport == "beacon":  # sent with sent_at: the browser's own time is kept
            assert event.device_ts is not None
            assert abs(event.device_ts - event.ts) < 5_000
        else:  # a pixel goes at once and says no ts: its arrival is its time
            assert (event.ts, event.device_ts) == (event.received_at, None)
    assert pageview.anonymous_id == conversion.anonymous_id
    assert pageview.anonymous_id is not None
    assert uuid.UUID(pageview.anonymous_id)  # the visitor id the browser minted
    assert pageview.event_id != conversion.event_id
    assert conversion.value == 49_900_000
    assert conversion.order_id == "o-1"
    assert (conversion.currency, conversion.goal, conversion.status) == (
        "USD",
        "purchase",
        "approved",
    )


@pytest.mark.parametrize("transport", ["beacon", "pixel"])
def test_a_visitor_clock_hours_fast_does_not_move_events(
    settings: Settings, chromium: str, transport: str, tmp_path: Path
) -> None:
    """A browser clock 3 hours ahead: its events land at the collector's time (without
    ``sent_at`` they would be refused as too far in the future)."""
    collector = f"http://127.0.0.1:{settings.collector_port}"
    strip_beacon = "delete Navigator.prototype.sendBeacon;" if transport == "pixel" else ""
    fast_clock = "const real = Date.now; Date.now = () => real() + 3 * 3600 * 1000;"
    page = f"""<!doctype html><title>fast clock</title>
<script>{strip_beacon} {fast_clock}</script>
<script src="{collector}/t.js"></script>"""
    started = int(time.time() * 1000)
    with (
        tracker("collector", settings, f"{collector}/healthz"),
        site({"/fast.html": page}) as port,
    ):
        url = f"http://localhost:{port}/fast.html?{LANDING}"
        with browser(chromium, url, tmp_path) as log_path:
            events = events_until(settings, one_each("pageview"))
    found = by_type(events)
    assert list(found) == ["pageview"], fail_with_log(log_path, events)
    (pageview,) = found["pageview"]
    assert started <= pageview.ts <= pageview.received_at <= int(time.time() * 1000)
    if transport == "beacon":
        # device_ts - ts = the browser's sent_at - received: 3 hours less the transit.
        assert pageview.device_ts is not None
        assert 3 * 3_600_000 - 5_000 <= pageview.device_ts - pageview.ts <= 3 * 3_600_000
    else:
        assert (pageview.ts, pageview.device_ts) == (pageview.received_at, None)


def test_landing_parameters_and_visitor_carry_to_a_later_page(
    settings: Settings, chromium: str, tmp_path: Path
) -> None:
    """UTM and click id of the landing URL reach a conversion on another page."""
    collector = f"http://127.0.0.1:{settings.collector_port}"
    landing = f"""<!doctype html><title>landing</title>
<script src="{collector}/t.js"></script>
<script>addEventListener("load", () => location.assign("/checkout/done.html"));</script>"""
    done = f"""<!doctype html><title>done</title>
<script src="{collector}/t.js" data-auto="false"></script>
<script>tracker.conversion({{value: 12, currency: "USD", order_id: "o-2", goal: "lead"}});
</script>"""
    with (
        tracker("collector", settings, f"{collector}/healthz"),
        site({"/landing.html": landing, "/checkout/done.html": done}) as port,
    ):
        url = f"http://localhost:{port}/landing.html?{LANDING}"
        with browser(chromium, url, tmp_path) as log_path:
            events = events_until(settings, one_each("pageview", "conversion"))
    found = by_type(events)
    assert sorted(found) == ["conversion", "pageview"], fail_with_log(log_path, events)
    # data-auto="false" on the second page: one pageview, from the landing page.
    assert len(found["pageview"]) == len(found["conversion"]) == 1, events
    (pageview,), (conversion,) = found["pageview"], found["conversion"]
    assert pageview.url == url
    assert conversion.url == f"http://localhost:{port}/checkout/done.html"
    assert conversion.referrer == url
    assert conversion.anonymous_id == pageview.anonymous_id
    assert (conversion.campaign, conversion.click_id, conversion.channel) == (
        "spring-sale",
        "g-123",
        "search",
    )
    assert (conversion.value, conversion.goal, conversion.order_id) == (12_000_000, "lead", "o-2")


def events_of(*types: str) -> Callable[[list[Event]], bool]:
    """Done once the events hold at least these, types repeated for as many as needed."""
    return lambda events: all(len(by_type(events).get(t, [])) >= types.count(t) for t in set(types))


@pytest.mark.parametrize("transport", ["beacon", "pixel"])
def test_identify_signs_the_visitor_in_and_reset_makes_a_new_one(
    settings: Settings, chromium: str, transport: str, tmp_path: Path
) -> None:
    """Signed in, the visitor's events carry the user; signed out, a new visitor starts."""
    collector = f"http://127.0.0.1:{settings.collector_port}"
    strip_beacon = "<script>delete Navigator.prototype.sendBeacon</script>"
    page = f"""<!doctype html><title>account</title>
{strip_beacon if transport == "pixel" else ""}
<script>window.tracker = [["identify", "u-42"]];</script>
<script src="{collector}/t.js" data-auto="false"></script>
<script>
tracker.conversion({{value: "10", order_id: "o-3"}});
tracker.reset();
tracker.pageview();
</script>"""
    with (
        tracker("collector", settings, f"{collector}/healthz"),
        site({"/account.html": page}) as port,
    ):
        url = f"http://localhost:{port}/account.html?{LANDING}"
        with browser(chromium, url, tmp_path) as log_path:
            events = events_until(
                settings, events_of("identify", "conversion", "reset", "pageview")
            )
    found = by_type(events)
    assert sorted(found) == ["conversion", "identify", "pageview", "reset"], fail_with_log(
        log_path, events
    )
    assert [len(found[t]) for t in sorted(found)] == [1, 1, 1, 1], events
    (identify,), (conversion,) = found["identify"], found["conversion"]
    (reset,), (pageview,) = found["reset"], found["pageview"]
    visitor = identify.anonymous_id
    assert visitor is not None
    assert uuid.UUID(visitor)  # the visitor id the browser minted
    # The queued identify ran first: the conversion after it carries the user.
    assert (identify.user_id, conversion.user_id) == ("u-42", "u-42")
    assert conversion.anonymous_id == visitor
    assert (conversion.value, conversion.order_id) == (10_000_000, "o-3")
    # The reset signs out the visitor it was sent for, and names no user.
    assert (reset.anonymous_id, reset.user_id) == (visitor, None)
    # After it, a new visitor without a user.
    assert pageview.user_id is None
    assert pageview.anonymous_id is not None
    assert pageview.anonymous_id != visitor
    assert uuid.UUID(pageview.anonymous_id)
    for event in events:
        assert event.url == url
        assert not event.bot
        # A beacon says sent_at (so keeps the device's time); a pixel goes at once.
        assert (event.device_ts is None) == (transport == "pixel")


def test_the_user_stays_for_the_session_and_a_reset_visitor_for_later_pages(
    settings: Settings, chromium: str, tmp_path: Path
) -> None:
    """Signed in on one page, a later page's conversion carries the user; after a reset,
    the next page's pageview comes from the new visitor (its cookie), without the user."""
    collector = f"http://127.0.0.1:{settings.collector_port}"

    def page(title: str, script: str, then: str | None) -> str:
        go = f'addEventListener("load", () => location.assign("{then}"));' if then else ""
        return f"""<!doctype html><title>{title}</title>
<script src="{collector}/t.js"{' data-auto="false"' if title == "buy" else ""}></script>
<script>{script} {go}</script>"""

    pages = {
        "/login.html": page("login", 'tracker.identify("u-7");', "/buy.html"),
        "/buy.html": page(
            "buy", 'tracker.conversion({order_id: "o-4"}); tracker.reset();', "/bye.html"
        ),
        "/bye.html": page("bye", "", None),
    }
    with tracker("collector", settings, f"{collector}/healthz"), site(pages) as port:
        url = f"http://localhost:{port}/login.html?{LANDING}"
        with browser(chromium, url, tmp_path) as log_path:
            events = events_until(
                settings, events_of("pageview", "identify", "conversion", "reset", "pageview")
            )
    found = by_type(events)
    assert len(found.get("pageview", [])) == 2, fail_with_log(log_path, events)
    (identify,), (conversion,), (reset,) = found["identify"], found["conversion"], found["reset"]
    (login,) = [e for e in found["pageview"] if e.url == url]
    (bye,) = [e for e in found["pageview"] if e.url == f"http://localhost:{port}/bye.html"]
    visitor = login.anonymous_id
    assert visitor is not None
    assert login.user_id is None  # the pageview on load came before the sign-in
    assert (identify.anonymous_id, identify.user_id) == (visitor, "u-7")
    assert conversion.url == f"http://localhost:{port}/buy.html"
    assert (conversion.anonymous_id, conversion.user_id) == (visitor, "u-7")
    assert conversion.campaign == "spring-sale"  # the landing's parameters stay too
    assert (reset.anonymous_id, reset.user_id) == (visitor, None)
    # The next page read the new visitor from its cookie; the user was forgotten.
    assert bye.anonymous_id is not None
    assert bye.anonymous_id != visitor
    assert bye.user_id is None
    assert (bye.campaign, bye.click_id) == ("spring-sale", "g-123")


# Consent: what the browser keeps and what its events say


GPC = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});"
"""Global Privacy Control as a browser that supports it shows it to the page."""
TCF_ADS_ONLY = "CO5VTlWO5VTlWH1AAAENAwCwAIAAAAAAAIAAAAoAAAAA.YAAAAAAAAAA"
"""A TCF v2 consent string that consents to purpose 1 only."""
DENIED = dict.fromkeys(SIGNALS, "denied")


def granting(*signals: str, gpc: bool = False, tcf: str | None = None) -> Consent:
    """The consent the collector resolves when exactly ``signals`` are granted."""
    return Consent(
        analytics_storage="analytics_storage" in signals,
        ad_storage="ad_storage" in signals,
        ad_user_data="ad_user_data" in signals,
        ad_personalization="ad_personalization" in signals,
        gpc=gpc,
        tcf=tcf,
    )


@contextmanager
def inspected(chromium: str, profile: Path, *, gpc: bool = False) -> Iterator[Tab]:
    """A page of a headless Chromium to drive and look into; with ``gpc``, one that sends
    Global Privacy Control (the ``Sec-GPC: 1`` header and the navigator's flag)."""
    with devtools(chromium, profile, f"--user-agent={USER_AGENT}", "--enable-logging=stderr") as b:
        tab = Tab(b)
        if gpc:
            tab.call("Page.addScriptToEvaluateOnNewDocument", source=GPC)
            tab.call("Network.setExtraHTTPHeaders", headers={"Sec-GPC": "1"})
        yield tab


def stored(tab: Tab) -> tuple[dict[str, str], str, str | None]:
    """What the browser keeps for the page's site: the cookies of the browser context for
    ``localhost`` (HttpOnly ones too), ``document.cookie`` and the snippet's sessionStorage."""
    cookies = tab.browser.call("Storage.getCookies")["cookies"]
    return (
        {c["name"]: c["value"] for c in cookies if c["domain"] == "localhost"},
        tab.evaluate("document.cookie"),
        tab.evaluate("sessionStorage.getItem('tracker')"),
    )


def beacons(tab: Tab, collector: str, count: int) -> list[dict[str, object]]:
    """The events the page sent by beacon, as it sent them, once there are ``count``."""

    def sent() -> list[dict[str, object]]:
        posts = [
            json.loads(e["request"]["postData"])["events"]
            for e in tab.events("Network.requestWillBeSent")
            if e["request"]["url"] == f"{collector}/v1/events"
        ]
        return [event for post in posts for event in post]

    return wait_for(lambda: found if len(found := sent()) >= count else None, what="beacons")


def consent_of(event: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in event.items() if k in FIELDS}


def arrived(settings: Settings, sent: list[dict[str, object]]) -> list[Event]:
    """The events in Kafka that ``sent`` (beacons' events) became, in the same order."""
    found = events_until(settings, lambda events: len(events) >= len(sent))
    by_id = {event.event_id: event for event in found}
    assert sorted(by_id) == sorted(str(e["event_id"]) for e in sent), found
    return [by_id[str(e["event_id"])] for e in sent]


def test_with_consent_required_nothing_is_stored_until_analytics_is_granted(
    settings: Settings, chromium: str, tmp_path: Path
) -> None:
    """data-consent="required": no cookie, no sessionStorage and no visitor id until the page
    grants analytics storage; the collector counts the visitor cookieless meanwhile."""
    collector = f"http://127.0.0.1:{settings.collector_port}"
    page = f"""<!doctype html><title>ask first</title>
<script src="{collector}/t.js" data-consent="required"></script>"""
    with (
        tracker("collector", settings, f"{collector}/healthz"),
        site({"/ask.html": page}) as port,
        inspected(chromium, tmp_path) as tab,
    ):
        tab.open(f"http://localhost:{port}/ask.html?{LANDING}")
        tab.evaluate("tracker.pageview()")
        beacons(tab, collector, 2)
        assert stored(tab) == ({}, "", None)
        tab.evaluate('tracker.consent({analytics_storage: "granted"}); tracker.pageview()')
        sent = beacons(tab, collector, 3)
        cookies, document_cookie, session = stored(tab)
        events = arrived(settings, sent)
    assert len(sent) == 3, fail_with_log(tmp_path / "chromium.log", events)
    visitor = cookies["tid"]
    assert document_cookie == f"tid={visitor}"
    assert session is not None
    assert json.loads(session)["landing"]["gclid"] == "g-123"  # kept in memory until then
    *denied, granted = sent
    for event in denied:
        assert consent_of(event) == DENIED
        assert "anonymous_id" not in event
        assert event["gclid"] == "g-123"
    assert consent_of(granted) == DENIED | {"analytics_storage": "granted"}
    assert granted["anonymous_id"] == visitor

    *cookieless, counted = events
    for arrival in cookieless:
        assert arrival.consent == granting()
        assert (arrival.anonymous_id or "").startswith("cl-")
        assert arrival.anonymous_id == cookieless[0].anonymous_id  # the same visitor today
        assert arrival.campaign == "spring-sale"
    assert counted.consent == granting("analytics_storage")
    assert counted.anonymous_id == visitor


def test_global_privacy_control_keeps_the_browser_free_of_cookies_whatever_the_consent(
    settings: Settings, chromium: str, tmp_path: Path
) -> None:
    """GPC, on a page that sets its cookie on load: none is set, even with analytics granted."""
    collector = f"http://127.0.0.1:{settings.collector_port}"
    page = f"""<!doctype html><title>gpc</title><script src="{collector}/t.js"></script>"""
    with (
        tracker("collector", settings, f"{collector}/healthz"),
        site({"/gpc.html": page}) as port,
        inspected(chromium, tmp_path, gpc=True) as tab,
    ):
        tab.open(f"http://localhost:{port}/gpc.html?{LANDING}")
        assert tab.evaluate("navigator.globalPrivacyControl") is True
        beacons(tab, collector, 1)
        assert stored(tab) == ({}, "", None)
        tab.evaluate('tracker.consent({analytics_storage: "granted"}); tracker.pageview()')
        sent = beacons(tab, collector, 2)
        assert stored(tab) == ({}, "", None)
        assert tab.browser.call("Storage.getCookies")["cookies"] == []  # nor the collector's
        events = arrived(settings, sent)
    assert [consent_of(event) for event in sent] == [{}, {"analytics_storage": "granted"}]
    assert not any("anonymous_id" in event for event in sent)
    # The collector read Sec-GPC: advertising denied, and no cookie, though analytics is not.
    for arrival in events:
        assert arrival.consent == granting("analytics_storage", gpc=True)
        assert (arrival.anonymous_id or "").startswith("cl-")


def test_analytics_denied_after_the_cookie_was_set_withdraws_it(
    settings: Settings, chromium: str, tmp_path: Path
) -> None:
    """Without data-consent the cookie is set on load, as before; a denial deletes it, and
    the session's storage, and the events stop naming the visitor."""
    collector = f"http://127.0.0.1:{settings.collector_port}"
    page = f"""<!doctype html><title>withdraw</title><script src="{collector}/t.js"></script>"""
    with (
        tracker("collector", settings, f"{collector}/healthz"),
        site({"/withdraw.html": page}) as port,
        inspected(chromium, tmp_path) as tab,
    ):
        tab.open(f"http://localhost:{port}/withdraw.html?{LANDING}")
        beacons(tab, collector, 1)
        cookies, document_cookie, session = stored(tab)
        tab.evaluate('tracker.consent({analytics_storage: "denied"}); tracker.pageview()')
        sent = beacons(tab, collector, 2)
        after = stored(tab)
        events = arrived(settings, sent)
    visitor = cookies["tid"]
    assert document_cookie == f"tid={visitor}"
    assert session is not None
    assert after == ({}, "", None)
    before, withdrawn = sent
    assert (consent_of(before), before["anonymous_id"]) == ({}, visitor)  # as before consent
    assert consent_of(withdrawn) == {"analytics_storage": "denied"}  # only what was stated
    assert "anonymous_id" not in withdrawn
    assert withdrawn["gclid"] == "g-123"  # the page's landing, still in memory
    assert (events[0].consent, events[0].anonymous_id) == (None, visitor)
    assert events[1].consent is not None
    assert not events[1].consent.analytics_storage
    assert (events[1].anonymous_id or "").startswith("cl-")


def test_a_consent_queued_before_load_holds_for_the_first_pageview(
    settings: Settings, chromium: str, tmp_path: Path
) -> None:
    """The consent platform spoke before t.js loaded: the automatic pageview already sets
    the cookie and carries the consent, TCF string included, and so do the queued calls."""
    collector = f"http://127.0.0.1:{settings.collector_port}"
    stated = f'{{analytics_storage: "granted", gdpr: 1, gdpr_consent: "{TCF_ADS_ONLY}"}}'
    page = f"""<!doctype html><title>stated first</title>
<script>
window.tracker = [["consent", {stated}], ["conversion", {{value: "5", order_id: "o-5"}}]];
</script>
<script src="{collector}/t.js" data-consent="required"></script>"""
    with (
        tracker("collector", settings, f"{collector}/healthz"),
        site({"/first.html": page}) as port,
        inspected(chromium, tmp_path) as tab,
    ):
        tab.open(f"http://localhost:{port}/first.html?{LANDING}")
        sent = beacons(tab, collector, 2)
        cookies, _, session = stored(tab)
        events = arrived(settings, sent)
    visitor = cookies["tid"]
    assert session is not None
    assert [event["type"] for event in sent] == ["pageview", "conversion"]
    for event in sent:
        # The TC string speaks for the signals the page did not state: not the defaults.
        assert consent_of(event) == {
            "analytics_storage": "granted",
            "gdpr": 1,
            "gdpr_consent": TCF_ADS_ONLY,
        }
        assert event["anonymous_id"] == visitor
    # What the page stated in Consent Mode wins over the TC string (purpose 1 alone would
    # deny analytics); the string grants ad storage.
    expected = granting("analytics_storage", "ad_storage", tcf=TCF_ADS_ONLY)
    for arrival in events:
        assert (arrival.consent, arrival.anonymous_id) == (expected, visitor)
    assert events[1].order_id == "o-5"
