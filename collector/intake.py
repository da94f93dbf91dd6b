"""One intake behind every protocol: what the collector does with events, whoever sent them.

The pixel, the batch API, the click redirect, signed postbacks and the SDK protocols
(Segment's, Snowplow's) are adapters: each reads its requests into events with
:func:`tracker.events.parse_event` and hands them here. The intake holds what they
share, so it is done one way for all of them:

- admission: each request is charged to its sender's rate limit (:mod:`collector.limits`)
  and answered 429 past it, before any work is done for it;
- the request's :class:`~tracker.events.Context` and the first-party visitor cookie,
  which is set only for events whose consent allows it, and neither set nor read under
  Global Privacy Control (``Sec-GPC: 1``); without it, the day's cookieless salt
  (:mod:`collector.cookieless`) lets the events count a visitor all the same;
- delivery to Kafka, answering 503 when Kafka does not take the events;
- dead letters: rejected input is kept with its reasons, so it is never lost silently
  and ``tracker replay-dead-letters`` can judge it again;
- the suppression list: events of a person erased are acknowledged and dropped,
  counted, never written to Kafka (:mod:`tracker.suppression`; the worker checks again);
- goal rules (:mod:`tracker.goals`): a page view whose URL a rule names goes to Kafka
  with the conversion it makes, in the same send, so both or neither are acknowledged;
- input tracker understands but does not count (:class:`~tracker.events.Uncounted`):
  acknowledged, so an SDK does not retry it forever, counted per kind and, unless it
  can never count, kept as a dead letter too, for a later version to replay.

A HEAD request asks what a GET would answer (link checkers, previews): it is
answered alike but records nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from collector import validation
from collector.cookieless import Salts
from collector.limits import Limits, retry_after_s
from collector.metrics import Metrics
from collector.producer import BatchingProducer, Unavailable
from tracker.asgi import HTTPError, Request
from tracker.events import Context, Event, Rules, Uncounted
from tracker.ids import new_id
from tracker.records import encode_dead_letter
from tracker.settings import Settings
from tracker.suppression import Suppressions

COOKIE = "tid"
"""The collector's own first-party visitor cookie."""
COOKIE_MAX_AGE = 365 * 86_400


class Intake:
    """Context, cookie, delivery and dead letters, shared by every endpoint."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        producer: BatchingProducer,
        rules: Rules,
        salts: Salts | None = None,
        suppressions: Suppressions | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.producer = producer
        self.rules = rules
        self.limits = Limits(settings)
        self.salts = salts
        self.suppressions = suppressions

    def admit(
        self,
        request: Request,
        endpoint: str,
        *,
        partner: str | None = None,
        write_key: str | None = None,
    ) -> None:
        """Charge the request to its sender's rate limit; 429 with ``Retry-After`` past it.

        The sender is the verified ``partner`` or configured ``write_key`` when the
        caller names one and its own limit is on, else the client address. A refusal
        is counted, never dead-lettered: a flood must not fill the topic.
        """
        wait, whose = self.limits.wait(request.client_ip, partner, write_key)
        if not wait:
            return
        self.metrics.rate_limited[endpoint].inc()
        seconds = retry_after_s(wait)
        named = f"partner {partner!r}" if whose == "partner" else f"this {whose}"  # not a key
        reason = f"too many requests from {named}; retry in {seconds} s"
        raise HTTPError(429, reason, [(b"retry-after", b"%d" % seconds)])

    def context(
        self,
        request: Request,
        *,
        mint: bool = True,
        cookie: str = COOKIE,
        browser: bool = True,
    ) -> tuple[Context, str | None]:
        """What the request says about its events, and a fresh visitor id if it had none.

        ``mint=False`` for requests that speak for many people (a server's batch):
        one minted id would merge them all into one visitor. ``browser=False``
        where the HTTP client is a library relaying events (Segment's API): its agent
        and referrer are not the visitor's, and its agent must not decide the bot
        verdict of events it merely relays.
        """
        header, agent, referrer, gpc_header = request.headers(
            b"cookie", b"user-agent", b"referer", b"sec-gpc"
        )
        gpc = gpc_header is not None and gpc_header.strip() == "1"
        visitor = None if gpc else read_cookie(header, cookie)
        minted = None if visitor or gpc or not mint else new_id()
        now = time.time_ns() // 1_000_000
        return Context(
            received_at=now,
            ip=request.client_ip,
            user_agent=agent if browser else None,
            referrer=referrer if browser else None,
            anonymous_id=visitor or minted,
            gpc=gpc,
            consent_required=self.settings.consent_required,
            salt=self.salts.today(now) if self.salts else None,
        ), minted

    def cookie_headers(
        self, request: Request, minted: str | None, events: list[Event], cookie: str = COOKIE
    ) -> list[tuple[bytes, bytes]]:
        """``Set-Cookie`` for a visitor id minted by :meth:`context`, if ``events`` allow it.

        Only when every event was accepted with consent to analytics storage: a cookie
        is what consent is asked for, so a rejected or an unconsented hit sets none.
        """
        if not minted or not events or not all(cookies_allowed(e) for e in events):
            return []
        secure = "; Secure" if request.secure else ""
        value = f"{cookie}={minted}; Max-Age={COOKIE_MAX_AGE}; Path=/; SameSite=Lax{secure}"
        return [(b"set-cookie", value.encode())]

    async def deliver(self, request: Request, endpoint: str, events: list[Event]) -> None:
        """Hand ``events`` to Kafka; 503 when it does not take them."""
        if not events or not records(request):
            return
        if self.suppressions and len(self.suppressions):
            kept = [e for e in events if not self.suppressions.suppressed(e)]
            self.metrics.suppressed[endpoint].inc(len(events) - len(kept))
            events = kept
            if not events:
                return
        goals = self.rules.goals
        sent = goals.conversions(events) if goals else events
        try:
            await self.producer.send(sent)
        except Unavailable as exc:
            self.metrics.unavailable.inc()
            raise HTTPError(503, str(exc), [(b"retry-after", b"5")]) from exc
        self.metrics.accepted[endpoint].inc(len(events))
        if goals:
            for event in sent:
                if event.goal_version is not None:
                    goal, version = event.goal or "", str(event.goal_version)
                    self.metrics.goal_conversions.labels(goal, version).inc()

    async def reject(
        self,
        request: Request,
        endpoint: str,
        raw: bytes | str,
        reasons: Mapping[str, str],
        context: Context | None = None,
    ) -> None:
        """Dead-letter rejected input, so it is never dropped silently.

        :class:`~tracker.events.Uncounted` input is counted by kind instead of as
        rejected, and kept only when it may count some day (``exc.keep``).
        """
        if not records(request):
            return
        self.metrics.rejected[endpoint].inc()
        await self._letter(endpoint, raw, reasons, context)

    async def uncounted(
        self,
        request: Request,
        endpoint: str,
        raw: bytes | str,
        exc: Uncounted,
        context: Context | None = None,
    ) -> None:
        """Count well-formed input tracker does not count; keep it when it may count later."""
        if not records(request):
            return
        self.metrics.uncounted.labels(endpoint, exc.kind).inc()
        if exc.keep:
            await self._letter(endpoint, raw, exc.reasons, context)

    async def _letter(
        self,
        endpoint: str,
        raw: bytes | str,
        reasons: Mapping[str, str],
        context: Context | None,
    ) -> None:
        kept = validation.letter_context(context, self.rules) if context else None
        # The request's own receive time, so a replay gives ``ts`` (absent, or
        # corrected by ``sent_at``) exactly the time the collector would have.
        received_at = context.received_at if context else int(time.time() * 1000)
        raw = validation.without_personal_data(raw)
        letter = encode_dead_letter(raw, reasons, endpoint, received_at, kept)
        try:
            await self.producer.send_raw(self.settings.dead_letter_topic, letter)
        except Unavailable as exc:
            raise HTTPError(503, str(exc), [(b"retry-after", b"5")]) from exc


def cookies_allowed(event: Event) -> bool:
    """Whether ``event``'s consent lets a visitor cookie be set and read."""
    return event.consent is None or event.consent.cookies


def records(request: Request) -> bool:
    """False for HEAD, which records no hit and dead-letters nothing."""
    return request.method != "HEAD"


def read_cookie(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, cut to 64 characters."""
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value[:64]
    return None


__all__ = ["COOKIE", "Intake", "cookies_allowed", "read_cookie", "records"]
