"""The values of a spend export as the platforms write them: its text, amounts and days.

Text is UTF-8 (with or without BOM), UTF-16 (Google Ads' "CSV for Excel") or
Windows-1252 (old Excel); amounts have a decimal point or a decimal comma, grouped by
commas, points, spaces or apostrophes, which a file's own amounts decide
(:func:`decimal_mark`), and are parsed exactly into micro-units by
:func:`tracker.money.parse_micros`, never through a float; days are ISO dates (a time
or an hour may follow) or English ones, never the ambiguous 01/05/2026.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Final

from tracker import money
from tracker.types import Micros

ZERO_DECIMAL: Final = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX"}
    | {"UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
)
"""ISO 4217 currencies without minor units: in their amounts "1,234" is a thousand and more."""
_MAX_MICROS_DIGITS: Final = len(str(money.MAX_MICROS))
_NOTHING: Final = frozenset({"", "-", "--", "\u2013", "\u2014"})
"""What a platform shows for no spend at all."""
_GROUPING: Final = str.maketrans("", "", " \u00a0\u202f\u2009'\u2019")
"""Spaces (plain, no-break, narrow, thin) and apostrophes group digits; never decimals."""
_AMOUNT: Final = {
    mark: re.compile(rf"(?:\d{{1,3}}(?:\{group}\d{{3}})+|\d+)(?:\{mark}\d+)?")
    for mark, group in ((".", ","), (",", "."))
}
"""Per decimal mark: an amount, its digits grouped by threes with the other mark or not."""
_DIGITS_AND_MARKS: Final = re.compile(r"\d(?:[\d.,]*\d)?")
_ISO_DAY: Final = re.compile(r"(\d{4})[-/](\d{2})[-/](\d{2})(?:[T |].*)?")
"""2024-05-01, 2024/05/01; a time or Microsoft's hour ("2024-05-01|13") may follow."""
_FIRST_DAY, _LAST_DAY = date(1970, 1, 2), date(9998, 12, 30)
"""Days whose starts and ends are instants in every zone, after 1970 and before 9999."""
_NAMED_DAYS: Final = ("%b %d, %Y", "%a, %b %d, %Y", "%B %d, %Y", "%d %b %Y", "%d %B %Y")


class NotUnderstood(ValueError):
    """A file that is no spend export tracker reads; the message says what is missing."""


def decode(data: bytes, name: str) -> tuple[str, str]:
    """A file's text, and the encoding it was read in: by its byte order mark, else UTF-16
    when every other byte is zero, else UTF-8, else Windows-1252 (old Excel)."""
    try:
        if data.startswith(codecs.BOM_UTF8):
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "UTF-8 with BOM"
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16"), "UTF-16"
        sample = data[:4096]
        if sample.count(0) > len(sample) // 4:
            low_first = sample[1::2].count(0) > sample[0::2].count(0)
            return data.decode("utf-16-le" if low_first else "utf-16-be"), "UTF-16"
        try:
            return data.decode("utf-8"), "UTF-8"
        except UnicodeDecodeError:
            return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        raise NotUnderstood(f"{name}: not text in UTF-8, UTF-16 or Windows-1252") from None


def decimal_mark(amounts: Iterable[str], whole_units: bool = False) -> str:
    """``.`` or ``,``: the decimal mark of a file's amounts, as the amounts show it.

    "1,234.56" and "1.234,56" show it; "12.50" and "12,5" too; "1,234" alone does not (a
    thousand, or one and a bit). With nothing shown the mark is a point, unless an
    amount is one of those: then it is grouping if the currencies have no minor units
    (``whole_units``: yen), and otherwise the file is refused rather than read 1000
    times off. Raises :class:`NotUnderstood` for files mixing both marks.
    """
    marks: set[str] = set()
    unclear: str | None = None
    for text in amounts:
        compact = text.translate(_GROUPING)
        if not _DIGITS_AND_MARKS.fullmatch(compact):
            continue  # no amount: its row is skipped as unparseable, saying so
        dots, commas = compact.count("."), compact.count(",")
        if dots and commas:
            marks.add("." if compact.rfind(".") > compact.rfind(",") else ",")
        elif dots > 1 or commas > 1:
            marks.add("," if dots else ".")
        elif dots or commas:
            mark = "." if dots else ","
            if len(compact) - compact.index(mark) - 1 == 3:
                unclear = unclear or text
            else:
                marks.add(mark)
    if len(marks) > 1:
        raise NotUnderstood("its amounts mix decimal points and decimal commas")
    if marks:
        return marks.pop()
    if unclear is None:
        return "."
    if whole_units:
        return "," if "." in unclear else "."
    raise NotUnderstood(
        f"amounts such as {unclear!r} may be thousands or have three decimals, and no "
        "amount in the file tells which: export it with the cents shown"
    )


def parse_amount(text: str, mark: str) -> Micros:
    """An amount written with the decimal ``mark`` (and the other as grouping), in micro-units.

    Empty, "-" and "--" are no spend: 0. Raises ValueError for anything else not an amount.
    """
    compact = text.translate(_GROUPING)
    if compact in _NOTHING:
        return 0
    if not _AMOUNT[mark].fullmatch(compact):
        raise ValueError(f"{text!r} is not an amount" + (" (negative)" if text[:1] == "-" else ""))
    group = "," if mark == "." else "."
    return money.parse_micros(compact.replace(group, "").replace(mark, "."))


def parse_micros_cell(text: str) -> Micros:
    """A ``cost_micros`` cell: an integer of micro-units."""
    compact = text.translate(_GROUPING)
    if compact in _NOTHING:
        return 0
    if not (compact.isascii() and compact.isdigit()) or len(compact) > _MAX_MICROS_DIGITS:
        raise ValueError(f"{text!r} is not a whole number of micro-units")
    micros = int(compact)
    if micros > money.MAX_MICROS:
        raise ValueError(f"{text!r} is too large")
    return micros


def parse_day(text: str) -> date:
    """A day as the platforms write it: 2024-05-01 (a time may follow), 2024/05/01, or in
    English, "May 1, 2024". Day-month orders such as 01/05/2024 are refused: ambiguous."""
    text = text.strip()
    found: date | None = None
    if match := _ISO_DAY.fullmatch(text):
        with contextlib.suppress(ValueError):  # no such day: refused below
            found = date(int(match[1]), int(match[2]), int(match[3]))
    else:
        for fmt in _NAMED_DAYS:
            try:
                found = datetime.strptime(text, fmt).date()
                break
            except ValueError:
                continue
    if found is None:
        raise ValueError(f"{text!r} is not a day (YYYY-MM-DD)")
    if not _FIRST_DAY <= found <= _LAST_DAY:
        raise ValueError(f"{text!r} is not a day from {_FIRST_DAY} to {_LAST_DAY}")
    return found


__all__ = [
    "ZERO_DECIMAL",
    "NotUnderstood",
    "decimal_mark",
    "decode",
    "parse_amount",
    "parse_day",
    "parse_micros_cell",
]
