"""``tracker import-spend`` and ``POST /v1/spend`` on the real Kafka: what reaches the topic.

One spend event per campaign and reporting day, summed from the export's rows, all
with the import's time; nothing at all for a dry run or a refused export. Whether the
worker then counts them exactly is tests/e2e/test_spend_import.py's to show.
"""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.isolation import free_port
from harness.processes import command, tracker
from tests.kafka import records
from tracker.events import Event
from tracker.records import decode_events
from tracker.settings import Settings

pytestmark = pytest.mark.services

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/spend"
TOKEN = secrets.token_urlsafe(32)  # made up per run: no token lives in the repository


@pytest.fixture
def spend_settings(settings: Settings) -> Settings:
    """EUR at 1.08, the fixtures' campaign map, an admin token for the exporter."""
    return dataclasses.replace(
        settings,
        currency_rates="EUR=1.08",
        campaign_map=str(FIXTURES / "campaign-map.csv"),
        api_tokens=f"admin:{TOKEN}",
    )


def import_spend(
    settings: Settings, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    text = stdin.decode() if stdin is not None else None
    return command(settings, "import-spend", *args, stdin=text, cwd=FIXTURES)


def events(settings: Settings) -> list[Event]:
    found = records(settings.kafka_bootstrap, settings.events_topic)
    return [event for _, _, value in found for event in decode_events(value)]


def figures(found: list[Event]) -> dict[tuple[str | None, str | None], tuple[str, int | None]]:
    return {(e.campaign, e.period): (e.currency, e.cost) for e in found}


EXPECTED = {
    ("brand_de", "2026-05-01"): ("USD", 1_234_560_000 + 65_440_000),
    ("brand_de", "2026-05-02"): ("USD", 1_000_000_000),
    ("Generic Shoes", "2026-05-01"): ("USD", 310_100_000),
    ("Generic Shoes", "2026-05-02"): ("USD", 0),
    ("Total Reach Q2", "2026-05-03"): ("USD", 12_300_000),
    ("spring_sale", "2026-05-01"): ("EUR", 12_500_000 + 7_250_000),
    ("spring_sale", "2026-05-02"): ("EUR", 1_234_560_000),
}
"""google-excel.csv and meta-de.csv through campaign-map.csv, summed by hand."""


def test_the_command_sends_one_event_per_campaign_and_day(spend_settings: Settings) -> None:
    dry = import_spend(spend_settings, "--dry-run", "google-excel.csv", "meta-de.csv")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.endswith("dry run: nothing sent (7 spend figures would be)\n")
    assert events(spend_settings) == []

    done = import_spend(spend_settings, "google-excel.csv", "meta-de.csv")
    assert done.returncode == 0, done.stderr
    assert f"sent 7 spend figures to {spend_settings.events_topic}\n" in done.stdout
    assert "read google-excel.csv: google, UTF-16, tab-separated: 5 rows, 4 skipped" in done.stdout
    sent = events(spend_settings)
    assert figures(sent) == EXPECTED
    assert len(sent) == len(EXPECTED)
    assert {(e.type, e.ts == e.received_at) for e in sent} == {("spend", True)}
    assert len({e.ts for e in sent}) == 1, "one report time for the whole import"
    assert {(e.campaign, e.channel) for e in sent if e.campaign == "spring_sale"} == {
        ("spring_sale", "social")
    }


def test_standard_input_is_an_export_too(spend_settings: Settings) -> None:
    data = (FIXTURES / "microsoft.csv").read_bytes()
    done = import_spend(spend_settings, "--platform", "microsoft", stdin=data)
    assert done.returncode == 0, done.stderr
    assert "read standard input: microsoft, UTF-8 with BOM, comma-separated" in done.stdout
    assert figures(events(spend_settings)) == {
        ("Brand US", "2026-05-01"): ("USD", 96_480_000),
        ("brand_us", "2026-05-01"): ("USD", 23_520_000),  # mapped by campaign id
        ("Brand US", "2026-05-02"): ("USD", 1_080_000_000),
    }


def test_a_currency_without_a_rate_sends_nothing(spend_settings: Settings) -> None:
    no_euro = dataclasses.replace(spend_settings, currency_rates="")
    refused = import_spend(no_euro, "google-report.csv", "meta-fr.csv")
    assert refused.returncode == 2
    assert refused.stderr.startswith("tracker: meta-fr.csv: no rate for EUR (3 rows;")
    assert events(spend_settings) == []


def test_a_file_not_understood_sends_nothing(spend_settings: Settings) -> None:
    refused = import_spend(spend_settings, "google-report.csv", "linkedin.csv")
    assert refused.returncode == 2
    assert "linkedin.csv: not a spend export tracker reads" in refused.stderr
    assert "microsoft misses TimePeriod, CurrencyCode, Spend (line 3)" in refused.stderr
    assert events(spend_settings) == []


def test_kafka_away_fails_saying_so(spend_settings: Settings) -> None:
    away = dataclasses.replace(
        spend_settings, kafka_bootstrap=f"127.0.0.1:{free_port()}", produce_timeout_s=2.0
    )
    failed = import_spend(away, "google-api.csv")
    assert failed.returncode == 1
    last = failed.stderr.splitlines()[-1]  # after aiokafka's own log lines
    assert last.startswith(f"tracker: Kafka at {away.kafka_bootstrap}")
    assert last.endswith("nothing or part was sent: import again")


def post(settings: Settings, query: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.exporter_port}/v1/spend?{query}",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_the_api_imports_as_the_command_does(spend_settings: Settings) -> None:
    google = (FIXTURES / "google-excel.csv").read_bytes()
    meta = (FIXTURES / "meta-de.csv").read_bytes()
    base = f"http://127.0.0.1:{spend_settings.exporter_port}"
    with tracker("serve", spend_settings, f"{base}/healthz"):
        status, answer = post(spend_settings, "platform=google&dry_run=true", google)
        assert status == 200, answer
        assert (answer["dry_run"], answer["sent"], answer["figures"]) == (True, 0, 5)
        assert answer["files"][0]["name"] == "request body"
        assert events(spend_settings) == []

        status, answer = post(spend_settings, "", google)
        assert status == 200, answer
        assert (answer["dry_run"], answer["sent"], answer["spend"]) == (False, 5, {"USD": 2622.4})
        status, answer = post(spend_settings, "channel=display", meta)
        assert status == 200, answer
        assert answer["mapped"] == {"id": 0, "name": 3}

        sent = events(spend_settings)
        assert figures(sent) == EXPECTED
        assert {e.channel for e in sent if e.campaign == "spring_sale"} == {"display"}

        status, answer = post(spend_settings, "platform=meta", google)
        assert status == 400
        assert answer["error"].startswith("request body: not a spend export tracker reads")
        status, answer = post(spend_settings, "timezone=Mars/Base", google)
        assert (status, answer) == (
            400,
            {"error": "account time zone: 'Mars/Base' is not an IANA time zone"},
        )
        assert post(spend_settings, "", b"")[0] == 400
        assert len(events(spend_settings)) == len(EXPECTED)


def test_the_api_refuses_a_currency_without_a_rate(spend_settings: Settings) -> None:
    no_euro = dataclasses.replace(spend_settings, currency_rates="")
    base = f"http://127.0.0.1:{no_euro.exporter_port}"
    with tracker("serve", no_euro, f"{base}/healthz"):
        status, answer = post(no_euro, "", (FIXTURES / "meta-nl.csv").read_bytes())
    assert status == 400
    assert answer["error"].startswith("request body: no rate for EUR (3 rows;")
    assert events(no_euro) == []
