"""The oracle's figures on a Redis Cluster, through a failover of the store's primary."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness import redis_cluster
from harness.processes import running
from harness.services import ROOT
from tests.e2e.test_oracle import check, oracle_settings, run_log
from tracker.settings import Settings

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(redis_cluster.unstartable() is not None, reason="no redis-server"),
]
CLUSTER = {
    "TRACKER_REDIS_CLUSTER_PORT": "22301",
    "TRACKER_REDIS_CLUSTER_DIR": str(ROOT / ".run/test-redis-cluster-e2e"),
}


@pytest.mark.parametrize(
    "spread", [False, True], ids=["all-in-the-store-slot", "sums-clicks-and-paths-spread"]
)
def test_kpis_on_a_redis_cluster_equal_the_reference_through_a_failover(
    settings: Settings, spread: bool
) -> None:
    """With the sums, clicks and paths in the store's slot, and spread over the primaries
    (``TRACKER_REDIS_SPREAD_SUMS``, by partition, read back summed and merged;
    ``TRACKER_REDIS_SPREAD_CLICKS``, by click id, read where the id says;
    ``TRACKER_REDIS_SPREAD_PATHS``, by person, joined with the store's copy)."""
    with redis_cluster.running(CLUSTER) as cluster:
        settings = replace(
            oracle_settings(settings),
            redis_url=cluster.url,
            redis_spread_sums=spread,
            redis_spread_clicks=spread,
            redis_spread_paths=spread,
        )
        assert settings.key_prefix == f"{{{settings.redis_prefix}}}"
        primary = redis_cluster.primary_of(CLUSTER, settings.key_prefix)
        try:
            with running(settings, "collector", "serve", "worker"):

                def fail_over(chunk: int) -> None:
                    if chunk == 2:  # a crash of the primary holding every key of ours,
                        redis_cluster.kill_node(CLUSTER, primary)  # as chunk 3 comes in
                    if chunk == 3:
                        redis_cluster.wait_ok(CLUSTER)
                    if chunk == 5:  # back, as the promoted replica's replica
                        redis_cluster.start_node(CLUSTER, primary)

                log = run_log(settings, seed=23, after_chunk=fail_over)
                assert redis_cluster.primary_of(CLUSTER, settings.key_prefix) != primary
                check(settings, log)
        finally:
            redis_cluster.forget_keys(settings)
