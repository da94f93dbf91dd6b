"""The oracle's figures with the store under Redis Sentinel, through a failover that
loses batches the worker had applied."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from harness import redis_sentinel
from harness.processes import running, wait_for
from tests.applied import behind
from tests.e2e.test_oracle import check, oracle_settings, run_log, settled
from tracker.settings import Settings

pytestmark = [pytest.mark.services, pytest.mark.skipif(
    redis_sentinel.unstartable() is not None, reason="no redis-server"
)]  # fmt: skip


def test_kpis_under_sentinel_equal_the_reference_through_a_failover_that_lost_writes(
    settings: Settings, tmp_path: Path
) -> None:
    """The primary's replica is cut off (stopped, its link dropped) while the worker
    applies a few chunks; then the primary is killed and the replica, which lacks
    them, promoted. The worker finds the store behind what it applied, reads those
    records again from Kafka, and every figure still equals the reference."""
    with redis_sentinel.running(tmp_path) as sentinels:
        settings = replace(oracle_settings(settings), redis_url=sentinels.url)
        primary = sentinels.primary()
        (replica,) = set(sentinels.nodes) - {primary}
        lost: dict[int, tuple[int, int]] = {}
        with running(settings, "collector", "serve", "worker"):

            def fail_over(chunk: int) -> None:
                if chunk == 1:
                    os.kill(sentinels.pid(replica), signal.SIGSTOP)
                    node = sentinels.nodes[primary].client  # nothing more reaches the replica
                    assert node.client_kill_filter(_type="replica") == 1
                if chunk == 3:
                    wait_for(lambda: settled(settings), 120, "chunks 2 and 3 applied")
                    sentinels.kill(primary)
                    os.kill(sentinels.pid(replica), signal.SIGCONT)
                    assert sentinels.failed_over(primary) == replica
                    lost.update(behind(settings))
                if chunk == 5:  # back, as the promoted replica's replica
                    sentinels.start(primary)

            log = run_log(settings, seed=29, after_chunk=fail_over)
            assert lost, "the failover lost none of what the worker had applied"
            check(settings, log)
