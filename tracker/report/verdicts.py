"""The report's rows judged against the KPI targets: on target, off target, no target, not judged.

Pure: a :class:`tracker.targets.Target` and a row's sums in, the fields a row adds
out. CPA, ROAS and conversion rate are judged on the period's figures (its sums over
every bucket of the report), exactly as :meth:`tracker.targets.Target.judge` judges a
``/v1/kpis`` row.

A daily budget (``daily_spend_max``) is exceeded if ANY day of the period spent more
than it, so it is judged day by day, never on the period's spend per day on average
(which would hide one day's overspend behind cheaper days):

- day buckets (a report of three days or more): every day of the period is judged,
  and the bound is missed when one day is over;
- hour or minute buckets over exactly one local day: that day's spend is the period's;
- hour or minute buckets over anything else: the report has no whole days' figures,
  so the bound is not judged (``None``) and the row says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from tracker.kpis import Totals
from tracker.targets import Target
from tracker.windows import Calendar

ON: Final = "on target"
OFF: Final = "off target"
NO_TARGET: Final = "no target"
NOT_JUDGED: Final = "not judged"
STATUSES: Final = (ON, OFF, NO_TARGET, NOT_JUDGED)

BY_DAY: Final = "judged on each day of the period: missed if any day spent more"
ONE_DAY: Final = "judged on the period's one day"
NOT_BY_DAY: Final = (
    "not judged: the report's hour or minute buckets span more or less than one whole day, "
    "and a daily budget is judged on whole days"
)


def daily_rule(window: str, starts: Sequence[int], calendar: Calendar) -> str:
    """How the report judges daily spend over ``starts`` (buckets of ``window``): a sentence."""
    if window == "1d":
        return BY_DAY
    return ONE_DAY if one_day(window, starts, calendar) else NOT_BY_DAY


def one_day(window: str, starts: Sequence[int], calendar: Calendar) -> bool:
    """Whether the buckets ``starts`` of ``window`` cover exactly one whole local day."""
    first, end = starts[0], calendar.bucket_end(starts[-1], window)
    return calendar.bucket_start(first, "1d") == first and calendar.bucket_end(first, "1d") == end


def verdict(target: Target | None, period: Totals, days: Sequence[Totals] | None) -> dict[str, Any]:
    """What a report row adds: ``target``, ``met``, ``on_target`` and ``target_status``.

    ``period``: the row's sums over the period; ``days``: its sums on each day of the
    period, or None when the report cannot tell its days apart (daily spend not judged).
    ``on_target`` is whether every bound judged is met, None when none could be judged.
    """
    if target is None:
        return {"target": None, "met": None, "on_target": None, "target_status": NO_TARGET}
    met = target.judge(period, daily=False)
    if target.daily_spend_max is not None and days is not None:
        most = max((day.spend for day in days), default=0)
        met["daily_spend_max"] = target.judge(Totals(spend=most), daily=True)["daily_spend_max"]
    judged = [v for v in met.values() if v is not None]
    on_target = all(judged) if judged else None
    return {
        "target": target.bounds(),
        "met": met,
        "on_target": on_target,
        "target_status": status(on_target),
    }


def status(on_target: bool | None) -> str:
    """The row's mark in words: on target, off target, or not judged (None)."""
    if on_target is None:
        return NOT_JUDGED
    return ON if on_target else OFF


def missed(row: Mapping[str, Any]) -> list[str]:
    """The bounds a judged row missed, in the order the target lists them."""
    return [name for name, met in (row.get("met") or {}).items() if met is False]


def unjudged(row: Mapping[str, Any]) -> list[str]:
    """The bounds of a row's target that could not be judged."""
    return [name for name, met in (row.get("met") or {}).items() if met is None]


__all__ = ["STATUSES", "daily_rule", "missed", "one_day", "unjudged", "verdict"]
