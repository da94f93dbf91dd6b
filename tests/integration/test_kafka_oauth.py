"""The access tokens tracker's Kafka clients log in with (SASL OAUTHBEARER), asked of an
OAuth provider of the test's own over HTTP, or signed by AWS's own signer for MSK's IAM
login: kept while fresh, asked again after 80% of their lifetime, asked once for many
logins at a time, and a refusal said plainly."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

from harness.isolation import free_port
from harness.oauth_provider import AUDIENCE, CLIENT, SECRET, Provider, oauth_provider
from harness.redis_servers import certificates
from tracker import kafka_oauth
from tracker.kafka_oauth import AWSSigned, ClientCredentials, TokenRefused, token_provider
from tracker.settings import Settings

LIFETIME_S = 100


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with oauth_provider(lifetime_s=LIFETIME_S) as started:
        yield started


def credentials(
    provider: Provider, secret: str = SECRET, scope: str = "", ca: str = ""
) -> ClientCredentials:
    return ClientCredentials(
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="OAUTHBEARER",
            kafka_sasl_username=CLIENT,
            kafka_sasl_password=secret,
            kafka_sasl_oauth_token_url=provider.token_url,
            kafka_sasl_oauth_scope=scope,
            kafka_ssl_ca_file=ca,
        )
    )


def test_a_token_is_the_providers_for_the_client_and_the_scope(provider: Provider) -> None:
    token = asyncio.run(credentials(provider, scope="kafka-write").token())
    keys = jwt.PyJWKClient(provider.jwks_url)
    claims = jwt.decode(
        token, keys.get_signing_key_from_jwt(token).key, algorithms=["RS256"], audience=AUDIENCE
    )
    assert (claims["sub"], claims["scope"]) == (CLIENT, "kafka-write")


def test_a_token_is_kept_until_most_of_its_lifetime_has_passed(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(kafka_oauth, "_now", lambda: now[0])
    client = credentials(provider)
    before = len(provider.given)

    async def logins() -> list[str]:
        """What the client shows at logins along its tokens' lifetime."""
        shown = [await client.token()]
        now[0] += 0.79 * LIFETIME_S
        shown.append(await client.token())  # still fresh
        now[0] += 0.02 * LIFETIME_S
        shown.append(await client.token())  # past 80%: a new one
        return shown

    first, kept, renewed = asyncio.run(logins())
    assert kept == first != renewed
    assert len(provider.given) - before == 2


def test_logins_at_once_ask_for_one_token(provider: Provider) -> None:
    client = credentials(provider)
    before = len(provider.given)

    async def at_once() -> set[str]:
        return set(await asyncio.gather(*(client.token() for _ in range(8))))

    assert len(asyncio.run(at_once())) == 1
    assert len(provider.given) - before == 1


def test_a_refused_client_is_said_plainly(provider: Provider) -> None:
    with pytest.raises(
        TokenRefused, match=r"token endpoint http://.*/token answered 401: .*invalid_client"
    ):
        asyncio.run(credentials(provider, secret="not-the-secret").token())  # noqa: S106


def test_an_endpoint_that_does_not_answer_is_said_plainly(provider: Provider) -> None:
    client = credentials(provider)
    client._url = f"http://127.0.0.1:{free_port()}/token"  # nothing listens there
    with pytest.raises(TokenRefused, match="did not answer"):
        asyncio.run(client.token())


def test_an_https_endpoint_is_trusted_as_the_brokers_are(tmp_path: Path) -> None:
    """Against the authority named for the brokers' certificates, else the machine's."""
    tls = certificates(tmp_path)
    with oauth_provider(tls=tls) as secured:
        assert secured.token_url.startswith("https://")
        assert asyncio.run(credentials(secured, ca=str(tls.ca)).token())
        with pytest.raises(TokenRefused, match=r"did not answer: .*CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(credentials(secured).token())


NO_AWS_FILES = {
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance to ask, here or in CI
}


def msk(monkeypatch: pytest.MonkeyPatch, **environ: str) -> AWSSigned:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**NO_AWS_FILES, **environ}.items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="AWS_MSK_IAM",
        kafka_aws_region="eu-west-1",
    )
    provider = token_provider(settings)
    assert isinstance(provider, AWSSigned)
    return provider


def test_an_msk_token_is_a_connect_request_signed_with_the_machines_aws_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As AWS's signer makes it, from the credentials of the environment (a pod's are
    its web identity's), kept 80% of its 15 minutes."""
    now = [1000.0]
    monkeypatch.setattr(kafka_oauth, "_now", lambda: now[0])
    provider = msk(monkeypatch, AWS_ACCESS_KEY_ID="AKIDTRACKERTEST", AWS_SECRET_ACCESS_KEY="s3")  # noqa: S106
    signed_for: list[str] = []
    sign = MSKAuthTokenProvider.generate_auth_token

    def counted(region: str) -> Any:
        signed_for.append(region)
        return sign(region)

    monkeypatch.setattr(MSKAuthTokenProvider, "generate_auth_token", counted)

    async def logins() -> list[str]:
        shown = [await provider.token()]
        now[0] += 0.79 * 900
        shown.append(await provider.token())
        now[0] += 0.02 * 900
        shown.append(await provider.token())
        return shown

    first, kept, renewed = asyncio.run(logins())
    assert kept == first
    signed = urlsplit(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode())
    query = dict(parse_qsl(signed.query))
    assert signed.netloc == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == "kafka-cluster:Connect"
    assert query["X-Amz-Credential"].startswith("AKIDTRACKERTEST/")
    assert "/eu-west-1/kafka-cluster/aws4_request" in query["X-Amz-Credential"]
    assert int(query["X-Amz-Expires"]) == 900
    assert len(query["X-Amz-Signature"]) == 64
    assert renewed
    assert signed_for == ["eu-west-1", "eu-west-1"]  # once, then past 80%


def test_no_aws_credentials_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TokenRefused, match="no AWS credentials signed an MSK token"):
        asyncio.run(msk(monkeypatch).token())
