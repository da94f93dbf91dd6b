"""The keys an ad platform matches a conversion's person by, in the form it requires.

Personal data never travels raw: the collector normalises an email address or a phone
number on arrival and keeps only its SHA-256 (:func:`tracker.events.parse_event`), so
neither Kafka, the workers nor a dead letter ever hold it. The rules are the platforms':

- An email address is trimmed and lower-cased: Meta's rule (its customer information
  parameters, and ``Normalize`` of its facebook-business SDK), and TikTok's. Google's
  enhanced conversions also drop the dots before the ``@`` of gmail.com and
  googlemail.com addresses; tracker sends Google no email (its uploads name the gclid),
  so no hash by Google's rule is kept.
- A phone number is its E.164 form: country code and subscriber number, at most 15
  digits. Meta hashes those digits alone; TikTok and Google hash them behind a ``+``.
  The two hashes differ, so both are kept (:func:`phone_sha256s`).
- A number must say its country. Written internationally (``+44 20 7946 0958``,
  ``0044 20 7946 0958``), or as digits that begin with the country code
  (``44 20 7946 0958``), as Meta's SDK reads them. A national number behind a trunk
  prefix (``020 7946 0958``) is refused rather than guessed: the site's country or the
  visitor's IP would name the wrong country for a traveller or an expatriate, and a
  wrong guess hashes another person's number. Meta's SDK drops the ``0`` and hashes the
  rest, a number without its country that matches nobody.

``fbc`` and ``fbp`` are Meta's click and browser ids, as its pixel stores them in the
``_fbc`` and ``_fbp`` cookies: ``fb.<subdomain index>.<creation ms>.<fbclid or random>``,
with an optional fifth part that Meta's parameter builder appends.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

MAX_EMAIL: Final = 254
"""Characters of an email address at most (RFC 5321's path limit, less its brackets)."""
MAX_PHONE: Final = 64
"""Characters of a written phone number at most, separators included."""
_EMAIL: Final = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
"""One ``@``, a dot in the domain and no whitespace: a typo is not hashed as an address."""
_PHONE: Final = re.compile(r"\+?[0-9][0-9 ()./-]*")
"""Digits and the separators people write between them, a ``+`` in front."""
_TRUNK_BESIDE_CODE: Final = re.compile(r"(?<=[0-9])\s*\(0\)")
"""``+44 (0)20 ...``: the national trunk prefix written beside the country code."""
_E164_DIGITS: Final = range(7, 16)
"""Digits of an E.164 number: at most 15; the shortest in use have 7 (+290 and a 4-digit
subscriber number)."""
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
_APPENDIX: Final = r"(?:\.[A-Za-z0-9_-]{2}|\.[A-Za-z0-9_-]{8})?"
"""The fifth part Meta's parameter builder appends to the cookies: 2 or 8 characters."""
_FBCLID: Final = re.compile(r"[A-Za-z0-9_-]+")
"""A click id of Meta's (``fbclid``), as it appears in links: base64url characters."""
_FBC: Final = re.compile(rf"fb\.[0-2]\.[0-9]{{1,13}}\.[A-Za-z0-9_-]+{_APPENDIX}")
_FBP: Final = re.compile(rf"fb\.[0-2]\.[0-9]{{1,13}}\.[0-9]+{_APPENDIX}")


def sha256_hex(text: str) -> str:
    """SHA-256 of ``text`` as UTF-8, in lower-case hex: the form every platform takes."""
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_email(text: str) -> str:
    """``text`` trimmed and lower-cased; :class:`ValueError` when it is no email address."""
    email = text.strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
        raise ValueError("is not an email address")
    return email


def normalize_phone(text: str) -> str:
    """The E.164 digits (no ``+``) of a phone number written with its country code.

    Spaces, dashes, dots, slashes and brackets are dropped, and so is a ``(0)`` written
    beside the country code; ``00`` in front (or ``+00``) is the international prefix. Raises
    :class:`ValueError` saying what is wrong, never echoing the number.
    """
    number = text.strip()
    if len(number) > MAX_PHONE or not _PHONE.fullmatch(number):
        raise ValueError("must be digits with the country code, such as +44 20 7946 0958")
    digits = re.sub(r"[^0-9]", "", _TRUNK_BESIDE_CODE.sub("", number))
    if digits.startswith("00"):  # the international prefix, a + before it or not
        digits = digits[2:]
    elif not number.startswith("+") and digits.startswith("0"):
        raise ValueError(
            "has no country code: a leading 0 is a national prefix; write +<country code>"
        )
    if digits.startswith("0"):
        raise ValueError("has no country code: no country code begins with 0")
    if len(digits) not in _E164_DIGITS:
        raise ValueError(f"has {len(digits)} digits; a number with its country code has 7 to 15")
    return digits


def email_sha256(text: str) -> str:
    """The hash of an email address by Meta's and TikTok's rule; :class:`ValueError` if none."""
    return sha256_hex(normalize_email(text))


def phone_sha256s(text: str) -> tuple[str, str]:
    """The hashes of a phone number: of its E.164 digits (Meta's rule), then of ``+`` and
    those digits (TikTok's and Google's). :class:`ValueError` when it does not normalise."""
    digits = normalize_phone(text)
    return sha256_hex(digits), sha256_hex("+" + digits)


def given_sha256(text: str) -> str:
    """A hash a sender computed itself, in lower case; :class:`ValueError` when it is not
    SHA-256 in hex."""
    digest = text.strip().lower()
    if not _SHA256_HEX.fullmatch(digest):
        raise ValueError("must be a SHA-256 in hex (64 characters)")
    return digest


def fbc_from_click(fbclid: str, created_ms: int) -> str | None:
    """Meta's ``fbc`` for a click id, as its pixel would have stored it: ``fb.1.<ms>.<fbclid>``.

    ``created_ms`` is when the click id was first seen (Meta asks for the cookie's
    creation time, or else that). The fbclid is kept byte for byte (Meta: case
    matters); None when it is not one.
    """
    if not _FBCLID.fullmatch(fbclid):
        return None
    return f"fb.1.{created_ms}.{fbclid}"


def is_fbc(text: str) -> bool:
    """Whether ``text`` has the form of Meta's ``_fbc`` cookie."""
    return _FBC.fullmatch(text) is not None


def is_fbp(text: str) -> bool:
    """Whether ``text`` has the form of Meta's ``_fbp`` cookie."""
    return _FBP.fullmatch(text) is not None


__all__ = [
    "MAX_EMAIL",
    "MAX_PHONE",
    "email_sha256",
    "fbc_from_click",
    "given_sha256",
    "is_fbc",
    "is_fbp",
    "normalize_email",
    "normalize_phone",
    "phone_sha256s",
    "sha256_hex",
]
