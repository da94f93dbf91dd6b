"""Reading the report's HTML back: its number cells, tables and charts, with the stdlib parser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

CHARTS = {
    "chart-shares",
    "chart-clv-cpa",
    "chart-spend",
    "chart-revenue",
    "chart-roas",
    "chart-cpa",
    "chart-budget",
}
"""The figure id of every chart the report draws when it has figures for all of them."""
ROWS = {"summary": ("summary",), "trends": ("trends", "rows"), "budget": ("budget", "units")}
"""Where in the report's JSON each HTML table's rows are."""


@dataclass
class Cell:
    table: str
    row: str
    field: str
    value: str
    """The exact JSON value the cell carries (``data-value``)."""
    text: str = ""
    """What a person reads."""


@dataclass
class Page(HTMLParser):
    cells: list[Cell] = field(default_factory=list)
    charts: dict[str, int] = field(default_factory=dict)
    """Chart figure id -> marks drawn in it (paths, rects, circles)."""
    urls: list[str] = field(default_factory=list)
    """Every src, href, xlink:href or action attribute."""
    tags: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        super().__init__()
        self._table = ""
        self._row = ""
        self._cell: Cell | None = None
        self._figure: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.add(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]
        if tag == "table":
            self._table = found.get("id") or ""
        elif tag == "tr":
            self._row = found.get("data-value") or ""
        elif "data-field" in found and "data-value" in found:
            self._cell = Cell(
                self._table if tag == "td" else found.get("id", "tiles") or "tiles",
                self._row if tag == "td" else "",
                found["data-field"] or "",
                found["data-value"] or "",
            )
        elif tag == "figure":
            self._figure = found.get("id") or ""
            self.charts[self._figure] = 0
        elif tag in ("path", "rect", "circle") and self._figure is not None:
            self.charts[self._figure] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "div") and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None
        elif tag == "figure":
            self._figure = None
        elif tag == "table":
            self._table = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data


def read(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def number(text: str) -> float | None:
    """A shown figure as a number: '1,234.50' -> 1234.5, '12.3%' -> 0.123, '-' -> None."""
    text = text.strip().split(" (")[0]
    if text in ("\u2013", "small sample"):
        return None
    if text.endswith("%"):
        return float(text[:-1].replace(",", "")) / 100
    return float(text.replace(",", ""))


def carried(report: Mapping[str, Any], cell: Cell) -> Any:
    """The value in the report's JSON form that ``cell`` shows: a tile's total or a row's field.

    A row is found by its ``value``; a dotted field (``change.spend.relative``) is a path.
    """
    if cell.table == "tiles":
        return report["total"][cell.field]
    found: Any = report
    for key in ROWS[cell.table]:
        found = found[key]
    found = next(row for row in found if row["value"] == cell.row)
    for part in cell.field.split("."):
        found = found[part]
    return found
