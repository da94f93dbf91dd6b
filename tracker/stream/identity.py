"""Who is who: devices (anonymous ids) linked to users over time, as plain values.

A device keeps its history of link segments, ``(user or nobody, since)``, oldest first.
A touch made on the device at ``t`` belongs to the user of the last segment with
``since <= t``; a touch before every segment to the first segment's user (whoever
signs in first on a device gets its anonymous past); a device never linked belongs to
nobody. So a shared device gives each account only what was done after it signed in,
and two user ids are never merged: a device points at one user at a time.

The guards come from what breaks in other trackers (PostHog's and Segment's): ids such
as ``"undefined"`` or ``"0"`` that a buggy site sends for everyone are refused, and a
user stops absorbing devices after ``max_ids`` of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tracker.attribution import Touch
from tracker.types import EpochMs

JUNK_IDS = frozenset(
    {
        "anonymous", "guest", "distinctid", "distinct_id", "id", "not_authenticated",
        "email", "undefined", "true", "false", "null", "none", "nil", "0", "-1",
        "[object object]", "nan", "unknown",
    }
)  # fmt: skip
"""Ids that name nobody in particular (lower-cased, stripped): never linked."""

MAX_SEGMENTS = 50
"""Segments a device keeps; older ones are forgotten (their touches go to the oldest kept)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """From ``since`` on, the device belongs to ``user`` (``None``: signed out)."""

    user: str | None
    since: EpochMs


def owner(segments: Sequence[Segment], ts: EpochMs) -> str | None:
    """The user a device's touch at ``ts`` belongs to; ``None`` for nobody."""
    if not segments:
        return None
    found = segments[0].user
    for segment in segments:
        if segment.since > ts:
            break
        found = segment.user
    return found


def junk(identifier: str) -> bool:
    return identifier.strip().lower() in JUNK_IDS


def relinked(segments: Sequence[Segment], user: str | None, since: EpochMs) -> list[Segment] | None:
    """``segments`` with ``user`` in force from ``since``; ``None`` if that changes nothing.

    A segment of the same ``since`` is replaced; one that repeats the user of the one
    before it is dropped, since it changes no touch's owner.
    """
    if not segments and user is None:
        return None  # signing out a device nobody signed in on
    if segments and owner(segments, since) == user:
        return None
    merged = sorted([s for s in segments if s.since != since] + [Segment(user, since)],
                    key=lambda s: s.since)  # fmt: skip
    kept: list[Segment] = []
    for segment in merged:
        if not kept or kept[-1].user != segment.user:
            kept.append(segment)
    return kept[-MAX_SEGMENTS:]


Who = tuple[str | None, str | None]
"""Whose a conversion is: ``(user, None)``, or ``(None, device)`` for an anonymous one."""


def who(
    user: str | None, device: str | None, ts: EpochMs, links: Mapping[str, Sequence[Segment]]
) -> Who:
    """The customer of an event made by ``user`` on ``device`` at ``ts``."""
    if user:
        return user, None
    if device:
        found = owner(links.get(device, ()), ts)
        return (found, None) if found else (None, device)
    return None, None


def path_of(
    customer: Who,
    paths: Mapping[str, Sequence[Touch]],
    devices: Mapping[str, Sequence[str]],
    links: Mapping[str, Sequence[Segment]],
) -> list[Touch]:
    """Every remembered touch of ``customer``, in no particular order.

    A user's: those made without a device, and on each of their devices those the
    device's links give them. An anonymous device's: those it holds that nobody owns.
    """
    user, device = customer
    if user:
        touches = list(paths.get(user, ()))
        for linked in devices.get(user, ()):
            segments = links.get(linked, ())
            touches += [t for t in paths.get(linked, ()) if owner(segments, t.ts) == user]
        return touches
    if device:
        segments = links.get(device, ())
        return [t for t in paths.get(device, ()) if owner(segments, t.ts) is None]
    return []
