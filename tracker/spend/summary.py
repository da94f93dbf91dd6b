"""What a spend import holds: as ``tracker import-spend`` prints it, as ``POST /v1/spend``
answers it.

Money per currency as the exports state it, and in the base currency as the workers
convert each figure; the rows that add nothing, each with why; how the accounts' days
were placed in the reporting calendar (:mod:`tracker.spend.days`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tracker import money
from tracker.spend import formats
from tracker.spend.campaigns import MAPPED_BY_ID, MAPPED_BY_NAME
from tracker.types import Micros
from tracker.windows import HOUR

SHOWN_PROBLEMS: Final = 20
"""Rows not read that a summary names one by one, at most."""


@dataclass(frozen=True, slots=True)
class FileRead:
    name: str
    platform: str
    encoding: str
    delimiter: str
    rows: int
    """Its rows with spend."""
    skipped: int


@dataclass(frozen=True, slots=True)
class Problem:
    """A row that adds nothing: where, and why (a reason of :mod:`formats`, or zero spend)."""

    file: str
    line: int
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    """What an import holds, as ``tracker import-spend`` prints it and the API answers it."""

    files: tuple[FileRead, ...]
    rows: int
    """Rows with spend, in the figures."""
    figures: int
    """Spend events: one per campaign and reporting day."""
    zero_figures: int
    campaigns: int
    days: tuple[str, ...]
    """The reporting days of the figures, in order."""
    spend: Mapping[str, Micros]
    """Per currency, as the exports state it."""
    currency: str
    spend_base: Micros
    """In the base currency, as the worker converts each figure."""
    mapped: Mapping[str, int]
    """Rows whose campaign the map gave, by campaign id and by name."""
    skipped: tuple[Problem, ...]
    account_timezone: str
    reporting_timezone: str
    straddling: int
    """Account days that are not reporting days: counted whole in the one holding most."""
    outside_ms: int
    """Of those, the most of one day outside its reporting day."""
    notes: tuple[str, ...] = ()

    def render(self, sent_to: str | None) -> str:
        """The text ``tracker import-spend`` prints; ``sent_to``: the topic, None in a dry run."""
        lines = [
            f"read {f.name}: {f.platform}, {f.encoding}, {f.delimiter}-separated: "
            f"{f.rows} rows, {f.skipped} skipped"
            for f in self.files
        ]
        span = f" ({self.days[0]} to {self.days[-1]})" if self.days else ""
        zero = f" ({self.zero_figures} of no spend)" if self.zero_figures else ""
        lines.append(
            f"imported {_count(self.rows, 'row')}: {_count(self.figures, 'spend figure')}"
            f"{zero}, {_count(self.campaigns, 'campaign')}, {_count(len(self.days), 'day')}{span}"
        )
        by_currency = ", ".join(f"{_units(m)} {c}" for c, m in sorted(self.spend.items()))
        lines.append(f"spend: {by_currency or 'none'}")
        lines.append(f"in {self.currency}: {_units(self.spend_base)}")
        if self.mapped:
            by_id, by_name = self.mapped.get(MAPPED_BY_ID, 0), self.mapped.get(MAPPED_BY_NAME, 0)
            lines.append(f"campaign map: {by_id} rows by campaign id, {by_name} by campaign name")
        if self.skipped:
            lines.append(f"skipped {_count(len(self.skipped), 'row')}:")
            for reason, count in sorted(Counter(p.reason for p in self.skipped).items()):
                lines.append(f"  {count:>6}  {reason}")
            lines += [f"          {p.file} line {p.line}: {p.detail}" for p in self._explained()]
        lines += [f"note: {note}" for note in self.notes]
        if sent_to is None:
            lines.append(f"dry run: nothing sent ({self.figures} spend figures would be)")
        else:
            lines.append(f"sent {self.figures} spend figures to {sent_to}")
        return "\n".join(lines)

    def as_json(self, sent_to: str | None) -> dict[str, Any]:
        """The answer of ``POST /v1/spend``: the same as :meth:`render`, money as numbers."""
        return {
            "files": [
                {
                    "name": f.name,
                    "platform": f.platform,
                    "encoding": f.encoding,
                    "delimiter": f.delimiter,
                    "rows": f.rows,
                    "skipped": f.skipped,
                }
                for f in self.files
            ],
            "rows": self.rows,
            "figures": self.figures,
            "zero_figures": self.zero_figures,
            "campaigns": self.campaigns,
            "days": len(self.days),
            "first_day": self.days[0] if self.days else None,
            "last_day": self.days[-1] if self.days else None,
            "spend": {c: money.to_number(m) for c, m in sorted(self.spend.items())},
            "currency": self.currency,
            "spend_base": money.to_number(self.spend_base),
            "mapped": {how: self.mapped.get(how, 0) for how in (MAPPED_BY_ID, MAPPED_BY_NAME)},
            "skipped": dict(sorted(Counter(p.reason for p in self.skipped).items())),
            "problems": [
                {"file": p.file, "line": p.line, "reason": p.reason, "detail": p.detail}
                for p in self._explained()
            ],
            "timezone": {
                "account": self.account_timezone,
                "reporting": self.reporting_timezone,
                "straddling_days": self.straddling,
                "hours_outside": self.outside_ms / HOUR,
            },
            "notes": list(self.notes),
            "dry_run": sent_to is None,
            "sent": 0 if sent_to is None else self.figures,
        }

    def _explained(self) -> list[Problem]:
        """Skipped rows worth naming one by one: those that could not be read."""
        named = (formats.UNPARSEABLE, formats.SEVERAL_DAYS)
        return [p for p in self.skipped if p.reason in named][:SHOWN_PROBLEMS]


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _units(micros: Micros) -> str:
    """Micro-units as a decimal of currency units, with at least two decimals: 1234.5 -> 1234.50."""
    whole, fraction = divmod(micros, money.MICROS_PER_UNIT)
    return f"{whole}.{f'{fraction:06d}'.rstrip('0'):0<2}"


__all__ = ["SHOWN_PROBLEMS", "FileRead", "Problem", "Summary"]
