"""No conversion reaches a platform twice across a forwarder's restart, SIGTERM or SIGKILL.

The collector and ``tracker forward`` run as processes on the real Kafka and Redis, the
platforms are the stand-in of tests/platforms.py. Google Ads takes an order's upload
while it keeps failing the retraction of another order that came in the same batch: the
forwarder holds that batch, its offsets uncommitted, when it is stopped or killed. The
next forwarder reads the batch again and sends the retraction, but not the upload: its
sent mark was written when Google took it.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.processes import health_url, tracker, wait_for
from tests.platforms import PLATFORMS, Platforms, collect, forwarded, forwarder_url, purchase
from tracker.settings import Settings

pytestmark = pytest.mark.services

UPLOAD, RETRACTION = "uploadClickConversions", "uploadConversionAdjustments"


@pytest.fixture
def stand_in() -> Iterator[Platforms]:
    with Platforms() as running:
        yield running


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (granian's worker, which runs the forwarder's loop)."""
    listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in listed]


def requests_of(stand_in: Platforms, method: str) -> list[Any]:
    return [r for r in stand_in.received("google_ads") if r.path.endswith(method)]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_restart_sends_nothing_twice(
    settings: Settings, stand_in: Platforms, stop: signal.Signals
) -> None:
    settings = stand_in.settings(settings)
    stand_in.answer_next("google_ads", "transient", times=10_000, on=f":{RETRACTION}")
    visitor = {"anonymous_id": "visitor-1"}  # one partition, one record: one batch
    batch = [
        purchase("o-1", gclid="G-1", **visitor),
        purchase("o-0", status="refund", value=None, **visitor),
    ]
    with tracker("collector", settings, health_url(settings, "collector")):
        with tracker("forward", settings, forwarder_url(settings)) as first:
            collect(settings, batch)
            wait_for(
                lambda: (
                    stand_in.keys("google_ads") == ["o-1"]
                    and len(requests_of(stand_in, RETRACTION)) >= 2
                    and forwarded(settings, "meta", "tiktok")
                ),
                timeout=60,
                what="the upload taken while the retraction is retried",
            )
            assert not forwarded(settings, "google_ads")  # that batch is held, uncommitted
            killed = children(first.pid) if stop == signal.SIGKILL else []
            for child in killed:  # the worker first: else granian's parent stops it
                os.kill(child, signal.SIGKILL)  # gracefully
            first.send_signal(stop)
            code = first.wait(timeout=30)
            assert code == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
        stand_in.calm()  # Google takes retractions again
        with tracker("forward", settings, forwarder_url(settings)):
            wait_for(
                lambda: forwarded(settings, *PLATFORMS),
                timeout=60,
                what="the held batch finished by the next forwarder",
            )
    assert sorted(stand_in.keys("google_ads")) == ["o-0", "o-1"]
    assert len(requests_of(stand_in, UPLOAD)) == 1  # never sent again
    for platform in PLATFORMS:
        assert Counter(stand_in.keys(platform)).most_common(1)[0][1] == 1, platform
    assert stand_in.keys("meta") == stand_in.keys("tiktok") == ["o-1"]
    [upload] = requests_of(stand_in, UPLOAD)
    assert [conversion["orderId"] for conversion in upload.body["conversions"]] == ["o-1"]
