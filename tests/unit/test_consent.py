"""tracker.consent: stated consent resolved, TC strings built bit by bit, cookieless events.

The TC strings here are laid out field by field from the TCF v2 core segment's table, so
every bit is known; tests/e2e/test_tcf.py checks the same decoding against strings the
IAB Tech Lab's own library encodes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from tracker.consent import ADS, SIGNALS, Consent, cookieless_id, resolve, tcf_signals
from tracker.events import Context, Event, InvalidEvent, Rules, parse_event

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z
RULES = Rules(currencies=frozenset({"USD"}), default_currency="USD")
SALT = b"s" * 32
OTHER_SALT = b"t" * 32  # another day's
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"
PAGE = "https://shop.example/spring?utm_campaign=spring"

GRANTED = dict.fromkeys(SIGNALS, True)
DENIED = dict.fromkeys(SIGNALS, False)


# A TCF v2 core segment, bit by bit


def bits(value: int, width: int) -> str:
    assert 0 <= value < 1 << width, (value, width)
    return format(value, f"0{width}b")


def letters(code: str) -> str:
    """Two letters, 6 bits each, A = 0."""
    return "".join(bits(ord(letter) - ord("A"), 6) for letter in code)


def flags(ids: Iterable[int], width: int) -> str:
    """A bitfield: bit ``i - 1`` set for each id ``i``."""
    chosen = set(ids)
    return "".join("1" if i in chosen else "0" for i in range(1, width + 1))


def vendor_section(ids: Iterable[int]) -> str:
    """MaxVendorId (16), IsRangeEncoding 0 (1), then one bit per vendor up to the max."""
    chosen = sorted(ids)
    top = chosen[-1] if chosen else 0
    return bits(top, 16) + "0" + flags(chosen, top)


def core(
    purposes: Iterable[int] = (),
    *,
    version: int = 2,
    policy: int = 4,
    legitimate: Iterable[int] = (),
    vendors: Iterable[int] = (),
) -> str:
    """The bits of a core segment: the table's fields in order, widths as the table gives."""
    deciseconds = NOW // 100
    return "".join(
        [
            bits(version, 6),
            bits(deciseconds, 36),  # Created
            bits(deciseconds, 36),  # LastUpdated
            bits(12, 12),  # CmpId
            bits(12, 12),  # CmpVersion
            bits(6, 6),  # ConsentScreen
            letters("EN"),  # ConsentLanguage
            bits(100, 12),  # VendorListVersion
            bits(policy, 6),  # TcfPolicyVersion
            "1",  # IsServiceSpecific
            "0",  # UseNonStandardTexts
            bits(0, 12),  # SpecialFeatureOptIns
            flags(purposes, 24),  # PurposesConsent
            flags(legitimate, 24),  # PurposesLITransparency
            "0",  # PurposeOneTreatment
            letters("DE"),  # PublisherCC
            vendor_section(vendors),  # vendor consents
            vendor_section(()),  # vendor legitimate interests
            bits(0, 12),  # NumPubRestrictions
        ]
    )


def encode(segment: str) -> str:
    """base64url without padding, the bits filled with zeros to whole bytes."""
    segment += "0" * (-len(segment) % 8)
    raw = int(segment, 2).to_bytes(len(segment) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MIN_CORE_BITS = 259
"""213 bits of fixed fields, then two empty vendor sections (16 + 1 each) and 12 bits of
NumPubRestrictions, summed from the table by hand."""


def test_the_hand_built_core_has_the_tables_length() -> None:
    assert len(core()) == MIN_CORE_BITS
    assert len(core(vendors=[40])) == MIN_CORE_BITS + 40
    # Version 2 in the first 6 bits is the "C" every TCF v2 string starts with.
    assert encode(core()).startswith("C")
    assert encode(core(version=1)).startswith("B")


# tcf_signals on hand-built strings


@pytest.mark.parametrize(
    ("purposes", "expected"),
    [
        ((), DENIED),
        (range(1, 12), GRANTED),
        ((1,), {**DENIED, "ad_storage": True}),
        ((1, 8), {**DENIED, "analytics_storage": True, "ad_storage": True}),
        ((8,), DENIED),  # measuring without storing: Purpose 1 is missing
        ((1, 7), {**DENIED, "ad_storage": True, "ad_user_data": True}),
        ((7,), DENIED),
        ((3, 4), {**DENIED, "ad_personalization": True}),
        ((3,), DENIED),  # a profile created but not used
        ((4,), DENIED),
        ((2, 5, 6, 9, 10, 11), DENIED),  # none of the purposes the signals need
        ((1, 3, 4, 7, 8), GRANTED),
        ((24,), DENIED),  # the last bit of the field: no shift onto purposes 1 to 11
    ],
)
def test_tcf_purposes_give_their_signals(
    purposes: Iterable[int], expected: dict[str, bool]
) -> None:
    assert tcf_signals(encode(core(purposes))) == expected


def test_tcf_legitimate_interest_is_no_consent() -> None:
    # Purposes 1 to 11 under legitimate interest, none consented: the signals need consent.
    assert tcf_signals(encode(core(legitimate=range(1, 12)))) == DENIED
    assert tcf_signals(encode(core((1, 8), legitimate=range(1, 25)))) == {
        **DENIED,
        "analytics_storage": True,
        "ad_storage": True,
    }


@pytest.mark.parametrize("policy", [2, 4, 5])  # TCF v2.0's policy version, then v2.2's
def test_tcf_reads_every_policy_version(policy: int) -> None:
    assert tcf_signals(encode(core((1, 7), policy=policy))) == {
        **DENIED,
        "ad_storage": True,
        "ad_user_data": True,
    }


def test_tcf_vendors_and_later_segments_leave_purposes_alone() -> None:
    text = encode(core((1, 3, 4), vendors=[1, 7, 40]))
    expected = {**DENIED, "ad_storage": True, "ad_personalization": True}
    assert tcf_signals(text) == expected
    # A disclosed-vendors segment (type 1, MaxVendorId 0, bitfield) after the core.
    assert tcf_signals(text + "." + encode(bits(1, 3) + bits(0, 16) + "0")) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "must be a TCF v2 consent string"),
        (1, "must be a TCF v2 consent string"),
        (b"CPzHq4A", "must be a TCF v2 consent string"),
        ("", "must be a TCF v2 consent string"),
        ("C" * 4097, "longer than 4096 characters"),
        (encode(core()) + "!", "is not base64url"),
        (encode(core()) + " ", "is not base64url"),
        ("C%3D" + encode(core())[4:], "is not base64url"),  # still URL-encoded
        (encode(core(version=1)), "is a TCF v1 string"),
        (encode(core(version=3)), "is a TCF v3 string"),
    ],
)
def test_tcf_refuses_what_is_no_v2_string(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tcf_signals(text)


# The core of Purpose 1 and vendors 3 and 40, 299 bits in 38 bytes, 51 characters: a cut
# at any length loses the byte that holds its last bit, at least.
FULL_TEXT = encode(core((1,), vendors=[3, 40]))


def test_tcf_full_string_is_read() -> None:
    assert len(FULL_TEXT) == 51
    assert tcf_signals(FULL_TEXT) == {**DENIED, "ad_storage": True}


@pytest.mark.parametrize("length", range(1, len(FULL_TEXT)))
def test_tcf_cut_short_is_refused(length: int) -> None:
    cut = FULL_TEXT[:length]
    for text in (cut, cut + ".IAAA"):  # with a later segment too: the core still ends early
        with pytest.raises(ValueError, match=r"cut short|base64url"):
            tcf_signals(text)


@pytest.mark.parametrize("length", [1, 4, 20, 25, 26, 29, 33, 36, 40, 43])
def test_tcf_denied_string_cut_short_never_reads_as_consent(length: int) -> None:
    # Past its end the decoder reads every flag as set: a string cut in or before its
    # purposes (bits 152 to 175, characters 25 to 29) would grant everything.
    text = encode(core())
    assert len(text) == 44
    with pytest.raises(ValueError, match=r"cut short|base64url"):
        tcf_signals(text[:length])


def test_tcf_header_claiming_more_vendors_than_given_is_refused() -> None:
    # MaxVendorId 2000 in a bitfield, and the string ends 1,990 bits sooner.
    claims = core(range(1, 12))[:213] + bits(2000, 16) + "0" + "1" * 10
    with pytest.raises(ValueError, match="cut short"):
        tcf_signals(encode(claims))


# resolve


def resolved(
    stated: Mapping[str, Any], *, gpc: bool = False, required: bool = False
) -> tuple[Consent | None, dict[str, str]]:
    reasons: dict[str, str] = {}
    return resolve(stated, gpc=gpc, required=required, reasons=reasons), reasons


def signals(consent: Consent | None) -> dict[str, bool]:
    assert consent is not None
    return {name: getattr(consent, name) for name in SIGNALS}


def test_nothing_stated_is_no_consent_at_all() -> None:
    assert resolved({}) == (None, {})


def test_stated_signals_and_the_rest_granted() -> None:
    consent, reasons = resolved({"analytics_storage": "granted", "ad_storage": "denied"})
    assert reasons == {}
    assert consent == Consent(
        analytics_storage=True, ad_storage=False, ad_user_data=True, ad_personalization=True
    )
    assert consent.cookies


@pytest.mark.parametrize(
    ("value", "granted"),
    [("GRANTED", True), ("Granted", True), ("DENIED", False), ("dEnIeD", False)],
)
def test_signal_values_ignore_case(value: str, granted: bool) -> None:
    consent, reasons = resolved({"ad_user_data": value})
    assert reasons == {}
    assert signals(consent) == {**GRANTED, "ad_user_data": granted}


def test_json_booleans_are_signals() -> None:
    consent, reasons = resolved({"analytics_storage": False, "ad_personalization": True})
    assert reasons == {}
    assert signals(consent) == {**GRANTED, "analytics_storage": False}
    assert consent is not None
    assert not consent.cookies


@pytest.mark.parametrize(
    "value", ["maybe", "yes", "1", " granted", ["granted"], {"granted": True}, 1, 0, 1.0, None]
)
@pytest.mark.parametrize("name", SIGNALS)
def test_malformed_signals_are_named(name: str, value: object) -> None:
    _, reasons = resolved({name: value})
    assert reasons == {name: "must be granted or denied"}


def test_gpc_denies_advertising_and_cookies_but_not_analytics() -> None:
    consent, reasons = resolved({"analytics_storage": "granted", "ad_storage": "granted"}, gpc=True)
    assert reasons == {}
    assert signals(consent) == {**DENIED, "analytics_storage": True}
    assert consent is not None
    assert consent.gpc
    assert not consent.cookies
    # Stated nothing: GPC alone still says it.
    alone, _ = resolved({}, gpc=True)
    assert signals(alone) == {**DENIED, "analytics_storage": True}
    denied, _ = resolved({"analytics_storage": "denied"}, gpc=True)
    assert signals(denied) == DENIED
    assert set(ADS) == set(SIGNALS) - {"analytics_storage"}


def test_required_consent_denies_what_is_unstated() -> None:
    consent, reasons = resolved({}, required=True)
    assert reasons == {}
    assert signals(consent) == DENIED
    stated, _ = resolved({"analytics_storage": "granted"}, required=True)
    assert signals(stated) == {**DENIED, "analytics_storage": True}


def test_tcf_string_states_signals_and_is_kept() -> None:
    text = encode(core((1, 8)))
    consent, reasons = resolved({"gdpr": "1", "gdpr_consent": text}, required=True)
    assert reasons == {}
    assert signals(consent) == {**DENIED, "analytics_storage": True, "ad_storage": True}
    assert consent is not None
    assert consent.tcf == text
    # gdpr absent: a string given is read all the same; a JSON 1 is "1".
    assert resolved({"gdpr_consent": text}, required=True) == (consent, {})
    assert resolved({"gdpr": 1, "gdpr_consent": text}, required=True) == (consent, {})


def test_a_stated_signal_wins_over_the_tcf_string() -> None:
    everything = encode(core(range(1, 12)))
    consent, reasons = resolved({"gdpr_consent": everything, "ad_personalization": "denied"})
    assert reasons == {}
    assert signals(consent) == {**GRANTED, "ad_personalization": False}
    nothing = encode(core())
    granted, _ = resolved({"gdpr_consent": nothing, "analytics_storage": "granted"})
    assert signals(granted) == {**DENIED, "analytics_storage": True}


@pytest.mark.parametrize("gdpr", ["0", 0])
def test_gdpr_not_applying_leaves_the_string_unread(gdpr: object) -> None:
    consent, reasons = resolved({"gdpr": gdpr, "gdpr_consent": encode(core())})
    assert reasons == {}
    assert signals(consent) == GRANTED  # the all-denied string was not read
    # Not even judged: a string that is none is no reason either.
    assert resolved({"gdpr": gdpr, "gdpr_consent": "not-a-tc-string!"})[1] == {}


@pytest.mark.parametrize("gdpr", ["2", 2, "yes", True, "1.0"])
def test_gdpr_other_than_0_or_1_is_a_reason(gdpr: object) -> None:
    _, reasons = resolved({"gdpr": gdpr, "gdpr_consent": encode(core(range(1, 12)))})
    assert reasons == {"gdpr": "must be 0 or 1"}


def test_gdpr_other_than_0_or_1_is_a_reason_without_a_string() -> None:
    _, reasons = resolved({"gdpr": "2"})
    assert reasons == {"gdpr": "must be 0 or 1"}


def test_a_malformed_tcf_string_is_a_reason() -> None:
    cut = encode(core(range(1, 12)))[:30]
    _, reasons = resolved({"gdpr": "1", "gdpr_consent": cut})
    assert set(reasons) == {"gdpr_consent"}
    assert "cut short" in reasons["gdpr_consent"]


# cookieless_id


def test_cookieless_id_is_a_keyed_per_day_id() -> None:
    one = cookieless_id(SALT, "203.0.113.7", AGENT, "shop.example")
    assert one.startswith("cl-")
    assert len(one) == 35
    int(one[3:], 16)  # 32 hex digits: 128 bits
    assert cookieless_id(SALT, "203.0.113.7", AGENT, "shop.example") == one
    others = {
        cookieless_id(OTHER_SALT, "203.0.113.7", AGENT, "shop.example"),
        cookieless_id(SALT, "203.0.113.8", AGENT, "shop.example"),
        cookieless_id(SALT, "203.0.113.7", AGENT + " ", "shop.example"),
        cookieless_id(SALT, "203.0.113.7", AGENT, "blog.example"),
        cookieless_id(SALT, "203.0.113.7", None, "shop.example"),
        cookieless_id(SALT, None, AGENT, "shop.example"),
    }
    assert one not in others
    assert len(others) == 6


# parse_event: cookieless counting


def context(**given: Any) -> Context:
    fields: dict[str, Any] = {"received_at": NOW, "ip": "203.0.113.7", "user_agent": AGENT}
    return Context(**{**fields, "salt": SALT, **given})


def parse(raw: Mapping[str, Any], ctx: Context | None = None) -> Event:
    return parse_event(raw, ctx or context(), RULES)


def rejected(raw: Mapping[str, Any], ctx: Context | None = None) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        parse(raw, ctx)
    return caught.value.reasons


DENIED_VIEW = {"type": "pageview", "url": PAGE, "analytics_storage": "denied"}


def test_a_cookieless_event_gets_the_days_id_in_place_of_its_own() -> None:
    event = parse({**DENIED_VIEW, "anonymous_id": "device-1", "user_id": "u-1"})
    assert event.anonymous_id == cookieless_id(SALT, "203.0.113.7", AGENT, "shop.example")
    assert event.user_id is None
    assert event.ip == "203.0.113.0"  # the full IP went into the hash; the kept one is cut
    assert event.consent is not None
    assert not event.consent.analytics_storage


def test_the_visitor_cookie_is_not_used_either() -> None:
    event = parse(DENIED_VIEW, context(anonymous_id="cookie-visitor"))
    assert event.anonymous_id is not None
    assert event.anonymous_id.startswith("cl-")


def test_cookieless_ids_repeat_within_a_day_and_site_only() -> None:
    first = parse(DENIED_VIEW).anonymous_id
    assert parse({**DENIED_VIEW, "url": "https://shop.example/other"}).anonymous_id == first
    assert parse(DENIED_VIEW, context(salt=OTHER_SALT)).anonymous_id != first
    assert parse({**DENIED_VIEW, "url": "https://blog.example/"}).anonymous_id != first
    # In the same /24, kept as the same truncated IP, yet another visitor.
    assert parse(DENIED_VIEW, context(ip="203.0.113.8")).anonymous_id != first
    # The site from the request's referrer when the event names no page.
    bare = {"type": "pageview", "analytics_storage": "denied"}
    assert parse(bare, context(referrer="https://shop.example/x")).anonymous_id == first


@pytest.mark.parametrize(
    ("raw", "given"),
    [
        ({"type": "pageview", "analytics_storage": "granted"}, {"gpc": True}),  # GPC
        ({"type": "pageview"}, {"consent_required": True}),  # required, nothing stated
        ({"type": "click", "gdpr_consent": encode(core((1,)))}, {}),  # TCF: no Purpose 8
    ],
)
def test_every_way_of_withholding_cookies_counts_cookieless(
    raw: dict[str, Any], given: dict[str, Any]
) -> None:
    event = parse({**raw, "anonymous_id": "device-1"}, context(**given))
    assert event.anonymous_id is not None
    assert event.anonymous_id.startswith("cl-")


@pytest.mark.parametrize("kind", ["identify", "reset"])
def test_identify_and_reset_need_cookie_consent(kind: str) -> None:
    raw = {"type": kind, "anonymous_id": "device-1", "user_id": "u-1"}
    reasons = rejected({**raw, "analytics_storage": "denied"})
    assert set(reasons) == {"type"}
    assert "analytics consent" in reasons["type"]
    assert set(rejected(raw, context(gpc=True))) == {"type"}
    assert parse({**raw, "analytics_storage": "granted"}).anonymous_id == "device-1"


def test_cookieless_without_the_days_salt_is_rejected() -> None:
    reasons = rejected(DENIED_VIEW, context(salt=None))
    assert set(reasons) == {"consent"}
    assert "salt" in reasons["consent"]


def test_consent_granted_keeps_the_events_ids() -> None:
    raw = {"type": "pageview", "url": PAGE, "anonymous_id": "device-1", "user_id": "u-1"}
    event = parse({**raw, "analytics_storage": "granted", "ad_storage": "denied"})
    assert (event.anonymous_id, event.user_id) == ("device-1", "u-1")
    assert event.consent == Consent(
        analytics_storage=True, ad_storage=False, ad_user_data=True, ad_personalization=True
    )
    # No salt is needed when none is used.
    assert parse({**raw, "analytics_storage": "granted"}, context(salt=None)).user_id == "u-1"
    # Nothing stated: no consent on the event, ids as given.
    plain = parse(raw)
    assert (plain.anonymous_id, plain.consent) == ("device-1", None)


def test_spend_is_never_cookieless() -> None:
    # A report of money spent, not a visitor's hit: kept as given, even with no salt.
    raw = {"type": "spend", "campaign": "spring", "cost": "12.50", "analytics_storage": "denied"}
    event = parse({**raw, "anonymous_id": "report-1"}, context(salt=None, gpc=True))
    assert event.anonymous_id == "report-1"
    assert event.consent is not None
    assert event.consent.gpc
    assert not event.consent.cookies


def test_only_the_core_segment_is_decoded() -> None:
    """The signals are all in the core; the library's decoding of the other segments
    is quadratic in their range entries (seconds for a crafted 4 KB string), so they
    are checked for their alphabet only."""
    string = encode(core([1, 8]))
    assert tcf_signals(f"{string}.{'_' * 3000}") == tcf_signals(string)
