"""``tracker check``: Kafka and the store as tracker reaches them, before anything runs.

Once TLS, a SASL or OAuth login, Sentinels or a cluster are set, whether each process
will reach Kafka and the store, and what it will find there, is known only when one
starts and fails. This asks both with the same settings and clients the processes use
and says what it finds: the brokers and tracker's topics (partitions, replicas in
sync, ``min.insync.replicas``), the store's kind and nodes (role, ``maxmemory-policy``,
append-only file), and under Sentinel whether they can fail the primary over. It reads
only: nothing is made or changed.

Exit status: 0 when every process may start and keep the figures; 1 when Kafka or the
store cannot be reached or refuses the login; 2 when the store may evict keys (a
worker refuses it). What is only a risk (a partition with a replica out of sync, a
node without an append-only file, Sentinels too few to agree on a failover) is said
and does not fail.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
import redis.asyncio.sentinel
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError, ResponseError

from tracker.kafka import DAY_MS, MIN_INSYNC, RETENTION, client_options, topic_configs
from tracker.redis_clients import async_client
from tracker.redis_nodes import Node, forgetful, read, refusal
from tracker.settings import Settings, sentinel_service

UNREACHABLE = 1
MAY_EVICT = 2


@dataclass(slots=True)
class Report:
    """What was found, line by line, and the worst exit status it calls for."""

    lines: list[str] = field(default_factory=list)
    status: int = 0

    def say(self, part: str, text: str) -> None:
        self.lines.append(f"{part}: {text}")

    def fail(self, part: str, text: str, status: int) -> None:
        self.say(part, f"FAIL {text}")
        self.status = max(self.status, status)

    def warn(self, part: str, text: str) -> None:
        self.say(part, f"WARN {text}")


def check(settings: Settings) -> Report:
    """Ask Kafka and the store; what they said."""
    report = Report()
    asyncio.run(_kafka(settings, report))
    asyncio.run(_store(settings, report))
    report.say("check", "FAILED" if report.status else "ok")
    return report


async def _kafka(settings: Settings, report: Report) -> None:
    where = f"{settings.kafka_bootstrap} over {settings.kafka_security_protocol}"
    if settings.kafka_sasl:
        where += f" ({settings.kafka_sasl_mechanism})"
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        brokers = (await admin.describe_cluster())["brokers"]
        report.say("kafka", f"{where}: {_count(len(brokers), 'broker')}")
        wanted = topic_configs(settings)
        existing = set(await admin.list_topics())  # describing a topic may make it
        made = [name for name in wanted if name in existing]
        configs = await _configs(admin, made) if made else {}
        described = {t["topic"]: t for t in await admin.describe_topics(made)} if made else {}
        for name in wanted:
            if name not in described:
                report.say(
                    "kafka", f"{name}: not made yet (the first collector or worker makes it)"
                )
                continue
            _topic(report, described[name], configs[name], wanted[name].get(RETENTION))
    except (KafkaError, OSError) as exc:
        report.fail("kafka", f"{where}: {exc!r}", UNREACHABLE)
    finally:
        await admin.close()


async def _configs(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's ``min.insync.replicas`` and retention, set on it or the brokers'."""
    asked = {MIN_INSYNC: None, RETENTION: None}
    found: dict[str, dict[str, str]] = {name: {} for name in topics}
    described = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, asked) for name in topics]
    )
    for response in described:
        for _, _, _, name, entries in response.resources:
            found[name] = {key: value for key, value, *_ in entries if key in asked}
    return found


def _topic(
    report: Report, topic: dict[str, Any], configs: dict[str, str], retention: str | None
) -> None:
    """One topic's partitions, replicas in sync and configs; a retention other than the
    one the processes set is said (the next to start sets it)."""
    partitions = topic["partitions"]
    replicas = sorted({len(p["replicas"]) for p in partitions})
    behind = sorted(p["partition"] for p in partitions if len(p["isr"]) < len(p["replicas"]))
    kept = _days(configs.get(RETENTION))
    copies = _count(replicas[0], "replica") if len(replicas) == 1 else f"{replicas} replicas"
    text = (
        f"{topic['topic']}: {_count(len(partitions), 'partition')}, {copies} each, "
        f"min.insync.replicas {configs.get(MIN_INSYNC, '?')}, retention {kept}"
    )
    if retention is not None and configs.get(RETENTION) != retention:
        text += f" (the next collector or worker sets {_days(retention)})"
    if behind:
        report.warn("kafka", f"{text}; replicas out of sync in partitions {behind}")
    else:
        report.say("kafka", f"{text}, every replica in sync")


def _days(retention_ms: str | None) -> str:
    if retention_ms is None:
        return "?"
    if int(retention_ms) < 0:
        return "for ever"
    days = int(retention_ms) / DAY_MS
    return f"{days:g} day{'s' * (days != 1)}"


async def _store(settings: Settings, report: Report) -> None:
    where = settings.redis_shown
    if settings.redis_is_cluster:
        kind = "a Redis Cluster"
    elif settings.redis_is_sentinel:
        kind = f"the primary Redis Sentinels call {sentinel_service(settings.redis_url)[0]!r}"
    else:
        kind = "one Redis"
    client = async_client(settings)
    try:
        nodes = await read(settings, client)
        quorum = await _quorum(client)
    except (RedisError, OSError) as exc:
        report.fail("store", f"{where} ({kind}): {exc}", UNREACHABLE)
        return
    finally:
        await client.aclose()
    report.say("store", f"{where}: {kind}, {_count(len(nodes), 'node')} answered")
    for node in sorted(nodes, key=lambda n: (not n.primary, n.address)):
        report.say("store", _node(node))
    if quorum is not None:
        answered, able = sum(a is not None for a in quorum), sum(a is True for a in quorum)
        text = f"Sentinels: {answered} of {len(quorum)} answered"
        if able:
            report.say("store", f"{text}, {able} can fail the primary over (CKQUORUM)")
        else:
            report.warn("store", f"{text}, none can fail the primary over: one lost now stays lost")
    if refused := refusal(nodes):
        report.fail("store", refused, MAY_EVICT)
    if lossy := forgetful(nodes):
        report.warn("store", lossy)


async def _quorum(client: redis.asyncio.Redis) -> list[bool | None] | None:
    """Under Sentinel, whether each Sentinel says enough of them are up to agree on a
    failover and authorize it (``SENTINEL CKQUORUM``); None where one does not answer.
    None off Sentinel."""
    pool = client.connection_pool
    if not isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool):
        return None

    async def able(sentinel: redis.asyncio.Redis) -> bool | None:
        try:
            # Asked raw: redis-py's sentinel_ckquorum takes only a bare "OK" for yes, and
            # a Sentinel says "OK 3 usable Sentinels. ...".
            answer = await sentinel.execute_command("SENTINEL", "CKQUORUM", pool.service_name)  # type: ignore[no-untyped-call]
            return (answer.decode() if isinstance(answer, bytes) else str(answer)).startswith("OK")
        except ResponseError:  # NOQUORUM: too few of them to agree
            return False
        except (RedisError, OSError):
            return None

    return list(await asyncio.gather(*map(able, pool.sentinel_manager.sentinels)))


def _node(node: Node) -> str:
    limit = f"{node.max_bytes / 2**20:.0f} MiB" if node.max_bytes else "no maxmemory"
    return (
        f"{node.address} {'primary' if node.primary else 'replica'}, "
        f"{node.used_bytes / 2**20:.1f} MiB used of {limit}, maxmemory-policy {node.policy}, "
        f"appendonly {'yes' if node.append_only else 'no'}"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"
