"""Which Redis servers the store trusts, and how the exporter reports them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from tracker.export.metrics import store_nodes
from tracker.redis_nodes import Node, cluster_addresses, forgetful, node, refusal

# As redis-py parses INFO memory stats replication (abridged).
INFO = {
    "used_memory": 1_958_960,
    "used_memory_human": "1.87M",
    "maxmemory": 4_294_967_296,
    "maxmemory_policy": "noeviction",
    "evicted_keys": 0,
    "role": "master",
    "aof_enabled": 1,
}

# CLUSTER NODES of a cluster mid-failover: a primary failed, its replica promoted, one
# node still in handshake, one without an address.
CLUSTER_NODES = """\
4194 127.0.0.1:7004@17004 slave 9f51 0 1796471460111 2 connected
e4c5 127.0.0.1:7001@17001 myself,master - 0 1796471459000 1 connected 0-5460
9f51 127.0.0.1:7002@17002 master,fail - 1796471450000 1796471440000 2 disconnected
8ef5 127.0.0.1:7003@17003 master - 0 1796471460000 3 connected 10923-16383
d199 127.0.0.1:7006@17006 master - 0 1796471460111 4 connected 5461-10922
0d35 127.0.0.1:7005@17005 slave 8ef5 0 1796471460111 3 connected
aa11 127.0.0.1:7007@17007 handshake - 0 0 0 connected
bb22 :0@0 master,noaddr - 0 0 0 disconnected
"""


def test_a_node_is_read_from_its_info() -> None:
    assert node("10.0.0.5:6379", INFO) == Node(
        "10.0.0.5:6379", True, 1_958_960, 4_294_967_296, "noeviction", 0, True
    )
    replica = node("10.0.0.6:6379", {**INFO, "role": "slave", "evicted_keys": 12})
    assert (replica.primary, replica.evicted_keys) == (False, 12)


def test_a_store_whose_nodes_never_evict_is_trusted() -> None:
    nodes = [node("a:1", INFO), node("b:2", {**INFO, "maxmemory": 0})]
    assert refusal(nodes) is None
    assert not any(n.may_evict for n in nodes)


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru", "volatile-ttl", "allkeys-lfu"])
@pytest.mark.parametrize("limit", [0, 4_294_967_296])
def test_a_node_that_may_evict_is_refused_whatever_its_limit(policy: str, limit: int) -> None:
    # With no maxmemory it evicts nothing yet, but CONFIG SET can give it one at any time.
    nodes = [
        node("a:1", INFO),
        node("b:2", {**INFO, "maxmemory_policy": policy, "maxmemory": limit}),
    ]
    reason = refusal(nodes)
    assert reason is not None
    assert f"b:2 has maxmemory-policy {policy}" in reason
    assert "a:1" not in reason
    assert "CONFIG SET maxmemory-policy noeviction" in reason
    assert [n.may_evict for n in nodes] == [False, True]


def test_every_evicting_node_is_named() -> None:
    nodes = [node(f"n:{i}", {**INFO, "maxmemory_policy": "volatile-lru"}) for i in (1, 2)]
    reason = refusal(nodes) or ""
    assert "n:1 has maxmemory-policy volatile-lru, n:2 has" in reason


def test_nodes_that_write_no_append_only_file_are_named() -> None:
    nodes = [node("a:1", INFO), node("b:2", {**INFO, "aof_enabled": 0}), node("c:3", INFO)]
    assert "on b:2:" in (forgetful(nodes) or "")
    assert forgetful([node("a:1", INFO)]) is None
    assert not node("d:4", {k: v for k, v in INFO.items() if k != "aof_enabled"}).append_only


def test_every_node_of_a_cluster_but_failing_or_unreachable_ones_is_asked() -> None:
    assert cluster_addresses(CLUSTER_NODES) == [
        f"127.0.0.1:{port}" for port in (7001, 7003, 7004, 7005, 7006)
    ]
    assert cluster_addresses("") == []


class _Fixed(Collector):
    def __init__(self, nodes: list[Node]) -> None:
        self._nodes = nodes

    def collect(self):  # type: ignore[no-untyped-def]
        yield from store_nodes(self._nodes)


def test_the_exporter_reports_each_node() -> None:
    nodes = [
        node("10.0.0.5:6379", {**INFO, "used_memory": 3_000_000_000}),
        node(
            "10.0.0.6:6379",
            {**INFO, "maxmemory_policy": "allkeys-lru", "evicted_keys": 7, "aof_enabled": 0},
        ),
    ]
    registry = CollectorRegistry()
    registry.register(_Fixed(nodes))
    text = generate_latest(registry).decode()
    for line in (
        'tracker_store_memory_used_bytes{node="10.0.0.5:6379"} 3e+09',
        'tracker_store_memory_max_bytes{node="10.0.0.5:6379"} 4.294967296e+09',
        'tracker_store_may_evict{node="10.0.0.5:6379",policy="noeviction"} 0.0',
        'tracker_store_may_evict{node="10.0.0.6:6379",policy="allkeys-lru"} 1.0',
        'tracker_store_evicted_keys_total{node="10.0.0.6:6379"} 7.0',
        'tracker_store_evicted_keys_total{node="10.0.0.5:6379"} 0.0',
        'tracker_store_append_only{node="10.0.0.5:6379"} 1.0',
        'tracker_store_append_only{node="10.0.0.6:6379"} 0.0',
    ):
        assert line in text.splitlines()
