"""tracker on a Kafka that takes clients over TLS with a SASL login only, as managed
services do: every process's Kafka clients (the collector's producer, the worker's
Faust consumer and producer, the exporter's end-offset reader, the forwarder's
consumer, each one's topic setup) reach it with the TRACKER_KAFKA_SECURITY_* settings,
and a wrong login is refused."""

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
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    with secure_kafka(folder, certificates(folder)) as found:
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


def test_every_process_counts_and_forwards_over_sasl_ssl(
    settings: Settings, broker: SecureKafka
) -> None:
    campaign = f"secure-{uuid.uuid4().hex[:6]}"
    clicks = [
        {"type": "click", "campaign": campaign, "event_id": f"c{i}", "user_agent": AGENT}
        for i in range(40)
    ]
    with Platforms() as stand_in:
        settings = stand_in.settings(broker.settings(settings), "meta")
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


@pytest.mark.parametrize("mechanism", ["PLAIN", *SCRAM])
def test_each_mechanism_logs_in_and_a_wrong_password_is_refused(
    settings: Settings, broker: SecureKafka, mechanism: str
) -> None:
    right = broker.settings(settings, mechanism=mechanism)
    done = command(right, "replay-dead-letters", "--dry-run", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    wrong = broker.settings(settings, password="not-the-password", mechanism=mechanism)  # noqa: S106
    done = command(wrong, "replay-dead-letters", "--dry-run", timeout=120)
    assert done.returncode != 0
    assert "Authentication failed" in done.stderr


def test_a_broker_whose_authority_is_not_trusted_is_refused(
    settings: Settings, broker: SecureKafka, tmp_path: Path
) -> None:
    other = certificates(tmp_path)  # an authority that did not sign the broker's certificate
    untrusted = dataclasses.replace(broker.settings(settings), kafka_ssl_ca_file=str(other.ca))
    done = command(untrusted, "replay-dead-letters", "--dry-run", timeout=120)
    assert done.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr or "certificate verify" in done.stderr
