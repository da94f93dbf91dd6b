"""``tracker check`` on real servers: what it says of Kafka's topics and the store, and
its exit status when either cannot be reached or the store may evict keys."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from harness.processes import command
from harness.redis_servers import redis_server
from tracker.kafka import ensure_topics
from tracker.settings import Settings


def lines(settings: Settings) -> tuple[int, list[str]]:
    done = command(settings, "check", timeout=120)
    return done.returncode, done.stdout.splitlines()


@pytest.mark.services
def test_it_names_each_topic_and_node_and_says_ok(settings: Settings) -> None:
    settings = dataclasses.replace(settings, events_retention_days=3)
    asyncio.run(ensure_topics(settings))
    status, said = lines(settings)
    assert status == 0, said
    assert said[0] == f"kafka: {settings.kafka_bootstrap} over PLAINTEXT: 1 broker"
    topics = [settings.events_topic, settings.dead_letter_topic, settings.audit_topic]
    assert [line.split(":")[1].strip() for line in said[1:4]] == topics
    assert said[1] == (
        f"kafka: {settings.events_topic}: {settings.topic_partitions} partitions, 1 replica "
        "each, min.insync.replicas 1, retention 3 days, every replica in sync"
    )
    assert "retention for ever" in said[3]  # the audit log's
    assert said[4].startswith(f"store: {settings.redis_url}: one Redis, 1 node answered")
    assert "primary" in said[5]
    assert "maxmemory-policy noeviction" in said[5]
    assert said[-1] == "check: ok"


@pytest.mark.services
def test_a_retention_the_next_start_changes_is_said(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings))
    status, said = lines(dataclasses.replace(settings, events_retention_days=2))
    assert status == 0
    assert "(the next collector or worker sets 2 days)" in said[1]


@pytest.mark.services
def test_a_store_that_may_evict_fails_with_2(settings: Settings, tmp_path: Path) -> None:
    with redis_server(tmp_path, "--maxmemory-policy", "volatile-lru") as (url, port):
        status, said = lines(dataclasses.replace(settings, redis_url=url))
    assert status == 2
    assert f"127.0.0.1:{port} primary" in "\n".join(said)
    assert any(line.startswith("store: FAIL Redis may evict") for line in said)
    assert said[-1] == "check: FAILED"


def test_what_cannot_be_reached_fails_with_1() -> None:
    away = Settings(kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:2/0")
    status, said = lines(away)
    assert status == 1
    assert said[0].startswith("kafka: FAIL 127.0.0.1:1 over PLAINTEXT")
    assert said[1].startswith("store: FAIL redis://127.0.0.1:2/0 (one Redis)")
