"""The click redirect ``GET /r?to=URL``: record a click, then send the browser on.

Each hit mints a click id (a UUIDv7), records a ``click`` event carrying it (with the
campaign, UTM and platform click-id parameters of the link, as the pixel does) and,
once that event is in Kafka, answers 302 to ``to`` with ``click_id=<id>`` appended, so
the landing page can hand the id back with its conversion. The link's ``utm_*``,
``gclid``, ``fbclid``, ``msclkid`` and ``tclid`` parameters are passed on too, unless
the destination already names them; the destination's own query and fragment are kept.

Only destinations on the allow-list (``TRACKER_REDIRECT_ALLOW``) are served, so the
collector is never an open redirect. A destination must be a plain absolute
``http(s)://host[:port]/...`` URL: ASCII only, no whitespace, control characters,
backslashes, user info or percent-escapes in the host, and its host (lower-cased)
must equal an allowed name, or end in ``.<name>`` for a ``*.<name>`` entry. A port
other than the scheme's default must be allowed explicitly (``shop.example:8443``).
Anything else answers 400 and is dead-lettered with the reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, unquote_plus, urlencode, urlsplit, urlunsplit

from collector import validation
from collector.intake import Intake
from collector.pixel import NO_CACHE_HEADERS
from tracker.asgi import Request, Response
from tracker.channels import CLICK_ID_CHANNELS
from tracker.events import Context, Event, InvalidEvent, Rules, parse_event
from tracker.ids import new_id
from tracker.settings import Settings, env_name

MAX_URL: Final = 2048
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# Set by the redirect itself: a link is followed by many people, so a fixed id or
# time in it would be wrong for all but one of them.
RESERVED: Final = frozenset({"to", "type", "event_id", "click_id", "url", "ts"})
PASSED_ON: Final = frozenset(CLICK_ID_CHANNELS)
"""Link parameters handed to the destination besides every ``utm_*``."""

_NETLOC = re.compile(
    r"(?P<host>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)
_SETTING = env_name("redirect_allow")


class BadDestination(ValueError):
    """A ``to`` that the redirect will not send anyone to; the message says why."""


@dataclass(frozen=True, slots=True)
class AllowList:
    """Allowed destinations: (host, port) pairs; a ``*.name`` host allows subdomains of name.

    A pair without a port allows the scheme's default port only.
    """

    hosts: tuple[tuple[str, int | None], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> AllowList:
        return cls(tuple(settings.redirect_hosts()))

    def permits(self, scheme: str, host: str, port: int | None) -> bool:
        default = DEFAULT_PORTS[scheme]
        effective = default if port is None else port
        for pattern, allowed_port in self.hosts:
            if effective != (default if allowed_port is None else allowed_port):
                continue
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False


def check_destination(to: str, allowed: AllowList) -> SplitResult:
    """The parsed destination if a browser may be sent there; else :class:`BadDestination`."""
    if not allowed.hosts:
        raise BadDestination(
            f"no redirect destinations are allowed; list their hosts in {_SETTING} "
            "(e.g. 'shop.example,*.shop.example,shop.example:8443')"
        )
    if not to:
        raise BadDestination("is required: the URL to send the visitor to")
    if len(to) > MAX_URL:
        raise BadDestination(f"longer than {MAX_URL} characters")
    if not to.isascii():
        raise BadDestination(
            "must be ASCII: percent-encode path and query, write IDN hosts in their xn-- form"
        )
    if any(not c.isprintable() or c.isspace() for c in to):
        raise BadDestination("must not contain whitespace or control characters")
    if "\\" in to:
        raise BadDestination("must not contain backslashes")
    if not to.lower().startswith(("http://", "https://")):
        raise BadDestination("must be an absolute http:// or https:// URL")
    try:
        url = urlsplit(to)
    except ValueError as exc:
        raise BadDestination(f"is not a valid URL: {exc}") from None
    netloc = url.netloc.lower()
    if "@" in netloc:
        raise BadDestination("must not carry user info (user@host)")
    match = _NETLOC.fullmatch(netloc)
    if match is None:
        raise BadDestination("needs a plain host name (letters, digits, dots, hyphens)")
    host, port_text = match["host"], match["port"]
    port = int(port_text) if port_text else None
    if port is not None and port > 65535:
        raise BadDestination("has an invalid port")
    if not allowed.permits(url.scheme, host, port):
        where = f"{host}:{port}" if port is not None else host
        raise BadDestination(f"{where} is not an allowed destination (see {_SETTING})")
    return url._replace(netloc=netloc, path=url.path or "/")


def location(destination: SplitResult, click_id: str, params: Mapping[str, str]) -> str:
    """The destination with ``click_id`` set and the link's UTM and click-id parameters passed on.

    The destination's own query pieces are kept byte for byte (but any ``click_id``,
    which ours replaces); passed-on parameters it already has are not added again.
    """
    own = [piece for piece in destination.query.split("&") if piece]
    names = {unquote_plus(piece.partition("=")[0]) for piece in own}
    kept = [piece for piece in own if unquote_plus(piece.partition("=")[0]) != "click_id"]
    added: list[tuple[str, str]] = [
        (name, value)
        for name, value in params.items()
        if (name.startswith("utm_") or name in PASSED_ON) and name not in names and value
    ]
    added.append(("click_id", click_id))
    query = "&".join([*kept, urlencode(added)])
    return urlunsplit(destination._replace(query=query))


def click_event(
    params: Mapping[str, str],
    context: Context,
    rules: Rules,
    allowed: AllowList,
    click_id: str,
    event_id: str | None = None,
) -> tuple[Event, SplitResult]:
    """The click a redirect records, and where it sends the browser.

    Raises :class:`InvalidEvent` with every reason, the destination's under ``to``.
    """
    reasons: dict[str, str] = {}
    destination: SplitResult | None = None
    try:
        destination = check_destination(params.get("to", ""), allowed)
    except BadDestination as exc:
        reasons["to"] = str(exc)
    fields = {name: value for name, value in params.items() if name not in RESERVED}
    # click_id first: the canonical name wins over gclid & co, which still name the channel.
    raw = {"click_id": click_id, "type": "click", **fields}
    if destination is not None:
        raw["url"] = urlunsplit(destination)
    if event_id is not None:
        raw["event_id"] = event_id
    try:
        event = parse_event(raw, context, rules)
    except InvalidEvent as exc:
        reasons.update(exc.reasons)
    if reasons or destination is None:
        raise InvalidEvent(reasons)
    return event, destination


class Redirect:
    """The ``/r`` handler."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake
        self.allowed = AllowList.from_settings(intake.settings)

    async def click(self, request: Request) -> Response:
        intake = self._intake
        started = time.perf_counter()
        context, minted = intake.context(request)
        headers: list[tuple[bytes, bytes]] = list(NO_CACHE_HEADERS)
        click_id = new_id(context.received_at)
        try:
            params = validation.query(request)
            event, destination = click_event(params, context, intake.rules, self.allowed, click_id)
        except InvalidEvent as exc:
            query = request.scope["query_string"]
            await intake.reject(request, "redirect", query, exc.reasons, context)
            response = Response.json({"error": str(exc), "reasons": exc.reasons}, 400)
            response.headers.extend(headers)
            return response
        await intake.deliver(request, "redirect", [event])
        headers += intake.cookie_headers(request, minted, [event])
        intake.metrics.took["redirect"].observe(time.perf_counter() - started)
        headers.append((b"location", location(destination, click_id, params).encode()))
        return Response(b"", 302, headers=headers)


__all__ = ["AllowList", "BadDestination", "Redirect", "check_destination"]
