"""The Faust app the worker runs, as its settings make it (nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.settings import Settings
from tracker.stream.app import build_app, readiness


@pytest.mark.parametrize(("timeout", "heartbeat"), [(60.0, 3.0), (6.0, 2.0)])
def test_the_session_timeout_is_the_setting_and_heartbeats_fit_three_times_in_it(
    tmp_path: Path, timeout: float, heartbeat: float
) -> None:
    app = build_app(Settings(worker_session_timeout_s=timeout), tmp_path)
    assert app.conf.broker_session_timeout == timeout
    assert app.conf.broker_heartbeat_interval == heartbeat


@pytest.mark.parametrize(
    ("rebalances", "rebalancing", "status"),
    [
        (0, False, "joining"),
        (1, True, "rebalancing"),
        (1, False, "ready"),
        (3, True, "rebalancing"),
    ],
)
def test_ready_only_once_joined_and_not_rebalancing(
    rebalances: int, rebalancing: bool, status: str
) -> None:
    assert readiness(rebalances, rebalancing) == status
