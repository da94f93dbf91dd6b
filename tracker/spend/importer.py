"""Spend exports -> one spend event per campaign and day, and what the import did.

Pure: the exports' bytes in, an :class:`Import` out (the events, and the summary to
show); ``tracker import-spend`` and ``POST /v1/spend`` read files and send to Kafka
around it.

Replacing, never adding. The worker keeps one standing figure per campaign and
reporting period, the report with the newest ``ts`` winning
(:func:`tracker.stream.aggregate.spend_key`). Every event of an import carries the
import's time as its ``ts``, so a later import of the same days replaces them, and the
same file imported twice leaves the same figures. And a campaign's day is ONE event:
rows of the same campaign and day (Meta's rows per ad set, Google's campaign ids mapped
to one campaign, one campaign in two files of an import) are summed first, in
micro-units, as a second event would replace the first instead of adding to it. A day
whose rows all show zero is a figure of 0 all the same: the export says nothing was
spent, which replaces what an earlier import said.

What one figure cannot hold, an import refuses whole, sending nothing: an amount in a
currency without a rate (the worker could not convert it), and one campaign's day on
two channels (a figure has one channel).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Final

from tracker import money
from tracker.channels import CHANNELS
from tracker.events import Context, Event, InvalidEvent, Rules, parse_event
from tracker.settings import Settings
from tracker.spend import formats
from tracker.spend.campaigns import AS_NAMED, CampaignMap
from tracker.spend.days import Placement, place
from tracker.spend.summary import FileRead, Problem, Summary
from tracker.types import EpochMs, Micros
from tracker.windows import HOUR, calendar

DEFAULT_CHANNELS: Final = {"google": "search", "microsoft": "search", "meta": "social"}
"""A platform's channel, unless the import names one."""
ZERO: Final = "zero spend"
"""Why a row adds nothing (besides :mod:`formats`' reasons)."""


class Refused(ValueError):
    """An import that sends nothing; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Source:
    """An export as given: a file's name (or "request body") and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Options:
    platform: str = "auto"
    """``auto`` (by each file's header) or one of :data:`formats.PLATFORMS`."""
    account_timezone: str | None = None
    """IANA zone of the accounts' days; None: the reporting zone."""
    channel: str | None = None
    """None: the platform's (:data:`DEFAULT_CHANNELS`)."""
    campaigns: CampaignMap = field(default_factory=CampaignMap)


@dataclass(frozen=True, slots=True)
class Import:
    events: tuple[Event, ...]
    """One spend event per campaign and reporting day, all with the import's ``ts``."""
    summary: Summary


@dataclass(slots=True)
class _Figure:
    """The rows of one campaign's reporting day, across the import's files."""

    channels: set[str] = field(default_factory=set)
    rows: list[tuple[str, formats.Row, str]] = field(default_factory=list)
    """(file, row, how its campaign was found)."""


def plan(
    sources: Sequence[Source], options: Options, settings: Settings, now_ms: EpochMs
) -> Import:
    """The events that import ``sources``, reported at ``now_ms``, and the summary.

    Raises :class:`Refused` (sending nothing) for bad options, a file given twice or
    not understood, a currency without a rate, a campaign's day on two channels.
    """
    if options.platform not in ("auto", *formats.PLATFORMS):
        raise Refused(f"platform must be auto or one of {', '.join(formats.PLATFORMS)}")
    if options.channel is not None and options.channel not in CHANNELS:
        raise Refused(f"channel must be one of {', '.join(CHANNELS)}")
    reporting = settings.calendar()
    try:
        zone = options.account_timezone
        account = reporting if zone is None else calendar(zone)
    except ValueError as exc:
        raise Refused(f"account time zone: {exc}") from None
    rates = settings.rates()
    exports = _read(sources, options.platform)
    for name, export in exports:
        _refuse_unconvertible(name, export, rates)

    figures: dict[tuple[str, str], _Figure] = {}
    placements: dict[date, Placement] = {}
    for name, export in exports:
        channel = options.channel or DEFAULT_CHANNELS[export.platform]
        for row in export.rows:
            campaign, how = options.campaigns.campaign(
                export.platform, row.campaign_id, row.campaign
            )
            placement = placements.get(row.day)
            if placement is None:
                placement = placements[row.day] = place(row.day, account, reporting)
            figure = figures.setdefault((campaign, placement.period), _Figure())
            figure.channels.add(channel)
            figure.rows.append((name, row, how))
    _refuse_mixed_channels(figures)

    rules = Rules(currencies=frozenset(rates), default_currency=settings.base_currency.upper())
    context = Context(received_at=now_ms)
    events: list[Event] = []
    kept: list[_Figure] = []
    problems = [Problem(n, s.line, s.reason, s.detail) for n, e in exports for s in e.skipped]
    for (campaign, period), figure in sorted(figures.items()):
        currency, micros = _total(figure, rates, rules.default_currency)
        raw = {"type": "spend", "campaign": campaign, "period": period, "currency": currency}
        raw |= {"channel": next(iter(figure.channels)), "cost": str(Decimal(micros).scaleb(-6))}
        try:
            events.append(parse_event(raw, context, rules))
        except InvalidEvent as exc:  # a campaign too long, or with control characters
            detail = f"campaign {campaign[:80]!r}: {exc}"
            problems += [Problem(f, r.line, formats.UNPARSEABLE, detail) for f, r, _ in figure.rows]
        else:
            kept.append(figure)
    summary = _summary(
        exports,
        kept,
        events,
        problems,
        placements,
        rates=rates,
        base=rules.default_currency,
        zones=(account.timezone, reporting.timezone),
    )
    return Import(tuple(events), summary)


def _read(sources: Sequence[Source], platform: str) -> list[tuple[str, formats.Export]]:
    """Each source read; :class:`Refused` for one not understood, or given twice (its rows
    would count twice)."""
    seen: dict[bytes, str] = {}
    exports = []
    for source in sources:
        digest = hashlib.sha256(source.data).digest()
        if digest in seen:
            raise Refused(
                f"{source.name}: the same export as {seen[digest]}: its rows would count twice"
            )
        seen[digest] = source.name
        try:
            exports.append((source.name, formats.read(source.data, source.name, platform)))
        except formats.NotUnderstood as exc:
            raise Refused(str(exc)) from None
    return exports


def _summary(
    exports: Sequence[tuple[str, formats.Export]],
    kept: Sequence[_Figure],
    events: Sequence[Event],
    problems: list[Problem],
    placements: Mapping[date, Placement],
    *,
    rates: Mapping[str, float],
    base: str,
    zones: tuple[str, str],
) -> Summary:
    """What the import holds: ``kept`` figures as ``events``, and the rows not in them."""
    rows = [(name, row, how) for figure in kept for name, row, how in figure.rows]
    problems = problems + [Problem(name, row.line, ZERO) for name, row, _ in rows if not row.micros]
    spend: Counter[str] = Counter()
    for _, row, _ in rows:
        spend[row.currency] += row.micros
    straddling = {row.day for _, row, _ in rows if placements[row.day].outside_ms}
    outside_ms = max((placements[day].outside_ms for day in straddling), default=0)
    counted = Counter(name for name, row, _ in rows if row.micros)
    return Summary(
        files=tuple(
            FileRead(
                name,
                export.platform,
                export.encoding,
                export.delimiter,
                counted[name],
                sum(1 for p in problems if p.file == name),
            )
            for name, export in exports
        ),
        rows=sum(counted.values()),
        figures=len(events),
        zero_figures=sum(1 for e in events if not e.cost),
        campaigns=len({e.campaign for e in events}),
        days=tuple(sorted({e.period for e in events if e.period})),
        spend=dict(+spend),
        currency=base,
        spend_base=sum(money.convert(e.cost or 0, e.currency, rates) for e in events),
        mapped=dict(Counter(how for _, row, how in rows if row.micros and how != AS_NAMED)),
        skipped=tuple(sorted(problems, key=lambda p: (p.file, p.line))),
        account_timezone=zones[0],
        reporting_timezone=zones[1],
        straddling=len(straddling),
        outside_ms=outside_ms,
        notes=tuple(_notes(exports, kept, *zones, straddling, outside_ms)),
    )


def _refuse_unconvertible(name: str, export: formats.Export, rates: Mapping[str, float]) -> None:
    """Refuse the import when ``export`` has an amount in a currency without a rate."""
    missing = Counter(row.currency for row in export.rows if row.currency not in rates)
    if missing:
        currency, count = missing.most_common(1)[0]
        raise Refused(
            f"{name}: no rate for {currency} ({count} rows; TRACKER_CURRENCY_RATES has "
            f"{', '.join(sorted(rates))}): nothing was imported. Add {currency}=<rate> to "
            "the rates of every tracker process, the workers' first"
        )


def _refuse_mixed_channels(figures: Mapping[tuple[str, str], _Figure]) -> None:
    """Refuse the import when a campaign's day is spent on two channels (two platforms)."""
    mixed = [(key, figure) for key, figure in sorted(figures.items()) if len(figure.channels) > 1]
    if mixed:
        (campaign, period), figure = mixed[0]
        files = sorted({name for name, _, _ in figure.rows})
        raise Refused(
            f"campaign {campaign!r} has spend on {' and '.join(sorted(figure.channels))} on "
            f"{period} ({', '.join(files)}; {len(mixed)} campaign days alike): tracker keeps "
            "one spend figure, of one channel, per campaign and day. Map the platforms' "
            "campaigns to different campaigns (a campaign map), or give one channel for all"
        )


def _total(figure: _Figure, rates: Mapping[str, float], base: str) -> tuple[str, Micros]:
    """The figure's amount: in its currency, or in the base currency if its rows have several."""
    amounts: Counter[str] = Counter()
    for _, row, _ in figure.rows:
        amounts[row.currency] += row.micros
    if len(amounts) == 1:
        ((currency, micros),) = amounts.items()
        return currency, micros
    return base, sum(money.convert(m, c, rates) for c, m in amounts.items())


def _notes(
    exports: Sequence[tuple[str, formats.Export]],
    figures: Sequence[_Figure],
    account: str,
    reporting: str,
    straddling: set[date],
    outside_ms: int,
) -> list[str]:
    notes = [note for _, export in exports for note in export.notes]
    if any(export.notes for _, export in exports):
        notes.append(f"days were read as {account} days")
    if account != reporting:
        if straddling:
            notes.append(
                f"the accounts' days ({account}) are not {reporting} days: each day's spend "
                f"counts whole in the {reporting} day holding most of its hours, as a day's "
                f"figure cannot be split by hour (days straddling two: {len(straddling)}; up to "
                f"{outside_ms / HOUR:g} h of one outside its {reporting} day)"
            )
        else:
            notes.append(f"the accounts' days ({account}) are {reporting} days on these dates")
    combined = sum(1 for f in figures if len({name for name, _, _ in f.rows}) > 1)
    if combined:
        notes.append(
            f"{combined} spend figures sum rows of several files: an import of one of them "
            "alone replaces the sum, so import them together again when one changes"
        )
    return notes


__all__ = ["DEFAULT_CHANNELS", "ZERO", "Import", "Options", "Refused", "Source", "plan"]
