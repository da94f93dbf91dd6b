"""Faults mid-stream end with the oracle's exact numbers: nothing lost, nothing twice."""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import pytest

from harness.isolation import free_port
from harness.processes import health_url, running, tracker, wait_for
from harness.services import ROOT
from tests.e2e.test_oracle import check, oracle_settings, run_log, settled
from tracker.redis_clients import sync_client
from tracker.settings import Settings
from tracker.store import Keys

pytestmark = pytest.mark.services


@pytest.mark.parametrize("spread", [False, True], ids=["store", "everything-spread"])
def test_worker_killed_with_sigkill_mid_stream_and_restarted(
    settings: Settings, spread: bool
) -> None:
    """Spread, the prefix a hash tag lays the store out as on a Redis Cluster, on one
    Redis: the killed worker's last outboxes (sums, people, clicks, paths) are given by
    the next, and paths it gave already are joined again, changing nothing."""
    settings = oracle_settings(settings)
    if spread:
        settings = replace(
            settings,
            redis_prefix=f"{{{settings.redis_prefix}}}",
            redis_spread_sums=True,
            redis_spread_clicks=True,
            redis_spread_paths=True,
        )
    with running(settings, "collector", "serve"), ExitStack() as workers:
        first = workers.enter_context(tracker("worker", settings, health_url(settings, "worker")))

        def kill_then_restart(chunk: int) -> None:
            if chunk == 2:
                first.kill()  # SIGKILL: no shutdown, no commit
                first.wait()
                workers.enter_context(tracker("worker", settings, health_url(settings, "worker")))

        log = run_log(settings, seed=7, after_chunk=kill_then_restart)
        check(settings, log)


def test_one_of_two_workers_stopped_mid_stream(settings: Settings) -> None:
    settings = oracle_settings(replace(settings, topic_partitions=4))
    other = replace(settings, worker_port=free_port())  # the next port was once taken
    with running(settings, "collector", "serve", "worker"), ExitStack() as workers:
        second = workers.enter_context(tracker("worker", other, health_url(other, "worker")))

        def stop_second(chunk: int) -> None:
            if chunk == 2:
                second.terminate()  # SIGTERM: a graceful leave, the group rebalances
                second.wait(timeout=60)

        log = run_log(settings, seed=11, after_chunk=stop_second)
        check(settings, log)


def _own_services() -> bool:
    """Restarting a server is only ours to do when our scripts run it."""
    return not (os.environ.get("TRACKER_KAFKA_BOOTSTRAP") or os.environ.get("TRACKER_REDIS_URL"))


def _restart(service: str) -> None:
    script = str(ROOT / "deploy/local" / f"{service}.sh")
    subprocess.run(["bash", script, "stop"], check=True)
    subprocess.run(["bash", script, "start"], check=True)


@pytest.mark.skipif(not _own_services(), reason="servers given by the environment")
@pytest.mark.parametrize("service", ["redis", "kafka"])
def test_server_restarted_mid_stream(settings: Settings, service: str) -> None:
    settings = oracle_settings(settings)
    with running(settings, "collector", "serve", "worker"):
        log = run_log(
            settings, seed=13, after_chunk=lambda c: _restart(service) if c == 2 else None
        )
        wait_for(lambda: settled(settings), timeout=120, what="applied after the restart")
        check(settings, log)


# As a replica holds the store: every key of a prefix, read in one step, so consistent.
_SNAPSHOT = """
local taken = {}
for _, name in ipairs(redis.call('KEYS', ARGV[1])) do
  taken[#taken + 1] = {name, redis.call('DUMP', name), redis.call('PTTL', name)}
end
return taken
"""
# As a failover to that replica leaves it: what was written since is gone, in one step.
# The day's cookieless salt is kept: a lost one is a new visitor id, not a lost count.
_PROMOTE = """
for _, name in ipairs(redis.call('KEYS', ARGV[1])) do
  if not string.find(name, ARGV[2], 1, true) then redis.call('DEL', name) end
end
for i = 3, #ARGV, 3 do
  if not string.find(ARGV[i], ARGV[2], 1, true) then
    local ttl = tonumber(ARGV[i + 2])
    redis.call('RESTORE', ARGV[i], ttl > 0 and ttl or 0, ARGV[i + 1], 'REPLACE')
  end
end
"""


def test_a_store_that_lost_its_last_writes_reads_them_again(settings: Settings) -> None:
    """A replica promoted before it received its primary's last transactions, while the
    worker had committed their records' offsets to Kafka: the worker must read them again
    from the offsets the store holds, or they are lost (issue 19)."""
    settings = oracle_settings(settings)
    keys = Keys(settings.key_prefix)
    pattern = keys.prefix.replace("[", "\\[").replace("?", "\\?").replace("*", "\\*") + ":*"
    sources = [keys.source(settings.events_topic, p) for p in range(settings.topic_partitions)]
    with sync_client(settings) as store, running(settings, "collector", "serve", "worker"):
        taken: list[list[Any]] = []

        def lose_writes(chunk: int) -> None:
            if chunk == 1:
                wait_for(lambda: settled(settings), timeout=120, what="chunks 0-1 applied")
                taken.extend(store.eval(_SNAPSHOT, 0, pattern))
            if chunk == 3:
                wait_for(lambda: settled(settings), timeout=120, what="chunks 2-3 applied")
                before = store.mget(sources)
                flat = [value for entry in taken for value in entry]
                store.eval(_PROMOTE, 0, pattern, keys.salt(""), *flat)
                assert store.mget(sources) != before, "no write was lost: the test tests nothing"

        log = run_log(settings, seed=19, after_chunk=lose_writes)
        check(settings, log)
