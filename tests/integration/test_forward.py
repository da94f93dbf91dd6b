"""``tracker forward`` on the real pipeline: collector -> Kafka -> forwarder -> the platforms.

The collector and the forwarder run as processes, on the real Kafka and Redis; the ad
platforms are the local stand-in of tests/platforms.py, which answers as their
documentation says (errors included) and records what it took. Conversions go in
through the collector's batch API, with the fields a shop's server sends.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator

import orjson
import pytest

from harness.processes import (
    command,
    command_output,
    health_url,
    http_get,
    tracker,
    wait_for,
)
from tests.kafka import records
from tests.platforms import (
    AGENT,
    PLATFORMS,
    TOKENS,
    URL,
    Platform,
    Platforms,
    collect,
    forwarded,
    forwarder_url,
    metric,
    purchase,
)
from tracker.forward import dead
from tracker.settings import Settings

pytestmark = pytest.mark.services


@pytest.fixture
def stand_in() -> Iterator[Platforms]:
    with Platforms() as running:
        yield running


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def letters(settings: Settings, platform: Platform) -> list[dead.DeadLetter]:
    found = records(settings.kafka_bootstrap, dead.topic(settings, platform))
    return [dead.decode(value) for _, _, value in found]


def replay(settings: Settings, *flags: str) -> str:
    return command_output(settings, "replay-forwarding", *flags)


def test_conversions_reach_each_platform_as_documented(
    settings: Settings, stand_in: Platforms
) -> None:
    settings = stand_in.settings(settings)
    email, phone = " Jane.Doe@Example.com ", "+44 20 7946 0958"
    events = [
        purchase("o-1", email=email, phone=phone, gclid="G-1", currency="USD"),
        purchase("o-2", goal="lead", value=None, fbclid="F-2", email=email),
        purchase("o-3", tclid="T-3", email=email, ad_user_data="denied"),
        purchase("o-1", status="refund", value=None),
        {"type": "pageview", "url": URL},
        purchase("o-6", status="pending"),
    ]
    with (
        tracker("collector", settings, health_url(settings, "collector")),
        tracker("forward", settings, forwarder_url(settings)),
    ):
        collect(settings, events)
        wait_for(
            lambda: (
                [len(stand_in.taken(p)) for p in PLATFORMS] == [2, 2, 3]
                and forwarded(settings, *PLATFORMS)
            ),
            timeout=60,
            what="every conversion forwarded",
        )
        sent = {p: metric(settings, "tracker_forward_sent_total", destination=p) for p in PLATFORMS}
        skipped = metric(
            settings,
            "tracker_forward_skipped_total",
            destination="meta",
            reason="ad_user_data denied: Meta's website events need the visitor's user agent",
        )
        pending = metric(
            settings,
            "tracker_forward_skipped_total",
            destination="tiktok",
            reason="pending: sent once approved",
        )
        ready = http_get(forwarder_url(settings, "/readyz"))

    assert sent == {"meta": 2.0, "google_ads": 2.0, "tiktok": 3.0}
    assert (skipped, pending) == (1.0, 1.0)
    assert ready[0] == 200
    assert orjson.loads(ready[1])["destinations"]["meta"] == {"status": "ok"}

    meta_events = {item["event_id"]: item for item in stand_in.taken("meta")}
    assert set(meta_events) == {"o-1", "o-2"}
    bought = meta_events["o-1"]
    assert bought["event_name"] == "Purchase"
    assert bought["action_source"] == "website"
    assert bought["event_source_url"] == URL
    assert bought["custom_data"] == {"order_id": "o-1", "value": 25, "currency": "usd"}
    assert bought["user_data"]["em"] == [sha256("jane.doe@example.com")]
    assert bought["user_data"]["ph"] == [sha256("442079460958")]
    assert bought["user_data"]["client_ip_address"] == "203.0.113.0"  # truncated on arrival
    assert bought["user_data"]["client_user_agent"] == AGENT
    lead = meta_events["o-2"]
    assert lead["event_name"] == "Lead"
    assert lead["user_data"]["fbc"].startswith("fb.1.")
    assert lead["user_data"]["fbc"].endswith(".F-2")
    [meta_request] = stand_in.received("meta")
    assert meta_request.body["access_token"] == TOKENS["meta"]

    uploads = [i for i in stand_in.taken("google_ads") if i["method"] == "uploadClickConversions"]
    [retraction] = [
        i for i in stand_in.taken("google_ads") if i["method"] == "uploadConversionAdjustments"
    ]
    [upload] = uploads
    assert upload["gclid"] == "G-1"
    assert upload["orderId"] == "o-1"
    assert upload["conversionAction"] == "customers/1234567890/conversionActions/987654"
    assert upload["consent"] == {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
    assert (retraction["orderId"], retraction["adjustmentType"]) == ("o-1", "RETRACTION")
    assert all(r.status == 200 for r in stand_in.received("google_ads"))  # the protos parsed

    tiktok_events = {item["event_id"]: item for item in stand_in.taken("tiktok")}
    assert tiktok_events["o-1"]["event"] == "CompletePayment"
    assert tiktok_events["o-1"]["user"]["phone"] == sha256("+442079460958")
    assert tiktok_events["o-2"]["event"] == "SubmitForm"
    # ad_user_data denied: no email, IP or agent leave tracker, the click id does.
    assert tiktok_events["o-3"]["user"] == {"ttclid": "T-3"}
    assert all(r.headers["access-token"] == TOKENS["tiktok"] for r in stand_in.received("tiktok"))


def test_throttled_and_failing_platforms_are_retried_and_take_each_conversion_once(
    settings: Settings, stand_in: Platforms
) -> None:
    settings = stand_in.settings(settings)
    stand_in.answer_next("meta", "throttled")
    stand_in.answer_next("meta", "transient")
    stand_in.answer_next("google_ads", "throttled")  # says: retry in 1 s
    stand_in.answer_next("tiktok", "transient", times=2)
    with (
        tracker("collector", settings, health_url(settings, "collector")),
        tracker("forward", settings, forwarder_url(settings)),
    ):
        collect(settings, [purchase("o-1", gclid="G-1"), purchase("o-2", gclid="G-2")])
        wait_for(
            lambda: (
                [len(stand_in.taken(p)) for p in PLATFORMS] == [2, 2, 2]
                and forwarded(settings, *PLATFORMS)
            ),
            timeout=60,
            what="every conversion forwarded after the retries",
        )
        failed = {
            (p, kind): metric(settings, "tracker_forward_failed_total", destination=p, kind=kind)
            for p in PLATFORMS
            for kind in ("throttled", "transient")
        }
    assert [r.status for r in stand_in.received("meta")] == [400, 503, 200]
    assert [r.status for r in stand_in.received("google_ads")] == [429, 200]
    assert len(stand_in.received("tiktok")) == 3
    assert failed == {
        ("meta", "throttled"): 2.0,
        ("meta", "transient"): 2.0,
        ("google_ads", "throttled"): 2.0,
        ("google_ads", "transient"): 0.0,
        ("tiktok", "throttled"): 0.0,
        ("tiktok", "transient"): 4.0,
    }
    for platform in PLATFORMS:
        assert Counter(stand_in.keys(platform)).most_common(1)[0][1] == 1, platform
    assert all(letters(settings, p) == [] for p in PLATFORMS)


def test_a_refused_conversion_is_dead_lettered_alone_and_replayed_once_fixed(
    settings: Settings, stand_in: Platforms
) -> None:
    settings = stand_in.settings(settings)
    stand_in.refuse("o-bad")
    batch = [purchase(order, gclid=f"G-{order}") for order in ("o-a", "o-bad", "o-c")]
    with (
        tracker("collector", settings, health_url(settings, "collector")),
        tracker("forward", settings, forwarder_url(settings)),
    ):
        collect(settings, batch)
        wait_for(
            lambda: (
                all(len(letters(settings, p)) == 1 for p in PLATFORMS)
                and forwarded(settings, *PLATFORMS)
            ),
            timeout=60,
            what="the bad conversion dead-lettered",
        )
        dead_lettered = metric(settings, "tracker_forward_dead_lettered_total", destination="meta")
    assert dead_lettered == 1.0
    for platform in PLATFORMS:
        assert sorted(stand_in.keys(platform)) == ["o-a", "o-c"], platform
        [letter] = letters(settings, platform)
        assert [event.order_id for event in letter.events] == ["o-bad"]
        assert letter.kind == "permanent"
    assert letters(settings, "meta")[0].code == "100/2804019"
    assert letters(settings, "tiktok")[0].code == "40002"
    assert letters(settings, "google_ads")[0].code == "conversionUploadError.UNPARSEABLE_GCLID"

    # A fix on the platform's side (or in tracker's settings), then the replay.
    stand_in.fix()
    preview = replay(settings, "--destination", "meta", "--dry-run")
    assert "would replay: 1 (1 events)" in preview
    assert sorted(stand_in.keys("meta")) == ["o-a", "o-c"]

    assert "replayed: 1 (1 events)" in replay(settings, "--destination", "meta")
    assert sorted(stand_in.keys("meta")) == ["o-a", "o-bad", "o-c"]
    assert sorted(stand_in.keys("tiktok")) == ["o-a", "o-c"]  # that destination only

    again = replay(settings, "--destination", "meta")
    assert "already replayed earlier, skipped: 1" in again
    assert "replayed: 0 (0 events)" in again
    assert sorted(stand_in.keys("meta")) == ["o-a", "o-bad", "o-c"]


def test_a_destination_refusing_its_credentials_stops_until_fixed(
    settings: Settings, stand_in: Platforms
) -> None:
    settings = stand_in.settings(settings)
    stand_in.revoke("tiktok")
    with (
        tracker("collector", settings, health_url(settings, "collector")),
        tracker("forward", settings, forwarder_url(settings)),
    ):
        collect(settings, [purchase("o-1", gclid="G-1")])
        wait_for(
            lambda: metric(settings, "tracker_forward_up", destination="tiktok") == 0.0,
            timeout=60,
            what="tiktok marked down",
        )
        wait_for(
            lambda: forwarded(settings, "meta", "google_ads"), timeout=60, what="the others sent"
        )
        status, body = http_get(forwarder_url(settings, "/readyz"))
        assert status == 503
        assert orjson.loads(body)["destinations"]["tiktok"] == {
            "status": "blocked",
            "code": "40105",
            "message": "Access token is incorrect or has been revoked.",
        }
        wait_for(lambda: len(stand_in.received("tiktok")) >= 3, what="slow retries")
        assert not forwarded(settings, "tiktok")  # nothing committed, nothing dead-lettered
        assert letters(settings, "tiktok") == []
        assert stand_in.taken("tiktok") == []

        stand_in.restore("tiktok")
        wait_for(lambda: forwarded(settings, "tiktok"), timeout=60, what="tiktok sent once fixed")
        assert metric(settings, "tracker_forward_up", destination="tiktok") == 1.0
        assert http_get(forwarder_url(settings, "/readyz"))[0] == 200
    assert stand_in.keys("tiktok") == ["o-1"]
    assert stand_in.keys("meta") == ["o-1"]


def test_forward_refuses_to_start_without_a_destination(settings: Settings) -> None:
    run = command(settings, "forward", timeout=60)
    assert run.returncode == 2
    assert "no destination is set up" in run.stderr
