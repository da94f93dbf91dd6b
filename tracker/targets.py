"""KPI targets as marketers set them: CPA at most, ROAS and CVR at least, daily spend at most.

A target bounds a campaign, a channel or everything (``"dimension": "total"``), in
the base currency. It is kept in the store (:mod:`tracker.rulebook`), changed through
``PUT /v1/targets``, exported to Prometheus next to the KPI it bounds (the alerts
``CPAAboveTarget``, ``ROASBelowTarget`` and ``SpendOverDailyBudget`` compare the two)
and judged in every ``/v1/kpis`` row, the report and the budget advice.

Judging is exact: money in micro-units, ratios as fractions of the decimal the target
was given in, so a CPA of exactly 30.00 meets ``cpa_max: 30``. A KPI with nothing to
judge (no clicks for a CVR, no spend for a ROAS) is neither met nor missed: ``None``.
Spend with no conversion misses any CPA target: its CPA is unbounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final, TypeVar

from tracker.attribution import ONE
from tracker.channels import CHANNELS
from tracker.kpis import Totals
from tracker.money import MoneyError, parse_micros, to_number
from tracker.rulebook import RulesError, rules_of
from tracker.types import EpochMs, Micros

DIMENSIONS: Final = ("campaign", "channel", "total")
MONEY: Final = ("cpa_max", "daily_spend_max")
RATIOS: Final = ("roas_min", "cvr_min")
BOUNDS: Final = (*MONEY, *RATIOS)
"""Money bounds in the base currency; ratios as fractions (a CVR of 2% is 0.02)."""
MAX_VALUE: Final = 256
_FIELDS: Final = frozenset({"dimension", "value", *BOUNDS})
_MAX_RATIO: Final = Fraction(10**6)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    dimension: str
    value: str
    """The campaign or channel; ``total`` for everything."""
    cpa_max: Micros | None = None
    daily_spend_max: Micros | None = None
    roas_min: Fraction | None = None
    cvr_min: Fraction | None = None

    def bounds(self) -> dict[str, float]:
        """The bounds set, as JSON and Prometheus numbers (money in currency units)."""
        found: dict[str, float] = {}
        for name in MONEY:
            amount = getattr(self, name)
            if amount is not None:
                found[name] = to_number(amount)
        for name in RATIOS:
            ratio = getattr(self, name)
            if ratio is not None:
                found[name] = float(ratio)
        return found

    def as_json(self) -> dict[str, Any]:
        named = {"value": self.value} if self.dimension != "total" else {}
        return {"dimension": self.dimension, **named, **self.bounds()}

    def judge(self, totals: Totals, daily: bool) -> dict[str, bool | None]:
        """Each bound set: met, missed, or None when the figures cannot judge it.

        ``daily``: the figures are one day's, so the daily spend bound applies; over
        any other span it is not judged (None).
        """
        t = totals
        verdicts: dict[str, bool | None] = {}
        if self.cpa_max is not None:
            # spend / conversions <= cpa_max, with conversions in micro-conversions.
            judged = t.conversions > 0 or t.spend > 0
            verdicts["cpa_max"] = t.spend * ONE <= self.cpa_max * t.conversions if judged else None
        if self.roas_min is not None:
            verdicts["roas_min"] = t.revenue >= self.roas_min * t.spend if t.spend else None
        if self.cvr_min is not None:
            cvr = Fraction(t.conversions, ONE)
            verdicts["cvr_min"] = cvr >= self.cvr_min * t.clicks if t.clicks else None
        if self.daily_spend_max is not None:
            verdicts["daily_spend_max"] = t.spend <= self.daily_spend_max if daily else None
        return verdicts


@dataclass(frozen=True, slots=True)
class TargetSet:
    version: int = 0
    saved_at: EpochMs = 0
    targets: tuple[Target, ...] = ()
    _by_row: dict[tuple[str, str], Target] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_row", {(t.dimension, t.value): t for t in self.targets})

    def of(self, dimension: str, value: str) -> Target | None:
        return self._by_row.get((dimension, value))

    def named(self, dimension: str) -> list[str]:
        """The campaigns (or channels) that have a target."""
        return [t.value for t in self.targets if t.dimension == dimension]

    def as_json(self) -> dict[str, Any]:
        return {"targets": [t.as_json() for t in self.targets]}


def row_verdict(target: Target | None, totals: Totals, daily: bool) -> dict[str, Any]:
    """What a KPI row adds: its target, each bound's verdict, and whether all judged are met."""
    if target is None:
        return {"target": None, "met": None, "on_target": None}
    met = target.judge(totals, daily)
    judged = [v for v in met.values() if v is not None]
    return {"target": target.bounds(), "met": met, "on_target": all(judged) if judged else None}


def parse(body: Any, max_rules: int) -> tuple[Target, ...]:
    """The targets of a ``PUT /v1/targets`` body; :class:`RulesError` naming every bad part."""
    reasons: dict[str, str] = {}
    targets: list[Target] = []
    seen: dict[tuple[str, str], int] = {}
    for index, where, item in rules_of(body, "targets", _FIELDS, max_rules, reasons):
        before = len(reasons)
        dimension, value = _row(item, where, reasons)
        bounds: dict[str, Any] = {}
        for name in BOUNDS:
            if item.get(name) is not None:
                bound = (_money if name in MONEY else _ratio)(item[name])
                if isinstance(bound, str):
                    reasons[f"{where}.{name}"] = bound
                else:
                    bounds[name] = bound
        if not any(item.get(name) is not None for name in BOUNDS):
            reasons[where] = f"sets no bound: give one of {', '.join(BOUNDS)}"
        if dimension is not None and value is not None:
            if (dimension, value) in seen:
                first = seen[dimension, value]
                reasons[where] = f"{dimension} {value!r} has a target in targets[{first}]"
            seen.setdefault((dimension, value), index)
        if len(reasons) == before and dimension is not None and value is not None:
            targets.append(Target(dimension, value, **bounds))
    if reasons:
        raise RulesError(reasons)
    return tuple(targets)


def load(document: Mapping[str, Any]) -> TargetSet:
    """A target set from its stored form."""
    targets = tuple(
        Target(
            t["dimension"],
            t.get("value", "total"),
            cpa_max=_stored(t, "cpa_max", parse_micros),
            daily_spend_max=_stored(t, "daily_spend_max", parse_micros),
            roas_min=_stored(t, "roas_min", _exact),
            cvr_min=_stored(t, "cvr_min", _exact),
        )
        for t in document.get("targets", ())
    )
    return TargetSet(document.get("version", 0), document.get("saved_at", 0), targets)


def _stored(target: Mapping[str, Any], name: str, read: Callable[[Any], T]) -> T | None:
    return read(target[name]) if name in target else None


def _exact(number: float | str) -> Fraction:
    """The decimal a ratio was written as, exactly (2.3 is 23/10, not the float's binary)."""
    return Fraction(Decimal(str(number).strip()))


def _row(
    item: Mapping[str, Any], where: str, reasons: dict[str, str]
) -> tuple[str | None, str | None]:
    dimension = item.get("dimension")
    if dimension not in DIMENSIONS:
        reasons[f"{where}.dimension"] = f"must be one of {', '.join(DIMENSIONS)}"
        return None, None
    value = item.get("value")
    if dimension == "total":
        if value not in (None, "total"):
            reasons[f"{where}.value"] = "a total target names no value"
        return dimension, "total"
    if not isinstance(value, str) or not value or len(value) > MAX_VALUE or not value.isprintable():
        reasons[f"{where}.value"] = f"the {dimension}: 1 to {MAX_VALUE} printable characters"
        return dimension, None
    if dimension == "channel" and value not in CHANNELS:
        reasons[f"{where}.value"] = f"unknown channel; one of {', '.join(CHANNELS)}"
        return dimension, None
    return dimension, value


def _money(raw: Any) -> Micros | str:
    try:
        amount = parse_micros(raw)
    except MoneyError as exc:
        return str(exc)
    return amount if amount > 0 else "must be more than 0"


def _ratio(raw: Any) -> Fraction | str:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return "must be a number"
    try:
        ratio = _exact(raw)
    except (InvalidOperation, ValueError, OverflowError):
        return f"{str(raw)[:40]!r} is not a number"
    if ratio <= 0:
        return "must be more than 0"
    if ratio > _MAX_RATIO:
        return f"must be at most {_MAX_RATIO}"
    return ratio


__all__ = ["BOUNDS", "DIMENSIONS", "Target", "TargetSet", "load", "parse", "row_verdict"]
