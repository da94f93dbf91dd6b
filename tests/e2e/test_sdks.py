"""The SDKs sites run, installed from their registries, through the whole pipeline.

analytics-python, rudder-sdk-python and snowplow-tracker (PyPI) run in this process;
@segment/analytics-node and @snowplow/node-tracker (npm) run in node; Snowplow's browser
tracker, bundled from npm with its e-commerce plugin, runs in headless Chromium on a
page of another origin than the collector's. One pipeline (worker, collector, serve)
serves the module. Each SDK plays the same :class:`Story` under campaign names of its
own, on a clock hours off; once every story is sent, one wait for the worker to catch
up, then each SDK's campaigns in ``/v1/kpis`` must equal the figures the story implies,
exactly: conversions, revenue in micro-units, users, and nothing else.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from string import Template
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from snowplow_tracker.emitters import Emitter
from snowplow_tracker.events.event import Event as SnowplowEvent
from snowplow_tracker.events.page_view import PageView
from snowplow_tracker.events.self_describing import SelfDescribing
from snowplow_tracker.events.structured_event import StructuredEvent
from snowplow_tracker.self_describing_json import SelfDescribingJson
from snowplow_tracker.subject import Subject
from snowplow_tracker.tracker import Tracker

from harness.isolation import isolated_settings
from harness.processes import http_get, running, wait_for
from tests.e2e import chromium
from tests.e2e.clients import CLIENTS, node_modules, run_node
from tests.e2e.test_snippet import browser, site
from tests.kafka import caught_up
from tests.sdks import segment_client, skew_clock
from tracker.settings import Settings

pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
"""Campaign names, ids and orders carry it: unique per run, so a rerun on the same Redis
cannot lend this one its figures."""
KEY = f"wk_sdks_{RUN}"  # made up per run
SIGNUP = "Signed Up"
CONVERSION_EVENTS = f"{SIGNUP}=signup"
SHOP = "https://shop.example"
CHECKOUT = f"{SHOP}/checkout"
CURRENCY = "USD"  # the base currency: no rate stands between an amount and its revenue

ORDER_A = Decimal("120.49")
"""Visitor A's order, after landing from the spring campaign."""
REFUNDED = Decimal("30.25")
"""A's second order, refunded."""
ORDER_U = Decimal("80.10")
"""User U's order, placed from the shop's server: B's, once B signed in as U."""
SIGNUP_VALUE = Decimal("5")
"""A's sign-up (a conversion named in TRACKER_CONVERSION_EVENTS), sent twice."""

SNOWPLOW_CLOCKS = [
    importlib.import_module("snowplow_tracker.tracker"),  # dtm, when an event is made
    importlib.import_module("snowplow_tracker.emitters"),  # stm, when it is sent
]
SKEWS = {
    "analytics-python": timedelta(hours=5, minutes=7),
    "rudder-sdk-python": -timedelta(hours=4, minutes=31),
    "snowplow-tracker": timedelta(hours=6, minutes=2),
    "analytics-node": -timedelta(hours=3, minutes=13),
    "snowplow-node-tracker": timedelta(hours=5, minutes=44),
    "snowplow-browser-tracker": timedelta(hours=4, minutes=19),
}
"""How far each SDK's clock is off: both ways, and never a whole number of hours, so an
uncorrected event would land in another hour bucket."""
SDKS = tuple(SKEWS)
SEGMENT_SDKS = ("analytics-python", "rudder-sdk-python", "analytics-node")

ECOMMERCE = "iglu:com.snowplowanalytics.snowplow.ecommerce"
ACTION = f"{ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2"
TRANSACTION = f"{ECOMMERCE}/transaction/jsonschema/1-0-0"
REFUND = f"{ECOMMERCE}/refund/jsonschema/1-0-0"
COUNTS = ("conversions", "impressions", "clicks", "users", "bots")
MONEY = ("revenue", "spend")


@dataclass(frozen=True, slots=True)
class Story:
    """What one SDK sends, under names of its own.

    Visitor A lands from the spring campaign (google cpc) and, on the checkout page
    without any campaign, orders (:data:`ORDER_A`), signs up (sent twice, as a retry
    of a request whose answer was lost sends it), orders again and has that second
    order refunded. Visitor B lands from the autumn campaign (an email), signs in as
    user U, and U's order comes from the shop's server (Snowplow's browser and Node
    trackers: from B's own tracker, carrying both ids). All of it on a clock
    :attr:`skew` off.
    """

    sdk: str
    skew: timedelta

    @property
    def tag(self) -> str:
        return f"{self.sdk}-{RUN}"

    @property
    def spring(self) -> str:
        return f"{self.tag}-spring"

    @property
    def autumn(self) -> str:
        return f"{self.tag}-autumn"

    @property
    def visitor_a(self) -> str:
        return f"a-{self.tag}"

    @property
    def visitor_b(self) -> str:
        return f"b-{self.tag}"

    @property
    def user(self) -> str:
        return f"u-{self.tag}"

    @property
    def spring_query(self) -> str:
        return urllib.parse.urlencode(
            {"utm_campaign": self.spring, "utm_source": "google", "utm_medium": "cpc"}
        )

    @property
    def autumn_query(self) -> str:
        return urllib.parse.urlencode(
            {"utm_campaign": self.autumn, "utm_source": "newsletter", "utm_medium": "email"}
        )

    @property
    def landing_a(self) -> str:
        return f"{SHOP}/spring?{self.spring_query}"

    @property
    def landing_b(self) -> str:
        return f"{SHOP}/autumn?{self.autumn_query}"

    def order(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def wire(self) -> dict[str, Any]:
        """The story as the Node and browser scripts read it (JSON)."""

        def order(name: str, amount: Decimal) -> dict[str, Any]:
            # A number, as sites pass amounts to the SDKs.
            return {"id": self.order(name), "amount": float(amount), "currency": CURRENCY}

        return {
            "visitor_a": self.visitor_a,
            "visitor_b": self.visitor_b,
            "user": self.user,
            "landing_a": self.landing_a,
            "landing_b": self.landing_b,
            "checkout": CHECKOUT,
            "order_a": order("A1", ORDER_A),
            "refunded": order("A2", REFUNDED),
            "order_u": order("U1", ORDER_U),
            "signup": {"action": SIGNUP, "amount": float(SIGNUP_VALUE)},
        }

    def expected(self) -> dict[str, dict[str, int]]:
        """Each campaign's figures by last click, from the story's inputs alone."""
        nothing = {"impressions": 0, "clicks": 0, "spend": 0, "bots": 0}
        return {
            # A's first order, the sign-up (once) and the second order, which its
            # refund takes back out again.
            self.spring: nothing
            | {
                "conversions": 1 + 1 + 1 - 1,
                "revenue": micros(ORDER_A + SIGNUP_VALUE + REFUNDED - REFUNDED),
                "users": 1,  # A's landing page view
            },
            # U's order, credited to the campaign B landed from once B signed in as U.
            self.autumn: nothing | {"conversions": 1, "revenue": micros(ORDER_U), "users": 1},
        }


def micros(amount: Decimal | int) -> int:
    """An amount in micro-units, exactly (never rounded)."""
    scaled = Decimal(amount) * 1_000_000
    assert scaled == scaled.to_integral_value(), f"{amount} is finer than a micro-unit"
    return int(scaled)


# The pipeline and what it shows


@dataclass(slots=True)
class Played:
    """An SDK's story as it went: its times (epoch ms), the Segment tracks the collector
    acknowledged without counting them meanwhile, and how it failed, if it did."""

    story: Story
    started: int
    ended: int
    uncounted_tracks: float
    failure: BaseException | None


@dataclass(frozen=True, slots=True)
class Pipeline:
    settings: Settings
    played: dict[str, Played]


@pytest.fixture(scope="module")
def pipeline(
    servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """Worker, collector and serve; every SDK's story sent, then the worker caught up.

    A story that fails (or skips: no node, no Chromium) is kept with its SDK, to be
    raised by that SDK's test alone.
    """
    settings = dataclasses.replace(
        isolated_settings(servers, "sdks"),
        write_keys=KEY,
        conversion_events=CONVERSION_EVENTS,
        timezone="UTC",  # the hours of the buckets this module computes
    )
    with running(settings, "worker", "collector", "serve"):
        played: dict[str, Played] = {}
        for sdk, skew in SKEWS.items():
            story = Story(sdk, skew)
            started, uncounted = now_ms(), uncounted_tracks(settings)
            failure: BaseException | None = None
            try:
                PLAYERS[sdk](story, settings, tmp_path_factory.mktemp(sdk))
            except (Exception, pytest.skip.Exception) as exc:
                failure = exc
            uncounted = uncounted_tracks(settings) - uncounted
            played[sdk] = Played(story, started, now_ms(), uncounted, failure)
        wait_for(
            lambda: caught_up(settings.kafka_bootstrap, settings.app_id, settings.events_topic),
            timeout=60,
            what="the worker caught up with every SDK's events",
        )
        yield Pipeline(settings, played)


def now_ms() -> int:
    return int(time.time() * 1000)


def kpis(settings: Settings, window: str) -> list[dict[str, Any]]:
    """The campaign rows of /v1/kpis by last click; numbers read as exact decimals."""
    query = urllib.parse.urlencode(
        {"dimension": "campaign", "window": window, "model": "last_click"}
    )
    status, body = http_get(f"http://127.0.0.1:{settings.exporter_port}/v1/kpis?{query}")
    assert status == 200, body
    rows: list[dict[str, Any]] = json.loads(body, parse_float=Decimal)["rows"]
    return rows


def figures(rows: list[dict[str, Any]], campaigns: set[str]) -> dict[str, dict[str, int]]:
    """Per campaign of ``campaigns``, its rows summed over buckets; money in micro-units."""
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["value"] in campaigns:
            sums = found.setdefault(row["value"], dict.fromkeys(COUNTS + MONEY, 0))
            for name in COUNTS:
                sums[name] += row[name]
            for name in MONEY:
                sums[name] += micros(row[name])
    return found


def collector_metric(settings: Settings, name: str, **labels: str) -> float:
    """A sample of the collector's /metrics; 0 before it has one."""
    status, body = http_get(f"http://127.0.0.1:{settings.collector_port}/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return 0.0


def uncounted_tracks(settings: Settings) -> float:
    return collector_metric(
        settings, "tracker_collector_uncounted_total", endpoint="segment", kind="track"
    )


def collector_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.collector_port}"


# Segment's API: analytics-python, rudder-sdk-python, @segment/analytics-node


def segment_calls(story: Story) -> list[tuple[str, dict[str, Any]]]:
    """The story as Segment calls, in the Python SDKs' parameter names.

    A page call's URL is its ``properties.url``, as analytics.js sends it; amounts are
    numbers, as sites pass them. A ``Product Viewed`` is no conversion: acknowledged,
    never counted.
    """
    a, b, user = story.visitor_a, story.visitor_b, story.user

    def order(who: dict[str, Any], name: str, amount: Decimal) -> tuple[str, dict[str, Any]]:
        properties = {"order_id": story.order(name), "revenue": float(amount), "currency": CURRENCY}
        return ("track", who | {"event": "Order Completed", "properties": properties})

    def page(who: str, name: str, url: str) -> tuple[str, dict[str, Any]]:
        return ("page", {"anonymous_id": who, "name": name, "properties": {"url": url}})

    signup = {
        "anonymous_id": a,
        "event": SIGNUP,
        "properties": {"value": float(SIGNUP_VALUE)},
        "message_id": f"signup-{story.tag}",
    }
    checkout: dict[str, Any] = {"anonymous_id": a, "context": {"page": {"url": CHECKOUT}}}
    refund = {"event": "Order Refunded", "properties": {"order_id": story.order("A2")}}
    return [
        page(a, "Spring sale", story.landing_a),
        ("track", {"anonymous_id": a, "event": "Product Viewed", "properties": {"sku": "SKU-1"}}),
        order(checkout, "A1", ORDER_A),
        ("track", signup),
        ("track", signup),  # the same message again
        order(checkout, "A2", REFUNDED),
        ("track", checkout | refund),
        page(b, "Autumn sale", story.landing_b),
        ("identify", {"anonymous_id": b, "user_id": user, "traits": {"plan": "pro"}}),
        order({"user_id": user}, "U1", ORDER_U),  # the server knows the user only
    ]


def play_segment_python(story: Story, settings: Settings) -> None:
    """analytics-python in its synchronous mode (each call a request, raising on any
    status but 2xx); RudderStack's as it runs by default: batched by a background
    thread, gzipped, errors reported to ``on_error``."""
    sdk, host = story.sdk, collector_url(settings)
    with pytest.MonkeyPatch.context() as patch:
        skew_clock(patch, sdk, story.skew)
        with segment_client(sdk, host, KEY) as client:
            for call, params in segment_calls(story):
                success, _ = getattr(client, call)(**params)
                assert success, (call, params)


NODE_NAMES = {"anonymous_id": "anonymousId", "user_id": "userId", "message_id": "messageId"}


def play_segment_node(story: Story, settings: Settings) -> None:
    calls = [
        {"call": call, "params": {NODE_NAMES.get(k, k): v for k, v in params.items()}}
        for call, params in segment_calls(story)
    ]
    offset = str(round(story.skew / timedelta(milliseconds=1)))
    port = str(settings.collector_port)
    out = run_node(CLIENTS / "segment-node.cjs", port, offset, KEY, json.dumps(calls))
    assert json.loads(out) == {"delivered": len(calls)}


# Snowplow's tracker protocol: snowplow-tracker, @snowplow/node-tracker, the browser tracker


class SkewedTime:
    """The ``time`` module of a machine whose clock is ``skew`` off."""

    def __init__(self, skew: timedelta) -> None:
        self._skew_s = skew.total_seconds()

    def time(self) -> float:
        return time.time() + self._skew_s

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def play_snowplow_python(story: Story, settings: Settings) -> None:
    """B signs in on a page view carrying both ids; U's order comes from the server,
    with the user id only. The sign-up goes twice, the second time in a request of
    its own, as a retry goes."""
    failures: list[Any] = []
    emitter = Emitter(
        "127.0.0.1",
        protocol="http",
        port=settings.collector_port,
        method="post",
        batch_size=100,  # sent by flush()
        on_failure=lambda sent, unsent: failures.append(unsent),
    )
    tracker = Tracker("sdks", emitter, app_id="shop")
    a = Subject().set_domain_user_id(story.visitor_a)
    b = Subject().set_domain_user_id(story.visitor_b)
    signed_in = Subject().set_domain_user_id(story.visitor_b).set_user_id(story.user)
    server = Subject().set_user_id(story.user)

    def transaction(who: Subject, name: str, amount: Decimal) -> SnowplowEvent:
        entity = {
            "transaction_id": story.order(name),
            "revenue": float(amount),
            "currency": CURRENCY,
            "payment_method": "card",
        }
        return SelfDescribing(
            SelfDescribingJson(ACTION, {"type": "transaction"}),
            event_subject=who,
            context=[SelfDescribingJson(TRANSACTION, entity)],
        )

    refund = {
        "transaction_id": story.order("A2"),
        "currency": CURRENCY,
        "refund_amount": float(REFUNDED),
    }
    with pytest.MonkeyPatch.context() as patch:
        for module in SNOWPLOW_CLOCKS:
            patch.setattr(module, "time", SkewedTime(story.skew))
        tracker.track(PageView(story.landing_a, "Spring sale", event_subject=a))
        tracker.track(PageView(CHECKOUT, "Checkout", referrer=story.landing_a, event_subject=a))
        tracker.track(transaction(a, "A1", ORDER_A))
        signup = StructuredEvent("account", SIGNUP, value=float(SIGNUP_VALUE), event_subject=a)
        payload = tracker.complete_payload(signup).nv_pairs
        for _ in range(2):
            emitter.input(dict(payload))
            emitter.flush()
        tracker.track(transaction(a, "A2", REFUNDED))
        tracker.track(
            SelfDescribing(
                SelfDescribingJson(ACTION, {"type": "refund"}),
                event_subject=a,
                context=[SelfDescribingJson(REFUND, refund)],
            )
        )
        tracker.track(PageView(story.landing_b, "Autumn sale", event_subject=b))
        tracker.track(PageView(f"{SHOP}/account", "Signed in", event_subject=signed_in))
        tracker.track(transaction(server, "U1", ORDER_U))
        emitter.flush()
    assert failures == []


def play_snowplow_node(story: Story, settings: Settings) -> None:
    offset = str(round(story.skew / timedelta(milliseconds=1)))
    out = run_node(
        CLIENTS / "snowplow-node-scenario.cjs",
        str(settings.collector_port),
        offset,
        json.dumps(story.wire()),
    )
    assert json.loads(out) == {"events": 9}  # A's 7, the sign-up's repeat included; B's 2


BROWSER_EVENTS = 10
"""Events the browser's pages send: A's landing view; on checkout a view, two orders, the
sign-up twice and a refund; B's landing view; signed in, a view and an order."""

PAGE = Template("""<!doctype html><title>$title</title>
<script>
// The device's clock, $skew_ms ms off, before the tracker loads.
const skew = $skew_ms;
const RealDate = Date;
window.Date = class extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + skew); else super(...args);
  }
  static now() { return RealDate.now() + skew; }
};
</script>
<script src="/sp.js"></script>
<script>
const story = $story;
const sp = window.snowplow;
// This page's visitor: a tracker whose first-party cookie (cookieName) keeps its
// domain user id from page to page. `then` runs once the collector has acknowledged
// `expected` events (a retried request may acknowledge some twice), so that leaving
// the page loses none.
function visitor(cookieName, expected, then) {
  let acknowledged = 0, pinned = null, last = null;
  sp.newTracker('sp', story.collector, {
    appId: 'shop',
    eventMethod: 'post',
    cookieName: cookieName,
    plugins: [
      sp.SnowplowEcommercePlugin(),
      // A retry of a request whose answer was lost carries the same eid again.
      {
        beforeTrack: (payload) => { if (pinned) payload.add('eid', pinned); },
        afterTrack: (payload) => { last = payload.eid; },
      },
    ],
    onRequestSuccess: (batch) => {
      const before = acknowledged;
      acknowledged += batch.length;
      if (before < expected && acknowledged >= expected) then();
    },
    onRequestFailure: (failure) => console.error('refused: ' + JSON.stringify(failure)),
  });
  return { twice: (track) => { track(); pinned = last; track(); pinned = null; } };
}
const transaction = (order) => sp.trackTransaction({
  transaction_id: order.id, revenue: order.amount, currency: order.currency,
  payment_method: 'card',
});
$script
</script>""")
SPRING_JS = """
visitor('_sp_', 1, () => location.assign('/checkout.html'));
sp.trackPageView();
"""
CHECKOUT_JS = """
const page = visitor('_sp_', 6, () => location.assign(story.landing_b));
sp.trackPageView();
transaction(story.order_a);
page.twice(() => sp.trackStructEvent({
  category: 'account', action: story.signup.action, value: story.signup.amount,
}));
transaction(story.refunded);
sp.trackRefund({
  transaction_id: story.refunded.id, currency: story.refunded.currency,
  refund_amount: story.refunded.amount,
});
"""
AUTUMN_JS = """
// Visitor B: another first-party cookie, so another domain user id in this browser.
visitor('_spb_', 1, () => location.assign('/account.html'));
sp.trackPageView();
"""
ACCOUNT_JS = """
// B signed in: the user id goes with B's domain user id, on a page of no campaign (an
// order on the landing page would name the campaign itself).
visitor('_spb_', 2, () => { document.title = 'done'; });
sp.setUserId(story.user);
sp.trackPageView();
transaction(story.order_u);
"""


def play_browser(story: Story, settings: Settings, workdir: Path) -> None:
    """The pages on ``localhost``, the collector on ``127.0.0.1``: another origin, so the
    tracker's JSON posts go after a CORS preflight, as on a real site."""
    executable = chromium.executable()  # skips without Chromium
    bundle = workdir / "sp.js"
    subprocess.run(
        [
            str(node_modules() / ".bin/esbuild"),
            "browser-entry.js",
            "--bundle",
            "--format=iife",
            f"--outfile={bundle}",
            "--log-level=warning",
        ],
        cwd=CLIENTS,
        check=True,
        capture_output=True,
        timeout=60,
    )
    wire = story.wire() | {
        "collector": collector_url(settings),
        "landing_b": f"/autumn.html?{story.autumn_query}",
    }
    skew_ms = round(story.skew / timedelta(milliseconds=1))

    def page(title: str, script: str) -> str:
        return PAGE.substitute(title=title, skew_ms=skew_ms, story=json.dumps(wire), script=script)

    pages = {
        "/sp.js": bundle.read_text(),
        "/spring.html": page("Spring sale", SPRING_JS),
        "/checkout.html": page("Checkout", CHECKOUT_JS),
        "/autumn.html": page("Autumn sale", AUTUMN_JS),
        "/account.html": page("Your account", ACCOUNT_JS),
    }

    def accepted() -> float:
        return collector_metric(
            settings, "tracker_collector_events_total", endpoint="snowplow", outcome="accepted"
        )

    before = accepted()
    profile = workdir / "profile"
    profile.mkdir()
    with site(pages) as port:
        url = f"http://localhost:{port}/spring.html?{story.spring_query}"
        with browser(executable, url, profile) as log:
            try:
                wait_for(
                    lambda: accepted() - before >= BROWSER_EVENTS,
                    timeout=60,
                    what="the browser's events accepted by the collector",
                )
            except TimeoutError as exc:
                console = [line for line in log.read_text().splitlines() if "CONSOLE" in line]
                raise AssertionError("\n".join(console[-30:])) from exc


Player = Callable[[Story, Settings, Path], None]
"""Sends an SDK's story to the collector of ``settings``, with a directory of its own."""


def with_no_workdir(play: Callable[[Story, Settings], None]) -> Player:
    return lambda story, settings, _: play(story, settings)


PLAYERS: dict[str, Player] = {
    "analytics-python": with_no_workdir(play_segment_python),
    "rudder-sdk-python": with_no_workdir(play_segment_python),
    "snowplow-tracker": with_no_workdir(play_snowplow_python),
    "analytics-node": with_no_workdir(play_segment_node),
    "snowplow-node-tracker": with_no_workdir(play_snowplow_node),
    "snowplow-browser-tracker": play_browser,
}


# The checks


@pytest.mark.parametrize("sdk", SDKS)
def test_an_sdk_s_story_comes_out_exact_in_kpis(pipeline: Pipeline, sdk: str) -> None:
    played = pipeline.played[sdk]
    if played.failure is not None:
        raise played.failure
    story = played.story
    campaigns = {story.spring, story.autumn}

    assert figures(kpis(pipeline.settings, "1d"), campaigns) == story.expected()

    # The clock hours off: every figure in the hours the story was sent in, none
    # hours away (an uncorrected clock would put them in another hour, or the future).
    hourly = [row for row in kpis(pipeline.settings, "1h") if row["value"] in campaigns]
    hours = {hour_of(played.started), hour_of(played.ended)}
    assert {hour_of(bucket_ms(row["bucket"])) for row in hourly} <= hours, hourly
    assert figures(hourly, campaigns) == story.expected()

    # Segment's SDKs saw the unmapped "Product Viewed" acknowledged (they raise or
    # report otherwise); the collector counted it apart, in no KPI (above).
    assert played.uncounted_tracks == (1 if sdk in SEGMENT_SDKS else 0)


def hour_of(ms: int) -> int:
    return ms - ms % 3_600_000


def bucket_ms(bucket: str) -> int:
    return int(datetime.fromisoformat(bucket).astimezone(UTC).timestamp() * 1000)
