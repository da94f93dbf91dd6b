"""tracker on a Kafka that takes clients over TLS with a SASL login only, as managed
services do: every process's Kafka clients (the collector's producer, the worker's
Faust consumer and producer, the exporter's end-offset reader, the forwarder's
consumer, each one's topic setup) reach it with the TRACKER_KAFKA_SECURITY_* settings,
with a password or an OAuth access token, and a wrong login is refused."""

from __future__ import annotations

import dataclasses
import shutil
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.oauth_provider import STRANGER, Provider, oauth_provider
from harness.processes import command, health_url, http_get, sample, tracker, wait_for
from harness.redis_servers import certificates
from harness.secure_kafka import SCRAM, SecureKafka, secure_kafka
from tests.platforms import AGENT, Platforms, collect, forwarder_url, purchase
from tracker.settings import Settings

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl"),
]


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with oauth_provider() as started:
        yield started


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[SecureKafka]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    with secure_kafka(folder, certificates(folder), provider) as found:
        yield found


def kpi_row(settings: Settings, campaign: str) -> dict[str, Any] | None:
    query = urllib.parse.urlencode({"dimension": "campaign", "window": "1d"})
    status, body = http_get(f"http://127.0.0.1:{settings.exporter_port}/v1/kpis?{query}")
    assert status == 200, body
    rows = orjson.loads(body)["rows"]
    return next((row for row in rows if row["value"] == campaign), None)


def lag(settings: Settings) -> float | None:
    """The exporter's consumer lag, which it reads from Kafka itself; None while absent."""
    url = f"http://127.0.0.1:{settings.exporter_port}/metrics"
    return sample(url, "tracker_pipeline_consumer_lag_records")


@pytest.mark.parametrize("mechanism", ["PLAIN", "OAUTHBEARER"])
def test_every_process_counts_and_forwards_over_sasl_ssl(
    settings: Settings, broker: SecureKafka, provider: Provider, mechanism: str
) -> None:
    """With a password, and with OAuth access tokens, which the worker's Faust app and
    every other client ask the provider for."""
    tokens_before = len(provider.given)
    campaign = f"secure-{uuid.uuid4().hex[:6]}"
    clicks = [
        {"type": "click", "campaign": campaign, "event_id": f"c{i}", "user_agent": AGENT}
        for i in range(40)
    ]
    with Platforms() as stand_in:
        settings = stand_in.settings(broker.settings(settings, mechanism=mechanism), "meta")
        with (
            tracker("collector", settings, health_url(settings, "collector")),
            tracker("worker", settings, health_url(settings, "worker")),
            tracker("serve", settings, health_url(settings, "serve")),
            tracker("forward", settings, forwarder_url(settings)),
        ):
            collector = f"http://127.0.0.1:{settings.collector_port}"
            assert http_get(f"{collector}/readyz")[0] == 200
            collect(settings, clicks + clicks[:10])  # ten sent twice
            collect(settings, [purchase("o-secure", anonymous_id="v1")])
            row = wait_for(
                lambda: (r := kpi_row(settings, campaign)) and r["clicks"] == 40 and r,
                timeout=60,
                what="the clicks counted through the secured broker",
            )
            assert row["clicks"] == 40
            assert wait_for(lambda: lag(settings) == 0, 60, "the exporter's lag read from Kafka")
            wait_for(
                lambda: stand_in.keys("meta") == ["o-secure"],
                timeout=60,
                what="the conversion read from the secured broker and sent to Meta",
            )
    tokens = len(provider.given) - tokens_before  # how long each is kept: test_kafka_oauth
    assert tokens > 0 if mechanism == "OAUTHBEARER" else tokens == 0


@pytest.mark.parametrize("mechanism", ["PLAIN", *SCRAM, "OAUTHBEARER"])
def test_each_mechanism_logs_in_and_a_wrong_password_is_refused(
    settings: Settings, broker: SecureKafka, mechanism: str
) -> None:
    right = broker.settings(settings, mechanism=mechanism)
    done = command(right, "replay-dead-letters", "--dry-run", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    checked = command(right, "check", timeout=120)  # tracker check logs in as they do
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.startswith(f"kafka: {broker.bootstrap} over SASL_SSL ({mechanism}):")
    wrong = broker.settings(settings, password="not-the-password", mechanism=mechanism)  # noqa: S106
    done = command(wrong, "replay-dead-letters", "--dry-run", timeout=120)
    assert done.returncode != 0
    if mechanism == "OAUTHBEARER":  # the provider refuses the client: no token to show
        assert "TokenRefused: the OAuth token endpoint" in done.stderr
        assert "answered 401" in done.stderr
    else:
        assert "Authentication failed" in done.stderr


def test_a_token_for_another_audience_is_refused_by_the_broker(
    settings: Settings, broker: SecureKafka, provider: Provider
) -> None:
    """The broker checks the token itself: one the provider gave for another service
    logs in no one."""
    stranger = dataclasses.replace(
        broker.settings(settings, mechanism="OAUTHBEARER"), kafka_sasl_username=STRANGER
    )
    done = command(stranger, "replay-dead-letters", "--dry-run", timeout=120)
    assert provider.given[-1]["sub"] == STRANGER  # the provider gave it one
    assert done.returncode != 0
    assert "refused its OAuth token" in done.stderr


def test_a_broker_whose_authority_is_not_trusted_is_refused(
    settings: Settings, broker: SecureKafka, tmp_path: Path
) -> None:
    other = certificates(tmp_path)  # an authority that did not sign the broker's certificate
    untrusted = dataclasses.replace(broker.settings(settings), kafka_ssl_ca_file=str(other.ca))
    done = command(untrusted, "replay-dead-letters", "--dry-run", timeout=120)
    assert done.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr or "certificate verify" in done.stderr
