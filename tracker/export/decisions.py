"""``/v1/trends``, ``/v1/attribution`` and ``/v1/recommendations``: decision support as JSON.

Same parameters and 400 rules as ``/v1/kpis`` (:func:`tracker.export.api.parse_span`),
and the same aggregates: the figures come from :mod:`tracker.decide.queries`.
"""

from __future__ import annotations

import time

from tracker.asgi import HTTPError, Request, Response
from tracker.decide import queries
from tracker.decide.budget import OBJECTIVES, BudgetError, Rules, parse_limits, parse_period
from tracker.export.api import KPIS_PARAMETERS, known_query, parse_model, parse_span, parse_time
from tracker.money import MoneyError, parse_micros
from tracker.redis_clients import Reader
from tracker.settings import Settings
from tracker.store import Keys

TRENDS_PARAMETERS = (*KPIS_PARAMETERS, "top")
ATTRIBUTION_PARAMETERS = ("dimension", "window", "from", "to")
RECOMMENDATIONS_PARAMETERS = (
    "total",
    "period",
    "dimension",
    "objective",
    "model",
    "to",
    "history_days",
    "max_change",
    "min",
    "max",
    "targets",
)
MAX_TOP = 100
MAX_HISTORY_DAYS = 400
BOOLEANS = {"true": True, "false": False}


class DecisionApi:
    def __init__(self, redis: Reader, settings: Settings) -> None:
        self._redis = redis
        self._keys = Keys(settings.key_prefix)
        self._settings = settings
        self._currency = settings.base_currency.upper()
        self._calendar = settings.calendar()

    async def trends(self, request: Request) -> Response:
        """A period against the one of equal length before it; default: last 7 whole days."""
        query = known_query(request, TRENDS_PARAMETERS)
        span = parse_span(
            query, self._calendar, default_window="1d", default_buckets=7, complete=True
        )
        top = _int(query, "top", 5, 1, MAX_TOP)
        found = await queries.trends(
            self._redis,
            self._keys,
            dimension=span.dimension,
            window=span.window,
            model=span.model,
            starts=span.starts,
            calendar=self._calendar,
            minimums=queries.minimums(self._settings),
            top=top,
        )
        return Response.json(
            {
                "dimension": span.dimension,
                "window": span.window,
                "model": span.model,
                "currency": self._currency,
                "timezone": self._calendar.timezone,
                **found,
            }
        )

    async def attribution(self, request: Request) -> Response:
        """Each model's credit per channel or campaign against last click's."""
        span = parse_span(
            known_query(request, ATTRIBUTION_PARAMETERS),
            self._calendar,
            dimensions=("campaign", "channel"),
            default_dimension="channel",
            default_window="1d",
            default_buckets=7,
            complete=True,
        )
        found = await queries.attribution(
            self._redis,
            self._keys,
            dimension=span.dimension,
            window=span.window,
            starts=span.starts,
            calendar=self._calendar,
        )
        return Response.json(
            {
                "dimension": span.dimension,
                "window": span.window,
                "currency": self._currency,
                "timezone": self._calendar.timezone,
                **found,
            }
        )

    async def recommendations(self, request: Request) -> Response:
        """How to split ``total`` over the next ``period``, from the daily history."""
        query = known_query(request, RECOMMENDATIONS_PARAMETERS)
        settings = self._settings
        dimension = query.get("dimension", "channel")
        if dimension not in ("campaign", "channel"):
            raise HTTPError(400, "dimension must be campaign or channel")
        objective = query.get("objective", "revenue")
        if objective not in OBJECTIVES:
            raise HTTPError(400, f"objective must be one of {', '.join(OBJECTIVES)}")
        if "total" not in query:
            raise HTTPError(400, "total is required: the budget to split, e.g. total=10000")
        try:
            total = parse_micros(query["total"])
        except MoneyError as exc:
            raise HTTPError(400, f"total: {exc}") from None
        try:
            period = parse_period(query.get("period", "7d"))
            minimum = parse_limits(query.get("min", ""))
            maximum = parse_limits(query.get("max", ""))
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        targets = BOOLEANS.get(query.get("targets", "false"))
        if targets is None:
            raise HTTPError(400, "targets must be true or false")
        history = _int(query, "history_days", settings.budget_history_days, 3, MAX_HISTORY_DAYS)
        max_change = _float(query, "max_change", settings.budget_max_change, 0.0, 1.0)
        rules = Rules(
            total=total,
            period_days=period,
            objective=objective,
            max_change=max_change,
            min_days=min(settings.budget_min_days, history),
            minimum=minimum,
            maximum=maximum,
            currency=self._currency,
        )
        try:
            found = await queries.recommendation(
                self._redis,
                self._keys,
                dimension=dimension,
                model=parse_model(query),
                end=parse_time(query, "to", int(time.time() * 1000)),
                history=history,
                rules=rules,
                calendar=self._calendar,
                targets=targets,
            )
        except BudgetError as exc:
            raise HTTPError(400, str(exc)) from None
        return Response.json(found)


def _int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise HTTPError(400, f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _float(query: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise HTTPError(400, f"{name} must be a number from {low:g} to {high:g}")
    return value
