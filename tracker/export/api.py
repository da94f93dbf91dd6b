"""``GET /v1/kpis``: windowed KPIs as JSON, in the shape of SPEC section 5."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qsl

from tracker import targets
from tracker.asgi import HTTPError, Request, Response
from tracker.attribution import MODELS
from tracker.events import parse_ts
from tracker.redis_clients import Reader
from tracker.rows import clv_row, final, row, totals
from tracker.rulebook import decode
from tracker.settings import Settings
from tracker.store import Keys, read_buckets, read_uniques
from tracker.types import EpochMs
from tracker.windows import ALL_TIME, WINDOWS, Calendar

DIMENSIONS = ("campaign", "channel", "goal", "total")
KPIS_PARAMETERS = ("dimension", "window", "from", "to", "model")
CLV_PARAMETERS = ("dimension", "model")
MAX_BUCKETS = 1500
"""A day of minutes, two months of hours, four years of days: beyond, ask for a bigger window."""


class KpiApi:
    def __init__(self, redis: Reader, settings: Settings) -> None:
        self._redis = redis
        self._keys = Keys(settings.key_prefix)
        self._currency = settings.base_currency.upper()
        self._calendar = settings.calendar()
        self._grace_ms = settings.grace_s * 1000

    async def kpis(self, request: Request) -> Response:
        span = parse_span(known_query(request, KPIS_PARAMETERS), self._calendar)
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
        now = int(time.time() * 1000)
        bounds = targets.load(decode(await self._redis.get(self._keys.targets)))
        daily = window == "1d"
        rows = [
            {
                **row(bucket, dimension, value, metrics, model, people),
                "final": final(self._calendar, bucket, window, self._grace_ms, now),
                **targets.row_verdict(
                    bounds.of(dimension, value), totals(dimension, metrics, model), daily
                ),
            }
            for (bucket, value, metrics), people in zip(cells, users, strict=True)
        ]
        return Response.json(
            {
                "dimension": dimension,
                "window": window,
                "model": model,
                "currency": self._currency,
                "timezone": self._calendar.timezone,
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
    calendar: Calendar,
    *,
    dimensions: tuple[str, ...] = DIMENSIONS,
    default_dimension: str = "total",
    default_window: str = "1h",
    default_buckets: int = 24,
    complete: bool = False,
) -> Span:
    """``dimension``, ``window``, ``model``, ``from`` and ``to`` checked; HTTP 400 if bad.

    Without ``to``, the range ends now (or, with ``complete``, at the start of the
    current bucket); without ``from``, it starts ``default_buckets`` buckets earlier.
    Hours and days are the ``calendar``'s.
    """
    dimension = query.get("dimension", default_dimension)
    if dimension not in dimensions:
        raise HTTPError(400, f"dimension must be one of {', '.join(dimensions)}")
    window = query.get("window", default_window)
    if window not in WINDOWS:
        raise HTTPError(400, f"window must be one of {', '.join(WINDOWS)}")
    model = parse_model(query)
    now = int(time.time() * 1000)
    end = parse_time(query, "to", calendar.bucket_start(now, window) if complete else now + 1)
    start = parse_time(query, "from", earlier(calendar, end, window, default_buckets))
    if start >= end:
        raise HTTPError(400, "from must be before to")
    try:
        calendar.bucket_end(calendar.bucket_start(end - 1, window), window)
    except (OverflowError, ValueError):  # a zone ahead of UTC: its 9999-12-31 never ends
        raise HTTPError(
            400, f"to: the range's last bucket ends after 9999-12-31 in {calendar.timezone}"
        ) from None
    count = count_buckets(calendar, start, end, window)  # before listing them
    if count > MAX_BUCKETS:
        raise HTTPError(
            400,
            f"range spans {count} {window} buckets, at most {MAX_BUCKETS}: "
            "narrow from/to or take a larger window",
        )
    return Span(dimension, window, model, calendar.buckets_between(start, end, window))


def earlier(calendar: Calendar, ts: EpochMs, window: str, buckets: int) -> EpochMs:
    """``ts`` moved back ``buckets`` buckets of ``window``, as far into its bucket as ``ts``.

    Local days may be 23 or 25 hours long: a day back is the day before, not 24 hours.
    """
    if window != "1d":
        return ts - buckets * WINDOWS[window]
    day = calendar.bucket_start(ts, window)
    into = ts - day
    for _ in range(buckets):
        day = calendar.bucket_start(day - 1, window)
    return min(day + into, calendar.bucket_end(day, window) - 1)


def count_buckets(calendar: Calendar, start: EpochMs, end: EpochMs, window: str) -> int:
    """How many buckets of ``window`` overlap ``[start, end)`` (``start < end``), unlisted."""
    first = calendar.bucket_start(start, window)
    if window == "1d":
        days = date.fromisoformat(calendar.day_of(end - 1)) - date.fromisoformat(
            calendar.day_of(first)
        )
        return days.days + 1
    return -(-(end - first) // WINDOWS[window])


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
