"""Hashed emails and phones, fbc and fbp, checked against Meta's own SDK (facebook-business).

Where tracker's rule and the SDK's part, the table says why: the SDK keeps what a
person mistyped (an address with a space), refuses what people write (dots between
digits), or hashes a number without its country.
"""

from __future__ import annotations

import hashlib

import pytest
from facebook_business.adobjects.serverside.normalize import Normalize

from tracker.forward import identity


def sdk(field: str, text: str) -> str | None:
    """The facebook-business SDK's normalised value; None when it refuses it."""
    try:
        value: str = Normalize.normalize_field_skip_hashing(field, text)
    except (TypeError, ValueError):
        return None
    return value


def sdk_hash(field: str, text: str) -> str:
    value: str = Normalize.normalize_field(field, text)
    return value


@pytest.mark.parametrize(
    "text",
    [
        "john@example.com",
        "  John.Doe@Example.COM ",  # spaces around, upper case
        "JOHN+news@EXAMPLE.com\n",  # a tag, a newline
        "\tMixed.Case@Sub.Example.Co.Uk",
        "Jöhn@Exämple.com",  # not ASCII: lower-cased and hashed as UTF-8 alike
    ],
)
def test_an_email_normalises_and_hashes_as_meta_sdk_does(text: str) -> None:
    assert identity.normalize_email(text) == sdk("em", text)
    assert identity.email_sha256(text) == sdk_hash("em", text)


@pytest.mark.parametrize(
    ("text", "sdk_takes_it"),
    [
        ("a@b", False),
        ("@example.com", False),
        ("john@", False),
        ("", False),
        ("john doe@example.com", True),  # the SDK hashes an address no mail reaches
        ("a@b@c.com", True),
    ],
)
def test_what_is_no_email_address_is_refused(text: str, sdk_takes_it: bool) -> None:
    with pytest.raises(ValueError, match=r"^is not an email address$"):
        identity.normalize_email(text)
    assert (sdk("em", text) is not None) is sdk_takes_it


def test_an_email_longer_than_an_address_can_be_is_refused() -> None:
    with pytest.raises(ValueError, match="not an email address"):
        identity.normalize_email("a" * 250 + "@example.com")


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("+1 650 555 1234", "16505551234"),
        ("+1 (650) 555-1234", "16505551234"),  # brackets, dashes
        ("1-650-555-1234", "16505551234"),  # the country code without +
        ("16505551234", "16505551234"),
        ("001 650 555 1234", "16505551234"),  # 00: the international prefix
        ("0044 20 7946 0958", "442079460958"),
        ("+44 20 7946 0958", "442079460958"),
        (" +44 20 7946 0958 ", "442079460958"),
        ("+0044 20 7946 0958", "442079460958"),
        ("+49 30 1234567", "49301234567"),
        ("+33 1 23 45 67 89", "33123456789"),
        ("+81-3-1234-5678", "81312345678"),
    ],
)
def test_a_phone_normalises_and_hashes_as_meta_sdk_does(text: str, digits: str) -> None:
    assert identity.normalize_phone(text) == digits == sdk("ph", text)
    meta, e164 = identity.phone_sha256s(text)
    assert meta == sdk_hash("ph", text)
    assert e164 == hashlib.sha256(f"+{digits}".encode()).hexdigest()  # TikTok's, Google's


@pytest.mark.parametrize(
    ("text", "ours", "sdks"),
    [
        # The trunk prefix written beside the code is no digit of the E.164 number.
        ("+44 (0)20 7946 0958", "442079460958", "4402079460958"),
        # Separators people write that the SDK's pattern does not know.
        ("+1.650.555.1234", "16505551234", None),
        ("+1 650/555/1234", "16505551234", None),
    ],
)
def test_where_the_sdk_misreads_a_number_the_e164_form_is_kept(
    text: str, ours: str, sdks: str | None
) -> None:
    assert identity.normalize_phone(text) == ours
    assert sdk("ph", text) == sdks


@pytest.mark.parametrize(
    ("text", "reason", "sdks"),
    [
        # National numbers: the SDK hashes them without their country, matching nobody.
        ("020 7946 0958", "has no country code: a leading 0", "2079460958"),
        ("(650) 555-1234", "must be digits with the country code", "6505551234"),
        ("+0 20 7946 0958", "no country code begins with 0", "2079460958"),
        ("+1 650 555 1234 ext 5", "must be digits with the country code", None),
        ("tel:+16505551234", "must be digits with the country code", None),
        ("12345", "has 5 digits", None),
        ("+1234567890123456", "has 16 digits", "1234567890123456"),
        ("", "must be digits", None),
    ],
)
def test_a_phone_without_its_country_or_not_a_number_is_refused(
    text: str, reason: str, sdks: str | None
) -> None:
    with pytest.raises(ValueError, match=reason) as refused:
        identity.normalize_phone(text)
    digits = "".join(c for c in text if c.isdigit())
    assert len(digits) < 5 or digits not in str(refused.value)  # never echoed
    assert sdk("ph", text) == sdks


def test_a_long_written_number_is_refused_before_it_is_read() -> None:
    with pytest.raises(ValueError, match="must be digits"):
        identity.normalize_phone("+1 " + " " * identity.MAX_PHONE + "6505551234")


def test_a_hash_given_is_kept_in_lower_case_and_anything_else_refused() -> None:
    digest = hashlib.sha256(b"john@example.com").hexdigest()
    assert identity.given_sha256(f" {digest.upper()} ") == digest
    for bad in (digest[:-1], digest + "0", "g" * 64, "john@example.com"):
        with pytest.raises(ValueError, match="SHA-256 in hex"):
            identity.given_sha256(bad)


def test_sha256_hex_is_of_utf8() -> None:
    assert identity.sha256_hex("é") == hashlib.sha256("é".encode()).hexdigest()


# fbc and fbp: Meta's cookies


def test_fbc_is_built_from_the_click_id_as_meta_specifies() -> None:
    fbclid = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
    fbc = identity.fbc_from_click(fbclid, 1_554_763_741_205)
    assert fbc == f"fb.1.1554763741205.{fbclid}"  # case kept: Meta says it matters
    assert fbc is not None
    assert identity.is_fbc(fbc)


@pytest.mark.parametrize("fbclid", ["", "has space", "dotted.id", "ünïcode", "a&b=c"])
def test_no_fbc_is_built_from_what_is_no_click_id(fbclid: str) -> None:
    assert identity.fbc_from_click(fbclid, 1_554_763_741_205) is None


@pytest.mark.parametrize(
    ("text", "fbc", "fbp"),
    [
        ("fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890", True, False),
        ("fb.1.1596403881668.1116446470", True, True),
        ("fb.2.1596403881668.1116446470", True, True),  # www.example.com: index 2
        ("fb.1.1596403881668.1116446470.Ag", True, True),  # the parameter builder's appendix
        ("fb.1.1596403881668.1116446470.AQYBAAEA", True, True),  # its 8-character form
        ("fb.1.1596403881668.1116446470.ABC", False, False),  # an appendix of neither length
        ("fb.3.1596403881668.1116446470", False, False),
        ("fb.1.1596403881668", False, False),
        ("fb.1..1116446470", False, False),
        ("FB.1.1596403881668.1116446470", False, False),
        ("fb.1.1596403881668.1116446470\n", False, False),
        ("", False, False),
    ],
)
def test_fbc_and_fbp_are_recognised_by_meta_cookie_forms(text: str, fbc: bool, fbp: bool) -> None:
    assert identity.is_fbc(text) is fbc
    assert identity.is_fbp(text) is fbp
