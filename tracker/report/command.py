"""``tracker report``: gather the figures once, write them as HTML, CSV or JSON.

Imports SciPy only when the command runs, so declaring its flags costs nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from tracker.attribution import MODELS
from tracker.redis_clients import Reader
from tracker.settings import Settings
from tracker.types import EpochMs, Micros
from tracker.windows import WINDOWS

FORMATS = ("html", "csv", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", required=True, help="RFC 3339 or epoch ms")
    parser.add_argument("--to", dest="end", required=True, help="RFC 3339 or epoch ms (excluded)")
    parser.add_argument("--dimension", choices=("channel", "campaign"), default="channel")
    parser.add_argument(
        "--window", choices=tuple(WINDOWS), default=None, help="default: from the range's length"
    )
    parser.add_argument("--model", choices=MODELS, default="last_click", help="attribution model")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="html")
    parser.add_argument("--out", required=True, type=Path, help="file to write")
    parser.add_argument(
        "--budget-total", default=None, help="budget to split; default: the last period's spend"
    )
    parser.add_argument("--budget-period", default="7d", help="days the budget is for, e.g. 7d")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """``tracker report`` from its parsed flags."""
    from tracker.decide.budget import parse_period
    from tracker.events import parse_ts
    from tracker.money import parse_micros

    try:
        start, end = parse_ts(args.start), parse_ts(args.end)
        total = None if args.budget_total is None else parse_micros(args.budget_total)
        days = parse_period(args.budget_period)
    except ValueError as exc:  # MoneyError is one
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    return report(
        settings,
        start=start,
        end=end,
        dimension=args.dimension,
        window=args.window,
        model=args.model,
        fmt=args.fmt,
        out=args.out,
        budget_total=total,
        budget_days=days,
    )


def report(
    settings: Settings,
    *,
    start: EpochMs,
    end: EpochMs,
    dimension: str,
    window: str | None,
    model: str,
    fmt: str,
    out: Path,
    budget_total: Micros | None,
    budget_days: int,
) -> int:
    """Write the report to ``out``; 0, or 1 when Redis is away, 2 on a bad range."""
    from tracker.redis_clients import async_reader
    from tracker.report import html, tables
    from tracker.report.gather import gather
    from tracker.report.progress import Bar
    from tracker.store import StoreUnavailable, read_once

    bar = Bar("reading buckets")

    def read(client: Reader) -> Awaitable[dict[str, Any]]:
        return gather(
            client,
            settings,
            start=start,
            end=end,
            dimension=dimension,
            window=window,
            model=model,
            budget_total=budget_total,
            budget_days=budget_days,
            progress=bar,
        )

    try:
        found = read_once(settings, read, async_reader)
    except ValueError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    if fmt == "html":
        out.write_text(html.render(found), encoding="utf-8")
    elif fmt == "csv":
        out.write_text(tables.to_csv(found), encoding="utf-8")
    else:
        out.write_bytes(tables.to_json(found))
    print(f"wrote {out} ({fmt})", file=sys.stderr)
    note = html.not_final(found)
    if note is not None:
        print(f"tracker: {note}", file=sys.stderr)
    return 0
