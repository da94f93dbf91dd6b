"""The report's CSV and JSON forms: the same numbers as the HTML, for spreadsheets and scripts.

The CSV is tidy: one line per figure, ``section,bucket,value,field,amount``. A
``section`` is the dotted path of a part of the JSON form (``summary``,
``trends.rows``, ``budget.moves``); ``bucket`` and ``value`` name the row (a move
is named ``from->to``); ``field`` is the dotted path of the figure within the row;
``amount`` is written exactly as in the JSON (empty for null).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

COLUMNS = ("section", "bucket", "value", "field", "amount")
Line = tuple[str, str, str, str, str]


def to_json(report: Mapping[str, Any]) -> bytes:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"


def to_csv(report: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(lines(report))
    return out.getvalue()


def lines(report: Mapping[str, Any]) -> Iterator[Line]:
    """Every figure of the report as a CSV line, in the JSON form's order."""
    yield from _part("report", report)


def amount(value: Any) -> str:
    """A JSON scalar as the CSV writes it: numbers and booleans as JSON, null as empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _part(section: str, part: Mapping[str, Any]) -> Iterator[Line]:
    for key, value in part.items():
        path = key if section == "report" else f"{section}.{key}"
        if _is_rows(value):
            for index, item in enumerate(value):
                yield from _row(path, item, index)
        elif isinstance(value, Mapping):
            yield from _part(path, value)
        else:
            yield from _leaves(section, "", "", key, value)


def _row(section: str, item: Mapping[str, Any], index: int) -> Iterator[Line]:
    bucket = str(item.get("bucket", ""))
    if "value" in item:
        name = str(item["value"])
    elif "from" in item and "to" in item:
        name = f"{item['from']}->{item['to']}"
    else:
        name = f"#{index}"
    for key, value in item.items():
        if key in ("bucket", "value"):
            continue
        yield from _leaves(section, bucket, name, key, value)


def _leaves(section: str, bucket: str, name: str, field: str, value: Any) -> Iterator[Line]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _leaves(section, bucket, name, f"{field}.{key}", inner)
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            yield from _leaves(section, bucket, name, f"{field}.{index}", inner)
    else:
        yield (section, bucket, name, field, amount(value))


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
