"""``GET /v1/kpis``: windowed KPIs as JSON, in the shape of SPEC section 5."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from redis.asyncio import Redis

from tracker.asgi import HTTPError, Request, Response
from tracker.attribution import MODELS
from tracker.events import parse_ts
from tracker.export.rows import clv_row, row
from tracker.settings import Settings
from tracker.store import Keys, read_buckets, read_uniques
from tracker.types import EpochMs
from tracker.windows import ALL_TIME, WINDOWS, bucket_start, buckets_between

DIMENSIONS = ("campaign", "channel", "goal", "total")
KPIS_PARAMETERS = ("dimension", "window", "from", "to", "model")
CLV_PARAMETERS = ("dimension", "model")
MAX_BUCKETS = 1500
"""A day of minutes, two months of hours, four years of days: beyond, ask for a bigger window."""


class KpiApi:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._keys = Keys(settings.redis_prefix)
        self._currency = settings.base_currency.upper()

    async def kpis(self, request: Request) -> Response:
        span = parse_span(known_query(request, KPIS_PARAMETERS))
        dimension, window, model = span.dimension, span.window, span.model
        buckets = await read_buckets(self._redis, window, span.starts, self._keys, [dimension])
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
        query = known_query(request, CLV_PARAMETERS)
        dimension = query.get("dimension", "campaign")
        if dimension not in ("campaign", "channel"):
            raise HTTPError(400, "dimension must be campaign or channel")
        model = parse_model(query)
        found = await read_buckets(self._redis, ALL_TIME, [0], self._keys, [dimension])
        everything = found.get(0, {})
        rows = [
            clv_row(value, metrics, model)
            for (dim, value), metrics in sorted(everything.items())
            if dim == dimension and metrics.get("customers")
        ]
        return Response.json(
            {"dimension": dimension, "model": model, "currency": self._currency, "rows": rows}
        )


@dataclass(frozen=True, slots=True)
class Span:
    """A checked query over a range of buckets, as ``/v1/kpis`` takes it."""

    dimension: str
    window: str
    model: str
    starts: list[EpochMs]
    """Starts of the buckets of ``window`` overlapping ``[from, to)``."""


def parse_span(
    query: dict[str, str],
    *,
    dimensions: tuple[str, ...] = DIMENSIONS,
    default_dimension: str = "total",
    default_window: str = "1h",
    default_buckets: int = 24,
    complete: bool = False,
) -> Span:
    """``dimension``, ``window``, ``model``, ``from`` and ``to`` checked; HTTP 400 if bad.

    Without ``to``, the range ends now (or, with ``complete``, at the start of the
    current bucket); without ``from``, it spans ``default_buckets`` buckets.
    """
    dimension = query.get("dimension", default_dimension)
    if dimension not in dimensions:
        raise HTTPError(400, f"dimension must be one of {', '.join(dimensions)}")
    window = query.get("window", default_window)
    if window not in WINDOWS:
        raise HTTPError(400, f"window must be one of {', '.join(WINDOWS)}")
    model = parse_model(query)
    now = int(time.time() * 1000)
    end = parse_time(query, "to", bucket_start(now, window) if complete else now + 1)
    start = parse_time(query, "from", end - default_buckets * WINDOWS[window])
    if start >= end:
        raise HTTPError(400, "from must be before to")
    count = -(-(end - bucket_start(start, window)) // WINDOWS[window])  # before listing them
    if count > MAX_BUCKETS:
        raise HTTPError(
            400,
            f"range spans {count} {window} buckets, at most {MAX_BUCKETS}: "
            "narrow from/to or take a larger window",
        )
    return Span(dimension, window, model, buckets_between(start, end, window))


def known_query(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The query's parameters; HTTP 400 for a name not in ``names``, or given twice.

    Strict, so that a typo (``windw=1d``) or a second value is refused with a reason
    instead of silently answering the default. 400 too for a query that is not UTF-8.
    """
    raw: bytes = request.scope["query_string"]
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise HTTPError(400, "the query is not valid UTF-8") from None
    query: dict[str, str] = {}
    for name, value in pairs:
        if name not in names:
            raise HTTPError(400, f"unknown parameter {name[:64]!r}; known: {', '.join(names)}")
        if name in query:
            raise HTTPError(400, f"parameter {name!r} is given twice")
        query[name] = value
    return query


def parse_model(query: dict[str, str]) -> str:
    model = query.get("model", "last_click")
    if model not in MODELS:
        raise HTTPError(400, f"model must be one of {', '.join(MODELS)}")
    return model


LATEST_MS = 253_402_214_400_000
"""9999-12-31T00:00:00Z: a range ending later could end a bucket in year 10000, which has
no RFC 3339 form (``/v1/trends`` prints the end of its last bucket)."""


def parse_time(query: dict[str, str], name: str, default: int) -> int:
    if name not in query:
        return default
    try:
        ts = parse_ts(query[name])
    except ValueError as exc:
        raise HTTPError(400, f"{name}: {exc}") from None
    if not 0 <= ts < LATEST_MS:
        raise HTTPError(400, f"{name} must be at or after 1970-01-01 and before 9999-12-31")
    return ts
