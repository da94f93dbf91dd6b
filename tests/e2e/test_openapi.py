"""The running collector and exporter answer as their OpenAPI descriptions say.

Each service serves its packaged description at ``GET /openapi.yaml``; schemathesis
fuzzes every operation of it with valid and invalid input against the real process:
no answer may be a 5xx, every status, content type, header and JSON body must be
documented, input that breaks the description must be refused with a 4xx, and the
process must still be serving afterwards. (The descriptions are loaded from the
package at import, not from the fixture: ``schemathesis.pytest.from_fixture`` relies
on a pytest internal that pytest 9.2 removed.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from subprocess import Popen
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from redis.asyncio import Redis
from schemathesis import Case
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from collector import segment
from collector.postback import sign
from harness.isolation import isolated_settings
from harness.processes import http_get, tracker
from harness.services import ROOT
from tracker.events import Event
from tracker.settings import Settings
from tracker.stream.sink import Record, Sink

pytestmark = pytest.mark.services

SECRET = secrets.token_hex(16)  # made up per run: no secret lives in the repository
API_TOKEN = secrets.token_urlsafe(32)  # the exporter's admin token, as make up makes one
PARTNER = "net1"
ALLOW = "shop.example,*.brand.example"
DAY = 86_400_000

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
]

COLLECTOR = schemathesis.openapi.from_path(ROOT / "collector/openapi.yaml")
EXPORTER = schemathesis.openapi.from_path(ROOT / "tracker/export/openapi.yaml")


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: schemathesis.SerializationContext, value: object) -> bytes:
    """Events one per line, as a server sends a batch."""
    items = value if isinstance(value, list) else [value]
    # json, not orjson: the fuzzer draws integers past 64 bits, which orjson refuses.
    return b"\n".join(json.dumps(item).encode() for item in items)


# Checks that do not apply to an operation, and why.
NOT_FOR: dict[str, list[CheckFunction]] = {
    # A batch answers 200 with a result per item: a bad item is rejected on its own.
    "POST /v1/events": [negative_data_rejection],
    "POST /com.snowplowanalytics.snowplow/tp2": [negative_data_rejection],
    # A page ping or a transaction item is acknowledged unread: it never counts.
    "GET /i": [negative_data_rejection],
    # Segment's API, as Segment's: what a message says wrong rejects that message (200,
    # its reasons in "errors"), and what the collector does not read (a write key when
    # none are configured, a context of another shape) is ignored.
    **{f"POST {path}": [negative_data_rejection] for path in segment.PATHS},
}

FUZZ = hypothesis.settings(
    max_examples=50,
    deadline=None,  # a request waits for Kafka's acknowledgement: its time is not the point
    derandomize=True,  # the same cases every run
    database=None,
    # Whole events drawn from the schema take their time on a busy two-core machine.
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Service:
    base: str
    process: Popen[bytes]

    def assert_serving(self) -> None:
        assert self.process.poll() is None, "the process exited"
        assert http_get(f"{self.base}/healthz")[0] == 200


def sign_postback(case: Case[Any]) -> None:
    """Sign the case as partner ``PARTNER`` would, now, whatever else it holds."""
    own = ("partner", "ts", "sig")
    query = {k: v for k, v in (case.query or {}).items() if k not in own}
    auth = {"partner": PARTNER, "ts": str(int(time.time()))}
    if case.method == "GET":
        case.query = query | auth | {"sig": sign(_texts(query | auth), SECRET)}
    elif isinstance(case.body, dict):
        body = {k: v for k, v in case.body.items() if k not in own} | auth
        case.query = query
        case.body = body | {"sig": sign(_texts(query | body), SECRET)}


def _texts(params: dict[str, object]) -> dict[str, str]:
    """Parameters as the server reads them: scalars as their text."""
    return {k: str(v) for k, v in params.items() if isinstance(v, str | int | float)}


@pytest.fixture(scope="module")
def collector(servers: tuple[str, str]) -> Iterator[Service]:
    """One collector for every operation: redirect hosts, a postback partner, a EUR rate,
    and rate limits on (their code runs for every case) but far above what fuzzing sends."""
    configured = dataclasses.replace(
        isolated_settings(servers),
        redirect_allow=ALLOW,
        postback_secrets=f"{PARTNER}={SECRET}",
        currency_rates="EUR=1.08",
        rate_limit=1e6,
        postback_rate_limit=1e6,
        write_key_rate_limit=1e6,
    )
    base = f"http://127.0.0.1:{configured.collector_port}"
    with tracker("collector", configured, f"{base}/healthz") as process:
        service = Service(base, process)
        yield service
        service.assert_serving()


def test_the_collector_serves_its_description(collector: Service) -> None:
    status, body = http_get(f"{collector.base}/openapi.yaml")
    assert status == 200
    assert body == (ROOT / "collector/openapi.yaml").read_bytes()


@COLLECTOR.parametrize()
@FUZZ
def test_collector_answers_as_described(case: Case[Any], collector: Service) -> None:
    if case.operation.path == "/v1/postback" and zlib.crc32(repr(case.query).encode()) % 4:
        sign_postback(case)  # three in four get past the signature, to the fields
    excluded = NOT_FOR.get(case.operation.label, [])
    case.call_and_validate(base_url=collector.base, checks=CHECKS, excluded_checks=excluded)
    assert collector.process.poll() is None


def seed(settings: Settings) -> None:
    """Four days of impressions, paid clicks and sales on two channels: rows with figures."""
    now = int(time.time() * 1000)
    events = []
    for day in range(4):
        ts = now - day * DAY - 3_600_000
        for channel, campaign in (("search", "brand"), ("social", "launch")):
            key = f"{day}{channel}"
            hit = partial(Event, ts=ts, received_at=ts, channel=channel, campaign=campaign)
            events += [
                hit(event_id=f"i{key}", type="impression"),
                hit(event_id=f"c{key}", type="click", click_id=key, cost=350_000, user_id=key),
                hit(
                    event_id=f"v{key}",
                    type="conversion",
                    click_id=key,
                    user_id=key,
                    value=49_900_000,
                    status="approved",
                    order_id=key,
                ),
            ]

    async def write() -> None:
        redis = Redis.from_url(settings.redis_url)
        try:
            await Sink(redis, settings).apply([Record("seed", 0, 0, events)])
        finally:
            await redis.aclose()

    asyncio.run(write())


@EXPORTER.auth()
class ExporterToken:
    """Every case sends the admin token: schemathesis then also checks that an operation
    declaring the bearer scheme refuses the same request without it (``ignored_auth``)."""

    def get(self, case: Case[Any], context: schemathesis.AuthContext) -> str:
        return API_TOKEN

    def set(self, case: Case[Any], data: str, context: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


@pytest.fixture(scope="module")
def exporter(servers: tuple[str, str]) -> Iterator[Service]:
    """One exporter with a query API token, over a few days of seeded figures."""
    configured = dataclasses.replace(isolated_settings(servers), api_tokens=f"admin:{API_TOKEN}")
    seed(configured)
    base = f"http://127.0.0.1:{configured.exporter_port}"
    with tracker("serve", configured, f"{base}/healthz") as process:
        service = Service(base, process)
        yield service
        service.assert_serving()


def test_the_exporter_serves_its_description(exporter: Service) -> None:
    status, body = http_get(f"{exporter.base}/openapi.yaml")
    assert status == 200
    assert body == (ROOT / "tracker/export/openapi.yaml").read_bytes()


@EXPORTER.parametrize()
@FUZZ
def test_exporter_answers_as_described(case: Case[Any], exporter: Service) -> None:
    case.call_and_validate(base_url=exporter.base, checks=[*CHECKS, ignored_auth])
    assert exporter.process.poll() is None
