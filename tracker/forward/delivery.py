"""Sending one destination's conversions until each is taken or dead-lettered.

A :class:`Delivery` sends the requests its destination builds and acts on each answer
by its :data:`~tracker.forward.exchange.Kind`:

- ``throttled`` and ``transient``: the same events again after a backoff that doubles
  with each retry (equal jitter: between half and all of it, at most
  :data:`BACKOFF_MAX_S`), never sooner than the platform said (``retry_after_s``, or
  the answer's ``Retry-After``). Once the next try would come later than
  ``forward_give_up_s`` after the first failure, they are dead-lettered instead;
- ``permanent``: a request of several events refused whole (Meta's and TikTok's way)
  is halved and each half sent again, until the refused event is alone: only it is
  dead-lettered. Events a platform refuses one by one (Google's partial failures) are
  dead-lettered at once;
- ``misconfigured``: nothing is dead-lettered; the destination is blocked (reported to
  the :class:`Outlet`) and the same events are tried again every
  ``forward_blocked_retry_s``, for as long as it takes an operator to fix it.

No answer at all (refused, reset, timed out: :class:`Unreachable`) is ``transient``: the
platform may have taken the events, and the retry is deduplicated by the platform on
the same key. The waits go through the ``pause`` given, so a stopping process ends
them; the clock and the jitter's draw are given too, for tests.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from tracker.events import Event
from tracker.forward.destinations import Destination
from tracker.forward.exchange import Failure, HttpRequest, Outcome
from tracker.settings import Settings

BACKOFF_MAX_S: Final = 300.0
"""The longest backoff the doubling reaches; a platform's own ``retry_after_s`` may be longer."""
UNREACHABLE: Final = "unreachable"
"""The :attr:`Failure.code` of a request that got no answer."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A platform's HTTP answer, as the transport read it."""

    status: int
    body: bytes
    retry_after_s: float | None = None
    """The ``Retry-After`` header, in seconds, when it had one."""


class Unreachable(Exception):
    """A request got no answer (connection refused or reset, timeout): the platform may or
    may not have taken it."""


class Transport(Protocol):
    """Sends one request and reads the answer; :class:`Unreachable` when there is none."""

    async def send(self, request: HttpRequest) -> Answer: ...


class Outlet(Protocol):
    """Told what became of each event a :class:`Delivery` was given."""

    async def taken(self, events: Sequence[Event]) -> None:
        """The platform took ``events`` (or had them already)."""
        ...

    async def dead(self, events: Sequence[Event], failure: Failure, attempts: int) -> None:
        """``events`` will not be taken: keep them with the failure (a dead letter)."""
        ...

    def failed(self, events: int, failure: Failure) -> None:
        """An attempt failed for ``events`` events; they may be tried again."""
        ...

    async def blocked(self, failure: Failure | None) -> None:
        """The destination refuses its setup (``failure``), or accepts it again (None)."""
        ...

    def skipped(self, events: Sequence[Event], reason: str) -> None:
        """``events`` were left out of every request (``reason``)."""
        ...


Pause = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Policy:
    """How long a delivery waits and when it gives up, in seconds."""

    backoff_s: float
    give_up_s: float
    blocked_retry_s: float

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            settings.forward_backoff_s,
            settings.forward_give_up_s,
            settings.forward_blocked_retry_s,
        )


def backoff_s(retry: int, failure: Failure, base_s: float, draw: float) -> float:
    """The wait before retry number ``retry`` (1 for the first) after ``failure``.

    ``base_s`` doubled per earlier retry, at most :data:`BACKOFF_MAX_S`, of which
    ``draw`` (in [0, 1)) picks between half and all (equal jitter: senders that failed
    together spread out, and none comes back at once); at least the failure's own
    ``retry_after_s``.
    """
    ceiling: float = min(BACKOFF_MAX_S, base_s * 2.0 ** (retry - 1))
    return max(ceiling * (1 + draw) / 2, failure.retry_after_s or 0.0)


def halves(events: Sequence[Event]) -> tuple[tuple[Event, ...], tuple[Event, ...]]:
    """``events`` in two, the first half the smaller: how a refused request is searched."""
    middle = len(events) // 2
    return tuple(events[:middle]), tuple(events[middle:])


def sort(request: HttpRequest, outcome: Outcome) -> tuple[list[Event], dict[Failure, list[Event]]]:
    """The events of ``request`` the platform took, and the others by their failure."""
    if outcome.failure is not None:
        return [], {outcome.failure: list(request.events)}
    taken: list[Event] = []
    failed: dict[Failure, list[Event]] = {}
    for index, event in enumerate(request.events):
        failure = outcome.failed.get(index)
        if failure is None:
            taken.append(event)
        else:
            failed.setdefault(failure, []).append(event)
    return taken, failed


@dataclass(frozen=True, slots=True)
class _Work:
    """Events to send (again), after ``wait_s``."""

    events: tuple[Event, ...]
    retries: int = 0
    """Retries after throttled or transient failures so far."""
    since: float | None = None
    """When the first of those failures came (the clock's), for the give-up."""
    wait_s: float = 0.0


class Delivery:
    """Sends conversions to one destination: see the module's docstring."""

    def __init__(
        self,
        destination: Destination,
        settings: Settings,
        transport: Transport,
        outlet: Outlet,
        pause: Pause,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._destination = destination
        self._settings = settings
        self._policy = Policy.of(settings)
        self._transport = transport
        self._outlet = outlet
        self._pause = pause
        self._clock = clock
        self._draw = draw
        self._blocked = False

    @property
    def blocked(self) -> bool:
        """Whether the destination's last answer refused its setup."""
        return self._blocked

    async def deliver(self, events: Sequence[Event]) -> None:
        """Return once each of ``events`` is taken, dead-lettered or skipped (told to the
        outlet); a destination that refuses its setup keeps this waiting."""
        queue: deque[_Work] = deque([_Work(tuple(events))])
        while queue:
            work = queue.popleft()
            if work.wait_s:
                await self._pause(work.wait_s)
            requests = self._destination.requests(work.events, self._settings)
            carried = {id(event) for request in requests for event in request.events}
            left_out = [event for event in work.events if id(event) not in carried]
            if left_out:
                self._outlet.skipped(left_out, "repeats another conversion of the batch")
            for request in requests:
                queue.extend(await self._attempt(request, work))

    async def _attempt(self, request: HttpRequest, work: _Work) -> list[_Work]:
        """Send ``request`` once; what is left to send, and when."""
        try:
            answer = await self._transport.send(request)
        except Unreachable as exc:
            outcome = Outcome(Failure("transient", UNREACHABLE, str(exc)))
        else:
            outcome = self._destination.outcome(request, answer.status, answer.body)
            outcome = _with_retry_after(outcome, answer.retry_after_s)
        taken, failed = sort(request, outcome)
        misconfigured = any(failure.kind == "misconfigured" for failure in failed)
        if self._blocked and not misconfigured:
            self._blocked = False
            await self._outlet.blocked(None)
        if taken:
            await self._outlet.taken(taken)
        left: list[_Work] = []
        for failure, events in failed.items():
            self._outlet.failed(len(events), failure)
            left += await self._after(failure, events, work, whole=outcome.failure is not None)
        return left

    async def _after(
        self, failure: Failure, events: list[Event], work: _Work, whole: bool
    ) -> list[_Work]:
        """What to do with ``events`` after ``failure``: the work left, if any."""
        if failure.kind == "misconfigured":
            if not self._blocked:
                self._blocked = True
                await self._outlet.blocked(failure)
            wait = max(self._policy.blocked_retry_s, failure.retry_after_s or 0.0)
            return [_Work(tuple(events), work.retries, None, wait)]
        if failure.kind == "permanent":
            if whole and len(events) > 1:
                return [_Work(half, work.retries, work.since) for half in halves(events)]
            await self._outlet.dead(events, failure, work.retries + 1)
            return []
        retries = work.retries + 1
        since = self._clock() if work.since is None else work.since
        wait = backoff_s(retries, failure, self._policy.backoff_s, self._draw())
        if self._clock() + wait - since > self._policy.give_up_s:
            await self._outlet.dead(events, failure, retries)
            return []
        return [_Work(tuple(events), retries, since, wait)]


def _with_retry_after(outcome: Outcome, header_s: float | None) -> Outcome:
    """``outcome`` with the answer's ``Retry-After`` where its body stated no wait."""
    failure = outcome.failure
    if header_s is None or failure is None or failure.retry_after_s is not None:
        return outcome
    return dataclasses.replace(
        outcome, failure=dataclasses.replace(failure, retry_after_s=header_s)
    )


__all__ = [
    "BACKOFF_MAX_S",
    "UNREACHABLE",
    "Answer",
    "Delivery",
    "Outlet",
    "Pause",
    "Policy",
    "Transport",
    "Unreachable",
    "backoff_s",
    "halves",
    "sort",
]
