"""The destinations' requests and answers, against the platforms' own libraries.

Meta's body is compared with what its facebook-business SDK builds for the same raw
input; Google's bodies must parse into the google-ads library's request protos with no
unknown field, and its partial failures are written by those protos' JSON mapping.
TikTok ships no Python SDK for its Events API: its body is checked against its
documented shape by hand.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
from typing import Any

import orjson
import pytest
from facebook_business.adobjects.serverside.action_source import ActionSource
from facebook_business.adobjects.serverside.custom_data import CustomData
from facebook_business.adobjects.serverside.event import Event as MetaEvent
from facebook_business.adobjects.serverside.event_request import EventRequest
from facebook_business.adobjects.serverside.user_data import UserData
from facebook_business.api import FacebookAdsApi
from google.protobuf import any_pb2, duration_pb2, json_format
from google.rpc import status_pb2

from tracker.events import Context, Event, Rules, parse_event
from tracker.forward import allowed, destinations, google, meta, tiktok
from tracker.forward.exchange import Failure, HttpRequest, Outcome
from tracker.settings import Settings

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z
TS = NOW - 60_000
RULES = Rules(currencies=frozenset({"USD", "EUR"}), default_currency="USD")
FAKE = {
    "meta": "meta-token",
    "developer": "dev-token",
    "google": "ya29.access",
    "tiktok": "tt-token",
}
"""Credentials of the tests' settings, which reach no platform."""
SETTINGS = Settings(
    meta_pixel_id="1234567890",
    meta_access_token=FAKE["meta"],
    meta_event_names="signup=CompleteRegistration",
    google_ads_customer_id="123-456-7890",
    google_ads_conversion_action="987654",
    google_ads_developer_token=FAKE["developer"],
    google_ads_access_token=FAKE["google"],
    tiktok_pixel_code="C4TIKTOKPIXEL",
    tiktok_access_token=FAKE["tiktok"],
)
AGENT = "Mozilla/5.0 (X11; Linux x86_64)"
PERSON = {"email": " John.Doe@Example.com ", "phone": "+44 20 7946 0958"}
FBP = "fb.1.1596403881668.1116446470"
URL = "https://shop.example/thanks"


def conversion(context: Context | None = None, /, **fields: Any) -> Event:
    raw = {
        "type": "conversion",
        "ts": TS,
        "value": "12.50",
        "currency": "EUR",
        "order_id": "o-1",
        "url": URL,
        **fields,
    }
    return parse_event(
        raw, context or Context(received_at=NOW, ip="203.0.113.7", user_agent=AGENT), RULES
    )


def only(requests: list[HttpRequest]) -> HttpRequest:
    assert len(requests) == 1
    return requests[0]


# The interface every destination has


def test_every_destination_module_is_a_destination() -> None:
    assert [d.name for d in destinations.ALL] == ["meta", "google_ads", "tiktok"]
    assert [d.max_batch for d in destinations.ALL] == [1000, 2000, 1000]


def test_a_destination_is_on_when_its_id_and_token_are_set() -> None:
    assert destinations.configured(Settings()) == []
    assert destinations.configured(SETTINGS) == list(destinations.ALL)
    assert destinations.configured(
        Settings(tiktok_pixel_code="P", tiktok_access_token=FAKE["tiktok"])
    ) == [tiktok]


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (Settings(meta_pixel_id="123"), "^TRACKER_META_ACCESS_TOKEN is needed too"),
        (Settings(tiktok_access_token=FAKE["tiktok"]), "^TRACKER_TIKTOK_PIXEL_CODE is needed too"),
        (
            Settings(meta_pixel_id="px-1", meta_access_token=FAKE["meta"]),
            "^TRACKER_META_PIXEL_ID: ",
        ),
        (
            Settings(meta_pixel_id="1", meta_access_token=FAKE["meta"], meta_event_names="signup"),
            "^TRACKER_META_EVENT_NAMES: item 1 is not goal=Name",
        ),
        (
            Settings(google_ads_customer_id="1234", google_ads_developer_token=FAKE["developer"]),
            "^TRACKER_GOOGLE_ADS_CONVERSION_ACTION is needed too",
        ),
        (
            dataclasses.replace(SETTINGS, google_ads_customer_id="123-456-789"),
            "^TRACKER_GOOGLE_ADS_CUSTOMER_ID: a customer id is 10 digits",
        ),
        (
            dataclasses.replace(SETTINGS, google_ads_login_customer_id="x"),
            "^TRACKER_GOOGLE_ADS_LOGIN_CUSTOMER_ID: ",
        ),
        (
            dataclasses.replace(SETTINGS, google_ads_conversion_action="purchase=12,34"),
            "^TRACKER_GOOGLE_ADS_CONVERSION_ACTION: item 2 is not goal=<action id>",
        ),
        (
            dataclasses.replace(SETTINGS, google_ads_conversion_action="purchase=AW-12"),
            "^TRACKER_GOOGLE_ADS_CONVERSION_ACTION: item 1",
        ),
    ],
)
def test_a_destination_set_up_wrong_names_the_setting(settings: Settings, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        destinations.configured(settings)


# Meta: the body facebook-business builds


def meta_sdk_data(event_name: str, user: UserData, custom: CustomData | None) -> list[Any]:
    sdk_event = MetaEvent(
        event_name=event_name,
        event_time=TS // 1000,
        event_id="o-1",
        event_source_url=URL,
        action_source=ActionSource.WEBSITE,
        user_data=user,
        custom_data=custom,
    )
    params = EventRequest(pixel_id="1234567890", events=[sdk_event]).get_params()
    return [json.loads(item) for item in params["data"]]


def test_meta_body_is_what_facebook_business_builds() -> None:
    event = conversion(**PERSON, fbclid="IwAR2F4-dbP0l7Mn1Iaw", fbp=FBP)
    request = only(meta.requests([event], SETTINGS))
    user = UserData(
        emails=[PERSON["email"]],
        phones=[PERSON["phone"]],
        client_ip_address="203.0.113.0",  # truncated by the collector, as configured
        client_user_agent=AGENT,
        fbc=f"fb.1.{TS}.IwAR2F4-dbP0l7Mn1Iaw",
        fbp=FBP,
    )
    custom = CustomData(value=12.5, currency="EUR", order_id="o-1")
    assert request.json == {
        "data": meta_sdk_data("Purchase", user, custom),
        "access_token": "meta-token",
    }
    assert request.method == "POST"
    assert (
        request.url == f"https://graph.facebook.com/{FacebookAdsApi.API_VERSION}/1234567890/events"
    )
    assert meta.VERSION == FacebookAdsApi.API_VERSION  # bump with the SDK in pyproject.toml
    assert orjson.loads(request.content()) == request.json
    assert request.events == (event,)


def test_meta_body_of_a_configured_goal_without_value_or_email() -> None:
    event = conversion(goal="signup", value=None, currency=None)
    request = only(meta.requests([event], SETTINGS))
    user = UserData(client_ip_address="203.0.113.0", client_user_agent=AGENT)
    expected = meta_sdk_data("CompleteRegistration", user, CustomData(order_id="o-1"))
    assert request.json["data"] == expected


def test_meta_event_id_is_the_order_else_the_event_so_the_pixel_copy_deduplicates() -> None:
    with_order, without = conversion(), conversion(order_id=None, event_id="e-9")
    data = only(meta.requests([with_order, without], SETTINGS)).json["data"]
    assert [item["event_id"] for item in data] == ["o-1", "e-9"]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (conversion(), None),
        (conversion(type="click"), "not a conversion"),
        (conversion(status="pending"), "pending: sent once approved"),
        (conversion(status="refund"), "refund: Meta takes no retraction"),
        (
            conversion(goal="trial"),
            "goal 'trial' has no Meta event name (TRACKER_META_EVENT_NAMES)",
        ),
        (conversion(goal="lead", value=None), None),
        (conversion(value=None), "no value: Meta refuses a Purchase without value and currency"),
        (conversion(url=None), "no url: Meta's website events need event_source_url"),
        (
            conversion(Context(received_at=NOW)),
            "no user agent: Meta's website events need client_user_agent",
        ),
        (
            conversion(ts=NOW - meta.MAX_AGE_MS - 1),
            "older than 7 days: Meta refuses it",
        ),
        (conversion(ts=NOW - meta.MAX_AGE_MS), None),
    ],
)
def test_meta_accepts(event: Event, reason: str | None) -> None:
    assert meta.accepts(event, SETTINGS, NOW) == reason


def test_meta_skips_a_bot() -> None:
    bot = parse_event(
        {"type": "conversion", "url": URL, "value": "1"},
        Context(received_at=NOW, user_agent="BadBot"),
        Rules(frozenset({"USD"}), "USD", is_bot=lambda agent: agent == "BadBot"),
    )
    assert meta.accepts(bot, SETTINGS, NOW) == "a bot's"


# Google Ads: the protos of the google-ads library


def google_proto(request: HttpRequest) -> Any:
    """The request's body parsed into the google-ads proto of its method: no unknown field
    (ParseDict raises), and back to JSON unchanged (each field of the proto's type)."""
    services = f"google.ads.googleads.{google.VERSION}.services.types"
    method = request.url.rpartition(":")[2]
    module, message = {
        "uploadClickConversions": ("conversion_upload_service", "UploadClickConversionsRequest"),
        "uploadConversionAdjustments": (
            "conversion_adjustment_upload_service",
            "UploadConversionAdjustmentsRequest",
        ),
    }[method]
    proto = getattr(importlib.import_module(f"{services}.{module}"), message).pb()()
    json_format.ParseDict(request.json, proto)
    assert json_format.MessageToDict(proto) == request.json
    return proto


def test_google_click_conversion_body_is_the_google_ads_proto() -> None:
    stated = {"ad_user_data": "granted", "ad_personalization": "denied"}
    event = conversion(gclid="Cj0KCQjw-gclid", **stated, **PERSON)
    request = only(google.requests([event], SETTINGS))
    assert request.url == (
        "https://googleads.googleapis.com/v26/customers/1234567890:uploadClickConversions"
    )
    assert request.headers == {
        "Content-Type": "application/json",
        "developer-token": "dev-token",
        "Authorization": "Bearer ya29.access",
    }
    proto = google_proto(request)
    assert proto.partial_failure is True
    [sent] = proto.conversions
    assert sent.gclid == "Cj0KCQjw-gclid"
    assert sent.conversion_action == "customers/1234567890/conversionActions/987654"
    assert sent.conversion_date_time == "2024-05-01 09:59:00+00:00"
    assert sent.conversion_value == 12.5
    assert (sent.currency_code, sent.order_id) == ("EUR", "o-1")
    consent = sent.consent
    names = consent.DESCRIPTOR.fields_by_name["ad_user_data"].enum_type.values_by_number
    assert names[consent.ad_user_data].name == "GRANTED"
    assert names[consent.ad_personalization].name == "DENIED"
    assert not sent.user_identifiers  # a click conversion names its click, not its person
    assert not sent.user_ip_address


def test_google_retraction_body_is_the_google_ads_proto() -> None:
    refund = conversion(status="refund", ts=TS, value=None)
    request = only(google.requests([refund], SETTINGS))
    assert request.url.endswith("/customers/1234567890:uploadConversionAdjustments")
    [adjustment] = google_proto(request).conversion_adjustments
    assert adjustment.order_id == "o-1"
    assert adjustment.adjustment_date_time == "2024-05-01 09:59:00+00:00"
    assert adjustment.conversion_action == "customers/1234567890/conversionActions/987654"
    types = adjustment.DESCRIPTOR.fields_by_name["adjustment_type"].enum_type
    assert types.values_by_number[adjustment.adjustment_type].name == "RETRACTION"


def test_google_consent_unstated_is_unspecified() -> None:
    request = only(google.requests([conversion(gclid="G")], SETTINGS))
    assert "consent" not in request.json["conversions"][0]
    [sent] = google_proto(request).conversions
    statuses = sent.consent.DESCRIPTOR.fields_by_name["ad_user_data"].enum_type.values_by_number
    assert statuses[sent.consent.ad_user_data].name == "UNSPECIFIED"
    assert statuses[sent.consent.ad_personalization].name == "UNSPECIFIED"


def test_google_conversion_action_per_goal_and_login_customer() -> None:
    settings = dataclasses.replace(
        SETTINGS,
        google_ads_conversion_action="purchase=111, lead=222",
        google_ads_login_customer_id="999-888-7777",
    )
    lead = conversion(gclid="G", goal="lead", value=None, order_id=None)
    request = only(google.requests([lead], settings))
    assert request.headers["login-customer-id"] == "9998887777"
    [sent] = google_proto(request).conversions
    assert sent.conversion_action == "customers/1234567890/conversionActions/222"
    assert not sent.order_id
    assert google.accepts(conversion(gclid="G", goal="signup"), settings, NOW) == (
        "goal 'signup' has no conversion action (TRACKER_GOOGLE_ADS_CONVERSION_ACTION)"
    )


def test_google_splits_uploads_from_retractions_and_batches_at_its_limit() -> None:
    uploads = [conversion(gclid=f"G{i}", order_id=f"o-{i}") for i in range(2001)]
    refund = conversion(status="rejected", order_id="o-7")
    made = google.requests([*uploads, refund], SETTINGS)
    assert [(r.url.rpartition(":")[2], len(r.events)) for r in made] == [
        ("uploadClickConversions", 2000),
        ("uploadClickConversions", 1),
        ("uploadConversionAdjustments", 1),
    ]
    assert [len(r.json.get("conversions", r.json.get("conversionAdjustments"))) for r in made] == [
        2000,
        1,
        1,
    ]


def test_google_leaves_out_a_repeated_order_which_would_fail_both() -> None:
    first, again = conversion(gclid="G1"), conversion(gclid="G1", event_id="pixel-fired-twice")
    other = conversion(gclid="G2", order_id=None)
    twin = conversion(gclid="G2", order_id=None, event_id="same-click-same-second")
    request = only(google.requests([first, again, other, twin], SETTINGS))
    assert request.events == (first, other)
    assert request.events[0] is first  # the caller's own events, to map answers back to


def test_a_request_carries_the_events_it_was_given_not_their_consented_copies() -> None:
    for destination, click in CLICKS.items():
        event = conversion(**PERSON, **click, ad_storage="denied", ad_user_data="granted")
        if destination.accepts(event, SETTINGS, NOW) is None:
            assert only(destination.requests([event], SETTINGS)).events[0] is event


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (conversion(gclid="G"), None),
        (conversion(click_id="ours", gclid="G"), None),  # the redirect's click and a gclid
        (conversion(fbclid="F"), "no gclid"),
        (conversion(), "no gclid"),
        (conversion(type="pageview", gclid="G"), "not a conversion"),
        (conversion(gclid="G", status="pending"), "pending: sent once approved"),
        (conversion(status="refund"), None),  # retracted by order id, no gclid needed
        (conversion(status="rejected"), None),
        (
            conversion(status="refund", order_id=None),
            "no order_id: Google retracts an order by its id",
        ),
        (conversion(gclid="G", ad_storage="denied"), "ad_storage denied: the gclid is not sent"),
        (
            conversion(gclid="G", ts=NOW - 29 * 86_400_000),
            None,
        ),  # Google judges the click's age
    ],
)
def test_google_accepts(event: Event, reason: str | None) -> None:
    assert google.accepts(event, SETTINGS, NOW) == reason


# TikTok: its documented body


def test_tiktok_body() -> None:
    event = conversion(**PERSON, tclid="E.C.P.ttclid-1")
    request = only(tiktok.requests([event], SETTINGS))
    assert request.url == "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    assert request.headers == {"Content-Type": "application/json", "Access-Token": "tt-token"}
    assert request.json == {
        "event_source": "web",
        "event_source_id": "C4TIKTOKPIXEL",
        "data": [
            {
                "event": "CompletePayment",
                "event_time": TS // 1000,
                "event_id": "o-1",
                "user": {
                    "email": "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f",
                    # sha256("+442079460958"): E.164 with its +, TikTok's rule
                    "phone": "f0bf0228144d9fe2bdf1da2d8ca698f17bf1410ee688b075c27062e47b6f0b6d",
                    "ttclid": "E.C.P.ttclid-1",
                    "ip": "203.0.113.0",
                    "user_agent": AGENT,
                },
                "properties": {"order_id": "o-1", "value": 12.5, "currency": "EUR"},
                "page": {"url": URL},
            }
        ],
    }


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (conversion(), None),
        (conversion(goal="lead"), None),
        (conversion(goal="signup"), "goal 'signup' has no TikTok event (only purchase, lead)"),
        (
            conversion(status="refund"),
            "refund: TikTok takes no retraction",
        ),
        (conversion(type="click"), "not a conversion"),
        (
            conversion(Context(received_at=NOW), ad_user_data="denied", tclid="T"),
            None,  # the ttclid alone
        ),
        (
            conversion(Context(received_at=NOW), ad_user_data="denied"),
            "nothing to match it by: no email, phone, ttclid, IP or user agent consented",
        ),
    ],
)
def test_tiktok_accepts(event: Event, reason: str | None) -> None:
    assert tiktok.accepts(event, SETTINGS, NOW) == reason


def test_tiktok_lead_is_submit_form_without_value() -> None:
    lead = conversion(goal="lead", value=None, order_id=None, event_id="e-1", url=None)
    [sent] = only(tiktok.requests([lead], SETTINGS)).json["data"]
    assert (sent["event"], sent["event_id"], sent["properties"]) == ("SubmitForm", "e-1", {})
    assert "page" not in sent


# Consent: what leaves tracker, for every destination


CLICKS: dict[destinations.Destination, dict[str, str]] = {
    meta: {"fbclid": "F1", "fbp": FBP},
    google: {"gclid": "G1"},
    tiktok: {"tclid": "T1"},
}
PERSONAL_VALUES = ("836f82db", "35e206e5", "f0bf0228", "203.0.113", AGENT)
"""Prefixes of the email's and phone's hashes, the IP and the agent, as sent."""
ID_VALUES = ("F1", FBP, "G1", "T1")
EXPECTED_SKIPS: dict[tuple[destinations.Destination, bool, bool], str] = {
    (meta, False, True): "ad_user_data denied: Meta's website events need the visitor's user agent",
    (
        meta,
        False,
        False,
    ): "ad_user_data denied: Meta's website events need the visitor's user agent",
    (google, True, False): "ad_storage denied: the gclid is not sent",
    (google, False, False): "ad_storage denied: the gclid is not sent",
    (
        tiktok,
        False,
        False,
    ): "nothing to match it by: no email, phone, ttclid, IP or user agent consented",
}


@pytest.mark.parametrize("destination", [meta, google, tiktok])
@pytest.mark.parametrize(("user_data", "storage"), list(itertools.product([True, False], repeat=2)))
def test_consent_gates_personal_data_and_ids(
    destination: destinations.Destination, user_data: bool, storage: bool
) -> None:
    stated = {
        "ad_user_data": "granted" if user_data else "denied",
        "ad_storage": "granted" if storage else "denied",
    }
    event = conversion(**PERSON, **CLICKS[destination], **stated)
    reason = destination.accepts(event, SETTINGS, NOW)
    assert reason == EXPECTED_SKIPS.get((destination, user_data, storage))
    if reason is not None:
        return
    sent = only(destination.requests([event], SETTINGS)).content().decode()
    personal = [value for value in PERSONAL_VALUES if value in sent]
    ids = [value for value in ID_VALUES if value in sent]
    if destination is google:  # no personal data ever; the gclid when consented
        assert (personal, ids) == ([], ["G1"])
        return
    assert bool(personal) is user_data
    assert bool(ids) is storage


def test_global_privacy_control_withholds_what_ad_storage_and_ad_user_data_would() -> None:
    gpc = Context(received_at=NOW, ip="203.0.113.7", user_agent=AGENT, gpc=True, salt=b"s" * 16)
    event = conversion(gpc, **PERSON, gclid="G1")
    assert event.email_sha256 is not None
    withheld = allowed.permitted(event)
    assert [getattr(withheld, name) for name in (*allowed.USER_DATA, *allowed.IDS)] == [None] * 8
    assert meta.accepts(event, SETTINGS, NOW) == EXPECTED_SKIPS[(meta, False, False)]
    assert google.accepts(event, SETTINGS, NOW) == EXPECTED_SKIPS[(google, False, False)]


def test_permitted_leaves_an_event_without_consent_as_it_is() -> None:
    event = conversion(**PERSON, gclid="G1")
    assert allowed.permitted(event) is event


# Answers: what each platform's codes mean


def answer(body: object) -> bytes:
    return body if isinstance(body, bytes) else orjson.dumps(body)


def meta_error(code: int, subcode: int | None = None, **more: object) -> dict[str, object]:
    error = {"message": "(#x) said Meta", "type": "OAuthException", "code": code, "fbtrace_id": "A"}
    return {"error": {**error, **({"error_subcode": subcode} if subcode else {}), **more}}


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (200, {"events_received": 1, "messages": [], "fbtrace_id": "A"}, None, None),
        (400, meta_error(4), "throttled", "4"),
        (400, meta_error(17), "throttled", "17"),
        (400, meta_error(32), "throttled", "32"),
        (400, meta_error(613), "throttled", "613"),
        (400, meta_error(80004), "throttled", "80004"),
        (500, meta_error(1, is_transient=True), "transient", "1"),
        (503, meta_error(2), "transient", "2"),
        (400, meta_error(1234, is_transient=True), "transient", "1234"),
        (400, meta_error(100, 2804003, is_transient=False), "permanent", "100/2804003"),
        (400, meta_error(100, 33), "misconfigured", "100/33"),  # no such pixel
        (400, meta_error(190, 463), "misconfigured", "190/463"),  # expired token
        (403, meta_error(10), "misconfigured", "10"),
        (403, meta_error(200), "misconfigured", "200"),
        (502, b"<html>Bad Gateway</html>", "transient", "http 502"),
        (429, b"", "throttled", "http 429"),
        (200, b"not json", "transient", "http 200"),
        (400, {"error": "no object"}, "permanent", "http 400"),
    ],
)
def test_meta_answers(status: int, body: object, kind: str | None, code: str | None) -> None:
    request = only(meta.requests([conversion()], SETTINGS))
    found = meta.outcome(request, status, answer(body))
    assert ((found.failure.kind, found.failure.code) if found.failure else (None, None)) == (
        kind,
        code,
    )
    assert not found.failed  # Meta answers for a request whole


def test_meta_failure_carries_its_user_message() -> None:
    body = meta_error(100, 2804019, error_user_msg="The event_time is too far in the past")
    request = only(meta.requests([conversion()], SETTINGS))
    failure = meta.outcome(request, 400, answer(body)).failure
    assert failure == Failure("permanent", "100/2804019", "The event_time is too far in the past")


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (200, {"code": 0, "message": "OK", "request_id": "r", "data": {}}, None, None),
        (200, {"code": 40100, "message": "Too many requests"}, "throttled", "40100"),
        (200, {"code": 40105, "message": "Access token is incorrect"}, "misconfigured", "40105"),
        (200, {"code": 40001, "message": "No permission"}, "misconfigured", "40001"),
        (200, {"code": 40002, "message": "data[0].event_time: invalid"}, "permanent", "40002"),
        (200, {"code": 50000, "message": "System error"}, "transient", "50000"),
        (503, b"<html>unavailable</html>", "transient", "http 503"),
        (429, b"", "throttled", "http 429"),
        (200, {"code": "0"}, "transient", "http 200"),
    ],
)
def test_tiktok_answers(status: int, body: object, kind: str | None, code: str | None) -> None:
    request = only(tiktok.requests([conversion()], SETTINGS))
    found = tiktok.outcome(request, status, answer(body))
    assert ((found.failure.kind, found.failure.code) if found.failure else (None, None)) == (
        kind,
        code,
    )


def ads_failure(*errors: tuple[str, str, int | None]) -> Any:
    """A GoogleAdsFailure of (category, code, index) errors, by the google-ads protos."""
    types = importlib.import_module(f"google.ads.googleads.{google.VERSION}.errors.types.errors")
    found = []
    for category, code, index in errors:
        path = [types.ErrorLocation.FieldPathElement(field_name="conversions", index=index)]
        found.append(
            types.GoogleAdsError(
                error_code=types.ErrorCode(**{category: code}),
                message=f"{code} said Google",
                location=types.ErrorLocation(field_path_elements=path if index is not None else []),
            )
        )
    return types.GoogleAdsFailure.pb(types.GoogleAdsFailure(errors=found, request_id="req"))


def rpc_status(failure: Any, code: int = 3) -> status_pb2.Status:
    packed = any_pb2.Any()
    packed.Pack(failure)
    return status_pb2.Status(code=code, message="said Google", details=[packed])


def test_google_partial_failure_names_the_events_that_failed() -> None:
    module = importlib.import_module(
        f"google.ads.googleads.{google.VERSION}.services.types.conversion_upload_service"
    )
    response = module.UploadClickConversionsResponse.pb()()
    failure = ads_failure(
        ("conversion_upload_error", "EXPIRED_EVENT", 0),
        ("conversion_upload_error", "TOO_RECENT_EVENT", 1),
        ("conversion_upload_error", "CLICK_CONVERSION_ALREADY_EXISTS", 2),  # a retry: taken
        ("conversion_upload_error", "NO_CONVERSION_ACTION_FOUND", 4),
        ("conversion_upload_error", "UNPARSEABLE_GCLID", 4),  # the first error of an event counts
    )
    response.partial_failure_error.CopyFrom(rpc_status(failure))
    for _ in range(5):
        response.results.add()
    body = json_format.MessageToJson(response).encode()
    events = [conversion(gclid=f"G{i}", order_id=f"o-{i}") for i in range(5)]
    request = only(google.requests(events, SETTINGS))
    found = google.outcome(request, 200, body)
    assert found.failure is None
    assert dict(found.failed) == {
        0: Failure("permanent", "conversionUploadError.EXPIRED_EVENT", "EXPIRED_EVENT said Google"),
        1: Failure(
            "transient",
            "conversionUploadError.TOO_RECENT_EVENT",
            "TOO_RECENT_EVENT said Google",
            21600,
        ),
        4: Failure(
            "misconfigured",
            "conversionUploadError.NO_CONVERSION_ACTION_FOUND",
            "NO_CONVERSION_ACTION_FOUND said Google",
        ),
    }
    assert not found.ok


def test_google_success_is_all_taken() -> None:
    request = only(google.requests([conversion(gclid="G")], SETTINGS))
    body = {"results": [{"gclid": "G", "conversionAction": "customers/1/conversionActions/2"}]}
    assert google.outcome(request, 200, answer(body)) == Outcome()


def google_error(status: int, rpc: str, failure: Any | None = None) -> bytes:
    error: dict[str, Any] = {"code": status, "message": "said Google", "status": rpc}
    if failure is not None:
        error["details"] = json_format.MessageToDict(rpc_status(failure))["details"]
    return orjson.dumps({"error": error})


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            google_error(
                401,
                "UNAUTHENTICATED",
                ads_failure(("authentication_error", "OAUTH_TOKEN_EXPIRED", None)),
            ),
            Failure(
                "misconfigured",
                "authenticationError.OAUTH_TOKEN_EXPIRED",
                "OAUTH_TOKEN_EXPIRED said Google",
            ),
        ),
        (
            403,
            google_error(
                403,
                "PERMISSION_DENIED",
                ads_failure(("authorization_error", "DEVELOPER_TOKEN_NOT_APPROVED", None)),
            ),
            Failure(
                "misconfigured",
                "authorizationError.DEVELOPER_TOKEN_NOT_APPROVED",
                "DEVELOPER_TOKEN_NOT_APPROVED said Google",
            ),
        ),
        (
            400,
            google_error(
                400,
                "INVALID_ARGUMENT",
                ads_failure(("request_error", "TOO_MANY_MUTATE_OPERATIONS", None)),
            ),
            Failure(
                "permanent",
                "requestError.TOO_MANY_MUTATE_OPERATIONS",
                "TOO_MANY_MUTATE_OPERATIONS said Google",
            ),
        ),
        (503, google_error(503, "UNAVAILABLE"), Failure("transient", "UNAVAILABLE", "said Google")),
        (500, google_error(500, "INTERNAL"), Failure("transient", "INTERNAL", "said Google")),
        (
            404,
            b"<html>Not Found</html>",
            Failure("misconfigured", "http 404", "not an answer of Google's"),
        ),
        (200, b"", Failure("transient", "http 200", "not an answer of Google's")),
    ],
)
def test_google_whole_request_failures(status: int, body: bytes, expected: Failure) -> None:
    request = only(google.requests([conversion(gclid="G")], SETTINGS))
    assert google.outcome(request, status, body) == Outcome(expected)


def test_google_quota_error_is_throttled_with_the_wait_google_states() -> None:
    types = importlib.import_module(f"google.ads.googleads.{google.VERSION}.errors.types.errors")
    failure = types.GoogleAdsFailure.pb(
        types.GoogleAdsFailure(
            errors=[
                types.GoogleAdsError(
                    error_code=types.ErrorCode(quota_error="RESOURCE_TEMPORARILY_EXHAUSTED"),
                    message="Too many requests",
                    details=types.ErrorDetails(
                        quota_error_details=types.QuotaErrorDetails(
                            retry_delay=duration_pb2.Duration(seconds=30)
                        )
                    ),
                )
            ]
        )
    )
    request = only(google.requests([conversion(gclid="G")], SETTINGS))
    found = google.outcome(request, 429, google_error(429, "RESOURCE_EXHAUSTED", failure))
    assert found.failure == Failure(
        "throttled", "quotaError.RESOURCE_TEMPORARILY_EXHAUSTED", "Too many requests", 30.0
    )


def test_a_request_keeps_its_credentials_out_of_its_repr() -> None:
    for destination in destinations.ALL:
        event = conversion(gclid="G") if destination is google else conversion()
        text = repr(only(destination.requests([event], SETTINGS)))
        assert not any(secret in text for secret in ("meta-token", "dev-token", "ya29", "tt-token"))
