"""The token buckets of collector.limits, on a clock the tests move by hand."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from collector.app import Collector, admitting
from collector.limits import NS, Limiter, Limits, address_key, limiter, retry_after_s
from collector.pixel import GIF, Pixel
from collector.snowplow import POST_PATH as TP2
from tracker import asgi
from tracker.asgi import Response
from tracker.settings import Settings, SettingsError, load

MS = NS // 1000


class Clock:
    """Monotonic nanoseconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1_000 * NS  # not 0: a real monotonic clock is far from it

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * NS)


def admitted(bucket: Limiter, key: str, times: int) -> int:
    """How many of ``times`` requests at this instant are admitted."""
    return sum(bucket.wait(key) == 0 for _ in range(times))


def test_a_burst_is_exactly_burst_requests() -> None:
    clock = Clock()
    # 0.1 s an interval: with float arithmetic, the tenth would be refused.
    bucket = Limiter(10, 10, clock)
    assert admitted(bucket, "a", 25) == 10


def test_spent_it_refills_at_the_rate_one_request_an_interval() -> None:
    clock = Clock()
    bucket = Limiter(2, 4, clock)  # one every 0.5 s, four at once
    assert admitted(bucket, "a", 4) == 4
    clock.advance(0.49)
    assert bucket.wait("a") > 0
    clock.advance(0.01)
    assert admitted(bucket, "a", 3) == 1
    clock.advance(1.0)
    assert admitted(bucket, "a", 3) == 2


def test_a_quiet_spell_refills_no_more_than_the_burst() -> None:
    clock = Clock()
    bucket = Limiter(1, 3, clock)
    assert admitted(bucket, "a", 3) == 3
    clock.advance(3600)
    assert admitted(bucket, "a", 10) == 3


def test_a_steady_sender_at_the_rate_is_never_refused() -> None:
    clock = Clock()
    bucket = Limiter(100, 1, clock)  # no burst at all: 10 ms apart
    for _ in range(1000):
        assert bucket.wait("a") == 0
        clock.advance(0.01)


def test_refusals_do_not_spend_the_budget() -> None:
    clock = Clock()
    bucket = Limiter(1, 2, clock)
    assert admitted(bucket, "a", 2) == 2
    assert admitted(bucket, "a", 1000) == 0  # hammering while refused
    clock.advance(1)
    assert bucket.wait("a") == 0  # the next token came on time all the same


def test_the_wait_is_until_the_next_request_would_be_admitted() -> None:
    clock = Clock()
    bucket = Limiter(0.25, 2, clock)  # one every 4 s
    assert admitted(bucket, "a", 2) == 2
    clock.advance(1.5)
    wait = bucket.wait("a")
    assert wait == round(2.5 * NS)
    assert retry_after_s(wait) == 3
    clock.advance(2.5)
    assert bucket.wait("a") == 0


@pytest.mark.parametrize(
    ("wait_ns", "seconds"),
    [(1, 1), (MS, 1), (NS - 1, 1), (NS, 1), (NS + 1, 2), (59 * NS + 1, 60)],
)
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(wait_ns: int, seconds: int) -> None:
    assert retry_after_s(wait_ns) == seconds


def test_keys_have_budgets_of_their_own() -> None:
    clock = Clock()
    bucket = Limiter(1, 2, clock)
    assert admitted(bucket, "a", 5) == 2
    assert admitted(bucket, "b", 5) == 2


def test_memory_is_bounded_under_a_flood_of_new_senders() -> None:
    clock = Clock()
    bucket = Limiter(1, 5, clock, max_keys=100)
    for n in range(10_000):
        bucket.wait(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
        assert bucket.remembered <= 100
        clock.advance(0.0001)


def test_full_buckets_are_forgotten_first() -> None:
    clock = Clock()
    bucket = Limiter(1, 3, clock, max_keys=4)
    assert admitted(bucket, "busy", 3) == 3  # spent: ahead of the clock for 3 s
    for key in ("idle1", "idle2", "idle3"):
        bucket.wait(key)  # ahead by one interval each
    clock.advance(1.5)  # the idle ones are full again; busy is not
    bucket.wait("new")  # the table is full: a sweep
    assert bucket.remembered == 2  # busy and new
    assert admitted(bucket, "busy", 3) == 1  # still remembered as half spent, not fresh


def test_past_half_the_table_busy_the_oldest_are_forgotten() -> None:
    clock = Clock()
    bucket = Limiter(1, 1, clock, max_keys=10)
    for n in range(10):
        assert bucket.wait(f"k{n}") == 0  # each busy for a second
    assert bucket.wait("k10") == 0  # the table is full, every bucket busy: a sweep
    assert bucket.remembered == 6  # half the table, and k10
    assert bucket.wait("k5") > 0  # the newer half kept, still spent
    assert bucket.wait("k4") == 0  # the older half forgotten: a fresh budget


def test_a_limit_of_zero_is_off_and_the_burst_is_at_least_one() -> None:
    assert limiter(0, 10) is None
    fast = limiter(50, 10)
    assert fast is not None
    assert fast.burst == 500
    slow = limiter(0.01, 10)  # 0.1 requests of burst: still one
    assert slow is not None
    assert slow.burst == 1


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0.5)])
def test_a_limiter_refuses_a_rate_or_burst_it_cannot_keep(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="a limit needs"):
        Limiter(rate, burst)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "20010db800010002::/64"),
        ("2001:db8:1:2:bbbb:cccc:dddd:eeee", "20010db800010002::/64"),  # the same /64
        ("2001:db8:1:3::1", "20010db800010003::/64"),
        ("::ffff:198.51.100.9", "198.51.100.9"),  # IPv4 on a dual-stack socket
        ("fe80::1%eth0", "fe80::1%eth0"),  # a zone index: as it is
    ],
)
def test_the_address_key(address: str, key: str) -> None:
    assert address_key(address) == key


def test_the_settings_say_which_limits_are_on() -> None:
    defaults = Limits(Settings())
    assert defaults.address is None  # behind a proxy, any address limit caps the whole site
    assert defaults.write_key is None
    assert defaults.partner is not None
    assert defaults.partner.rate == 100
    assert defaults.partner.burst == 1000
    on = Limits(Settings(rate_limit=200, rate_burst_s=2, write_key_rate_limit=50))
    assert on.address is not None
    assert on.write_key is not None
    assert (on.address.burst, on.write_key.burst) == (400, 100)


def test_a_request_is_charged_to_its_own_limit_else_to_its_address() -> None:
    clock = Clock()
    settings = Settings(rate_limit=1, postback_rate_limit=1, write_key_rate_limit=1, rate_burst_s=2)
    limits = Limits(settings, clock)
    assert [limits.wait("10.0.0.1", partner="net1")[0] == 0 for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert limits.wait("10.0.0.1", partner="net1")[1] == "partner"
    # The address's own budget is untouched by the partner's postbacks.
    assert [limits.wait("10.0.0.1")[0] == 0 for _ in range(3)] == [True, True, False]
    assert limits.wait("10.0.0.1")[1] == "address"
    assert limits.wait("10.0.0.1", write_key="k")[0] == 0  # a key's budget, from the same address
    assert limits.wait(None) == (0, "")  # no address (a Unix socket): nothing to charge


def test_an_own_limit_that_is_off_leaves_the_request_to_its_address() -> None:
    clock = Clock()
    limits = Limits(Settings(rate_limit=1, postback_rate_limit=0, rate_burst_s=1), clock)
    assert limits.wait("10.0.0.1", partner="net1") == (0, "address")
    wait, whose = limits.wait("10.0.0.1", partner="net1")
    assert (wait > 0, whose) == (True, "address")


@pytest.mark.parametrize(
    "variable",
    [
        "TRACKER_RATE_LIMIT",
        "TRACKER_RATE_BURST_S",
        "TRACKER_POSTBACK_RATE_LIMIT",
        "TRACKER_WRITE_KEY_RATE_LIMIT",
    ],
)
def test_a_negative_limit_names_its_setting(variable: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable}: must be at least 0"):
        load(None, {variable: "-1"})


# --- where the collector's routes are admitted -------------------------------------


def answer(app: asgi.App, method: str, path: str, client: str = "10.0.0.1") -> Response:
    """What ``app`` answers, dispatched as the ASGI server would, without a socket."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"type=impression",
        "headers": [],
        "client": (client, 40000),
    }
    sent: list[asgi.Message] = []

    async def receive() -> asgi.Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: asgi.Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, body = sent
    return Response(body["body"], start["status"], headers=list(start["headers"]))


def spent(collector: Collector, client: str) -> None:
    """Spend ``client``'s whole burst, without a request (an admitted one would need Kafka)."""
    address = collector.intake.limits.address
    assert address is not None
    while address.wait(client) == 0:
        pass


def test_with_the_address_limit_off_the_routes_are_the_adapters_own() -> None:
    collector = Collector(Settings())
    hit = Pixel(collector.intake).hit
    assert admitting(collector.intake, "pixel", hit) is hit  # nothing on the pixel's path


def test_a_spent_address_gets_the_gif_on_a_pixel_and_json_elsewhere() -> None:
    collector = Collector(Settings(rate_limit=1, rate_burst_s=3))
    app = collector.app()
    spent(collector, "10.0.0.1")
    for path in ("/p.gif", "/i"):
        refused = answer(app, "GET", path)
        headers = dict(refused.headers)
        assert (refused.status, headers[b"content-type"], refused.body) == (429, b"image/gif", GIF)
        assert headers[b"retry-after"] == b"1"
        assert headers[b"cache-control"].startswith(b"no-cache")
    for method, path in (("POST", "/v1/events"), ("GET", "/r"), ("POST", TP2)):
        refused = answer(app, method, path)
        assert refused.status == 429
        assert dict(refused.headers)[b"content-type"] == b"application/json"
        assert orjson.loads(refused.body)["error"].startswith("too many requests from this address")
    counted = {e: collector.metrics.rate_limited[e].value for e in ("pixel", "snowplow", "batch")}
    assert counted == {"pixel": 1, "snowplow": 2, "batch": 1}


def test_operations_and_preflights_are_never_limited() -> None:
    collector = Collector(Settings(rate_limit=1, rate_burst_s=1))
    app = collector.app()
    spent(collector, "10.0.0.1")
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/t.js"),
        ("GET", "/openapi.yaml"),
        ("OPTIONS", "/i"),
        ("OPTIONS", TP2),
    ]:
        assert answer(app, method, path).status == 200, path
    assert answer(app, "GET", "/readyz").status == 503  # not started: not ready, not limited
