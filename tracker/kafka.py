"""Kafka administration shared by the collector and the workers, errors translated."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context

from tracker.kafka_oauth import token_provider
from tracker.settings import Settings

DAY_MS = 86_400_000
RETENTION = "retention.ms"
MIN_INSYNC = "min.insync.replicas"
# An audit log outlives what it audits: that a person was erased must still be shown
# years later, when their events are long gone. It holds hashes and counts, no id, so
# keeping it is no keeping of personal data. Set when the topic is made only: an
# operator's own retention for it (a legal period) is theirs to keep.
AUDIT_RETENTION_MS = "-1"
_DYNAMIC_TOPIC_CONFIG = 1
"""DescribeConfigs' source of a value set on the topic itself (not a default)."""


def client_options(settings: Settings) -> dict[str, Any]:
    """What every Kafka client tracker makes is given, as aiokafka's arguments: where the
    brokers are, and how they are reached (TLS, SASL)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_tls:
        options["ssl_context"] = tls_context(settings)
    if settings.kafka_oauth:
        options["sasl_mechanism"] = "OAUTHBEARER"
        options["sasl_oauth_token_provider"] = token_provider(settings)
    elif settings.kafka_sasl:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of a client of brokers that speak TLS: their certificates checked
    against the machine's authorities, or the file named; a certificate of its own
    shown when one is set."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_ca_file or None,
        certfile=settings.kafka_ssl_cert_file or None,
        keyfile=settings.kafka_ssl_key_file or None,
    )
    return context


class KafkaUnavailable(RuntimeError):
    """Kafka could not be reached or refused the request; the message says which."""


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Each topic tracker makes, with the configs it is made with."""
    events = {RETENTION: str(settings.events_retention_days * DAY_MS)}
    return {
        settings.events_topic: events,
        settings.dead_letter_topic: events,
        settings.audit_topic: {RETENTION: AUDIT_RETENTION_MS},
    }


def creation_configs(settings: Settings) -> dict[str, str]:
    """Configs every topic tracker makes gets when made, and only then:
    ``min.insync.replicas``, when set.

    Unlike retention it is not aligned on topics that exist: raised on one with fewer
    replicas in sync, it would stop every write to it. Changing it there is an operator's
    step (kafka-configs --alter).
    """
    if settings.topic_min_insync_replicas:
        return {MIN_INSYNC: str(settings.topic_min_insync_replicas)}
    return {}


async def ensure_topics(
    settings: Settings, more: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    """Create tracker's topics when they do not exist yet; set the events' retention.

    The events and dead-letter topics get ``events_retention_days`` also when they
    exist already with another: what Kafka keeps of an erased person is bounded by it.
    The audit topic (one partition, one ordered log) keeps its retention once made.
    Each is made with ``topic_replicas`` replicas and :func:`creation_configs`.
    ``more``: a command's own topics (the forwarder's dead letters) with their configs,
    made with one partition and kept to those configs like the events topic.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    more = more or {}
    configs = {**topic_configs(settings), **more}
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=(
                    1 if name == settings.audit_topic or name in more else settings.topic_partitions
                ),
                replication_factor=settings.topic_replicas,
                topic_configs={**creation_configs(settings), **topic_config},
            )
            for name, topic_config in configs.items()
            if name not in existing
        ]
        if wanted:
            # Refusals come back per topic, not raised.
            created = await admin.create_topics(wanted)
            for name, code, *message in created.topic_errors:
                if code != TopicAlreadyExistsError.errno:  # else made meanwhile, alike
                    _raise_for(code, message[0] if message else None, name)
        retained = {settings.events_topic, settings.dead_letter_topic, *more} & existing
        await _align(admin, {name: configs[name] for name in sorted(retained)})
    except KafkaError as exc:
        # aiokafka takes a broker's refusal of a token for a login and sends on; the
        # broker then drops the connection, which comes back as a node not ready.
        token = ", or refused its OAuth token (its log says why)" * settings.kafka_oauth
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap} refused topic setup: {exc!r}; "
            f"is the broker running (make up){token}?"
        ) from exc
    finally:
        await admin.close()


async def _align(admin: AIOKafkaAdminClient, wanted: Mapping[str, Mapping[str, str]]) -> None:
    """Set ``wanted`` configs on existing topics where they differ, keeping the rest.

    AlterConfigs replaces every config set on a topic (aiokafka has no incremental
    alter), so what is set there already is sent along, changed only where wanted.
    """
    if not wanted:
        return
    described = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
    )
    changes = []
    for response in described:
        for code, message, _, name, entries in response.resources:
            _raise_for(code, message, name)
            current = _set_on_topic(entries)
            if any(current.get(key) != value for key, value in wanted[name].items()):
                configs = {**current, **wanted[name]}
                changes.append(ConfigResource(ConfigResourceType.TOPIC, name, configs))
    if changes:
        for response in await admin.alter_configs(changes):
            for code, message, _, name in response.resources:
                _raise_for(code, message, name)


def _set_on_topic(entries: list[Any]) -> dict[str, str]:
    """The configs set on the topic itself, from DescribeConfigs entries (v1 and later:
    name, value, read only, source, sensitive, synonyms)."""
    return {
        name: value
        for name, value, _, source, sensitive, *_ in entries
        if source == _DYNAMIC_TOPIC_CONFIG and not sensitive and value is not None
    }


def _raise_for(code: int, message: str | None, name: str) -> None:
    if code:
        raise for_code(code)(f"topic {name}: {message or 'refused'}")
