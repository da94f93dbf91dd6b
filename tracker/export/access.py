"""Who may ask the exporter what: bearer tokens with a role, checked before a handler runs.

Tokens come from ``TRACKER_API_TOKENS`` (:meth:`Settings.api_token_roles`), each
``read`` or ``admin``; a request names one in ``Authorization: Bearer <token>``
(RFC 6750). A read token opens the KPI and decision routes, an admin token those and
the routes about one person. With no token configured every route is open, as before
tokens existed, and the exporter says so when it starts.

What a caller learns from a refusal is only that it was refused: a missing header, a
scheme other than Bearer, a malformed or an unknown token all answer the same 401.
The given token is compared with every configured one, all of them every time, each
through SHA-256 and :func:`hmac.compare_digest`: how long the check takes depends
neither on which token came close nor on their lengths. Tokens are never logged and
never part of an answer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

import structlog

from tracker.asgi import Handler, HTTPError, Request, Response
from tracker.settings import API_ROLES

log = structlog.get_logger(__name__)

READ: Final = "read"
ADMIN: Final = "admin"
_RANK: Final = {role: rank for rank, role in enumerate(API_ROLES)}

_REALM: Final = b'Bearer realm="tracker"'
_UNAUTHORIZED: Final = "missing or invalid token"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for anything else.

    The scheme's case does not matter (RFC 9110 11.1); what follows it must be one
    word.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


def _digest(token: str) -> bytes:
    # Equal lengths for compare_digest, whatever the tokens' lengths.
    return hashlib.sha256(token.encode()).digest()


class Access:
    """The configured tokens, and the guard that puts a route behind them."""

    def __init__(self, tokens: Sequence[tuple[str, str]]) -> None:
        """``tokens``: (role, token) pairs, as :meth:`Settings.api_token_roles` gives them."""
        for role, _ in tokens:
            if role not in _RANK:
                raise ValueError(f"unknown role {role!r}: one of {', '.join(API_ROLES)}")
        self._tokens = [(_digest(token), role) for role, token in tokens]

    @property
    def open(self) -> bool:
        """True when no token is configured: every route answers anyone."""
        return not self._tokens

    def role_of(self, authorization: str | None) -> str | None:
        """The role of the token an ``Authorization`` header carries; None if it carries
        none that is configured."""
        token = bearer_token(authorization)
        if token is None:
            return None
        given = _digest(token)
        found = None
        for digest, role in self._tokens:  # no early exit: every token, every time
            if hmac.compare_digest(digest, given):
                found = role
        return found

    def guard(self, handler: Handler, role: str) -> Handler:
        """``handler``, answered only for a token of ``role`` or above.

        401 for a request without a configured token, 403 for one whose token's role
        is below ``role``; ``handler`` itself when no token is configured.
        """
        needed = _RANK[role]
        if self.open:
            return handler

        async def guarded(request: Request) -> Response:
            held = self.role_of(request.header(b"authorization"))
            if held is None:
                raise _refused(request, 401, _UNAUTHORIZED, _REALM)
            if _RANK[held] < needed:
                reason = f"this endpoint needs a token of role {role}"
                raise _refused(request, 403, reason, _REALM + b', error="insufficient_scope"')
            return await handler(request)

        return guarded

    def warn_if_open(self) -> None:
        """Log that the query API answers anyone, when it does."""
        if self.open:
            log.warning(
                "the query API is open: TRACKER_API_TOKENS is empty, so /v1/* (KPIs, and "
                "what is held about a person) answers any client that reaches the exporter"
            )


def _refused(request: Request, status: int, reason: str, challenge: bytes) -> HTTPError:
    """The refusal to raise, logged with what was asked and by whom (never the token)."""
    log.info("query API request refused", path=request.path, status=status, ip=request.client_ip)
    return HTTPError(status, reason, [(b"www-authenticate", challenge)])


__all__ = ["ADMIN", "READ", "Access", "bearer_token"]
