"""Kafka administration shared by the collector and the workers, errors translated."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from tracker.settings import Settings


class KafkaUnavailable(RuntimeError):
    """Kafka could not be reached or refused the request; the message says which."""


async def ensure_topics(settings: Settings) -> None:
    """Create the events and dead-letter topics when they do not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replicas,
            )
            for name in (settings.events_topic, settings.dead_letter_topic)
            if name not in existing
        ]
        if wanted:
            await admin.create_topics(wanted)
    except TopicAlreadyExistsError:
        pass  # another process created it meanwhile
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap} refused topic setup: {exc!r}; "
            "is the broker running (make up)?"
        ) from exc
    finally:
        await admin.close()
