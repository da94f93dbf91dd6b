"""Faults mid-stream end with the oracle's exact numbers: nothing lost, nothing twice."""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack
from dataclasses import replace

import pytest

from tests.conftest import free_port
from tests.e2e.test_oracle import check, oracle_settings, run_log, settled
from tests.processes import health_url, running, tracker, wait_for
from tests.services import ROOT
from tracker.settings import Settings

pytestmark = pytest.mark.services


def test_worker_killed_with_sigkill_mid_stream_and_restarted(settings: Settings) -> None:
    settings = oracle_settings(settings)
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
