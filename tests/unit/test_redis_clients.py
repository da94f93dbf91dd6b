"""Where a Redis Cluster's slot is asked, and which node serves it, from what nodes say;
what a Sentinel URL makes of the clients."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio
from redis.crc import key_slot
from redis.exceptions import ConnectionError

from tracker.redis_clients import Topology, _connection, async_client, replicated, sync_client
from tracker.settings import Settings


def test_a_single_redis_is_read_as_its_url_says() -> None:
    settings = Settings(redis_url="redis://10.0.0.5:6380/2")
    assert _connection(settings) == ("redis://10.0.0.5:6380/2", None)
    assert settings.key_prefix == "tracker"


def test_a_cluster_url_names_every_seed_and_puts_the_keys_in_one_slot() -> None:
    settings = Settings(redis_url="redis+cluster://me:secret@h1:7001,h2:7002,h3/0")
    url, topology = _connection(settings)
    assert url == "redis://me:secret@h1:7001/0"
    assert topology is not None
    assert topology.nodes == [("h1", 7001), ("h2", 7002), ("h3", 6379)]
    assert topology.options == {"username": "me", "password": "secret"}
    assert settings.key_prefix == "{tracker}"
    assert topology.slot == key_slot(b"{tracker}") == key_slot(b"{tracker}:b:1h:0:total")


def test_a_password_is_read_unquoted_as_redis_py_reads_the_url_of_one_node() -> None:
    settings = Settings(redis_url="redis+cluster://me:p%40ss%3Aword@h1:7001/0")
    _, topology = _connection(settings)
    assert topology is not None
    assert topology.options == {"username": "me", "password": "p@ss:word"}
    assert "p@ss" not in repr(topology)


def test_a_tls_cluster_url_makes_every_connection_speak_tls_trusting_what_it_names() -> None:
    settings = Settings(
        redis_url="rediss+cluster://h1:7001,h2:7002/0?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false"
    )
    assert settings.redis_is_cluster
    url, topology = _connection(settings)
    assert url == "rediss://h1:7001/0?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false"
    assert topology is not None
    assert topology.tls
    assert topology.options == {
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_check_hostname": False,
    }
    asking = topology.asking(("h2", 7002))
    assert "ssl" not in asking  # the connection's class says it
    assert asking["ssl_ca_certs"] == "/etc/ca.pem"
    assert not Topology(1, [], {"username": "me"}).tls


def test_the_flag_makes_a_redis_url_a_cluster_one_and_a_tag_in_the_prefix_is_kept() -> None:
    settings = Settings(redis_url="redis://h1:7001/0", redis_cluster=True, redis_prefix="a{b}")
    assert settings.key_prefix == "a{b}"
    assert _connection(settings)[1] is not None


SLOTS = [
    [0, 5460, [b"127.0.0.1", 7001, b"id1"], [b"127.0.0.1", 7004, b"id4"]],
    [5461, 10922, [b"", 7002, b"id2"], [b"127.0.0.1", 7005, b"id5"]],
    [10923, 16383, [b"127.0.0.1", 7003, b"id3"]],
]


def test_the_primary_of_the_slot_is_named_and_every_node_learned() -> None:
    topology = Topology(6000, [("127.0.0.1", 7006)])
    # An empty host is the host asked (as Redis answers for its own address).
    assert topology.learn(("10.1.1.1", 7006), SLOTS) == ("10.1.1.1", 7002)
    assert topology.nodes == [
        ("127.0.0.1", 7006),
        ("127.0.0.1", 7001),
        ("127.0.0.1", 7004),
        ("10.1.1.1", 7002),
        ("127.0.0.1", 7005),
        ("127.0.0.1", 7003),
    ]


def test_a_slot_no_node_serves_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="serves slot 6000"):
        Topology(6000, []).learn(("h", 1), SLOTS[:1])


def test_off_a_cluster_writes_that_must_last_use_the_client_itself() -> None:
    """One Redis has no replica to wait for: WAIT would answer 0 and refuse every save."""

    async def given() -> bool:
        client = async_client(Settings())
        try:
            async with replicated(client) as used:
                return used is client
        finally:
            await client.aclose()

    assert asyncio.run(given())


def sentinels_of(client: Any) -> list[dict[str, Any]]:
    """What each Sentinel a client asks is reached with."""
    manager = client.connection_pool.sentinel_manager
    return [sentinel.connection_pool.connection_kwargs for sentinel in manager.sentinels]


@pytest.mark.parametrize("make", [async_client, sync_client])
def test_a_sentinel_url_names_the_sentinels_the_primary_and_its_database(make: Any) -> None:
    settings = Settings(redis_url="redis+sentinel://me:p%40ss@s1,s2:26380/orders/2")
    assert settings.redis_is_sentinel
    assert not settings.redis_is_cluster
    assert settings.key_prefix == "tracker"  # one primary holds every key: no hash tag
    client = make(settings)
    pool = client.connection_pool
    assert pool.service_name == "orders"
    assert pool.is_master
    primary = pool.connection_kwargs
    assert (primary["db"], primary["username"], primary["password"]) == (2, "me", "p@ss")
    assert primary["retry"].get_retries() == 3  # a failover's dead connections are retried
    asked = sentinels_of(client)
    assert [(s["host"], s["port"]) for s in asked] == [("s1", 26379), ("s2", 26380)]
    assert all((s["username"], s["password"]) == ("me", "p@ss") for s in asked)
    assert all(s["socket_timeout"] == 1.0 for s in asked)  # the next is asked soon
    assert "db" not in asked[0] or asked[0]["db"] == 0  # a Sentinel has no database 2


def test_the_sentinels_password_may_differ_from_the_primarys_or_be_none() -> None:
    for given, expected in (("s3cret", "s3cret"), ("", None)):
        url = f"redis+sentinel://:node-pass@s1/orders?sentinel_password={given}"
        client = sync_client(Settings(redis_url=url))
        assert client.connection_pool.connection_kwargs["password"] == "node-pass"  # noqa: S105
        assert "sentinel_password" not in client.connection_pool.connection_kwargs
        (asked,) = sentinels_of(client)
        assert (asked["username"], asked["password"]) == (None, expected)


def test_a_tls_sentinel_url_speaks_tls_to_the_sentinels_and_the_primary() -> None:
    client = async_client(Settings(redis_url="rediss+sentinel://s1/orders?ssl_ca_certs=/ca.pem"))
    pool = client.connection_pool
    assert issubclass(pool.connection_class, redis.asyncio.SSLConnection)
    assert pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
    manager: Any = pool.sentinel_manager  # type: ignore[attr-defined]
    (asked,) = manager.sentinels
    assert issubclass(asked.connection_pool.connection_class, redis.asyncio.SSLConnection)
    assert asked.connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
