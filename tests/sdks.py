"""The Python SDKs of Segment's API, as the tests drive them against the collector.

Shared by tests/integration/test_segment.py and tests/e2e/test_sdks.py. The SDKs ship
no type information: imported by name, they are plain objects to mypy.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from typing import Any, Self

import pytest

SEGMENT_SDKS: dict[str, Any] = {
    "analytics-python": importlib.import_module("segment.analytics.client"),
    "rudder-sdk-python": importlib.import_module("rudderstack.analytics.client"),
}
"""Each SDK's client module."""
_REQUESTS: dict[str, Any] = {
    "analytics-python": importlib.import_module("segment.analytics.request"),
    "rudder-sdk-python": importlib.import_module("rudderstack.analytics.request"),
}


def skewed_datetime(skew: timedelta) -> type[datetime]:
    """``datetime`` of a machine whose clock is ``skew`` off."""

    class Skewed(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Self:
            return super().now(tz) + skew

    return Skewed


def skew_clock(patch: pytest.MonkeyPatch, sdk: str, skew: timedelta) -> None:
    """Set ``sdk``'s clock ``skew`` off where it times its messages and its sentAt."""
    clock = skewed_datetime(skew)
    patch.setattr(SEGMENT_SDKS[sdk], "datetime", clock)
    patch.setattr(_REQUESTS[sdk], "datetime", clock)


@contextlib.contextmanager
def segment_client(sdk: str, host: str, key: str) -> Iterator[Any]:
    """An SDK client sending to the collector at ``host``, everything sent once the
    block is left.

    analytics-python in its synchronous mode (each call one request, raising on any
    status but 2xx); RudderStack's as it runs by default: batched by a background
    thread, gzipped, errors reported to ``on_error`` (and failing the block).
    """
    if sdk == "analytics-python":
        yield SEGMENT_SDKS[sdk].Client(key, host=host, sync_mode=True)
        return
    errors: list[Exception] = []
    client = SEGMENT_SDKS[sdk].Client(
        key,
        host=host,
        gzip=True,
        max_retries=0,
        upload_interval=0.2,
        on_error=lambda exc, batch: errors.append(exc),
    )
    try:
        yield client
        client.flush()
    finally:
        client.join()
    assert errors == []
