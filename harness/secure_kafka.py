"""A Kafka broker that takes clients over TLS with a SASL login (SASL_SSL: PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512, or OAUTHBEARER with tokens of a test's OAuth provider),
as managed Kafka services do, beside the session's broker: for tests of tracker's Kafka
security settings.

``deploy/local/kafka.sh`` runs it in a folder of its own, with properties appended to
the usual ones: a SASL_SSL listener for the clients, its certificate signed by a test's
own authority. The script's plaintext listener stays, on another port, for its
readiness probe and the controller.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import oauth_provider
from harness.isolation import free_port
from harness.redis_servers import Certificates
from harness.services import ROOT
from tracker.settings import Settings

SCRIPT = ROOT / "deploy/local/kafka.sh"
USER = "tracker"
PASSWORD = "broker-test-password"  # noqa: S105  # a test broker's, made here
SCRAM = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_MODULES = "org.apache.kafka.common.security"


def password_of(mechanism: str) -> str:
    """The user's password with ``mechanism``: each its own, so that a client which logs
    in with another mechanism than it was told is refused."""
    if mechanism == "OAUTHBEARER":
        return oauth_provider.SECRET
    return PASSWORD if mechanism == "PLAIN" else f"{PASSWORD}-{mechanism.lower()}"


@dataclass(frozen=True, slots=True)
class SecureKafka:
    bootstrap: str
    """Its SASL_SSL listener, ``127.0.0.1:<port>``."""
    ca: Path
    plain: str
    """Its PLAINTEXT listener: the same broker without TLS or a login, to compare."""
    pidfile: Path
    token_url: str
    """The token endpoint of the OAuth provider whose tokens it takes (OAUTHBEARER)."""

    def settings(
        self, settings: Settings, password: str | None = None, mechanism: str = "PLAIN"
    ) -> Settings:
        """``settings`` reaching this broker as a client must: TLS trusting the test's
        authority, and the user's login with ``mechanism`` (or another ``password``);
        with OAUTHBEARER, the OAuth client's id and secret and the token endpoint."""
        oauth = mechanism == "OAUTHBEARER"
        return dataclasses.replace(
            settings,
            kafka_bootstrap=self.bootstrap,
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username=oauth_provider.CLIENT if oauth else USER,
            kafka_sasl_password=password or password_of(mechanism),
            kafka_sasl_oauth_token_url=self.token_url if oauth else "",
            kafka_ssl_ca_file=str(self.ca),
        )


def _two_free_ports() -> int:
    """A port whose next one is free too (the script's controller listens there)."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@contextmanager
def secure_kafka(
    folder: Path, tls: Certificates, oauth: oauth_provider.Provider | None = None
) -> Iterator[SecureKafka]:
    """A broker in ``folder`` whose clients speak SASL_SSL, signed by ``tls``'s authority;
    with ``oauth``, taking the access tokens it gives for the broker's audience too."""
    plain, secure = _two_free_ports(), free_port()
    keystore = folder / "keystore.pem"  # Kafka reads a PEM key store: the key, then the chain
    keystore.write_text(tls.key.read_text() + tls.cert.read_text())
    listeners = (
        f"PLAINTEXT://127.0.0.1:{plain},CONTROLLER://127.0.0.1:{plain + 1},"
        f"SASL_SSL://127.0.0.1:{secure}"
    )
    plain_login = f'{_MODULES}.plain.PlainLoginModule required user_{USER}="{PASSWORD}";'
    scram_login = f"{_MODULES}.scram.ScramLoginModule required;"  # users: the format's
    mechanisms, jvm, oauth_lines = ["PLAIN", *SCRAM], "-Xms128m -Xmx512m", ""
    if oauth:
        mechanisms.append("OAUTHBEARER")
        named = "listener.name.sasl_ssl.oauthbearer"
        oauth_lines = (
            f"{named}.sasl.jaas.config={_MODULES}.oauthbearer.OAuthBearerLoginModule required;\n"
            f"{named}.sasl.server.callback.handler.class="
            f"{_MODULES}.oauthbearer.OAuthBearerValidatorCallbackHandler\n"
            f"sasl.oauthbearer.jwks.endpoint.url={oauth.jwks_url}\n"
            f"sasl.oauthbearer.expected.audience={oauth_provider.AUDIENCE}\n"
            f"sasl.oauthbearer.expected.issuer={oauth.url}\n"
        )
        # Kafka fetches only the URLs the JVM allows (none by default, since 4.0).
        jvm += f" -Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={oauth.jwks_url}"
    properties = folder / "secure.properties"
    properties.write_text(
        f"listeners={listeners}\n"
        f"advertised.listeners={listeners}\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL\n"
        f"sasl.enabled.mechanisms={','.join(mechanisms)}\n"
        f"listener.name.sasl_ssl.plain.sasl.jaas.config={plain_login}\n"
        + "".join(
            f"listener.name.sasl_ssl.{name.lower()}.sasl.jaas.config={scram_login}\n"
            for name in SCRAM
        )
        + oauth_lines
        + "ssl.keystore.type=PEM\n"
        f"ssl.keystore.location={keystore}\n"
    )
    environment = {
        **os.environ,
        "TRACKER_KAFKA_BOOTSTRAP": f"127.0.0.1:{plain}",
        "TRACKER_KAFKA_RUN_DIR": str(folder / "kafka"),
        "TRACKER_KAFKA_PROPERTIES": str(properties),
        "TRACKER_KAFKA_HEAP_OPTS": jvm,
        "TRACKER_KAFKA_FORMAT_ARGS": " ".join(
            f"--add-scram {name}=[name={USER},password={password_of(name)}]" for name in SCRAM
        ),
    }

    def script(action: str) -> None:
        done = subprocess.run(
            ["bash", str(SCRIPT), action], env=environment, capture_output=True, text=True
        )
        assert done.returncode == 0, f"kafka.sh {action}:\n{done.stderr[-4000:]}"

    script("start")
    try:
        pidfile = folder / "kafka" / "kafka.pid"
        yield SecureKafka(
            f"127.0.0.1:{secure}", tls.ca, f"127.0.0.1:{plain}", pidfile,
            oauth.token_url if oauth else "",
        )  # fmt: skip
    finally:
        script("stop")
