"""What tracker's topics are made with (replicas in sync, and its setting's bounds), and
how every client reaches the brokers (TLS, SASL)."""

from __future__ import annotations

import importlib.util
import ssl

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from tracker.kafka import client_options, creation_configs
from tracker.kafka_oauth import AWSSigned, ClientCredentials
from tracker.settings import Settings, SettingsError, load
from tracker.stream.app import _credentials


def test_min_insync_replicas_is_the_brokers_unless_set() -> None:
    assert creation_configs(Settings()) == {}
    production = load(
        None, {"TRACKER_TOPIC_REPLICAS": "3", "TRACKER_TOPIC_MIN_INSYNC_REPLICAS": "2"}
    )
    assert creation_configs(production) == {"min.insync.replicas": "2"}


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        ({"TRACKER_TOPIC_MIN_INSYNC_REPLICAS": "-1"}, "must be at least 0"),
        # More than there are replicas: Kafka would refuse every event.
        (
            {"TRACKER_TOPIC_MIN_INSYNC_REPLICAS": "2"},
            r"must be at most TRACKER_TOPIC_REPLICAS \(1\)",
        ),
        (
            {"TRACKER_TOPIC_MIN_INSYNC_REPLICAS": "4", "TRACKER_TOPIC_REPLICAS": "3"},
            r"must be at most TRACKER_TOPIC_REPLICAS \(3\)",
        ),
    ],
)
def test_min_insync_replicas_out_of_range_names_the_variable(
    environ: dict[str, str], error: str
) -> None:
    with pytest.raises(SettingsError, match=rf"^TRACKER_TOPIC_MIN_INSYNC_REPLICAS: {error}"):
        load(None, environ)


def test_every_client_is_given_the_brokers_and_plain_text_by_default() -> None:
    assert client_options(Settings(kafka_bootstrap="k1:9092,k2:9092")) == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert _credentials(Settings()) is None


def test_sasl_over_tls_gives_every_client_the_login_and_a_context_that_checks() -> None:
    settings = load(
        None,
        {
            "TRACKER_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",  # as people type it
            "TRACKER_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "TRACKER_KAFKA_SASL_USERNAME": "tracker",
            "TRACKER_KAFKA_SASL_PASSWORD": "pw",
        },
    )
    options = client_options(settings)
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "tracker",
        "sasl_plain_password": "pw",
    }
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert "pw" not in repr(settings)
    faust_side = credentials_to_aiokafka_auth(_credentials(settings))
    assert {k: v for k, v in faust_side.items() if k != "ssl_context"} == {
        k: v for k, v in options.items() if k != "bootstrap_servers"
    }


def test_tls_alone_gives_a_context_and_no_login() -> None:
    options = client_options(Settings(kafka_security_protocol="SSL"))
    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in options
    assert (
        credentials_to_aiokafka_auth(_credentials(Settings(kafka_security_protocol="SSL")))[
            "security_protocol"
        ]
        == "SSL"
    )


def test_an_oauth_login_gives_every_client_a_token_provider_and_no_password() -> None:
    settings = load(
        None,
        {
            "TRACKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TRACKER_KAFKA_SASL_MECHANISM": "oauthbearer",
            "TRACKER_KAFKA_SASL_USERNAME": "tracker-client",
            "TRACKER_KAFKA_SASL_PASSWORD": "client-secret",
            "TRACKER_KAFKA_SASL_OAUTH_TOKEN_URL": "https://idp.example/token",
        },
    )
    options = client_options(settings)
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(options["sasl_oauth_token_provider"], ClientCredentials)
    assert not {"sasl_plain_username", "sasl_plain_password"} & set(options)
    faust_side = credentials_to_aiokafka_auth(_credentials(settings))
    assert faust_side["security_protocol"] == "SASL_SSL"
    assert faust_side["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(faust_side["sasl_oauth_token_provider"], ClientCredentials)
    assert isinstance(faust_side["ssl_context"], ssl.SSLContext)


MSK = {
    "TRACKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "TRACKER_KAFKA_SASL_MECHANISM": "aws_msk_iam",
    "TRACKER_KAFKA_AWS_REGION": "eu-west-1",
}


def test_msk_iam_logs_in_with_oauthbearer_on_the_wire_and_no_password() -> None:
    settings = load(None, MSK)
    assert settings.kafka_sasl_mechanism == "AWS_MSK_IAM"
    options = client_options(settings)
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(options["sasl_oauth_token_provider"], AWSSigned)
    assert not {"sasl_plain_username", "sasl_plain_password"} & set(options)
    faust_side = credentials_to_aiokafka_auth(_credentials(settings))
    assert isinstance(faust_side["sasl_oauth_token_provider"], AWSSigned)


def test_msk_iam_without_aws_signer_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "aws_msk_iam_sasl_signer" else real(name, *args),
    )
    with pytest.raises(SettingsError, match=r"pip install 'tracker\[aws\]'"):
        load(None, MSK)


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        (
            {**MSK, "TRACKER_KAFKA_AWS_REGION": ""},
            "AWS_MSK_IAM needs TRACKER_KAFKA_AWS_REGION",
        ),
        (
            {"TRACKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TRACKER_KAFKA_SASL_USERNAME": "u"},
            "SASL_SSL needs TRACKER_KAFKA_SASL_USERNAME and TRACKER_KAFKA_SASL_PASSWORD",
        ),
        *(
            (
                {
                    "TRACKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                    "TRACKER_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                    "TRACKER_KAFKA_SASL_USERNAME": "u",
                    "TRACKER_KAFKA_SASL_PASSWORD": "p",
                    "TRACKER_KAFKA_SASL_OAUTH_TOKEN_URL": url,
                },
                "OAUTHBEARER needs TRACKER_KAFKA_SASL_OAUTH_TOKEN_URL",
            )
            for url in ("", "idp.example/token", "https://")
        ),
        ({"TRACKER_KAFKA_SSL_CERT_FILE": "/c.pem"}, "TRACKER_KAFKA_SSL_KEY_FILE go together"),
        ({"TRACKER_KAFKA_SECURITY_PROTOCOL": "TLS"}, "expected one of PLAINTEXT, SSL"),
    ],
)
def test_a_security_setting_that_cannot_work_is_refused(
    environ: dict[str, str], error: str
) -> None:
    with pytest.raises(SettingsError, match=error):
        load(None, environ)
