"""An OAuth provider of a test's own, as Keycloak or Entra ID serve one to Kafka: a token
endpoint (the client credentials grant, the client's id and secret in a Basic login)
giving RS256-signed JWT access tokens, and the JWKS a broker checks their signatures
against. It runs in a thread of the test's process, on a free port.

:data:`CLIENT` is given tokens for the brokers' audience (:data:`AUDIENCE`);
:data:`STRANGER` is given tokens for another audience, which a broker must refuse.
"""

from __future__ import annotations

import base64
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from harness.redis_servers import Certificates
from harness.stand_ins import JSONHandler

AUDIENCE = "kafka"
CLIENT = "tracker"
STRANGER = "someone-else"
SECRET = "oauth-test-client-secret"  # noqa: S105  # a test provider's, made here
_KEY_ID = "test-key"


@dataclass(slots=True)
class Provider:
    url: str
    """``http://127.0.0.1:<port>``."""
    lifetime_s: int
    given: list[dict[str, Any]] = field(default_factory=list)
    """The claims of every token given, oldest first."""

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"


@contextmanager
def oauth_provider(lifetime_s: int = 300, tls: Certificates | None = None) -> Iterator[Provider]:
    """The provider, its tokens living ``lifetime_s``, serving https with ``tls``'s
    certificate if given; stopped at the end."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks = {"keys": [{**public, "kid": _KEY_ID, "use": "sig", "alg": "RS256"}]}
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    if tls is not None:
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(tls.cert, tls.key)
        server.socket = serving.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls else "http"
    provider = Provider(f"{scheme}://127.0.0.1:{server.server_address[1]}", lifetime_s)

    class Handler(JSONHandler):
        def do_GET(self) -> None:
            if self.path != "/jwks":
                return self.answer(404, {"error": "not_found"})
            return self.answer(200, jwks)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            client, secret = _basic(self.headers.get("Authorization", ""))
            if self.path != "/token" or form.get("grant_type") != "client_credentials":
                return self.answer(400, {"error": "unsupported_grant_type"})
            if client not in (CLIENT, STRANGER) or secret != SECRET:
                return self.answer(401, {"error": "invalid_client"})
            now = int(time.time())
            claims = {
                "iss": provider.url,
                "sub": client,
                "aud": AUDIENCE if client == CLIENT else "elsewhere",
                "iat": now,
                "exp": now + lifetime_s,
                "jti": uuid.uuid4().hex,  # as providers do: no two tokens alike
            }
            if form.get("scope"):
                claims["scope"] = form["scope"]  # an empty one is refused by brokers
            provider.given.append(claims)
            token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": _KEY_ID})
            return self.answer(
                200, {"access_token": token, "token_type": "Bearer", "expires_in": lifetime_s}
            )

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


def _basic(header: str) -> tuple[str, str]:
    """The client id and secret of a Basic login, form-decoded (RFC 6749 2.3.1)."""
    scheme, _, encoded = header.partition(" ")
    if scheme != "Basic":
        return "", ""
    client, _, secret = base64.b64decode(encoded).decode().partition(":")
    return unquote_plus(client), unquote_plus(secret)
