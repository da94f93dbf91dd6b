"""Query API tokens: the setting, the Authorization header, roles, and the 401 and 403.

The exporter's every route against real tokens is tests/integration/test_access.py;
the local stack's token (deploy/local/access.sh) is made here, by the script itself.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tracker import asgi
from tracker.asgi import Message, Request, Response, Scope
from tracker.export.access import ADMIN, READ, Access, bearer_token
from tracker.settings import Settings, SettingsError, load

ROOT = Path(__file__).resolve().parents[2]
ACCESS_SH = ROOT / "deploy/local/access.sh"
READ_TOKEN = "r-" + "a" * 30
ADMIN_TOKEN = "adm-" + "b" * 30
OTHER_READ = "r2-" + "c" * 30
CONFIGURED = f"read:{READ_TOKEN}, admin:{ADMIN_TOKEN} ,read:{OTHER_READ}"


def roles(text: str) -> list[tuple[str, str]]:
    return Settings(api_tokens=text).api_token_roles()


# --- TRACKER_API_TOKENS ------------------------------------------------------------


def test_tokens_with_their_roles_several_of_each() -> None:
    assert roles(CONFIGURED) == [(READ, READ_TOKEN), (ADMIN, ADMIN_TOKEN), (READ, OTHER_READ)]


def test_no_tokens_by_default() -> None:
    assert Settings().api_tokens == ""
    assert roles("") == roles(" , ") == []


def test_tokens_in_the_forms_tokens_are_made_in() -> None:
    made = [secrets.token_urlsafe(32), secrets.token_hex(16), "QUJDREVGR0hJSktMTU5PUA=="]
    assert roles(",".join(f"admin:{t}" for t in made)) == [(ADMIN, t) for t in made]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (f"{READ_TOKEN}", r"item 1 is not role:token"),
        (f"admin:{ADMIN_TOKEN},read:", r"item 2 is not role:token"),
        (f"admin:{ADMIN_TOKEN},owner:{READ_TOKEN}", r"item 2: the role must be one of read, admin"),
        (f"{READ_TOKEN}:read", r"item 1: the role must be one of read, admin"),
        ("Admin:" + "x" * 20, r"item 1: the role must be one of"),  # roles as written
        ("read:" + "x" * 15, r"item 1: the token is shorter than 16 characters"),
        ("read:" + "x" * 10 + "=" + "x" * 10, r"item 1: a token may hold"),  # = only at its end
        ("read:" + "ä" * 20, r"item 1: a token may hold"),
        (f"read:{READ_TOKEN},admin:{READ_TOKEN}", r"items 1 and 2 hold the same token"),
    ],
)
def test_a_bad_item_is_named_by_its_position_never_by_its_token(text: str, error: str) -> None:
    with pytest.raises(SettingsError, match=rf"^TRACKER_API_TOKENS: {error}") as raised:
        load(environ={"TRACKER_API_TOKENS": text})
    message = str(raised.value)
    for part in text.replace(":", ",").split(","):
        if len(part.strip()) >= 8:
            assert part.strip() not in message


def test_metrics_auth_is_off_unless_asked() -> None:
    assert Settings().metrics_auth is False
    assert load(environ={"TRACKER_METRICS_AUTH": "on"}).metrics_auth is True


def test_the_tokens_are_kept_out_of_the_settings_repr() -> None:
    assert ADMIN_TOKEN not in repr(Settings(api_tokens=f"admin:{ADMIN_TOKEN}"))


# --- the Authorization header --------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (f"Bearer {READ_TOKEN}", READ_TOKEN),
        (f"bearer {READ_TOKEN}", READ_TOKEN),  # the scheme in any case
        (f"BEARER   {READ_TOKEN} ", READ_TOKEN),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        (f"Basic {READ_TOKEN}", None),
        (f"Bearer {READ_TOKEN} extra", None),
        (f"Token {READ_TOKEN}", None),
        (READ_TOKEN, None),
    ],
)
def test_the_bearer_token_of_a_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


# --- roles -----------------------------------------------------------------------------


GUARD = Access(roles(CONFIGURED))


@pytest.mark.parametrize(
    ("header", "role"),
    [
        (f"Bearer {READ_TOKEN}", READ),
        (f"Bearer {OTHER_READ}", READ),
        (f"Bearer {ADMIN_TOKEN}", ADMIN),
        (None, None),
        (f"Bearer {ADMIN_TOKEN[:-1]}", None),  # a prefix is not the token
        (f"Bearer {ADMIN_TOKEN}x", None),
        (f"Bearer {ADMIN_TOKEN.upper()}", None),
        (f"Basic {ADMIN_TOKEN}", None),
    ],
)
def test_the_role_of_a_header(header: str | None, role: str | None) -> None:
    assert GUARD.role_of(header) == role


@pytest.mark.parametrize("given", [READ_TOKEN, ADMIN_TOKEN, OTHER_READ, "n" * 32])
def test_every_token_is_compared_in_constant_time_every_time(
    given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever token matches, first or none, each configured one is compared, by
    compare_digest, on equal-length digests: nothing to time."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    GUARD.role_of(f"Bearer {given}")
    assert len(compared) == 3
    assert {len(a) for a, _ in compared} | {len(b) for _, b in compared} == {32}
    assert all(given.encode() not in pair for pair in compared)  # digests, not tokens


def test_an_unknown_role_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="unknown role 'owner'"):
        Access([("owner", ADMIN_TOKEN)])


# --- the guard, through an App ------------------------------------------------------


async def _answer(request: Request) -> Response:
    return Response.json({"answered": request.path})


def app(configured: str, role: str) -> asgi.App:
    guarded = asgi.App()
    guarded.route("/guarded", Access(roles(configured)).guard(_answer, role))
    return guarded


def call(served: asgi.App, authorization: str | None) -> tuple[int, dict[bytes, bytes], bytes]:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/guarded",
        "raw_path": b"/guarded",
        "query_string": b"",
        "headers": headers,
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(served(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


REFUSED = (
    401,
    {
        b"content-type": b"application/json",
        b"content-length": b"36",
        b"www-authenticate": b'Bearer realm="tracker"',
    },
    b'{"error":"missing or invalid token"}',
)


@pytest.mark.parametrize("role", [READ, ADMIN])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        f"Basic {ADMIN_TOKEN}",
        f"Bearer {ADMIN_TOKEN[:-1]}",
        f"Bearer {'z' * 40}",
        f"Bearer {ADMIN_TOKEN} {ADMIN_TOKEN}",
    ],
)
def test_every_refusal_answers_the_same_401(role: str, authorization: str | None) -> None:
    assert call(app(CONFIGURED, role), authorization) == REFUSED


def test_a_read_token_asking_for_an_admin_route_answers_403() -> None:
    status, headers, body = call(app(CONFIGURED, ADMIN), f"Bearer {READ_TOKEN}")
    assert status == 403
    assert headers[b"www-authenticate"] == b'Bearer realm="tracker", error="insufficient_scope"'
    assert body == b'{"error":"this endpoint needs a token of role admin"}'


@pytest.mark.parametrize(
    ("role", "token"),
    [(READ, READ_TOKEN), (READ, OTHER_READ), (READ, ADMIN_TOKEN), (ADMIN, ADMIN_TOKEN)],
)
def test_a_token_of_the_role_or_above_is_answered(role: str, token: str) -> None:
    assert call(app(CONFIGURED, role), f"Bearer {token}")[0] == 200


@pytest.mark.parametrize("role", [READ, ADMIN])
def test_without_tokens_the_route_is_the_handler_itself(role: str) -> None:
    assert Access([]).guard(_answer, role) is _answer
    assert call(app("", role), None)[0] == 200


# --- the local stack's token: deploy/local/access.sh ---------------------------------


def local_settings(root: Path, **environ: str) -> dict[str, str]:
    """The TRACKER_* variables access.sh's api_settings exports, with ``root`` as ROOT."""
    shell = subprocess.run(
        ["bash", "-c", 'source "$1" && api_settings && env -0', "access", str(ACCESS_SH)],
        env={"PATH": os.environ["PATH"], "ROOT": str(root), **environ},
        capture_output=True,
        text=True,
        check=True,
    )
    exported = (item.partition("=") for item in shell.stdout.split("\0"))
    return {name: value for name, _, value in exported if name.startswith("TRACKER_")}


def test_the_local_stack_makes_one_admin_token_readable_by_its_owner_only(tmp_path: Path) -> None:
    first = local_settings(tmp_path)
    token_file = tmp_path / ".run/api-token"
    token = token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert load(environ=first).api_token_roles() == [(ADMIN, token)]
    assert len(token) >= 40
    assert local_settings(tmp_path) == first  # made once, then kept


def test_the_local_stack_keeps_the_tokens_it_is_given(tmp_path: Path) -> None:
    given = f"read:{READ_TOKEN}"
    assert local_settings(tmp_path, TRACKER_API_TOKENS=given)["TRACKER_API_TOKENS"] == given
    assert local_settings(tmp_path, TRACKER_API_TOKENS="")["TRACKER_API_TOKENS"] == ""
    assert not (tmp_path / ".run/api-token").exists()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
@pytest.mark.parametrize("metrics_auth", ["true", "off"])
def test_the_local_prometheus_sends_the_token_when_metrics_need_one(
    metrics_auth: str, tmp_path: Path
) -> None:
    # A copy of deploy/ has tmp_path as its ROOT: the token is made there, not here.
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    out = tmp_path / "prometheus.yml"
    subprocess.run(
        ["bash", str(tmp_path / "deploy/local/prometheus.sh"), "render", str(out)],
        env={**os.environ, "TRACKER_METRICS_AUTH": metrics_auth},
        capture_output=True,
        check=True,
        timeout=60,
    )
    jobs = {job["job_name"]: job for job in yaml.safe_load(out.read_text())["scrape_configs"]}
    token_file = tmp_path / ".run/api-token"
    if metrics_auth == "true":
        assert jobs.pop("tracker-exporter")["authorization"] == {
            "type": "Bearer",
            "credentials_file": str(token_file),
        }
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    else:
        assert not token_file.exists()
    assert all("authorization" not in job for job in jobs.values())
