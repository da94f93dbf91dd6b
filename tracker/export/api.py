"""``GET /v1/kpis``: windowed KPIs as JSON, in the shape of SPEC section 5."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from tracker.asgi import HTTPError, Request, Response
from tracker.events import parse_ts
from tracker.export.rows import row
from tracker.settings import Settings
from tracker.store import Keys, read_buckets
from tracker.windows import WINDOWS, buckets_between

DIMENSIONS = ("campaign", "channel", "total")
MODELS = ("last_click",)
MAX_BUCKETS = 1500
"""A day of minutes, two months of hours, four years of days: beyond, ask for a bigger window."""


class KpiApi:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._keys = Keys(settings.redis_prefix)
        self._currency = settings.base_currency.upper()

    async def kpis(self, request: Request) -> Response:
        query = request.query()
        dimension = query.get("dimension", "total")
        if dimension not in DIMENSIONS:
            raise HTTPError(400, f"dimension must be one of {', '.join(DIMENSIONS)}")
        window = query.get("window", "1h")
        if window not in WINDOWS:
            raise HTTPError(400, f"window must be one of {', '.join(WINDOWS)}")
        model = query.get("model", "last_click")
        if model not in MODELS:
            raise HTTPError(400, f"model must be one of {', '.join(MODELS)}")
        now = int(time.time() * 1000)
        end = _time_param(query, "to", now + 1)
        start = _time_param(query, "from", end - 24 * WINDOWS[window])
        if start >= end:
            raise HTTPError(400, "from must be before to")
        starts = buckets_between(start, end, window)
        if len(starts) > MAX_BUCKETS:
            raise HTTPError(
                400, f"range spans {len(starts)} {window} buckets, at most {MAX_BUCKETS}"
            )
        buckets = await read_buckets(self._redis, window, starts, self._keys)
        rows: list[dict[str, Any]] = []
        for bucket in sorted(buckets):
            for (dim, value), metrics in sorted(buckets[bucket].items()):
                if dim == dimension:
                    rows.append(row(bucket, value, metrics))
        return Response.json(
            {
                "dimension": dimension,
                "window": window,
                "model": model,
                "currency": self._currency,
                "rows": rows,
            }
        )


def _time_param(query: dict[str, str], name: str, default: int) -> int:
    if name not in query:
        return default
    try:
        return parse_ts(query[name])
    except ValueError as exc:
        raise HTTPError(400, f"{name}: {exc}") from None
