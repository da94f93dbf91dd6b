"""Server-to-server conversion postbacks (``GET`` or ``POST /v1/postback``), signed by the partner.

How a partner signs a postback (the operator gives each partner a name and a secret,
configured as ``TRACKER_POSTBACK_SECRETS=partnerA=<secret>,partnerB=<secret>``):

1. Collect every parameter to send, including ``partner=<name>`` and ``ts=<now, in
   epoch seconds>``. Values are strings (JSON bodies may also use integers).
2. Sort the parameters by name and encode them as a form would, ``name=value`` joined
   by ``&``, with spaces as ``+`` and every byte but ``A-Z a-z 0-9 _ . - ~`` written as
   ``%XX`` (upper-case hex, of the UTF-8 bytes): in Python
   ``urllib.parse.urlencode(sorted(params.items()))``.
3. ``sig`` is the lower-case hex HMAC-SHA256 of that string (UTF-8) with the secret
   (UTF-8) as key.
4. Send the parameters and ``sig`` as the query of a ``GET``, or as the body of a
   ``POST`` (``application/x-www-form-urlencoded`` or a JSON object).

Example: ``partner=net1``, ``ts=1714557600``, ``subid=abc``, ``payout=12.50``,
``txid=T-1`` sign the string
``partner=net1&payout=12.50&subid=abc&ts=1714557600&txid=T-1``; with the secret
``correct-horse-battery-staple`` its ``sig`` is
``04b2878e5c699771ba17d8979d5459a029c35f4a010194afeec3912931c7e464``.

The collector answers 401 when no secret is configured, the partner is unknown, the
signature is missing or does not match, or ``ts`` is more than
``TRACKER_POSTBACK_TOLERANCE_S`` (default 300) seconds away from its clock, so a
captured URL cannot be replayed later; within that window a replay carries the same
signature, hence the same event id, and counts once. A verified partner past its
rate limit (``TRACKER_POSTBACK_RATE_LIMIT``) gets 429 with ``Retry-After``; postbacks
that fail verification count against their client address. A signed postback with bad
fields answers 400 with the reasons (and is dead-lettered); an accepted one answers
200 ``{"status": "accepted", "event_id": ...}`` once the conversion is in Kafka.

Parameter names affiliate networks send are understood: ``subid`` or ``cid`` (the
click id), ``payout`` (value), ``txid`` (order id) and ``status`` (``approved``,
``approve``, ``1``; ``pending``, ``0``; ``rejected``, ``declined``, ``reversed``;
``refund``, ``refunded``, ``chargeback``), besides ``currency``, ``goal``,
``campaign`` and the other event fields. The partner's name becomes the event's
``source`` (medium ``affiliate``) unless the postback names them.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import orjson
import structlog

from collector.intake import Intake
from tracker.asgi import HTTPError, Request, Response
from tracker.events import Context, Event, InvalidEvent, Rules, parse_event
from tracker.settings import env_name

log = structlog.get_logger(__name__)

ALIASES: Final = {"subid": "click_id", "cid": "click_id", "payout": "value", "txid": "order_id"}
STATUS_WORDS: Final = {
    **dict.fromkeys(("approved", "approve", "1"), "approved"),
    **dict.fromkeys(("pending", "0"), "pending"),
    **dict.fromkeys(("rejected", "declined", "reversed"), "rejected"),
    **dict.fromkeys(("refund", "refunded", "chargeback"), "refund"),
}
SIGNATURE_ONLY: Final = frozenset({"sig", "ts", "partner"})
"""Parameters that authenticate the postback and are not part of the conversion."""
_CHALLENGE: Final = [(b"www-authenticate", b'HMAC-SHA256 realm="postback"')]


class Unauthorized(Exception):
    """A postback that does not prove it comes from a partner; the message says what is wrong."""


def canonical(params: Mapping[str, str]) -> str:
    """The signed string: every parameter but ``sig``, sorted by name, form-encoded."""
    return urlencode(sorted((name, value) for name, value in params.items() if name != "sig"))


def sign(params: Mapping[str, str], secret: str) -> str:
    """The ``sig`` of ``params`` (``sig`` itself ignored): hex HMAC-SHA256 of :func:`canonical`."""
    message = canonical(params).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    params: Mapping[str, str], keys: Mapping[str, str], now_s: float, tolerance_s: int
) -> str:
    """The partner that signed ``params``; :class:`Unauthorized` saying why not.

    Only "signature mismatch" is said about a wrong signature: nothing tells which
    part of the signed text differed.
    """
    if not keys:
        raise Unauthorized(
            "postbacks are not configured: set "
            f"{env_name('postback_secrets')}=partnerA=<secret>,partnerB=<secret>"
        )
    partner = params.get("partner")
    if not partner:
        raise Unauthorized("missing partner parameter")
    secret = keys.get(partner)
    if secret is None:
        raise Unauthorized(f"unknown partner {partner!r}")
    given = params.get("sig")
    if not given:
        raise Unauthorized("missing sig parameter (hex HMAC-SHA256)")
    expected = sign(params, secret)
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise Unauthorized("signature mismatch")
    ts = params.get("ts", "")
    if not ts.isascii() or not ts.isdigit() or len(ts) > 18:  # int() refuses 4,300+ digits
        raise Unauthorized("missing or malformed ts parameter (epoch seconds)")
    if abs(now_s - int(ts)) > tolerance_s:
        raise Unauthorized(
            f"ts is more than {tolerance_s} s away from the collector's clock "
            "(epoch seconds, not milliseconds; is the sender's clock right?)"
        )
    return partner


def status_of(word: str) -> str:
    """Our status for a network's word; :class:`ValueError` for words we do not know."""
    status = STATUS_WORDS.get(word.strip().lower())
    if status is None:
        raise ValueError(f"unknown status {word!r}; use approved, pending, rejected or refund")
    return status


def event_fields(params: Mapping[str, str], event_id: str | None) -> dict[str, str]:
    """The raw conversion of a verified postback, in event field names.

    Raises :class:`InvalidEvent` for a status word not understood or for two
    names of one field (``subid`` and ``cid``) that disagree.
    """
    reasons: dict[str, str] = {}
    fields: dict[str, str] = {"type": "conversion", "medium": "affiliate"}
    if partner := params.get("partner"):
        fields["source"] = partner
    if event_id is not None:
        fields["event_id"] = event_id
    given: dict[str, str] = {}
    for name, value in params.items():
        if name in SIGNATURE_ONLY:
            continue
        target = ALIASES.get(name, name)
        if target in given and given[target] != value:
            reasons[name] = f"disagrees with {target}"
            continue
        given[target] = value
    if "type" in given and given["type"] != "conversion":
        reasons["type"] = "a postback is a conversion"
    if "status" in given:
        try:
            given["status"] = status_of(given["status"])
        except ValueError as exc:
            reasons["status"] = str(exc)
    if reasons:
        raise InvalidEvent(reasons)
    return fields | given


def conversion(
    params: Mapping[str, str], received_at: int, rules: Rules, event_id: str | None = None
) -> Event:
    """Validate a verified postback into its conversion event; :class:`InvalidEvent` if bad.

    The request's own IP, agent and cookie are the partner's server's, not the
    customer's, so they are not used.
    """
    if event_id is None and (sig := params.get("sig")):
        event_id = "pb-" + sig.strip().lower()[:32]  # a replayed postback counts once
    return parse_event(event_fields(params, event_id), Context(received_at=received_at), rules)


def _add_pairs(pairs: Iterable[tuple[str, Any]], into: dict[str, str]) -> None:
    """Add ``pairs`` to ``into``; 400 for a repeated name or a value that is no string."""
    for name, value in pairs:
        if name in into:
            raise HTTPError(400, f"parameter {name!r} is given twice")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise HTTPError(400, f"{name}: values must be strings (or integers)")
        into[name] = value


def _form(raw: bytes, what: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise HTTPError(400, f"{what} is not valid UTF-8") from None


class Postback:
    """The ``/v1/postback`` handler."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake
        self._keys = intake.settings.postback_keys()
        self._tolerance_s = intake.settings.postback_tolerance_s

    async def _params(self, request: Request) -> dict[str, str]:
        params: dict[str, str] = {}
        _add_pairs(_form(request.scope["query_string"], "query"), params)
        if request.method != "POST":
            return params
        body = await request.body(self._intake.settings.max_body_bytes)
        kind = (request.header(b"content-type") or "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise HTTPError(400, f"invalid JSON: {exc}") from None
            if not isinstance(data, dict):
                raise HTTPError(400, "a JSON body must be an object of parameters")
            _add_pairs(data.items(), params)
        elif kind in ("application/x-www-form-urlencoded", ""):
            _add_pairs(_form(body, "body"), params)
        else:
            raise HTTPError(415, "send application/x-www-form-urlencoded or application/json")
        return params

    async def receive(self, request: Request) -> Response:
        intake = self._intake
        started = time.perf_counter()
        received_at = time.time_ns() // 1_000_000
        params: dict[str, str] = {}
        try:
            if self._keys:  # else nothing could be accepted: refuse before reading the body
                params = await self._params(request)
            partner = verify(params, self._keys, received_at / 1000, self._tolerance_s)
        except Unauthorized as exc:
            return self._refuse(request, str(exc), params.get("partner"))
        intake.admit(request, "postback", partner=partner)
        try:
            event = conversion(params, received_at, intake.rules)
        except InvalidEvent as exc:
            await intake.reject(request, "postback", orjson.dumps(params), exc.reasons)
            return Response.json(
                {"status": "rejected", "error": str(exc), "reasons": exc.reasons}, 400
            )
        await intake.deliver(request, "postback", [event])
        intake.metrics.took["postback"].observe(time.perf_counter() - started)
        return Response.json({"status": "accepted", "event_id": event.event_id})

    def _refuse(self, request: Request, reason: str, partner: str | None) -> Response:
        """401, counted and logged; never dead-lettered (anyone could fill the topic).

        Charged to the client address: unproven, the partner's name is anyone's to write.
        """
        self._intake.admit(request, "postback")
        self._intake.metrics.events.labels("postback", "unauthorized").inc()
        log.warning("postback refused", reason=reason, partner=partner, ip=request.client_ip)
        response = Response.json({"error": reason}, 401)
        response.headers.extend(_CHALLENGE)
        return response


__all__ = ["Postback", "Unauthorized", "canonical", "sign", "verify"]
