"""Google Ads: click conversions uploaded by their gclid, and retracted by their order id.

REST, ``POST {TRACKER_GOOGLE_ADS_ENDPOINT}/v26/customers/{customer id}`` then
``:uploadClickConversions`` for approved conversions that came with a gclid, or
``:uploadConversionAdjustments`` (a ``RETRACTION`` by order id) for a rejected or
refunded order, at most 2,000 a request; headers ``developer-token``, ``Authorization:
Bearer`` and, through a manager account, ``login-customer-id``. The bodies parse into
the official google-ads library's request protos of that version, with no unknown
field (tests/unit/test_forward_payloads.py).

A conversion goes to the conversion action that TRACKER_GOOGLE_ADS_CONVERSION_ACTION
names for its goal (one id for every goal, or ``goal=id`` pairs). Its time is sent in
UTC, its value in its own currency, and its consent as Google defines it: ``adUserData``
and ``adPersonalization`` GRANTED or DENIED; left out (UNSPECIFIED, the proto's default)
when the visitor stated nothing.
No email or phone is sent: a click conversion names its click.

Requests are sent with ``partialFailure``: Google takes the valid conversions and names
the others by index. An answer that one was already there (a retry) counts as taken;
``TOO_RECENT_*`` answers are transient, with the wait Google states; a missing
conversion action, or an account Google refuses, is a misconfiguration.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from tracker import money
from tracker.consent import Consent
from tracker.events import Event
from tracker.forward import allowed
from tracker.forward.exchange import (
    Failure,
    HttpRequest,
    Kind,
    Outcome,
    all_or_none,
    batches,
    json_object,
    kind_of_status,
)
from tracker.settings import Settings, env_name
from tracker.types import EpochMs

name: Final = "google_ads"
max_batch: Final = 2000
VERSION: Final = "v26"
RETRACTED: Final = frozenset({"rejected", "refund"})
"""Statuses that take a whole order back: uploaded as a retraction."""
_CUSTOMER_ID: Final = re.compile(r"[0-9]{10}")
_ACTION_ID: Final = re.compile(r"[0-9]+")
_ALREADY_THERE: Final = frozenset(
    {"CLICK_CONVERSION_ALREADY_EXISTS", "ORDER_ID_ALREADY_IN_USE", "CONVERSION_ALREADY_RETRACTED"}
)
_WAIT_S: Final = {
    "TOO_RECENT_EVENT": 6 * 3600,  # the click is less than 6 hours old
    "TOO_RECENT_CONVERSION_ACTION": 6 * 3600,
    "TOO_RECENT_CONVERSION": 24 * 3600,  # adjustments: the conversion is less than a day old
}
_MISCONFIGURED: Final = frozenset(
    {
        "NO_CONVERSION_ACTION_FOUND",
        "INVALID_CONVERSION_ACTION_TYPE",
        "UNAUTHORIZED_CUSTOMER",
        "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
        "EXTERNAL_ATTRIBUTION_DATA_NOT_SET_FOR_EXTERNALLY_ATTRIBUTED_CONVERSION_ACTION",
        "ORDER_ID_NOT_PERMITTED_FOR_EXTERNALLY_ATTRIBUTED_CONVERSION_ACTION",
    }
)
_CATEGORIES: Final[Mapping[str, Kind]] = {
    "quotaError": "throttled",
    "internalError": "transient",
    "databaseError": "transient",
    "authenticationError": "misconfigured",
    "authorizationError": "misconfigured",
    "headerError": "misconfigured",
}
_RPC_STATUSES: Final[Mapping[str, Kind]] = {
    "RESOURCE_EXHAUSTED": "throttled",
    "UNAVAILABLE": "transient",
    "INTERNAL": "transient",
    "DEADLINE_EXCEEDED": "transient",
    "ABORTED": "transient",
    "UNAUTHENTICATED": "misconfigured",
    "PERMISSION_DENIED": "misconfigured",
    "NOT_FOUND": "misconfigured",
}


def configured(settings: Settings) -> bool:
    """Whether conversions go to Google Ads: customer, conversion action and both tokens
    set. Raises :class:`ValueError` naming the setting when what is set cannot be used."""
    required = {
        env_name("google_ads_customer_id"): settings.google_ads_customer_id,
        env_name("google_ads_conversion_action"): settings.google_ads_conversion_action,
        env_name("google_ads_developer_token"): settings.google_ads_developer_token,
        env_name("google_ads_access_token"): settings.google_ads_access_token,
    }
    if not all_or_none(required, "Google Ads"):
        return False
    _customer(settings.google_ads_customer_id, "google_ads_customer_id")
    if settings.google_ads_login_customer_id:
        _customer(settings.google_ads_login_customer_id, "google_ads_login_customer_id")
    _actions(settings.google_ads_conversion_action)
    return True


def _customer(text: str, setting: str) -> str:
    """A customer id as the API takes it: ten digits, the dashes people write dropped."""
    digits = text.replace("-", "").strip()
    if not _CUSTOMER_ID.fullmatch(digits):
        raise ValueError(f"{env_name(setting)}: a customer id is 10 digits, like 123-456-7890")
    return digits


@functools.lru_cache(maxsize=8)
def _actions(text: str) -> dict[str | None, str]:
    """Goal -> conversion action id; the key None for an id that serves every goal."""
    setting = env_name("google_ads_conversion_action")
    items = [item.strip() for item in text.split(",") if item.strip()]
    if len(items) == 1 and "=" not in items[0]:
        items = [f"={items[0]}"]
    actions: dict[str | None, str] = {}
    for position, item in enumerate(items, 1):
        goal, equals, action = (part.strip() for part in item.partition("="))
        if not equals or not _ACTION_ID.fullmatch(action) or (not goal and len(items) > 1):
            raise ValueError(f"{setting}: item {position} is not goal=<action id> (or one id)")
        actions[goal or None] = action
    return actions


def conversion_action(settings: Settings, goal: str | None) -> str | None:
    """The resource name of the conversion action of ``goal``; None when it has none."""
    actions = _actions(settings.google_ads_conversion_action)
    action = actions.get(None) or actions.get(goal or "")
    if action is None:
        return None
    customer = _customer(settings.google_ads_customer_id, "google_ads_customer_id")
    return f"customers/{customer}/conversionActions/{action}"


def accepts(event: Event, settings: Settings, now_ms: EpochMs) -> str | None:
    """None when ``event`` is to be uploaded to Google Ads, else why it is not.

    ``now_ms`` is unused: Google judges a conversion's age by its click's, which only
    Google knows (``EXPIRED_EVENT``). It is taken for the interface all destinations share.
    """
    if event.type != "conversion":
        return "not a conversion"
    if event.bot:
        return "a bot's"
    if event.status == "pending":
        return "pending: sent once approved"
    if conversion_action(settings, event.goal) is None:
        return (
            f"goal {event.goal!r} has no conversion action "
            f"({env_name('google_ads_conversion_action')})"
        )
    if event.status in RETRACTED:
        return None if event.order_id else "no order_id: Google retracts an order by its id"
    if event.click_source != "gclid":
        return "no gclid"
    if not allowed.ids_allowed(event):
        return "ad_storage denied: the gclid is not sent"
    return None


def requests(events: Sequence[Event], settings: Settings) -> list[HttpRequest]:
    """The requests that send ``events`` (each accepted by :func:`accepts`): uploads and
    retractions apart, at most :data:`max_batch` each.

    A second conversion of the same order (or of the same click at the same second) is
    left out of every request: Google refuses both copies when one request holds two.
    """
    customer = _customer(settings.google_ads_customer_id, "google_ads_customer_id")
    base = f"{settings.google_ads_endpoint.rstrip('/')}/{VERSION}/customers/{customer}"
    headers = {
        "Content-Type": "application/json",
        "developer-token": settings.google_ads_developer_token,
        "Authorization": f"Bearer {settings.google_ads_access_token}",
    }
    if settings.google_ads_login_customer_id:
        login = _customer(settings.google_ads_login_customer_id, "google_ads_login_customer_id")
        headers["login-customer-id"] = login
    uploads: dict[object, tuple[Event, dict[str, Any]]] = {}
    retractions: dict[object, tuple[Event, dict[str, Any]]] = {}
    for event in events:
        action = conversion_action(settings, event.goal)
        if event.status in RETRACTED:
            retractions.setdefault(event.order_id, (event, _retraction(event, action)))
        else:
            conversion = _conversion(allowed.permitted(event), action)
            key = event.order_id or (event.ad_click_id, conversion["conversionDateTime"])
            uploads.setdefault(key, (event, conversion))
    return [
        *_batches(f"{base}:uploadClickConversions", headers, "conversions", uploads),
        *_batches(
            f"{base}:uploadConversionAdjustments", headers, "conversionAdjustments", retractions
        ),
    ]


def _batches(
    url: str, headers: Mapping[str, str], field: str, items: Mapping[object, tuple[Event, Any]]
) -> list[HttpRequest]:
    return [
        HttpRequest(
            "POST",
            url,
            headers,
            {field: [body for _, body in batch], "partialFailure": True},
            tuple(event for event, _ in batch),
        )
        for batch in batches(list(items.values()), max_batch)
    ]


def _conversion(event: Event, action: str | None) -> dict[str, Any]:
    """A ``ClickConversion``, in the API's JSON names."""
    conversion: dict[str, Any] = {
        "gclid": event.ad_click_id,
        "conversionAction": action,
        "conversionDateTime": _date_time(event.ts),
    }
    if event.consent is not None:
        conversion["consent"] = consent(event.consent)
    if event.value is not None:
        conversion.update(conversionValue=money.to_number(event.value), currencyCode=event.currency)
    if event.order_id:
        conversion["orderId"] = event.order_id
    return conversion


def _retraction(event: Event, action: str | None) -> dict[str, Any]:
    """A ``ConversionAdjustment`` taking the order back, as of the event's time."""
    return {
        "conversionAction": action,
        "adjustmentType": "RETRACTION",
        "orderId": event.order_id,
        "adjustmentDateTime": _date_time(event.ts),
    }


def consent(stated: Consent) -> dict[str, str]:
    """Google's ``Consent`` of a conversion whose visitor stated one."""
    return {
        "adUserData": "GRANTED" if stated.ad_user_data else "DENIED",
        "adPersonalization": "GRANTED" if stated.ad_personalization else "DENIED",
    }


def _date_time(ms: int) -> str:
    """Google's ``yyyy-mm-dd hh:mm:ss+hh:mm``, in UTC."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def outcome(request: HttpRequest, status: int, body: bytes) -> Outcome:
    """What Google's answer to ``request`` says, event by event for partial failures."""
    answer = json_object(body)
    if 200 <= status < 300 and answer is not None:
        return _partial(answer.get("partialFailureError"))
    error = answer.get("error") if answer else None
    if not isinstance(error, dict):
        return Outcome(
            Failure(kind_of_status(status), f"http {status}", "not an answer of Google's")
        )
    found = [failure for _, failure in _errors(error) if failure is not None]
    if found:
        return Outcome(found[0])
    rpc = str(error.get("status") or "")
    kind = _RPC_STATUSES.get(rpc) or kind_of_status(status)
    return Outcome(Failure(kind, rpc or f"http {status}", str(error.get("message") or "")))


def _partial(status: object) -> Outcome:
    """The events a ``partialFailureError`` (a google.rpc.Status) names, by index."""
    if not isinstance(status, dict):
        return Outcome()
    failed: dict[int, Failure] = {}
    whole: Failure | None = None
    for index, failure in _errors(status):
        if failure is None:
            continue
        if index is None:
            whole = whole or failure
        else:
            failed.setdefault(index, failure)
    return Outcome(whole, failed)


def _errors(status: Mapping[str, Any]) -> list[tuple[int | None, Failure | None]]:
    """Each ``GoogleAdsError`` in a status's details: the index of the operation it names
    (None: the request's), and its failure (None: the event was there already)."""
    found: list[tuple[int | None, Failure | None]] = []
    for detail in status.get("details") or ():
        for error in (detail.get("errors") or ()) if isinstance(detail, dict) else ():
            if isinstance(error, dict):
                found.append((_index(error), _failure(error)))
    return found


def _index(error: Mapping[str, Any]) -> int | None:
    location = error.get("location")
    elements = location.get("fieldPathElements") if isinstance(location, dict) else None
    for element in elements or ():
        index = element.get("index") if isinstance(element, dict) else None
        if isinstance(index, int) and not isinstance(index, bool):
            return index
    return None


def _failure(error: Mapping[str, Any]) -> Failure | None:
    codes = error.get("errorCode")
    category, code = next(iter(codes.items()), ("", "")) if isinstance(codes, dict) else ("", "")
    code = str(code)
    if code in _ALREADY_THERE:
        return None
    message = str(error.get("message") or "")
    if code in _WAIT_S:
        return Failure("transient", f"{category}.{code}", message, _WAIT_S[code])
    kind: Kind = _CATEGORIES.get(category, "permanent")
    if code in _MISCONFIGURED:
        kind = "misconfigured"
    return Failure(kind, f"{category}.{code}", message, _retry_delay(error))


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    """The wait a quota error states (``details.quotaErrorDetails.retryDelay``, ``"30s"``)."""
    details = error.get("details")
    quota = details.get("quotaErrorDetails") if isinstance(details, dict) else None
    delay = quota.get("retryDelay") if isinstance(quota, dict) else None
    if not isinstance(delay, str) or not delay.endswith("s"):
        return None
    try:
        return float(delay[:-1])
    except ValueError:
        return None


__all__ = [
    "RETRACTED",
    "VERSION",
    "accepts",
    "configured",
    "consent",
    "conversion_action",
    "max_batch",
    "name",
    "outcome",
    "requests",
]
