"""``GET /v1/kpis``: windowed KPIs as JSON, in the shape of SPEC section 5."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from tracker.asgi import HTTPError, Request, Response
from tracker.attribution import MODELS
from tracker.events import parse_ts
from tracker.export.rows import clv_row, row
from tracker.settings import Settings
from tracker.store import Keys, read_buckets, read_uniques
from tracker.windows import ALL_TIME, WINDOWS, buckets_between

DIMENSIONS = ("campaign", "channel", "goal", "total")
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
        model = _model(query)
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
        cells = [
            (bucket, value, metrics)
            for bucket in sorted(buckets)
            for (dim, value), metrics in sorted(buckets[bucket].items())
            if dim == dimension
        ]
        users = await read_uniques(
            self._redis,
            [(window, bucket, dimension, value) for bucket, value, _ in cells],
            self._keys,
        )
        rows = [
            row(bucket, dimension, value, metrics, model, people)
            for (bucket, value, metrics), people in zip(cells, users, strict=True)
        ]
        return Response.json(
            {
                "dimension": dimension,
                "window": window,
                "model": model,
                "currency": self._currency,
                "rows": rows,
            }
        )

    async def clv(self, request: Request) -> Response:
        """``GET /v1/clv``: lifetime value of customers per acquisition campaign or channel."""
        query = request.query()
        dimension = query.get("dimension", "campaign")
        if dimension not in ("campaign", "channel"):
            raise HTTPError(400, "dimension must be campaign or channel")
        model = _model(query)
        everything = (await read_buckets(self._redis, ALL_TIME, [0], self._keys)).get(0, {})
        rows = [
            clv_row(value, metrics, model)
            for (dim, value), metrics in sorted(everything.items())
            if dim == dimension and metrics.get("customers")
        ]
        return Response.json(
            {"dimension": dimension, "model": model, "currency": self._currency, "rows": rows}
        )


def _model(query: dict[str, str]) -> str:
    model = query.get("model", "last_click")
    if model not in MODELS:
        raise HTTPError(400, f"model must be one of {', '.join(MODELS)}")
    return model


def _time_param(query: dict[str, str], name: str, default: int) -> int:
    if name not in query:
        return default
    try:
        return parse_ts(query[name])
    except ValueError as exc:
        raise HTTPError(400, f"{name}: {exc}") from None
