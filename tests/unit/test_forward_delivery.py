"""The forwarder's delivery logic, on a scripted transport: batching, backoff, splitting,
and what each kind of failure leads to.

The platforms' answers are the stand-in's (tests/platforms.py), as their documentation
writes them; the destinations are tracker's own modules, so each answer is read as in
production. Waits go through a fake pause that advances a fake clock: nothing sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import orjson
import pytest

from tests import platforms
from tracker.events import Context, Event, Rules, parse_event
from tracker.forward import dead, google, marks, meta, tiktok
from tracker.forward.delivery import (
    BACKOFF_MAX_S,
    UNREACHABLE,
    Answer,
    Delivery,
    Unreachable,
    backoff_s,
    halves,
    sort,
)
from tracker.forward.destinations import Destination
from tracker.forward.exchange import Failure, HttpRequest, Outcome
from tracker.forward.metrics import reason_label
from tracker.forward.transport import retry_after_s
from tracker.settings import Settings

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z
AGENT = "Mozilla/5.0 (X11; Linux x86_64)"
RULES = Rules(currencies=frozenset({"USD"}), default_currency="USD")
SETTINGS = Settings(
    meta_pixel_id=platforms.PIXEL,
    meta_access_token=platforms.TOKENS["meta"],
    google_ads_customer_id=platforms.CUSTOMER,
    google_ads_conversion_action=platforms.ACTION,
    google_ads_developer_token=platforms.TOKENS["developer"],
    google_ads_access_token=platforms.TOKENS["google_ads"],
    tiktok_pixel_code=platforms.TIKTOK_PIXEL,
    tiktok_access_token=platforms.TOKENS["tiktok"],
    forward_backoff_s=1.0,
    forward_give_up_s=60.0,
    forward_blocked_retry_s=30.0,
)
THROTTLED = Failure("throttled", "17", "limit")


def conversion(order: str | None, **fields: Any) -> Event:
    raw = {
        "type": "conversion",
        "ts": NOW - 60_000,
        "value": "10",
        "order_id": order,
        "url": "https://shop.example/thanks",
        "gclid": f"G-{order}",
        **fields,
    }
    return parse_event(raw, Context(received_at=NOW, ip="203.0.113.7", user_agent=AGENT), RULES)


def orders(events: Sequence[Event]) -> list[str | None]:
    return [event.order_id for event in events]


def answer(status_body: tuple[int, Any], retry_after: float | None = None) -> Answer:
    status, body = status_body
    return Answer(status, orjson.dumps(body), retry_after)


def taken_by(destination: Destination, request: HttpRequest) -> Answer:
    """The platform's answer when it takes every event of ``request``."""
    if destination is meta:
        return answer(platforms.meta_taken(len(request.events)))
    if destination is tiktok:
        return answer(platforms.tiktok_answer(0, "OK"))
    return answer((200, {"results": [{} for _ in request.events]}))


class Script:
    """A transport whose answers ``reply`` makes, recording each request."""

    def __init__(self, reply: Callable[[HttpRequest], Answer]) -> None:
        self.reply = reply
        self.sent: list[HttpRequest] = []

    async def send(self, request: HttpRequest) -> Answer:
        self.sent.append(request)
        return self.reply(request)


class Record:
    """What the outlet was told, and a clock that only pauses advance."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.taken: list[Event] = []
        self.dead: list[tuple[list[Event], Failure, int]] = []
        self.failed: list[tuple[int, str]] = []
        self.blocks: list[str | None] = []
        self.skipped: list[tuple[list[Event], str]] = []

    async def pause(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class Outlet:
    """Tells ``record`` what the delivery reports."""

    def __init__(self, record: Record) -> None:
        self.record = record

    async def taken(self, events: Sequence[Event]) -> None:
        self.record.taken += events

    async def dead(self, events: Sequence[Event], failure: Failure, attempts: int) -> None:
        self.record.dead.append((list(events), failure, attempts))

    def failed(self, events: int, failure: Failure) -> None:
        self.record.failed.append((events, failure.kind))

    async def blocked(self, failure: Failure | None) -> None:
        self.record.blocks.append(failure.code if failure else None)

    def skipped(self, events: Sequence[Event], reason: str) -> None:
        self.record.skipped.append((list(events), reason))


def deliver(
    destination: Destination,
    events: Sequence[Event],
    reply: Callable[[HttpRequest], Answer],
    settings: Settings = SETTINGS,
    draw: float = 0.0,
) -> tuple[Script, Record]:
    script, record = Script(reply), Record()
    delivery = Delivery(
        destination,
        settings,
        script,
        Outlet(record),
        record.pause,
        clock=record.clock,
        draw=lambda: draw,
    )
    asyncio.run(delivery.deliver(events))
    return script, record


def replies(*answers: Answer | Callable[[HttpRequest], Answer]) -> Callable[[HttpRequest], Answer]:
    """Answers in turn; a callable answers for itself. Past the last, everything is taken."""
    left = list(answers)

    def reply(request: HttpRequest) -> Answer:
        if not left:
            return taken_by(_destination_of(request), request)
        next_answer = left.pop(0)
        return next_answer(request) if callable(next_answer) else next_answer

    return reply


def _destination_of(request: HttpRequest) -> Destination:
    if "/open_api/" in request.url:
        return tiktok
    return google if "googleads" in request.url else meta


# The pure parts


@pytest.mark.parametrize(
    ("retry", "draw", "expected"),
    [
        (1, 0.0, 0.5),  # half of the base, at the least
        (1, 0.999, 0.9995),
        (2, 0.0, 1.0),
        (3, 0.5, 3.0),  # 4 s: between 2 and 4
        (10, 0.0, BACKOFF_MAX_S / 2),  # 512 s capped at 300
        (20, 1.0, BACKOFF_MAX_S),
    ],
)
def test_backoff_doubles_with_jitter_up_to_its_cap(
    retry: int, draw: float, expected: float
) -> None:
    assert backoff_s(retry, THROTTLED, 1.0, draw) == pytest.approx(expected)


def test_backoff_waits_at_least_what_the_platform_said() -> None:
    said = dataclasses.replace(THROTTLED, retry_after_s=30.0)
    assert backoff_s(1, said, 1.0, 0.0) == 30.0
    assert backoff_s(9, said, 1.0, 1.0) == 256.0  # its own is longer by then


def test_halves_put_the_smaller_half_first() -> None:
    events = [conversion(str(i)) for i in range(5)]
    first, second = halves(events)
    assert (orders(first), orders(second)) == (["0", "1"], ["2", "3", "4"])


def test_sort_splits_a_partial_failure_by_event() -> None:
    events = [conversion(str(i)) for i in range(4)]
    (request,) = google.requests(events, SETTINGS)
    expired = Failure("permanent", "conversionUploadError.EXPIRED_EVENT", "old")
    taken, failed = sort(request, Outcome(None, {1: expired, 3: expired}))
    assert orders(taken) == ["0", "2"]
    assert {f: orders(e) for f, e in failed.items()} == {expired: ["1", "3"]}
    whole = Failure("transient", "2", "later")
    assert sort(request, Outcome(whole)) == ([], {whole: events})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("7", 7.0),
        (" 120 ", 120.0),
        (format_datetime(datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC), usegmt=True), 30.0),
        (format_datetime(datetime(2024, 5, 1, 9, 0, tzinfo=UTC), usegmt=True), 0.0),  # past
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_header(header: str | None, expected: float | None) -> None:
    assert retry_after_s(header, now=NOW / 1000) == expected


def test_a_mark_key_is_the_status_and_the_order_else_the_event() -> None:
    assert marks.key(conversion("o-1")) == "approved:o-1"
    assert marks.key(conversion("o-1", status="refund")) == "refund:o-1"
    assert marks.key(conversion(None, event_id="e-7")) == "approved:e-7"
    first, again, other = (
        conversion("o-1"),
        conversion("o-1", event_id="fired-twice"),
        conversion("o-2"),
    )
    assert marks.unique([first, again, other]) == ([first, other], [again])


def test_a_skip_reason_label_has_no_sender_chosen_values() -> None:
    reason = tiktok.accepts(conversion("o-1", goal="trial-7"), SETTINGS, NOW)
    assert reason == "goal 'trial-7' has no TikTok event (only purchase, lead)"
    assert reason_label(reason) == "goal … has no TikTok event (only purchase, lead)"
    assert reason_label("not a conversion") == "not a conversion"
    apostrophes = "ad_user_data denied: Meta's website events need the visitor's user agent"
    assert reason_label(apostrophes) == apostrophes


def test_a_dead_letter_keeps_the_events_and_the_failure() -> None:
    events = [conversion("o-1", email="a@b.example")]
    letter = dead.DeadLetter.of("meta", events, THROTTLED, 3, NOW)
    again = dead.decode(dead.encode(letter))
    assert again == letter
    assert again.events[0].email_sha256 == events[0].email_sha256
    assert "a@b.example" not in dead.encode(letter).decode()
    with pytest.raises(ValueError, match="not a forwarding dead letter"):
        dead.decode(b'{"raw": "a collector letter"}')


# Delivery


def test_everything_taken_in_requests_of_the_platform_limit() -> None:
    events = [conversion(str(i)) for i in range(meta.max_batch + 1)]
    script, record = deliver(meta, events, replies())
    assert [len(r.events) for r in script.sent] == [meta.max_batch, 1]
    assert record.taken == events
    assert (record.dead, record.failed, record.waits) == ([], [], [])


def test_throttled_then_transient_then_taken_backs_off_and_sends_each_once() -> None:
    events = [conversion("o-1"), conversion("o-2")]
    reply = replies(answer(platforms.META["throttled"]), answer(platforms.META["transient"]))
    script, record = deliver(meta, events, reply)
    assert record.waits == [0.5, 1.0]  # equal jitter at draw 0: half of 1 s, then of 2 s
    assert record.failed == [(2, "throttled"), (2, "transient")]
    assert record.taken == events
    assert len(script.sent) == 3
    assert all(r.json == script.sent[0].json for r in script.sent)  # the same request again


def test_the_platforms_retry_after_header_is_honoured() -> None:
    events = [conversion("o-1")]
    throttled = Answer(429, b"", retry_after_s=42.0)
    _, record = deliver(tiktok, events, replies(throttled))
    assert record.waits == [42.0]
    assert record.taken == events


def test_no_answer_is_retried_as_transient() -> None:
    def unreachable(request: HttpRequest) -> Answer:
        raise Unreachable("ConnectTimeout: timed out")

    events = [conversion("o-1")]
    _, record = deliver(tiktok, events, replies(unreachable, unreachable))
    assert record.failed == [(1, "transient"), (1, "transient")]
    assert record.taken == events


def test_transient_failures_past_the_give_up_age_are_dead_lettered() -> None:
    settings = dataclasses.replace(SETTINGS, forward_give_up_s=10.0)
    events = [conversion("o-1")]

    def always(request: HttpRequest) -> Answer:
        return answer(platforms.TIKTOK["transient"])

    _, record = deliver(tiktok, events, always, settings, draw=0.999)
    # 1, 2, 4 s (at draw ~1) fit in 10 s; the next 8 s would not: 4 attempts, 3 waits.
    assert [round(w) for w in record.waits] == [1, 2, 4]
    [(dead_events, failure, attempts)] = record.dead
    assert (dead_events, failure.kind, failure.code, attempts) == (events, "transient", "50000", 4)
    assert record.taken == []


def test_a_wait_the_platform_asks_beyond_the_give_up_dead_letters_at_once() -> None:
    events = [conversion("o-1")]
    too_recent = google_partial(events, ("conversionUploadError", "TOO_RECENT_EVENT"))
    _, record = deliver(google, events, replies(too_recent))
    assert record.waits == []
    [(dead_events, failure, attempts)] = record.dead
    assert (dead_events, failure.retry_after_s, attempts) == (events, 6 * 3600, 1)


def test_a_refused_request_is_halved_until_only_the_bad_event_is_dead_lettered() -> None:
    events = [conversion(str(i)) for i in range(5)]

    def refuse_two(request: HttpRequest) -> Answer:
        bad = [i for i, e in enumerate(request.events) if e.order_id == "2"]
        if bad:
            return answer(platforms.meta_invalid(bad[0]))
        return taken_by(meta, request)

    script, record = deliver(meta, events, refuse_two)
    assert [orders(r.events) for r in script.sent] == [
        ["0", "1", "2", "3", "4"],
        ["0", "1"],
        ["2", "3", "4"],
        ["2"],
        ["3", "4"],
    ]
    assert orders(record.taken) == ["0", "1", "3", "4"]
    [(dead_events, failure, _)] = record.dead
    assert (orders(dead_events), failure.kind, failure.code) == (["2"], "permanent", "100/2804019")
    assert record.waits == []  # a refusal is not retried later, only narrowed down


def test_tiktok_refusing_a_request_is_halved_too() -> None:
    events = [conversion(str(i)) for i in range(4)]

    def refuse_zero(request: HttpRequest) -> Answer:
        if any(e.order_id == "0" for e in request.events):
            return answer(platforms.tiktok_answer(40002, "data[0].event_time: invalid"))
        return taken_by(tiktok, request)

    _, record = deliver(tiktok, events, refuse_zero)
    assert orders(record.taken) == ["2", "3", "1"]  # [0, 1] halved after [2, 3] went
    assert [orders(events) for events, _, _ in record.dead] == [["0"]]


def google_partial(events: Sequence[Event], *errors: tuple[str, str], at: int = 0) -> Answer:
    failure = platforms.google_failure(
        *((category, code, "conversions", at + i) for i, (category, code) in enumerate(errors))
    )
    body = {
        "results": [{} for _ in events],
        "partialFailureError": {"code": 3, "message": "partial", "details": [failure]},
    }
    return Answer(200, orjson.dumps(body))


def test_google_partial_failures_dead_letter_the_bad_and_retry_the_passing_alone() -> None:
    events = [conversion(str(i)) for i in range(4)]
    partial = google_partial(
        events,
        ("conversionUploadError", "UNPARSEABLE_GCLID"),
        ("internalError", "INTERNAL_ERROR"),
        at=1,
    )
    script, record = deliver(google, events, replies(partial))
    assert [orders(r.events) for r in script.sent] == [["0", "1", "2", "3"], ["2"]]
    assert orders(record.taken) == ["0", "3", "2"]
    assert [(orders(e), f.code) for e, f, _ in record.dead] == [
        (["1"], "conversionUploadError.UNPARSEABLE_GCLID")
    ]
    assert record.waits == [0.5]


def test_a_misconfigured_destination_blocks_retries_slowly_and_dead_letters_nothing() -> None:
    events = [conversion("o-1"), conversion("o-2")]
    refused = answer(platforms.GOOGLE["misconfigured"])
    script, record = deliver(google, events, replies(refused, refused, refused))
    assert record.blocks == ["authenticationError.OAUTH_TOKEN_INVALID", None]  # once, then fixed
    assert record.waits == [30.0, 30.0, 30.0]
    assert record.dead == []
    assert record.failed == [(2, "misconfigured")] * 3
    assert record.taken == events
    assert len(script.sent) == 4


def test_google_repeats_left_out_of_the_request_are_reported() -> None:
    first = conversion("o-1")
    again = conversion("o-1", event_id="fired-twice")
    _, record = deliver(google, [first, again], replies())
    assert record.taken == [first]
    assert record.skipped == [([again], "repeats another conversion of the batch")]


def test_a_stop_during_a_wait_ends_the_delivery() -> None:
    class Stop(Exception):
        pass

    async def stopped(seconds: float) -> None:
        raise Stop

    record = Record()
    delivery = Delivery(
        meta,
        SETTINGS,
        Script(replies(answer(platforms.META["throttled"]))),
        Outlet(record),
        stopped,
    )
    with pytest.raises(Stop):
        asyncio.run(delivery.deliver([conversion("o-1")]))
    assert (record.taken, record.dead) == ([], [])


def test_unreachable_is_its_own_code() -> None:
    def unreachable(request: HttpRequest) -> Answer:
        raise Unreachable("ReadTimeout")

    settings = dataclasses.replace(SETTINGS, forward_give_up_s=0.0)
    _, record = deliver(meta, [conversion("o-1")], unreachable, settings)
    [(_, failure, _)] = record.dead
    assert (failure.kind, failure.code, failure.message) == (
        "transient",
        UNREACHABLE,
        "ReadTimeout",
    )
