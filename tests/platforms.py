"""A local stand-in for the ad platforms' APIs, answering as their documentation says.

The real Meta Graph API, Google Ads API and TikTok Business API are out of reach from the
tests (no network, no accounts), so :class:`Platforms` serves their conversion endpoints
on 127.0.0.1, at the paths tracker's destinations call once their endpoint settings point
here (:meth:`Platforms.settings`):

- Meta's Conversions API, ``POST /v26.0/<pixel id>/events``: ``{"events_received": n,
  "messages": [], "fbtrace_id": ...}``, or a Graph API error ``{"error": {"message",
  "type", "code", "error_subcode", "error_user_msg", "is_transient", "fbtrace_id"}}``:
  code 190 for a wrong token, 100 (an invalid parameter) refusing the whole request for
  one bad event, 17 for a rate limit, 2 (transient) with HTTP 503;
- Google Ads' REST ``POST /v26/customers/<id>:uploadClickConversions`` and
  ``:uploadConversionAdjustments``: the body must parse into the google-ads library's
  request proto (else 400 ``INVALID_ARGUMENT``); ``{"results": [...]}`` with a
  ``partialFailureError`` (a google.rpc.Status holding a ``GoogleAdsFailure``) naming
  each bad conversion by index; 401 ``UNAUTHENTICATED`` for wrong credentials, 429
  ``RESOURCE_EXHAUSTED`` with a quota error's ``retryDelay``, 503 ``UNAVAILABLE``;
- TikTok's Events API, ``POST /open_api/v1.3/event/track/``: HTTP 200 with TikTok's own
  ``code``: 0 taken, 40105 a wrong token, 40002 a bad event (the whole request refused),
  40100 a rate limit, 50000 a passing failure.

A test scripts it: :meth:`~Platforms.refuse` makes conversions bad (by order id, else
event id) until :meth:`~Platforms.fix`; :meth:`~Platforms.answer_next` queues failures
of a kind; :meth:`~Platforms.revoke` makes a platform refuse its credentials until
:meth:`~Platforms.restore`. It records every request and the conversions each platform
took (:meth:`~Platforms.taken`), as the platform would count them.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import threading
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Final, Literal

import orjson
from google.protobuf import json_format

from harness.isolation import free_port
from harness.processes import sample
from harness.stand_ins import JSONHandler
from tests.kafka import caught_up
from tracker.forward import google, meta, tiktok
from tracker.settings import Settings

Platform = Literal["meta", "google_ads", "tiktok"]
PLATFORMS: Final[tuple[Platform, ...]] = ("meta", "google_ads", "tiktok")
Trouble = Literal["throttled", "transient"]
PIXEL: Final = "1234567890"
CUSTOMER: Final = "1234567890"
ACTION: Final = "987654"
TIKTOK_PIXEL: Final = "C4TIKTOKPIXEL"
TOKENS: Final = {
    "meta": "meta-token",
    "google_ads": "ya29.access",
    "developer": "dev-token",
    "tiktok": "tt-token",
}
"""The credentials the stand-in accepts, which reach no real platform."""
GOOGLE_FAILURE: Final = (
    f"type.googleapis.com/google.ads.googleads.{google.VERSION}.errors.GoogleAdsFailure"
)
_TRACE = itertools.count(1)


# The platforms' answers, as documented


def meta_error(
    status: int, code: int, message: str, subcode: int | None = None, **more: Any
) -> tuple[int, dict[str, Any]]:
    """A Graph API error answer."""
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": f"A{next(_TRACE)}",
        **more,
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return status, {"error": error}


def meta_taken(events: int) -> tuple[int, dict[str, Any]]:
    return 200, {"events_received": events, "messages": [], "fbtrace_id": f"A{next(_TRACE)}"}


META: Final[Mapping[str, tuple[int, dict[str, Any]]]] = {
    "throttled": meta_error(400, 17, "(#17) User request limit reached", 2446079),
    "transient": meta_error(503, 2, "Service temporarily unavailable", is_transient=True),
    "misconfigured": meta_error(
        400, 190, "Error validating access token: Session has expired", 463
    ),
}


def meta_invalid(index: int) -> tuple[int, dict[str, Any]]:
    return meta_error(
        400,
        100,
        "Invalid parameter",
        2804019,
        is_transient=False,
        error_user_title="Invalid value",
        error_user_msg=f"data[{index}]: The parameter value is not valid",
    )


def tiktok_answer(code: int, message: str) -> tuple[int, dict[str, Any]]:
    return 200, {"code": code, "message": message, "request_id": f"r{next(_TRACE)}", "data": {}}


TIKTOK: Final[Mapping[str, tuple[int, dict[str, Any]]]] = {
    "throttled": tiktok_answer(40100, "Too many requests. Please retry in some time."),
    "transient": tiktok_answer(50000, "System error, please try again later."),
    "misconfigured": tiktok_answer(40105, "Access token is incorrect or has been revoked."),
}


def google_failure(*errors: tuple[str, str, str | None, int | None]) -> dict[str, Any]:
    """A ``GoogleAdsFailure`` detail of (category, code, field, index) errors."""
    found = []
    for category, code, field_name, index in errors:
        error: dict[str, Any] = {"errorCode": {category: code}, "message": f"{code} said Google"}
        if field_name is not None:
            element = {"fieldName": field_name, "index": index}
            error["location"] = {"fieldPathElements": [element]}
        if category == "quotaError":
            error["details"] = {"quotaErrorDetails": {"rateScope": "DEVELOPER", "retryDelay": "1s"}}
        found.append(error)
    return {"@type": GOOGLE_FAILURE, "errors": found, "requestId": f"g{next(_TRACE)}"}


def google_error(status: int, rpc: str, *details: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {"code": status, "message": f"{rpc} said Google", "status": rpc}
    if details:
        error["details"] = list(details)
    return status, {"error": error}


GOOGLE: Final[Mapping[str, tuple[int, dict[str, Any]]]] = {
    "throttled": google_error(
        429,
        "RESOURCE_EXHAUSTED",
        google_failure(("quotaError", "RESOURCE_TEMPORARILY_EXHAUSTED", None, None)),
    ),
    "transient": google_error(503, "UNAVAILABLE"),
    "misconfigured": google_error(
        401,
        "UNAUTHENTICATED",
        google_failure(("authenticationError", "OAUTH_TOKEN_INVALID", None, None)),
    ),
}
_TROUBLES: Final = {"meta": META, "google_ads": GOOGLE, "tiktok": TIKTOK}


@dataclass(frozen=True, slots=True)
class Received:
    """One request a platform received, and its answer's status."""

    platform: Platform
    path: str
    headers: Mapping[str, str]
    body: Any
    status: int


@dataclass(slots=True)
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    taken: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"meta": [], "google_ads": [], "tiktok": []}
    )
    refused: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    next: dict[str, deque[tuple[str, str]]] = field(
        default_factory=lambda: {"meta": deque(), "google_ads": deque(), "tiktok": deque()}
    )


class Platforms:
    """The stand-in server; a context manager (see the module's docstring)."""

    def __init__(self) -> None:
        self._state = _State()
        state = self._state

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                self.answer(*_answer(state, self.path, headers, raw))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Platforms:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def settings(self, settings: Settings, *only: Platform) -> Settings:
        """``settings`` of a forwarder (own port, group and dead-letter topics, quick
        retries) with ``only`` these platforms (all, by default) set up to send here."""
        chosen = set(only or ("meta", "google_ads", "tiktok"))
        values: dict[str, Any] = {
            "forward_port": free_port(),
            "forward_group": f"{settings.redis_prefix}.forward",
            "forward_dead_letter_topic": f"{settings.redis_prefix}.forward-dead",
            "forward_linger_s": 0.2,
            "forward_backoff_s": 0.2,
            "forward_blocked_retry_s": 0.5,
        }
        if "meta" in chosen:
            values |= {
                "meta_pixel_id": PIXEL,
                "meta_access_token": TOKENS["meta"],
                "meta_endpoint": self.url,
            }
        if "google_ads" in chosen:
            values |= {
                "google_ads_customer_id": CUSTOMER,
                "google_ads_conversion_action": ACTION,
                "google_ads_developer_token": TOKENS["developer"],
                "google_ads_access_token": TOKENS["google_ads"],
                "google_ads_endpoint": self.url,
            }
        if "tiktok" in chosen:
            values |= {
                "tiktok_pixel_code": TIKTOK_PIXEL,
                "tiktok_access_token": TOKENS["tiktok"],
                "tiktok_endpoint": self.url,
            }
        return dataclasses.replace(settings, **values)

    def refuse(self, *keys: str) -> None:
        """Conversions of these order ids (else event ids) are bad, until :meth:`fix`."""
        with self._state.lock:
            self._state.refused |= set(keys)

    def fix(self) -> None:
        with self._state.lock:
            self._state.refused.clear()

    def revoke(self, platform: Platform) -> None:
        """``platform`` refuses tracker's credentials, until :meth:`restore`."""
        with self._state.lock:
            self._state.revoked.add(platform)

    def restore(self, platform: Platform) -> None:
        with self._state.lock:
            self._state.revoked.discard(platform)

    def answer_next(
        self, platform: Platform, trouble: Trouble, times: int = 1, on: str = ""
    ) -> None:
        """The next ``times`` requests to ``platform`` (whose path ends with ``on``) fail
        with ``trouble``."""
        with self._state.lock:
            self._state.next[platform].extend([(trouble, on)] * times)

    def calm(self) -> None:
        """Forget the failures :meth:`answer_next` queued and that did not come yet."""
        with self._state.lock:
            for queued in self._state.next.values():
                queued.clear()

    def received(self, platform: Platform | None = None) -> list[Received]:
        with self._state.lock:
            return [r for r in self._state.received if platform in (None, r.platform)]

    def taken(self, platform: Platform) -> list[dict[str, Any]]:
        """The conversions ``platform`` took, in the platform's own form, in order."""
        with self._state.lock:
            return list(self._state.taken[platform])

    def keys(self, platform: Platform) -> list[str]:
        """What ``platform`` knows each conversion it took by (:func:`key_of`), in order."""
        return [key_of(platform, item) for item in self.taken(platform)]


# The pipeline under test: the collector in, the forwarder out

AGENT: Final = "Mozilla/5.0 (X11; Linux x86_64) forward-test"
URL: Final = "https://shop.example/thanks"
GRANTED: Final = dict.fromkeys(
    ("analytics_storage", "ad_storage", "ad_user_data", "ad_personalization"), "granted"
)


def purchase(order: str, **fields: Any) -> dict[str, Any]:
    """A conversion as a shop's server reports it for its visitor, consent granted."""
    return {
        "type": "conversion",
        "order_id": order,
        "value": "25.00",
        "url": URL,
        "user_agent": AGENT,
        "ip": "203.0.113.7",
        **GRANTED,
        **fields,
    }


def collect(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Send ``events`` to the running collector's batch API; all must be accepted."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.collector_port}/v1/events",
        data=orjson.dumps(events),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert orjson.loads(answer.read())["accepted"] == len(events)


def forwarded(settings: Settings, *platforms: Platform) -> bool:
    """Whether each platform's lane committed every record the events topic has now."""
    return all(
        caught_up(settings.kafka_bootstrap, f"{settings.forward_group}.{p}", settings.events_topic)
        for p in platforms
    )


def forwarder_url(settings: Settings, path: str = "/healthz") -> str:
    return f"http://127.0.0.1:{settings.forward_port}{path}"


def metric(settings: Settings, name: str, **labels: str) -> float | None:
    """A sample of the running forwarder's ``/metrics``; None when it has none."""
    return sample(forwarder_url(settings, "/metrics"), name, **labels)


def key_of(platform: str, item: Mapping[str, Any]) -> str:
    """What a platform knows a conversion by: its event id (Meta, TikTok), its order id
    else its click and time (Google)."""
    if platform == "google_ads":
        return str(item.get("orderId") or f"{item.get('gclid')}@{item.get('conversionDateTime')}")
    return str(item["event_id"])


def _answer(state: _State, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, Any]:
    """The answer of the platform whose endpoint ``path`` is; recorded."""
    platform: Platform
    if path == f"/{meta.VERSION}/{PIXEL}/events":
        platform = "meta"
    elif path.startswith(f"/{google.VERSION}/customers/{CUSTOMER}:"):
        platform = "google_ads"
    elif path == f"/open_api/{tiktok.VERSION}/event/track/":
        platform = "tiktok"
    else:
        return 404, {"error": {"message": f"Unknown path components: {path}", "code": 2500}}
    body = orjson.loads(raw)
    with state.lock:
        status, answer = _judge(state, platform, path, headers, body)
        state.received.append(Received(platform, path, headers, body, status))
    return status, answer


def _judge(
    state: _State, platform: Platform, path: str, headers: Mapping[str, str], body: Any
) -> tuple[int, Any]:
    if platform in state.revoked or not _credentials(platform, headers, body):
        return _TROUBLES[platform]["misconfigured"]
    queued = state.next[platform]
    if queued and path.endswith(queued[0][1]):
        trouble, _ = queued.popleft()
        return _TROUBLES[platform][trouble]
    if platform == "meta":
        return _meta(state, body)
    if platform == "tiktok":
        return _tiktok(state, body)
    return _google(state, path, body)


def _credentials(platform: Platform, headers: Mapping[str, str], body: Any) -> bool:
    if platform == "meta":
        return bool(body.get("access_token") == TOKENS["meta"])
    if platform == "tiktok":
        return headers.get("access-token") == TOKENS["tiktok"]
    return (
        headers.get("developer-token") == TOKENS["developer"]
        and headers.get("authorization") == f"Bearer {TOKENS['google_ads']}"
    )


def _refused(state: _State, item: Mapping[str, Any], *names: str) -> bool:
    return any(item.get(name) in state.refused for name in names)


def _meta(state: _State, body: Any) -> tuple[int, Any]:
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return meta_error(400, 100, "(#100) The parameter data is required")
    for index, item in enumerate(data):
        if _refused(state, item, "event_id"):
            return meta_invalid(index)
    state.taken["meta"].extend(data)
    return meta_taken(len(data))


def _tiktok(state: _State, body: Any) -> tuple[int, Any]:
    data = body.get("data")
    if body.get("event_source") != "web" or body.get("event_source_id") != TIKTOK_PIXEL:
        return tiktok_answer(40002, "event_source_id: invalid")
    for index, item in enumerate(data):
        if _refused(state, item, "event_id"):
            return tiktok_answer(40002, f"data[{index}].event_id: invalid")
    state.taken["tiktok"].extend(data)
    return tiktok_answer(0, "OK")


def _google(state: _State, path: str, body: Any) -> tuple[int, Any]:
    method = path.rpartition(":")[2]
    field_name, upload = {
        "uploadClickConversions": ("conversions", True),
        "uploadConversionAdjustments": ("conversionAdjustments", False),
    }.get(method, ("", False))
    if not field_name:
        return google_error(404, "NOT_FOUND")
    try:
        _google_proto(method, body)
    except json_format.ParseError as exc:
        status, error = google_error(
            400, "INVALID_ARGUMENT", google_failure(("requestError", "UNKNOWN", None, None))
        )
        error["error"]["message"] = f"Invalid JSON payload received. {exc}"
        return status, error
    errors = []
    results: list[dict[str, Any]] = []
    snake = "conversions" if upload else "conversion_adjustments"
    for index, item in enumerate(body.get(field_name) or []):
        if _refused(state, item, "orderId", "gclid"):
            category = "conversionUploadError" if upload else "conversionAdjustmentUploadError"
            code = "UNPARSEABLE_GCLID" if upload else "CONVERSION_NOT_FOUND"
            errors.append((category, code, snake, index))
            results.append({})
        else:
            state.taken["google_ads"].append(item | {"method": method})
            results.append({key: item[key] for key in item if key != "consent"})
    answer: dict[str, Any] = {"results": results}
    if errors:
        failure = google_failure(*errors)
        answer["partialFailureError"] = {
            "code": 3,
            "message": "Partial failure said Google",
            "details": [failure],
        }
    return 200, answer


def _google_proto(method: str, body: Any) -> None:
    """Parse ``body`` into the google-ads request proto of ``method``: ParseError on a field
    the API does not have, as Google's REST frontend refuses it."""
    services = f"google.ads.googleads.{google.VERSION}.services.types"
    module, message = {
        "uploadClickConversions": ("conversion_upload_service", "UploadClickConversionsRequest"),
        "uploadConversionAdjustments": (
            "conversion_adjustment_upload_service",
            "UploadConversionAdjustmentsRequest",
        ),
    }[method]
    proto = getattr(importlib.import_module(f"{services}.{module}"), message).pb()()
    json_format.ParseDict(body, proto)


__all__ = [
    "ACTION",
    "AGENT",
    "CUSTOMER",
    "GOOGLE",
    "GRANTED",
    "META",
    "PIXEL",
    "PLATFORMS",
    "TIKTOK",
    "TIKTOK_PIXEL",
    "TOKENS",
    "URL",
    "Platforms",
    "Received",
    "collect",
    "forwarded",
    "forwarder_url",
    "google_error",
    "google_failure",
    "key_of",
    "meta_error",
    "meta_invalid",
    "meta_taken",
    "metric",
    "purchase",
    "tiktok_answer",
]
