"""Access tokens for Kafka's SASL OAUTHBEARER login: an OAuth provider's (the client
credentials grant), or AWS MSK's IAM login, signed with AWS credentials.

Kafka behind an identity provider (Strimzi with Keycloak, Confluent Cloud's OAuth, Event
Hubs with Entra ID) takes a client that shows an access token instead of a password.
aiokafka asks a client's token provider at every login, one a new connection, so the
token is kept: asked of the token endpoint once, and again once 80% of its lifetime has
passed, as Kafka's own clients do (``sasl.login.refresh.window.factor``), so that a
connection made later never shows an expired one. The brokers check the token
themselves (its signature, audience and expiry; MSK its AWS signature against IAM).
"""

from __future__ import annotations

import abc
import asyncio
import ssl
import time
from urllib.parse import quote_plus

import httpx
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import KafkaError

from tracker.settings import AWS_MSK_IAM, Settings

REFRESH_AFTER = 0.8
"""The share of a token's lifetime after which a new one is asked for."""
UNSAID_LIFETIME_S = 60.0
"""How long a token is taken to live when the endpoint does not say (``expires_in``)."""
_TIMEOUT_S = 10.0
_now = time.monotonic
"""The clock tokens age by (a test's own in tests)."""


class TokenRefused(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """The token endpoint gave no access token; the message says what it answered. A
    Kafka error, as a refused login is: callers that tell Kafka is unreachable say so."""


class _Kept(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka is untyped
    """A token asked for once and shown at every login until most of its life is gone."""

    def __init__(self) -> None:
        self._token = ""
        self._fresh_until = 0.0
        self._asking = asyncio.Lock()
        """One request at a time: a client's connections log in together at its start."""

    async def token(self) -> str:
        async with self._asking:
            if not self._token or _now() >= self._fresh_until:
                asked_at = _now()
                self._token, lifetime = await self._ask()
                self._fresh_until = asked_at + REFRESH_AFTER * lifetime
        return self._token

    @abc.abstractmethod
    async def _ask(self) -> tuple[str, float]:
        """A new token, and how many seconds it lives."""


class ClientCredentials(_Kept):
    """Access tokens for the client the settings name (``TRACKER_KAFKA_SASL_USERNAME``
    and ``..._PASSWORD``: its id and secret), from ``TRACKER_KAFKA_SASL_OAUTH_TOKEN_URL``,
    with ``..._SCOPE`` if set. An https endpoint's certificate must be signed by an
    authority the brokers' may be: ``TRACKER_KAFKA_SSL_CA_FILE``'s, else the machine's."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._url = settings.kafka_sasl_oauth_token_url
        # RFC 6749 2.3.1: id and secret are form-encoded before they are joined.
        self._login = httpx.BasicAuth(
            quote_plus(settings.kafka_sasl_username), quote_plus(settings.kafka_sasl_password)
        )
        self._form = {"grant_type": "client_credentials"}
        if settings.kafka_sasl_oauth_scope:
            self._form["scope"] = settings.kafka_sasl_oauth_scope
        # Checked as the brokers' certificates are: against the same authorities.
        self._trust = ssl.create_default_context(cafile=settings.kafka_ssl_ca_file or None)

    async def _ask(self) -> tuple[str, float]:
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT_S, verify=self._trust) as http:
                answer = await http.post(self._url, data=self._form, auth=self._login)
        except httpx.HTTPError as exc:
            raise TokenRefused(
                f"the OAuth token endpoint {self._url} did not answer: {exc}"
            ) from exc
        if answer.status_code != httpx.codes.OK:
            raise TokenRefused(
                f"the OAuth token endpoint {self._url} answered {answer.status_code}: "
                f"{answer.text[:300]}"
            )
        try:
            given = answer.json()
            token, lifetime = given["access_token"], given.get("expires_in", UNSAID_LIFETIME_S)
            if not (isinstance(token, str) and token):
                raise TypeError("an empty access_token")
            return token, float(lifetime)
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenRefused(
                f"the OAuth token endpoint {self._url} gave no access token: {exc}"
            ) from exc


class AWSSigned(_Kept):
    """AWS MSK's IAM login (``TRACKER_KAFKA_SASL_MECHANISM=AWS_MSK_IAM``): a token that
    is a request to the cluster's region signed with the machine's AWS credentials (the
    default chain: the environment, a pod's web identity, an instance profile), made
    by AWS's own signer (``pip install 'tracker[aws]'``); MSK checks the signature
    against IAM. It lives 15 minutes."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._region = settings.kafka_aws_region

    async def _ask(self) -> tuple[str, float]:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # the optional [aws] extra

        try:
            token, expires_ms = await asyncio.to_thread(
                MSKAuthTokenProvider.generate_auth_token, self._region
            )
        except Exception as exc:  # botocore's errors share no base worth naming
            raise TokenRefused(f"no AWS credentials signed an MSK token: {exc}") from exc
        return str(token), expires_ms / 1000 - time.time()


def token_provider(settings: Settings) -> AbstractTokenProvider:
    """The token provider of the settings' OAuth login (:attr:`Settings.kafka_oauth`)."""
    if settings.kafka_sasl_mechanism == AWS_MSK_IAM:
        return AWSSigned(settings)
    return ClientCredentials(settings)
