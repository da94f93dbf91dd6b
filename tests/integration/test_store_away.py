"""The exporter starts while the store is away, on one Redis and on a Redis Cluster
alike: it answers its liveness probe, says on its readiness probe that Redis is
unavailable, and stops cleanly. (redis-py's cluster client reaches the cluster when
made: the exporter made one at start, and exited there.)"""

from __future__ import annotations

import signal

import pytest

from harness.isolation import free_port
from harness.processes import health_url, http_get, tracker
from tracker.settings import Settings


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
def test_the_exporter_starts_and_says_the_store_is_away(scheme: str) -> None:
    nowhere = free_port()  # nothing listens there
    settings = Settings(
        redis_url=f"{scheme}://127.0.0.1:{nowhere}/0",
        kafka_bootstrap=f"127.0.0.1:{nowhere}",
        exporter_port=free_port(),
    )
    with tracker("serve", settings, health_url(settings, "serve")) as serve:
        status, body = http_get(f"http://127.0.0.1:{settings.exporter_port}/readyz")
        assert status == 503
        assert b"redis unavailable" in body
        # A scrape fails, as Prometheus should see it (up 0), and the next may succeed.
        assert http_get(f"http://127.0.0.1:{settings.exporter_port}/metrics")[0] == 500
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
