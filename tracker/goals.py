"""Conversion goals as marketers define them (GA's and Matomo's destination goals).

A goal rule makes a conversion of input that is otherwise none: a page view whose URL
matches a pattern (``"page_url": "https://shop.example/thank-you*"``), or an SDK event
by name (Segment's ``track`` name, Snowplow's structured-event action), with an
optional fixed value. The rules live in the store (:mod:`tracker.rulebook`), are
changed at run time through ``PUT /v1/goals`` and are read by every collector in the
background. The collector applies them as events arrive: a matching page view stays a
page view and brings a conversion of its own, stamped with the version of the rules
that made it (``goal_version``). Events received before a save are never rewritten.

Patterns have one wildcard, ``*`` (any run of characters, ``/`` included); everything
else is literal. A pattern starting with ``/`` is matched against the URL's path and
query, an absolute one against the whole URL; the fragment never takes part, and the
scheme and host are compared without case, as browsers do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from tracker.events import EVENT_TYPES, Event
from tracker.money import MoneyError, parse_micros, to_number
from tracker.rulebook import RulesError, rules_of
from tracker.types import EpochMs, Micros

PURCHASE: Final = "purchase"
"""The goal of orders (Segment's ``Order Completed``, Snowplow's transactions)."""
ORDER_COMPLETED: Final = "Order Completed"
REVERSALS: Final = {"Order Refunded": "refund", "Order Cancelled": "rejected"}
"""E-commerce events that undo the order they name, with the status they give it."""
BUILT_IN_EVENTS: Final = frozenset({ORDER_COMPLETED, *REVERSALS})
"""SDK event names tracker already counts: a rule may not give them another meaning."""
RESERVED_NAMES: Final = frozenset({*EVENT_TYPES, PURCHASE})
"""Goal names a rule may not take: the event types, and the goal of orders."""
MAX_NAME: Final = 64
MAX_EVENT: Final = 256
MAX_PATTERN: Final = 2048
_FIELDS: Final = frozenset({"name", "page_url", "event", "value", "currency"})
_SCHEMES: Final = ("https://", "http://")


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    page_url: str | None = None
    event: str | None = None
    value: Micros | None = None
    """Money every conversion of the goal is worth, in ``currency``; None: the event's own."""
    currency: str | None = None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"name": self.name}
        if self.page_url is not None:
            found["page_url"] = self.page_url
        if self.event is not None:
            found["event"] = self.event
        if self.value is not None:
            found["value"] = to_number(self.value)
            found["currency"] = self.currency
        return found


@dataclass(frozen=True, slots=True)
class GoalSet:
    """One saved version of the rules, ready to match."""

    version: int = 0
    """0: nothing was ever saved."""
    saved_at: EpochMs = 0
    goals: tuple[Goal, ...] = ()
    _events: dict[str, Goal] = field(init=False, repr=False, compare=False)
    _pages: tuple[tuple[Goal, re.Pattern[str], bool], ...] = field(
        init=False, repr=False, compare=False
    )
    """Each page rule, compiled, and whether it matches the path (not the whole URL)."""
    _any_page: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pages = tuple(
            (g, _compile(g.page_url), g.page_url.startswith("/"))
            for g in self.goals
            if g.page_url is not None
        )
        # Most page views match no goal: one alternation rejects them in one pass.
        either = "|".join(f"(?:{p.pattern})" for _, p, _ in pages)
        object.__setattr__(self, "_events", {g.event: g for g in self.goals if g.event})
        object.__setattr__(self, "_pages", pages)
        object.__setattr__(self, "_any_page", re.compile(either, re.DOTALL) if pages else None)

    def for_event(self, name: str) -> Goal | None:
        """The goal an SDK event of this name converts to, if a rule names it."""
        return self._events.get(name)

    def for_page(self, url: str | None) -> list[Goal]:
        """The goals a page view of ``url`` reaches, in the order of the rules."""
        if self._any_page is None or not url:
            return []
        absolute, relative = _subjects(url)
        if not (self._any_page.fullmatch(absolute) or self._any_page.fullmatch(relative)):
            return []
        return [
            goal
            for goal, pattern, local in self._pages
            if pattern.fullmatch(relative if local else absolute)
        ]

    def conversions(self, events: Sequence[Event]) -> list[Event]:
        """``events`` with, after each page view, the conversions of the goals it reached."""
        if self._any_page is None:
            return list(events)
        out: list[Event] = []
        for event in events:
            out.append(event)
            if event.type == "pageview":
                out.extend(self.conversion(event, goal) for goal in self.for_page(event.url))
        return out

    def conversion(self, event: Event, goal: Goal) -> Event:
        """The conversion of ``goal`` that ``event`` (a page view) makes.

        Its id follows from the page view's and the goal's, so a page view sent twice
        (the same id) makes one conversion, as it makes one page view.
        """
        digest = hashlib.blake2b(f"{event.event_id}\0{goal.name}".encode(), digest_size=16)
        return msgspec.structs.replace(
            event,
            event_id=f"goal-{digest.hexdigest()}",
            type="conversion",
            goal=goal.name,
            value=goal.value,
            currency=goal.currency or event.currency,
            status="approved",
            goal_version=self.version,
        )

    def as_json(self) -> dict[str, Any]:
        return {"goals": [g.as_json() for g in self.goals]}


def parse(
    body: Any, currencies: frozenset[str], base_currency: str, max_rules: int
) -> tuple[Goal, ...]:
    """The goals of a ``PUT /v1/goals`` body; :class:`RulesError` naming every bad part."""
    reasons: dict[str, str] = {}
    goals: list[Goal] = []
    events: dict[str, int] = {}
    pages: dict[tuple[str, str], int] = {}
    for index, where, item in rules_of(body, "goals", _FIELDS, max_rules, reasons):
        before = len(reasons)
        name = _name(item.get("name"), f"{where}.name", reasons)
        page_url, event = item.get("page_url"), item.get("event")
        if (page_url is None) == (event is None):
            reasons[where] = "needs either page_url or event, not both"
        elif page_url is not None:
            page_url = _pattern(page_url, f"{where}.page_url", reasons)
            if page_url is not None and name is not None:
                if (name, page_url) in pages:
                    reasons[where] = f"repeats goals[{pages[name, page_url]}]"
                pages.setdefault((name, page_url), index)
        else:
            event = _event(event, f"{where}.event", reasons)
            if event is not None:
                if event in events:
                    reasons[f"{where}.event"] = f"{event!r} is named by goals[{events[event]}] too"
                events.setdefault(event, index)
        value, currency = _value(item, where, currencies, base_currency, reasons)
        if len(reasons) == before and name is not None:
            goals.append(Goal(name, page_url, event, value, currency))
    if reasons:
        raise RulesError(reasons)
    return tuple(goals)


def load(document: Mapping[str, Any]) -> GoalSet:
    """A goal set from its stored form (:func:`tracker.rulebook.Rulebook.current`)."""
    goals = tuple(
        Goal(
            g["name"],
            g.get("page_url"),
            g.get("event"),
            parse_micros(g["value"]) if "value" in g else None,
            g.get("currency"),
        )
        for g in document.get("goals", ())
    )
    return GoalSet(document.get("version", 0), document.get("saved_at", 0), goals)


def _name(raw: Any, where: str, reasons: dict[str, str]) -> str | None:
    if not isinstance(raw, str) or not raw:
        reasons[where] = "required: a non-empty string"
    elif len(raw) > MAX_NAME or not raw.isprintable():
        reasons[where] = f"must be printable, at most {MAX_NAME} characters"
    elif raw in RESERVED_NAMES:
        reasons[where] = f"{raw!r} is built in ({', '.join(sorted(RESERVED_NAMES))})"
    else:
        return raw
    return None


def _pattern(raw: Any, where: str, reasons: dict[str, str]) -> str | None:
    if not isinstance(raw, str) or not raw:
        reasons[where] = "must be a non-empty string"
        return None
    if len(raw) > MAX_PATTERN or not raw.isprintable() or any(c.isspace() for c in raw):
        reasons[where] = f"must be at most {MAX_PATTERN} printable characters, no spaces"
        return None
    lowered = raw.lower()
    scheme = next((s for s in _SCHEMES if lowered.startswith(s)), None)
    if scheme is None and not raw.startswith("/"):
        reasons[where] = f"{raw[:100]!r} must start with https://, http:// or /"
        return None
    if scheme is None:
        host, path = "", raw
    else:
        host, slash, rest = raw[len(scheme) :].partition("/")
        path = slash + rest
        if not host or "*" in host:
            reasons[where] = f"{raw[:100]!r} must name its host, without *"
            return None
        raw = f"{scheme}{host.lower()}{path}"
    pattern: str = raw
    if path.strip("/*") == "":
        reasons[where] = f"{pattern[:100]!r} matches every page of a site"
        return None
    return pattern


def _event(raw: Any, where: str, reasons: dict[str, str]) -> str | None:
    if not isinstance(raw, str) or not raw or len(raw) > MAX_EVENT or not raw.isprintable():
        reasons[where] = f"must be a printable string of 1 to {MAX_EVENT} characters"
    elif raw in BUILT_IN_EVENTS:
        reasons[where] = f"{raw!r} is counted already ({', '.join(sorted(BUILT_IN_EVENTS))})"
    else:
        return raw
    return None


def _value(
    item: Mapping[str, Any],
    where: str,
    currencies: frozenset[str],
    base_currency: str,
    reasons: dict[str, str],
) -> tuple[Micros | None, str | None]:
    if "value" not in item:
        if "currency" in item:
            reasons[f"{where}.currency"] = "only with a value"
        return None, None
    value: Micros | None = None
    try:
        value = parse_micros(item["value"])
    except MoneyError as exc:
        reasons[f"{where}.value"] = str(exc)
    currency = item.get("currency", base_currency)
    if not isinstance(currency, str) or currency.upper() not in currencies:
        reasons[f"{where}.currency"] = f"must be one of {', '.join(sorted(currencies))}"
        return value, None
    return value, currency.upper()


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(piece) for piece in pattern.split("*")), re.DOTALL)


def _subjects(url: str) -> tuple[str, str]:
    """The URL without its fragment (scheme and host lower-cased), and its path and query.

    By hand rather than ``urlsplit``, on every page view: 1.0-1.4 us against 3.8-6.1
    over 200,000 distinct URLs, same run (urlsplit's cache flatters it on one URL
    repeated). tests/unit/test_goals.py and the e2e oracle, which use ``urlsplit``,
    check the two agree.
    """
    url = url.partition("#")[0]
    start = url.find("://")
    if start < 0:
        return url, url
    end = len(url)
    for mark in "/?":
        found = url.find(mark, start + 3)
        if 0 <= found < end:
            end = found
    rest = url[end:]
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]  # an empty query is none
    path = rest if rest.startswith("/") else "/" + rest
    return url[:end].lower() + path, path


__all__ = [
    "BUILT_IN_EVENTS",
    "ORDER_COMPLETED",
    "PURCHASE",
    "REVERSALS",
    "Goal",
    "GoalSet",
    "load",
    "parse",
]
