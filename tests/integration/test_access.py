"""The running exporter's every route against every kind of caller: the 401/403 matrix.

The routes are those of the App ``tracker.export.server.build`` makes, so a route
added there is in the matrix at once, and one this test cannot place (neither open,
``/metrics``, nor under ``/v1/``) fails it. An exporter without tokens answers each
route first; a caller allowed in must then get exactly its status, one refused a 401
(the same for every refusal) or, a read token on an admin route, a 403. Each exporter
logs at debug level, and no token, configured or tried, may appear in its log.
"""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack

import orjson
import pytest
import redis

from harness.isolation import free_port, isolated_settings
from harness.processes import environment
from tests.exporter import Exporter, ask, exporter
from tracker.attribution import Touch
from tracker.export.access import ADMIN, READ
from tracker.export.server import build
from tracker.settings import Settings
from tracker.store import Keys
from tracker.stream.state import dump_path

pytestmark = pytest.mark.services

READ_TOKEN = secrets.token_urlsafe(32)  # made up per run: no token lives in the repository
ADMIN_TOKEN = secrets.token_urlsafe(32)
WRONG_TOKEN = secrets.token_urlsafe(32)
TOKENS = f"read:{READ_TOKEN},admin:{ADMIN_TOKEN}"

OPEN = frozenset({"/healthz", "/readyz", "/openapi.yaml"})
"""Always open: probes, and the description of the API (no data)."""
ADMIN_ROUTES = frozenset({"/v1/people", "/v1/erasure", "/v1/spend", "/v1/goals"})
"""What is held about one person is personal data, and so is erasing it; importing spend
changes every spend KPI, and goals what a conversion is; every other query is read."""
ADMIN_WRITES = frozenset({"/v1/targets"})
"""Read by anyone who reads the KPIs, changed by an admin only."""

CALLERS: dict[str, str | None] = {
    "no header": None,
    "no token": "Bearer",
    "another scheme": f"Basic {ADMIN_TOKEN}",
    "a wrong token": f"Bearer {WRONG_TOKEN}",
    "the admin token cut short": f"Bearer {ADMIN_TOKEN[:-1]}",
    "the admin token and more": f"Bearer {ADMIN_TOKEN}x",
    "two tokens": f"Bearer {READ_TOKEN} {ADMIN_TOKEN}",
    READ: f"Bearer {READ_TOKEN}",
    ADMIN: f"Bearer {ADMIN_TOKEN}",
}
REFUSED_BODY = b'{"error":"missing or invalid token"}'


def needed(path: str, method: str, metrics_auth: bool) -> str | None:
    """The role a route wants a token of; None for an open route."""
    if path in OPEN:
        return None
    if path == "/metrics":
        return READ if metrics_auth else None
    if path.startswith("/v1/"):
        admin = path in ADMIN_ROUTES or (path in ADMIN_WRITES and method == "PUT")
        return ADMIN if admin else READ
    raise AssertionError(f"{path}: a route this test cannot place; say who may ask it")


def allowed(caller: str, role: str | None) -> bool:
    return role is None or caller == ADMIN or (caller == READ and role == READ)


@pytest.fixture(scope="module")
def base_settings(servers: tuple[str, str]) -> Settings:
    isolated = isolated_settings(servers, "access")
    audit = f"{isolated.redis_prefix}.audit"  # erasures' audit records: this run's own topic
    return dataclasses.replace(isolated, log_level="debug", audit_topic=audit)


@pytest.fixture(scope="module")
def stacks(
    base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Exporter]]:
    """Three exporters on one store: open, with tokens, with tokens and metrics auth."""
    logs = tmp_path_factory.mktemp("exporter-logs")
    variants = {"open": ("", False), "tokens": (TOKENS, False), "metrics auth": (TOKENS, True)}
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                exporter(
                    dataclasses.replace(
                        base_settings, exporter_port=free_port(), api_tokens=tokens, metrics_auth=on
                    ),
                    logs / f"{name}.log",
                )
            )
            for name, (tokens, on) in variants.items()
        }


def routes(metrics_auth: bool) -> list[tuple[str, str]]:
    app = build(Settings(api_tokens=TOKENS, metrics_auth=metrics_auth))
    return sorted((path, method) for path, methods in app.routes.items() for method in methods)


@pytest.mark.parametrize("metrics_auth", [False, True], ids=["metrics open", "metrics auth"])
def test_every_route_answers_each_caller_as_its_role_says(
    stacks: dict[str, Exporter], metrics_auth: bool
) -> None:
    guarded = stacks["metrics auth" if metrics_auth else "tokens"]
    problems = []
    for path, method in routes(metrics_auth):
        role = needed(path, method, metrics_auth)
        expected = ask(stacks["open"].base, path, method, None).status
        assert expected not in (401, 403), f"{method} {path}: the open exporter refused"
        for caller, authorization in CALLERS.items():
            got = ask(guarded.base, path, method, authorization)
            want: tuple[int, str | None]
            if allowed(caller, role):
                want = (expected, None)
            elif caller == READ:
                want = (403, 'Bearer realm="tracker", error="insufficient_scope"')
            else:
                want = (401, 'Bearer realm="tracker"')
            if (got.status, got.challenge) != want:
                problems.append(f"{method} {path} with {caller}: {got} where {want} was due")
            elif got.status == 401 and method == "GET" and got.body != REFUSED_BODY:
                problems.append(f"{method} {path} with {caller}: a 401 that tells {got.body!r}")
    assert not problems, "\n".join(problems)


def test_the_matrix_reads_the_routes_the_exporter_serves() -> None:
    served = routes(metrics_auth=False)
    assert {("/v1/kpis", "GET"), ("/v1/people", "HEAD"), ("/v1/erasure", "POST")} <= set(served)
    assert ("/metrics", "GET") in served
    assert {path for path, _ in served} >= OPEN | ADMIN_ROUTES


def test_only_an_admin_token_erases_a_person(
    stacks: dict[str, Exporter], base_settings: Settings
) -> None:
    keys = Keys(base_settings.redis_prefix)
    with redis.Redis.from_url(base_settings.redis_url) as store:
        store.set(keys.path("u-erase"), dump_path([Touch(1_714_557_600_000, "spring", "search")]))
    base = stacks["tokens"].base

    def erase(authorization: str | None, user: str = "u-erase") -> int:
        body = orjson.dumps({"user_id": user})
        return ask(base, "/v1/erasure", "POST", authorization, body).status

    assert erase(None) == 401
    assert erase(CALLERS["a wrong token"]) == 401
    assert erase(CALLERS[READ]) == 403
    assert ask(base, "/v1/people?user_id=u-erase", "GET", CALLERS[ADMIN]).status == 200
    assert erase(CALLERS[ADMIN], "u-nobody") == 404
    assert erase(CALLERS[ADMIN]) == 200
    assert ask(base, "/v1/people?user_id=u-erase", "GET", CALLERS[ADMIN]).status == 404


def test_no_token_is_ever_logged(stacks: dict[str, Exporter]) -> None:
    # The matrix's callers once more, so this test stands on its own.
    for name in ("tokens", "metrics auth"):
        for path in ("/v1/kpis", "/v1/people?user_id=u-1", "/metrics"):
            for authorization in CALLERS.values():
                ask(stacks[name].base, path, "GET", authorization)
    for name, running in stacks.items():
        text = running.log.read_text()
        for token in (READ_TOKEN, ADMIN_TOKEN, WRONG_TOKEN, ADMIN_TOKEN[:-1]):
            assert token not in text, f"the {name} exporter logged a token"
    # The refusals were logged (without a token): the logs are the ones that would tell.
    assert "query API request refused" in stacks["tokens"].log.read_text()


def test_an_open_query_api_is_announced_at_start(stacks: dict[str, Exporter]) -> None:
    assert "the query API is open" in stacks["open"].log.read_text()
    assert "the query API is open" not in stacks["tokens"].log.read_text()


def test_bad_tokens_stop_the_exporter_naming_the_item_not_the_token(
    base_settings: Settings,
) -> None:
    short = "read:" + secrets.token_hex(7)
    done = subprocess.run(
        [sys.executable, "-m", "tracker.cli", "serve"],
        env=environment(dataclasses.replace(base_settings, api_tokens=f"{TOKENS},{short}")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "tracker: TRACKER_API_TOKENS: item 3: the token is shorter than 16 characters"
    )
