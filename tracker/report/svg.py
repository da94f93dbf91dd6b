"""Charts as inline SVG strings: line charts over time and horizontal bars. No I/O, no scripts.

Inline SVG in HTML needs no namespace declaration, so the page names no URL at all.
Sized by ``viewBox`` and drawn at 100% of their box's width, so they scale to the
screen and to an A4 page alike. Text is escaped; colours come from the Okabe-Ito
palette, which stays apart for colour-blind readers and in greyscale print.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 28, 54
Format = Callable[[float], str]


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round ticks covering ``[low, high]``: steps of 1, 2 or 5 times 10^k."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    fraction = raw / power  # Heckbert's nice numbers: round the step to 1, 2, 5 or 10
    step = power * (1 if fraction < 1.5 else 2 if fraction < 3 else 5 if fraction < 7 else 10)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    fmt: Format,
    colours: Mapping[str, str],
) -> str:
    """One line per series over ``labels`` (the x axis); a None breaks the line."""
    values = [v for points in series.values() for v in points if v is not None]
    ticks = nice_ticks(min(0.0, *values) if values else 0.0, max(values) if values else 1.0)
    low, high = ticks[0], ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(labels), 1)

    def x(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / n)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / (high - low))

    parts = [_open(title), _title(title)]
    parts += _y_axis(ticks, y, fmt)
    every = max(1, math.ceil(n / 8))
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
                f'class="tick">{escape(label)}</text>'
            )
    for name, points in series.items():
        stroke = colours[name]
        segments: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(points):
            if v is None:
                segments.append([])
            else:
                segments[-1].append((x(i), y(v)))
        for segment in segments:
            if len(segment) > 1:
                d = " ".join(
                    f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}"
                    for j, (px, py) in enumerate(segment)
                )
                parts.append(f'<path d="{d}" fill="none" stroke="{stroke}" stroke-width="2"/>')
            elif len(segment) == 1:
                px, py = segment[0]
                parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{stroke}"/>')
    parts += _legend(list(series), colours)
    parts.append("</svg>")
    return "".join(parts)


def paired_bars(
    title: str,
    rows: Sequence[tuple[str, float | None, float | None]],
    names: tuple[str, str],
    fmt: Format,
) -> str:
    """Two horizontal bars per row (e.g. share of spend, share of revenue), side by side."""
    band = 30
    height = TOP + band * max(len(rows), 1) + 40
    top = max((v for _, a, b in rows for v in (a, b) if v is not None), default=1.0) or 1.0
    plot_w = WIDTH - 150 - 70
    parts = [_open(title, height), _title(title)]
    for i, (label, a, b) in enumerate(rows):
        base = TOP + i * band
        parts.append(
            f'<text x="142" y="{base + 17}" text-anchor="end" class="label">{escape(label)}</text>'
        )
        for j, (v, fill) in enumerate(((a, PALETTE[0]), (b, PALETTE[1]))):
            if v is None:
                continue
            w = plot_w * max(v, 0.0) / top
            yb = base + 4 + j * 12
            parts.append(f'<rect x="150" y="{yb}" width="{w:.1f}" height="10" fill="{fill}"/>')
            parts.append(
                f'<text x="{154 + w:.1f}" y="{yb + 9}" class="tick">{escape(fmt(v))}</text>'
            )
    parts += _legend(list(names), {names[0]: PALETTE[0], names[1]: PALETTE[1]}, height)
    parts.append("</svg>")
    return "".join(parts)


def bars(
    title: str,
    rows: Sequence[tuple[str, float | None]],
    fmt: Format,
    colours: Mapping[str, str],
) -> str:
    """One horizontal bar per row; a None shows as "n/a"."""
    band = 24
    height = TOP + band * max(len(rows), 1) + 12
    top = max((v for _, v in rows if v is not None), default=1.0) or 1.0
    plot_w = WIDTH - 150 - 70
    parts = [_open(title, height), _title(title)]
    for i, (label, v) in enumerate(rows):
        base = TOP + i * band
        parts.append(
            f'<text x="142" y="{base + 15}" text-anchor="end" class="label">{escape(label)}</text>'
        )
        if v is None:
            parts.append(f'<text x="150" y="{base + 15}" class="tick">n/a</text>')
            continue
        w = plot_w * max(v, 0.0) / top
        fill = colours.get(label, PALETTE[0])
        parts.append(f'<rect x="150" y="{base + 4}" width="{w:.1f}" height="14" fill="{fill}"/>')
        parts.append(
            f'<text x="{154 + w:.1f}" y="{base + 15}" class="tick">{escape(fmt(v))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _open(title: str, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {height}" '
        f'preserveAspectRatio="xMinYMin meet">'
    )


def _title(title: str) -> str:
    return f'<text x="{LEFT - 56}" y="16" class="title">{escape(title)}</text>'


def _y_axis(ticks: Sequence[float], y: Callable[[float], float], fmt: Format) -> list[str]:
    parts = []
    for t in ticks:
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(fmt(t))}</text>"
        )
    return parts


def _legend(names: Sequence[str], colours: Mapping[str, str], height: int = HEIGHT) -> list[str]:
    parts = []
    x = LEFT
    for name in names:
        parts.append(
            f'<rect x="{x}" y="{height - 16}" width="10" height="10" fill="{colours[name]}"/>'
        )
        parts.append(f'<text x="{x + 14}" y="{height - 7}" class="legend">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return parts
