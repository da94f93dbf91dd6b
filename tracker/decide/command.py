"""``tracker budget``: the recommendation on a terminal (a table and its sentences) or as JSON.

Imports SciPy only when the command runs, so declaring its flags costs nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable
from typing import Any

import orjson

from tracker.attribution import MODELS
from tracker.redis_clients import Reader
from tracker.settings import Settings
from tracker.types import EpochMs, Micros


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--total", required=True, help="the budget to split, e.g. 10000 or 2500.50")
    parser.add_argument("--period", default="7d", help="days the budget is for, e.g. 7d")
    parser.add_argument("--dimension", choices=("channel", "campaign"), default="channel")
    parser.add_argument("--objective", choices=("revenue", "conversions"), default="revenue")
    parser.add_argument("--model", choices=MODELS, default="last_click", help="attribution model")
    parser.add_argument(
        "--to", default=None, help="history ends before this day (epoch ms or RFC 3339); today"
    )
    parser.add_argument(
        "--min", action="append", default=[], metavar="UNIT=AMOUNT", help="a unit's minimum"
    )
    parser.add_argument(
        "--max", action="append", default=[], metavar="UNIT=AMOUNT", help="a unit's maximum"
    )
    parser.add_argument(
        "--targets",
        action="store_true",
        help="take the units' KPI targets as maximums (daily spend; CPA or ROAS by the curves)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """``tracker budget`` from its parsed flags."""
    from tracker.decide.budget import parse_limits, parse_period
    from tracker.events import parse_ts
    from tracker.money import parse_micros

    try:
        total = parse_micros(args.total)
        period = parse_period(args.period)
        minimum = parse_limits(",".join(args.min))
        maximum = parse_limits(",".join(args.max))
        end = None if args.to is None else parse_ts(args.to)
    except ValueError as exc:  # MoneyError is one
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    return budget(
        settings,
        total=total,
        period_days=period,
        dimension=args.dimension,
        objective=args.objective,
        model=args.model,
        end=end,
        minimum=minimum,
        maximum=maximum,
        as_json=args.json,
        targets=args.targets,
    )


def budget(
    settings: Settings,
    *,
    total: Micros,
    period_days: int,
    dimension: str,
    objective: str,
    model: str,
    end: EpochMs | None,
    minimum: dict[str, Micros],
    maximum: dict[str, Micros],
    as_json: bool,
    targets: bool = False,
) -> int:
    """Print the recommendation; 0, or 1 when Redis is away, 2 when the limits cannot be met.

    ``targets``: the units' KPI targets are maximums too (:mod:`tracker.decide.limits`).
    """
    from tracker.decide import queries
    from tracker.decide.budget import BudgetError, Rules
    from tracker.redis_clients import async_reader
    from tracker.store import Keys, StoreUnavailable, read_once

    history = settings.budget_history_days
    rules = Rules(
        total=total,
        period_days=period_days,
        objective=objective,
        max_change=settings.budget_max_change,
        min_days=settings.budget_min_days,
        minimum=minimum,
        maximum=maximum,
        currency=settings.base_currency.upper(),
    )

    def read(client: Reader) -> Awaitable[dict[str, Any]]:
        return queries.recommendation(
            client,
            Keys(settings.key_prefix),
            dimension=dimension,
            model=model,
            end=int(time.time() * 1000) if end is None else end,
            history=history,
            rules=rules,
            calendar=settings.calendar(),
            targets=targets,
        )

    try:
        found = read_once(settings, read, async_reader)
    except BudgetError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 1
    if as_json:
        sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(found))
    return 0


def render(found: dict[str, Any]) -> str:
    """The recommendation as a person reads it on a terminal."""
    currency = found["currency"]
    marginal = "marginal ROAS" if found["objective"] == "revenue" else "marginal CPA"
    first, last = history_span(found)
    lines = [
        f"Budget for the next {found['period_days']} days: {found['total']:,.2f} {currency} "
        f"by {found['dimension']} (objective {found['objective']}, {found['model']}); "
        f"curves fitted on the days {first} to {last} ({found['timezone']})",
        "",
        found["summary"],
    ]
    if found.get("targets") is not None:
        version = found["targets"]["version"]
        lines.insert(1, f"KPI targets (version {version}) taken as maximums")
    if found["moves"]:
        lines += ["", *(f"  {m['explanation']}" for m in found["moves"])]
    if found["units"]:
        width = max(len("unit"), *(len(u["value"]) for u in found["units"]))
        lines += [
            "",
            f"{'unit':<{width}}  {'last period':>12}  {'no change':>12}  {'recommended':>12}  "
            f"{'change':>10}  {marginal} now",
        ]
        for u in found["units"]:
            now = u["marginal_start"]
            shown = "-" if now is None else _marginal(now, found["objective"])
            lines.append(
                f"{u['value']:<{width}}  {u['recent_spend']:>12,.2f}  {u['start']:>12,.2f}  "
                f"{u['recommended']:>12,.2f}  {u['change']:>+10,.2f}  {shown}"
            )
        lines += ["", *(f"  {u['explanation']}" for u in found["units"])]
    return "\n".join(lines)


def history_span(found: dict[str, Any]) -> tuple[str, str]:
    """The first and last local day (``YYYY-MM-DD``) of the recommendation's history."""
    from tracker.events import parse_ts
    from tracker.windows import calendar

    days = calendar(found["timezone"])
    history = found["history"]
    return days.day_of(parse_ts(history["from"])), days.day_of(parse_ts(history["to"]) - 1)


def _marginal(value: float, objective: str) -> str:
    if objective == "revenue":
        return f"{value:.2f}"
    return f"{1 / value:,.2f}" if value > 0 else "unbounded"
