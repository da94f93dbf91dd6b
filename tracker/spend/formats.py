"""Spend exports as the ad platforms write them: which platform, which columns, which rows.

- Google Ads: the UI's reports (title and date-range lines above the header, ``Day``,
  ``Campaign``, ``Campaign ID``, ``Currency code``, ``Cost`` as "1,234.56", total rows
  such as "Total: Account" below the data; "CSV for Excel" is UTF-16, tab-separated),
  and the API's or a script's export (``segments.date``, ``campaign.name``,
  ``campaign.id``, ``customer.currency_code``, ``metrics.cost_micros``).
- Meta Ads Manager: ``Campaign name``, ``Amount spent (EUR)`` (the currency in the
  header, or a ``Currency`` column), and ``Day`` or ``Reporting starts`` and
  ``Reporting ends``; in English, German, French, Spanish, Italian, Portuguese and
  Dutch (:data:`_META`), with the numbers as the language writes them ("1.234,56").
- Microsoft Advertising: ``TimePeriod``, ``CampaignName``, ``CampaignId``,
  ``CurrencyCode``, ``Spend``, below ``Report Name:``/``Time Zone:`` lines and above a
  copyright line.

:func:`read` finds the header among a file's first lines by the columns a platform
needs, so a file is known by what it holds, not by its name; a file that is not known
is refused, saying which columns each platform misses. Cells are separated by commas,
semicolons or tabs; the text, amounts and days are read by :mod:`tracker.spend.values`.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, TypeVar

from tracker.spend.values import (
    ZERO_DECIMAL,
    NotUnderstood,
    decimal_mark,
    decode,
    parse_amount,
    parse_day,
    parse_micros_cell,
)
from tracker.types import Micros

T = TypeVar("T")

PLATFORMS: Final = ("google", "meta", "microsoft")
TOTAL: Final = "total row"
NOTE: Final = "report note"
SEVERAL_DAYS: Final = "not one day"
UNPARSEABLE: Final = "unparseable"
"""Why :func:`read` skips a row: a total or summary row (no campaign, or "Total: ..."),
a title or footer line among the data, a row covering more than one day, a cell that
cannot be read."""

HEADER_LINES: Final = 60
"""A header is looked for among this many first lines (title lines come above it)."""
_DELIMITERS: Final = {"\t": "tab", ";": "semicolon", ",": "comma"}

# Header names, as compared: NFC, case-folded, without spaces, "_" and "-" (so
# "Currency code", "CurrencyCode" and "customer.currency_code" compare alike).
_GOOGLE: Final = {
    "day": ("day", "segments.date"),
    "campaign": ("campaign", "campaign.name"),
    "campaign_id": ("campaignid", "campaign.id"),
    "currency": ("currencycode", "customer.currencycode"),
    "cost": ("cost",),
    "cost_micros": ("metrics.costmicros",),
}
_MICROSOFT: Final = {
    "day": ("timeperiod",),
    "campaign": ("campaignname",),
    "campaign_id": ("campaignid",),
    "currency": ("currencycode",),
    "cost": ("spend",),
}
# Meta's headers in English, German, French, Spanish, Italian, Portuguese, Dutch. Seen
# in exports of each language: the spend column, the campaign name, the day (except
# German "Tag" and French "Jour": by analogy), reporting starts and ends (except German
# "Ende der Berichterstattung": by analogy with its "Beginn der Berichterstattung");
# the currency and campaign id columns only in English, Spanish, Portuguese and Dutch.
_META: Final = {
    "day": ("day", "tag", "jour", "día", "giorno", "dia", "dag"),
    "starts": (
        "reportingstarts",
        "beginnderberichterstattung",
        "débutdesrapports",
        "iniciodelinforme",
        "iniziodeireport",
        "iníciodosrelatórios",
        "startrapportage",
    ),
    "ends": (
        "reportingends",
        "endederberichterstattung",
        "findesrapports",
        "findelinforme",
        "finedeireport",
        "encerramentodosrelatórios",
        "einderapportage",
    ),
    "campaign": (
        "campaignname",
        "kampagnenname",
        "nomdelacampagne",
        "nombredelacampaña",
        "nomedellacampagna",
        "nomedacampanha",
        "campagnenaam",
    ),
    "campaign_id": (
        "campaignid",
        "kampagnenid",
        "identifiantdelacampagne",
        "identificadordelacampaña",
        "iddellacampagna",
        "identificaçãodacampanha",
        "campagneid",
    ),
    "currency": ("currency", "währung", "devise", "divisa", "valuta", "moeda"),
}
_META_SPEND: Final = re.compile(
    r"(?:amountspent|ausgegebenerbetrag|montantdépensé|importegastado|importospeso"
    r"|valorusado|valorgasto|besteedbedrag)(?:\((?P<currency>[a-z]{3})\))?"
)
_CATALOGUE: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {
    "google": _GOOGLE,
    "meta": _META,
    "microsoft": _MICROSOFT,
}
_REQUIRED: Final = {
    "google": (
        (("day",), "Day"),
        (("campaign",), "Campaign"),
        (("currency",), "Currency code"),
        (("cost", "cost_micros"), "Cost (or metrics.cost_micros)"),
    ),
    "meta": (
        (("campaign",), "Campaign name"),
        (("cost",), "Amount spent"),
        (("day", "starts+ends"), "Day (or Reporting starts and Reporting ends)"),
        (("currency", "cost currency"), "the currency (Amount spent (EUR), or a Currency column)"),
    ),
    "microsoft": (
        (("day",), "TimePeriod"),
        (("campaign",), "CampaignName"),
        (("currency",), "CurrencyCode"),
        (("cost",), "Spend"),
    ),
}
"""Per platform, the fields it needs (any one of each group) and how to name them."""
_SHOWN: Final = {
    "day": "Day",
    "starts": "Reporting starts",
    "ends": "Reporting ends",
    "cost": "Spend",
    "cost_micros": "cost_micros",
}

_TOTAL_LABEL: Final = re.compile(r"\s*total\s*:", re.IGNORECASE)
"""Google's total rows: "Total: Account", "Total: Campaigns", "Total: Search", ..."""
_PREAMBLE: Final = re.compile(r"\s*(report aggregation|time zone)\s*:\s*(.*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Row:
    """A campaign's spend on one of the account's days, as one row of an export states it."""

    line: int
    """Where the row ends in its file, counting from 1."""
    day: date
    """The account's day (in the account's time zone)."""
    campaign: str
    """The campaign's name on the platform."""
    campaign_id: str | None
    currency: str
    """ISO 4217, as the file names it (upper case)."""
    micros: Micros


@dataclass(frozen=True, slots=True)
class Skipped:
    """A row :func:`read` did not take, and why: one of the reasons above."""

    line: int
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Export:
    """What :func:`read` made of one file."""

    platform: str
    encoding: str
    delimiter: str
    """``comma``, ``semicolon`` or ``tab``."""
    rows: tuple[Row, ...]
    skipped: tuple[Skipped, ...]
    notes: tuple[str, ...] = ()
    """What the file says about itself that the reader should know (a report's time zone)."""


@dataclass(frozen=True, slots=True)
class _Header:
    line: int
    """Index of the header line."""
    delimiter: str
    platform: str
    columns: dict[str, int]
    currency: str | None
    """Meta's: the currency the spend column's header names."""


def read(data: bytes, name: str, platform: str = "auto") -> Export:
    """Read an export of ``platform`` (``auto``: whichever its header is); ``name`` names
    the file in errors. Raises :class:`NotUnderstood` when the file is none of them."""
    text, encoding = decode(data, name)
    lines = text.split("\n")
    header = _find_header(lines, name, PLATFORMS if platform == "auto" else (platform,))
    notes = _preamble(lines[: header.line], header.delimiter, name)
    reader = csv.reader(
        io.StringIO("\n".join(lines[header.line + 1 :])), delimiter=header.delimiter
    )
    records: list[tuple[int, list[str]]] = []
    try:
        for record in reader:  # line_num: where the record (maybe of several lines) ends
            records.append((header.line + 1 + reader.line_num, [c.strip() for c in record]))
    except csv.Error as exc:
        raise NotUnderstood(f"{name}: not CSV after its header: {exc}") from None
    rows, skipped = _rows(records, header, name)
    delimiter = _DELIMITERS[header.delimiter]
    return Export(header.platform, encoding, delimiter, tuple(rows), tuple(skipped), notes)


def _key(header: str) -> str:
    """A header cell as compared with the catalogue."""
    folded = unicodedata.normalize("NFC", header.strip().strip("\ufeff")).casefold()
    return re.sub(r"[\s_\-]+", "", folded)


def _cells(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line.rstrip("\r")], delimiter=delimiter), [])
    except csv.Error:
        return []


def _columns(platform: str, keys: Sequence[str]) -> tuple[dict[str, int], str | None]:
    """Where each field of ``platform`` is among a line's header ``keys``; Meta's currency
    from its spend column's header."""
    columns: dict[str, int] = {}
    for field, names in _CATALOGUE[platform].items():
        for index, key in enumerate(keys):
            if key in names:
                columns[field] = index
                break
    currency = None
    if platform == "meta":
        for index, key in enumerate(keys):
            if match := _META_SPEND.fullmatch(key):
                columns["cost"] = index
                currency = match["currency"].upper() if match["currency"] else None
                break
    return columns, currency


def _missing(platform: str, columns: Mapping[str, int], currency: str | None) -> list[str]:
    present = set(columns)
    if {"starts", "ends"} <= present:
        present.add("starts+ends")
    if currency:
        present.add("cost currency")
    return [shown for fields, shown in _REQUIRED[platform] if not present & set(fields)]


def _find_header(lines: Sequence[str], name: str, platforms: Sequence[str]) -> _Header:
    """The first line holding every column a platform needs, split by the delimiter that
    makes the most cells of it; :class:`NotUnderstood` naming what each platform misses
    on its closest line when none does."""
    closest: dict[str, tuple[int, int, list[str]]] = {}  # (fields found, line, missing)
    for index, line in enumerate(lines[:HEADER_LINES]):
        found: list[tuple[int, _Header]] = []
        for delimiter in _DELIMITERS:
            cells = _cells(line, delimiter) if delimiter in line else [line]
            keys = [_key(cell) for cell in cells]
            for platform in platforms:
                columns, currency = _columns(platform, keys)
                missing = _missing(platform, columns, currency)
                if not missing:
                    found.append(
                        (len(cells), _Header(index, delimiter, platform, columns, currency))
                    )
                elif len(columns) > closest.get(platform, (0, 0, []))[0]:
                    closest[platform] = (len(columns), index, missing)
        if found:
            return max(found, key=lambda item: item[0])[1]
    problems = []
    for platform in platforms:
        count, index, missing = closest.get(platform, (0, 0, []))
        if count:
            problems.append(f"{platform} misses {', '.join(missing)} (line {index + 1})")
        else:
            needs = ", ".join(shown for _, shown in _REQUIRED[platform])
            problems.append(f"{platform} needs {needs}: none found")
    raise NotUnderstood(
        f"{name}: not a spend export tracker reads (no header line among its first "
        f"{HEADER_LINES}): {'; '.join(problems)}"
    )


def _preamble(lines: Sequence[str], delimiter: str, name: str) -> tuple[str, ...]:
    """What the lines above the header say: Microsoft's report aggregation (anything but
    days or hours is refused) and time zone."""
    notes: list[str] = []
    for line in lines:
        cells = _cells(line, delimiter)
        match = _PREAMBLE.fullmatch(cells[0]) if cells else None
        if match is None:
            continue
        what, value = match[1].lower(), match[2].strip()
        if what == "time zone" and value:
            notes.append(f"{name} says its time zone is {value!r}")
        elif what == "report aggregation" and value.lower() not in ("daily", "hourly", ""):
            raise NotUnderstood(
                f"{name}: its Report Aggregation is {value}: tracker takes spend by day; "
                "run the report with Daily (or Hourly) aggregation"
            )
    return tuple(notes)


def _rows(
    records: Sequence[tuple[int, list[str]]], header: _Header, name: str
) -> tuple[list[Row], list[Skipped]]:
    """The data rows of ``records``; the others (notes, totals, rows not read) skipped."""
    cells_of = _Cells(header.columns)
    data: list[tuple[int, list[str]]] = []
    skipped: list[Skipped] = []
    for line, cells in records:
        filled = [c for c in cells if c]
        if not filled:
            continue
        label = cells[0] or cells_of.get(cells, "day")
        if len(filled) == 1:
            skipped.append(Skipped(line, NOTE, filled[0][:80]))
        elif _TOTAL_LABEL.match(label):
            skipped.append(Skipped(line, TOTAL, label[:80]))
        elif not cells_of.get(cells, "campaign"):
            skipped.append(Skipped(line, TOTAL, "no campaign: a summary row"))
        else:
            data.append((line, cells))
    if "cost_micros" in header.columns:
        mark = "."
    else:
        currencies = {header.currency or cells_of.get(c, "currency").upper() for _, c in data}
        whole_units = bool(currencies) and currencies <= ZERO_DECIMAL
        try:
            mark = decimal_mark((cells_of.get(c, "cost") for _, c in data), whole_units)
        except NotUnderstood as exc:
            raise NotUnderstood(f"{name}: {exc}") from None
    rows: list[Row] = []
    for line, cells in data:
        try:
            rows.append(cells_of.row(line, cells, header.currency, mark))
        except _NotOneDay as exc:
            skipped.append(Skipped(line, SEVERAL_DAYS, str(exc)))
        except ValueError as exc:
            skipped.append(Skipped(line, UNPARSEABLE, str(exc)))
    return rows, skipped


class _NotOneDay(ValueError):
    """A Meta row over a range of days (an export without the breakdown by day)."""


@dataclass(frozen=True, slots=True)
class _Cells:
    """The cells of a data row, by field."""

    columns: Mapping[str, int]

    def get(self, cells: Sequence[str], field: str) -> str:
        index = self.columns.get(field)
        return cells[index] if index is not None and index < len(cells) else ""

    def row(self, line: int, cells: Sequence[str], currency: str | None, mark: str) -> Row:
        """The row ``cells`` state; ValueError naming the column that cannot be read."""
        currency = currency or self.get(cells, "currency").upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError(f"Currency {currency!r} is not an ISO 4217 code")
        if "cost_micros" in self.columns:
            micros = self._read(parse_micros_cell, cells, "cost_micros")
        else:
            micros = self._read(lambda text: parse_amount(text, mark), cells, "cost")
        campaign_id = self.get(cells, "campaign_id") or None
        return Row(
            line, self.day(cells), self.get(cells, "campaign"), campaign_id, currency, micros
        )

    def day(self, cells: Sequence[str]) -> date:
        """The row's day: its Day, else its reporting start and end when they are one day."""
        if "day" in self.columns or "starts" not in self.columns:
            return self._read(parse_day, cells, "day")
        start = self._read(parse_day, cells, "starts")
        end = self._read(parse_day, cells, "ends")
        if start != end:
            raise _NotOneDay(f"{start} to {end}: export with the breakdown by day")
        return start

    def _read(self, parse: Callable[[str], T], cells: Sequence[str], field: str) -> T:
        try:
            return parse(self.get(cells, field))
        except ValueError as exc:
            raise ValueError(f"{_SHOWN[field]}: {exc}") from None


__all__ = [
    "NOTE",
    "PLATFORMS",
    "SEVERAL_DAYS",
    "TOTAL",
    "UNPARSEABLE",
    "Export",
    "NotUnderstood",
    "Row",
    "Skipped",
    "read",
]
