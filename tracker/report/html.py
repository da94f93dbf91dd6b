"""The stakeholder report as one self-contained HTML page: inline CSS and SVG, no scripts, no URLs.

Pure: a report dict (:func:`tracker.report.gather.gather`) in, a string out. Every
number cell carries its exact JSON value in ``data-value`` next to the rounded text
a person reads, so both can be checked against the JSON form. Days and times show in
the report's time zone (the JSON keeps UTC instants). Prints on A4. A row's standing
against its KPI target is written out ("off target: CPA"), its colour only repeating it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

import orjson

from tracker.events import parse_ts
from tracker.report import svg, verdicts
from tracker.windows import Calendar, calendar, rfc3339

CHART_SERIES = 8
"""Values drawn in the charts over time (the biggest by spend); the tables show all."""

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1d2430; margin: 0 auto; max-width: 1040px; padding: 24px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 2px solid #0072B2; padding-bottom: 4px; }
p.meta, p.note { color: #5a6473; margin: 4px 0; }
.tiles { display: grid; grid-template-columns: repeat(5, 1fr); gap: 10px; margin: 16px 0; }
.tile { border: 1px solid #d8dde6; border-radius: 6px; padding: 8px 10px; }
.tile .label { color: #5a6473; font-size: 12px; }
.tile .figure { font-size: 20px; font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; margin: 6px 0 10px; }
th, td { padding: 4px 6px; border-bottom: 1px solid #e3e7ee; text-align: left;
  vertical-align: top; }
th { background: #f3f5f9; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.up { color: #00734d; } .down { color: #b23b00; }
td.status { white-space: nowrap; }
.on { color: #00734d; } .off { color: #b23b00; font-weight: 600; } .unjudged { color: #5a6473; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
figure { margin: 0; }
svg.chart { width: 100%; height: auto; display: block; }
svg .title { font-size: 13px; font-weight: 600; fill: #1d2430; }
svg .tick, svg .legend { font-size: 10.5px; fill: #5a6473; }
svg .label { font-size: 11.5px; fill: #1d2430; }
svg .grid { stroke: #e3e7ee; stroke-width: 1; }
ul.sentences { margin: 4px 0 8px; padding-left: 20px; }
@media print {
  @page { size: A4; margin: 12mm; }
  body { font-size: 10pt; max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  section, figure, .tiles { break-inside: avoid; }
  table { font-size: 8.5pt; }
  thead { display: table-header-group; }
  tr { break-inside: avoid; }
}
"""


DASH = "\u2013"
NONE = DASH
"""How an undefined figure (a KPI whose denominator is zero) shows."""
BETTER_UP = {"revenue": True, "conversions": True, "roas": True, "cpa": False}
"""Whether a rise is good news, for the green and red of the trends table."""
BOUNDS = {
    "cpa_max": "CPA",
    "roas_min": "ROAS",
    "cvr_min": "conv. rate",
    "daily_spend_max": "daily spend",
}
"""Each target bound's figure, as the tables name it."""
STATUS_CLASS = {"on target": "on", "off target": "off"}


def money(v: float | None) -> str:
    return NONE if v is None else f"{v:,.2f}"


def ratio(v: float | None) -> str:
    return NONE if v is None else f"{v:,.2f}"


def share(v: float | None) -> str:
    return NONE if v is None else f"{v * 100:.1f}%"


def rate(v: float | None) -> str:
    return NONE if v is None else f"{v * 100:.2f}%"


def count(v: float | None) -> str:
    if v is None:
        return NONE
    return f"{v:,}" if isinstance(v, int) else f"{v:,.2f}"


def signed(fmt: Callable[[float | None], str]) -> Callable[[float | None], str]:
    def show(v: float | None) -> str:
        return NONE if v is None else ("+" if v > 0 else "") + fmt(v)

    return show


FORMATS: dict[str, Callable[[float | None], str]] = {
    "impressions": count,
    "clicks": count,
    "conversions": count,
    "spend": money,
    "revenue": money,
    "ctr": rate,
    "cvr": rate,
    "cpc": money,
    "cpa": money,
    "roas": ratio,
    "spend_share": share,
    "revenue_share": share,
    "clv": money,
    "clv_cpa": ratio,
}


def render(report: Mapping[str, Any]) -> str:
    """The whole page."""
    currency = escape(report["currency"])
    dimension = escape(report["dimension"])
    days = calendar(report["timezone"])
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report['title'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(report['title'])}</h1>",
        f'<p class="meta">{escape(_day(report["from"], days))} to '
        f"{escape(_day(report['to'], days))} (end excluded), {escape(report['window'])} "
        f"buckets in {escape(days.timezone)} time, attribution "
        f"{escape(report['model'])}, money in {currency}. Generated "
        f"{escape(report['generated_at'])}.</p>",
        _not_final(report),
        _tiles(report["total"], currency),
        _total_target(report["total"], currency),
        _overview(report, dimension, currency),
        _over_time(report, dimension, currency, days),
        _trends(report["trends"], dimension, currency, days),
        _attribution(report["attribution"], dimension),
        _budget(report["budget"], currency),
        _notes(report),
        "</body></html>",
    ]
    return "\n".join(parts)


def not_final(report: Mapping[str, Any]) -> str | None:
    """The sentence saying the report's last bucket may still change; None when it is final."""
    if report["final"]:
        return None
    days = calendar(report["timezone"])
    window = report["window"]
    last = days.bucket_start(parse_ts(report["to"]) - 1, window)
    unit = {"1d": "day", "1h": "hour", "1m": "minute"}[window]
    shown = days.day_of(last) if window == "1d" else _local(last, days)
    return (
        f"The last {unit}, {shown} ({days.timezone}), is not final yet: "
        "events that arrive late may still change its figures."
    )


def _not_final(report: Mapping[str, Any]) -> str:
    note = not_final(report)
    return "" if note is None else f'<p class="note" id="not-final">{escape(note)}</p>'


def _tiles(total: Mapping[str, Any], currency: str) -> str:
    tiles = [
        ("spend", f"Spend ({currency})"),
        ("revenue", f"Revenue ({currency})"),
        ("roas", "ROAS"),
        ("cpa", f"CPA ({currency})"),
        ("conversions", "Conversions"),
    ]
    cells = "".join(
        f'<div class="tile"><div class="label">{label}</div>'
        f'<div class="figure" data-field="{field}" data-value="{_exact(total[field])}">'
        f"{escape(FORMATS[field](total[field]))}</div></div>"
        for field, label in tiles
    )
    return f'<div class="tiles" id="totals">{cells}</div>'


def bounds_text(bounds: Mapping[str, float] | None) -> str:
    """A target in words: ``CPA at most 30.00; daily spend at most 500.00``; a dash for none."""
    if not bounds:
        return NONE
    shown = {"cpa_max": money, "roas_min": ratio, "cvr_min": rate, "daily_spend_max": money}
    parts = []
    for name, value in bounds.items():
        most = "at most" if name.endswith("_max") else "at least"
        parts.append(f"{BOUNDS[name]} {most} {shown[name](value)}")
    return "; ".join(parts)


def status_text(row: Mapping[str, Any]) -> str:
    """A row's standing in words: ``off target: CPA, ROAS``; bounds not judged named too."""
    text = row.get("target_status") or verdicts.NO_TARGET
    if text == verdicts.OFF:
        text += ": " + ", ".join(BOUNDS[name] for name in verdicts.missed(row))
    unjudged = verdicts.unjudged(row)
    if unjudged and text != verdicts.NOT_JUDGED:
        text += f" ({', '.join(BOUNDS[name] for name in unjudged)} not judged)"
    return text


def _targeted(rows: Sequence[Mapping[str, Any]]) -> bool:
    return any(r.get("target") for r in rows)


def _target_cell(row: Mapping[str, Any]) -> str:
    return f'<td class="target">{escape(bounds_text(row.get("target")))}</td>'


def _status_cell(row: Mapping[str, Any]) -> str:
    status = row.get("target_status") or verdicts.NO_TARGET
    css = STATUS_CLASS.get(status, "unjudged")
    return (
        f'<td class="status {css}" data-status="{escape(status)}">{escape(status_text(row))}</td>'
    )


def _total_target(total: Mapping[str, Any], currency: str) -> str:
    """The total's standing against the total target, in a sentence; nothing without one."""
    if not total.get("target"):
        return ""
    status = total.get("target_status") or verdicts.NO_TARGET
    money_in = (
        f", money in {currency}" if {"cpa_max", "daily_spend_max"} & set(total["target"]) else ""
    )
    return (
        f'<p class="meta" id="total-target">Total against its target '
        f"({escape(bounds_text(total['target']))}{money_in}): "
        f'<strong class="{STATUS_CLASS.get(status, "unjudged")}" data-status="{escape(status)}">'
        f"{escape(status_text(total))}</strong></p>"
    )


def _overview(report: Mapping[str, Any], dimension: str, currency: str) -> str:
    summary = report["summary"]
    columns = [
        ("spend", f"spend ({currency})"),
        ("spend_share", "share of spend"),
        ("revenue", f"revenue ({currency})"),
        ("revenue_share", "share of revenue"),
        ("conversions", "conversions"),
        ("roas", "ROAS"),
        ("cpa", f"CPA ({currency})"),
        ("cvr", "conv. rate"),
        ("clv", f"CLV ({currency})"),
        ("clv_cpa", "CLV/CPA"),
    ]
    judged = _targeted(summary)
    extra = [(f"target (money in {currency})", _target_cell), ("against target", _status_cell)]
    table = _table("summary", dimension, columns, summary, extra=extra if judged else ())
    colours = _colours([r["value"] for r in summary])
    shares = svg.paired_bars(
        "Share of spend vs share of revenue",
        [(r["value"], r["spend_share"], r["revenue_share"]) for r in summary],
        ("share of spend", "share of revenue"),
        lambda v: share(v),
    )
    ratios = svg.bars(
        "Customer lifetime value per acquisition cost (CLV/CPA)",
        [(r["value"], r["clv_cpa"]) for r in summary],
        lambda v: ratio(v),
        colours,
    )
    return (
        f'<section id="overview"><h2>Overview by {dimension}</h2>{table}'
        f'<div class="charts"><figure id="chart-shares">{shares}</figure>'
        f'<figure id="chart-clv-cpa">{ratios}</figure></div></section>'
    )


def _over_time(report: Mapping[str, Any], dimension: str, currency: str, days: Calendar) -> str:
    rows = report["series"]
    order = [r["value"] for r in report["summary"]][:CHART_SERIES]
    buckets = sorted({r["bucket"] for r in rows})
    labels = [_label(b, report["window"], days) for b in buckets]
    colours = _colours([r["value"] for r in report["summary"]])
    index = {(r["bucket"], r["value"]): r for r in rows}
    figures = []
    for field, title in (
        ("spend", f"Spend ({currency})"),
        ("revenue", f"Revenue ({currency})"),
        ("roas", "ROAS"),
        ("cpa", f"CPA ({currency})"),
    ):
        series = {
            value: [index[b, value][field] if (b, value) in index else None for b in buckets]
            for value in order
        }
        chart = svg.line_chart(
            f"{title} by {dimension}", labels, series, _axis(FORMATS[field]), colours
        )
        figures.append(f'<figure id="chart-{field}">{chart}</figure>')
    more = len(report["summary"]) - len(order)
    note = (
        f'<p class="note">Charts show the {len(order)} biggest by spend; the {more} others '
        "are in the tables.</p>"
        if more > 0
        else ""
    )
    return (
        f'<section id="over-time"><h2>Over time</h2><div class="charts">{"".join(figures)}</div>'
        f"{note}</section>"
    )


def _trends(trends: Mapping[str, Any], dimension: str, currency: str, days: Calendar) -> str:
    fields = (
        ("revenue", f"revenue ({currency})"),
        ("spend", f"spend ({currency})"),
        ("roas", "ROAS"),
        ("cpa", f"CPA ({currency})"),
    )
    head = f"<tr><th>{dimension}</th>"
    for _, label in fields:
        head += f'<th class="num">{escape(label)}</th><th class="num">change</th>'
    head += '<th class="num">conv. rate (95% interval)</th></tr>'
    body = []
    for r in trends["rows"]:
        now, change = r["current"], r["change"]
        cells = [f"<td>{escape(r['value'])}</td>"]
        for field, _ in fields:
            cells.append(_cell(f"current.{field}", now[field], FORMATS[field]))
            ranked = r["ranked"].get(field, True)
            relative = change[field]["relative"]
            text = signed(share)(relative) if ranked else "small sample"
            css = "num"
            if ranked and relative and field in BETTER_UP:
                css += " up" if (relative > 0) == BETTER_UP[field] else " down"
            cells.append(
                f'<td class="{css}" data-field="change.{field}.relative" '
                f'data-value="{_exact(relative)}">{escape(text)}</td>'
            )
        interval = r["cvr_interval"]["current"]
        shown = share(now["cvr"])
        if interval is not None:
            shown += f" ({interval[0] * 100:.1f}{DASH}{interval[1] * 100:.1f})"
        cells.append(
            f'<td class="num" data-field="current.cvr" data-value="{_exact(now["cvr"])}">'
            f"{escape(shown)}</td>"
        )
        body.append(f'<tr data-value="{escape(r["value"])}">{"".join(cells)}</tr>')
    movers = []
    for metric, label, fmt in (
        ("revenue", "revenue", money),
        ("spend", "spend", money),
        ("roas", "ROAS", ratio),
        ("cpa", "CPA", money),
    ):
        items = trends["movers"].get(metric, [])
        if items:
            text = ", ".join(f"{m['value']} {signed(fmt)(m['absolute'])}" for m in items[:3])
            movers.append(f"<li>Top movers in {label}: {escape(text)}</li>")
    minimums = trends["minimums"]
    return (
        f'<section id="trends-section"><h2>Trends</h2>'
        f'<p class="meta">{escape(_day(trends["current"]["from"], days))} to '
        f"{escape(_day(trends['current']['to'], days))} against "
        f"{escape(_day(trends['previous']['from'], days))} to "
        f"{escape(_day(trends['previous']['to'], days))}.</p>"
        f'<table id="trends"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
        f'<ul class="sentences">{"".join(movers)}</ul>'
        f'<p class="note">CPA changes are ranked only with at least {minimums["conversions"]:g} '
        f"conversions in both periods, ROAS changes only with at least "
        f"{money(minimums['spend'])} {currency} spend (else: small sample); conversion rates "
        "show a 95% Wilson interval.</p></section>"
    )


def _attribution(attribution: Mapping[str, Any], dimension: str) -> str:
    rows = attribution["rows"]
    models = list(rows[0]["models"]) if rows else []
    head = (
        f"<tr><th>{dimension}</th>"
        + "".join(f'<th class="num">{escape(m)} revenue</th>' for m in models)
        + "</tr>"
    )
    body = []
    for r in rows:
        cells = [f"<td>{escape(r['value'])}</td>"]
        for m in models:
            figures = r["models"][m]
            text = money(figures["revenue"])
            if "shift" in figures and figures["shift"]["revenue"]["relative"] is not None:
                text += f" ({signed(share)(figures['shift']['revenue']['relative'])})"
            cells.append(
                f'<td class="num" data-field="models.{m}.revenue" '
                f'data-value="{_exact(figures["revenue"])}">{escape(text)}</td>'
            )
        body.append(f'<tr data-value="{escape(r["value"])}">{"".join(cells)}</tr>')
    verdicts = "".join(f"<li>{escape(r['verdict'])}</li>" for r in rows)
    return (
        '<section id="attribution-section"><h2>Attribution models compared</h2>'
        '<p class="meta">Revenue each model credits; in brackets, the shift against last '
        "click.</p>"
        f'<table id="attribution"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
        f'<ul class="sentences">{verdicts}</ul></section>'
    )


def _budget(budget: Mapping[str, Any], currency: str) -> str:
    units = budget.get("units", [])
    columns = [
        ("recent_spend", f"spent last period ({currency})"),
        ("start", f"no change ({currency})"),
        ("recommended", f"recommended ({currency})"),
        ("change", f"change ({currency})"),
        ("marginal_start", "marginal return now"),
        ("marginal_recommended", "marginal return after"),
    ]
    formats = {
        "recent_spend": money,
        "start": money,
        "recommended": money,
        "change": signed(money),
        "marginal_start": ratio,
        "marginal_recommended": ratio,
    }
    parts = [
        '<section id="budget-section"><h2>Budget recommendation</h2>',
        f'<p id="budget-summary">{escape(budget["summary"])}</p>',
    ]
    sentences = [m["explanation"] for m in budget.get("moves", [])]
    sentences += [u["explanation"] for u in units]
    items = "".join(f"<li>{escape(s)}</li>" for s in sentences)
    explained = f'<ul class="sentences" id="budget-explanations">{items}</ul>'
    if units:
        parts.append(_table("budget", "unit", columns, units, formats))
        chart = svg.paired_bars(
            f"Budget for the next {budget['period_days']} days ({currency})",
            [(u["value"], u["start"], u["recommended"]) for u in units],
            ("no change", "recommended"),
            lambda v: money(v),
        )
        parts.append(
            f'<div class="charts"><figure id="chart-budget">{chart}</figure>{explained}</div>'
        )
    elif sentences:
        parts.append(explained)
    parts.append("</section>")
    return "".join(parts)


def _notes(report: Mapping[str, Any]) -> str:
    return (
        '<section id="notes"><h2>How to read this</h2><ul class="sentences">'
        "<li>ROAS is revenue per unit of spend; CPA is spend per conversion; conversion "
        "rate is conversions per click; CTR is clicks per impression.</li>"
        f"<li>Conversions and revenue per {escape(report['dimension'])} are as the "
        f"{escape(report['model'])} attribution model credits them.</li>"
        "<li>CLV is the revenue of the customers a channel or campaign acquired, per customer, "
        "over all time; CLV/CPA above 1 means a customer brings back more than they cost.</li>"
        "<li>Share of spend against share of revenue shows where money earns more (revenue "
        "share above spend share) or less than its part.</li>"
        "<li>The budget recommendation fits a diminishing-returns curve to each unit's daily "
        "spend and revenue and moves money to where the next unit of spend earns most, within "
        "the limits shown; it is a model's estimate, not a promise.</li>"
        f"{_targets_note(report)}"
        "</ul></section>"
    )


def _targets_note(report: Mapping[str, Any]) -> str:
    if not (_targeted(report["summary"]) or report["total"].get("target")):
        return ""
    targets = report.get("targets", {})
    daily = targets.get("daily_spend", verdicts.NOT_BY_DAY)
    return (
        f"<li>Targets (version {escape(str(targets.get('version')))}) are judged over the "
        "whole period: CPA, ROAS and conversion rate on its figures; a daily spend limit is "
        f"{escape(daily)}. A row is on target when every bound judged is met; a bound with "
        "nothing to judge (no conversions, spend or clicks) is not judged.</li>"
    )


def _table(
    table_id: str,
    first: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Mapping[str, Any]],
    formats: Mapping[str, Callable[[float | None], str]] = FORMATS,
    extra: Sequence[tuple[str, Callable[[Mapping[str, Any]], str]]] = (),
) -> str:
    """A table of number ``columns``, then the ``extra`` columns' cells (label, cell of a row)."""
    head = (
        f"<tr><th>{escape(first)}</th>"
        + "".join(f'<th class="num">{escape(label)}</th>' for _, label in columns)
        + "".join(f"<th>{escape(label)}</th>" for label, _ in extra)
    )
    body = "".join(
        f'<tr data-value="{escape(r["value"])}"><td>{escape(r["value"])}</td>'
        + "".join(_cell(field, r[field], formats[field]) for field, _ in columns)
        + "".join(cell(r) for _, cell in extra)
        + "</tr>"
        for r in rows
    )
    return f'<table id="{table_id}"><thead>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(field: str, value: Any, fmt: Callable[[float | None], str]) -> str:
    return (
        f'<td class="num" data-field="{escape(field)}" data-value="{_exact(value)}">'
        f"{escape(fmt(value))}</td>"
    )


def _exact(value: Any) -> str:
    """The JSON form of a value, as the JSON report holds it."""
    return escape(orjson.dumps(value).decode())


def _colours(values: Sequence[str]) -> dict[str, str]:
    return {v: svg.colour(i) for i, v in enumerate(values)}


def _axis(fmt: Callable[[float | None], str]) -> svg.Format:
    """Axis ticks: whole numbers from 10 up, the figure's own format below."""

    def show(v: float) -> str:
        return f"{v:,.0f}" if abs(v) >= 10 and fmt in (money, ratio, count) else fmt(v)

    return show


def _day(text: str, days: Calendar) -> str:
    """An RFC 3339 instant as local ``YYYY-MM-DD``, with ``HH:MM`` unless a day starts there."""
    ts = parse_ts(text)
    return days.day_of(ts) if days.bucket_start(ts, "1d") == ts else _local(ts, days)


def _local(ts: int, days: Calendar) -> str:
    """``ts`` as local ``YYYY-MM-DD HH:MM``."""
    return rfc3339(ts + days.offset(ts))[:16].replace("T", " ")


def _label(bucket: str, window: str, days: Calendar) -> str:
    ts = parse_ts(bucket)
    if window == "1d":
        return days.day_of(ts)[5:]
    return _local(ts, days)[11:]
