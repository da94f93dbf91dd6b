"""What a visitor agreed to, carried on every event so every consumer can honour it.

Three sources, in the forms sites already produce them:

- Google Consent Mode v2's four signals, ``analytics_storage``, ``ad_storage``,
  ``ad_user_data`` and ``ad_personalization``, each ``granted`` or ``denied``, as
  event fields or pixel parameters;
- an IAB TCF v2 consent string, as ad tech passes it in URLs: ``gdpr=1`` and
  ``gdpr_consent=<TC string>`` (``gdpr=0`` says GDPR does not apply, and the string
  is then not read);
- Global Privacy Control, the browser's ``Sec-GPC: 1`` header: a request not to sell
  or share, so the three advertising signals are denied, and no cookie is set or read.

A signal stated as a Consent Mode value wins over what the TC string implies for it;
a signal stated nowhere is granted, unless the collector requires consent
(``TRACKER_CONSENT_REQUIRED``), where it is denied. An event that states nothing,
without GPC and without required consent, carries no consent at all (``None``):
everything granted, as before consent existed, and not a byte more on the wire.

Google defines no mapping from TCF purposes to its signals; ours is the narrowest
reading of the purposes' texts (TCF v2.2 policy, Appendix A): storage on the device
needs Purpose 1, measuring needs the measurement purpose of its kind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from iab_tcf import ConsentV2

SIGNALS: Final = ("analytics_storage", "ad_storage", "ad_user_data", "ad_personalization")
"""Google Consent Mode v2's signals, in its names."""
TCF_FIELDS: Final = ("gdpr", "gdpr_consent")
FIELDS: Final = frozenset(SIGNALS + TCF_FIELDS)
"""The input names that state consent: event fields and pixel parameters."""

TCF_PURPOSES: Final = {
    "analytics_storage": (1, 8),  # store on a device; measure content performance
    "ad_storage": (1,),  # store and/or access information on a device
    "ad_user_data": (1, 7),  # and measure advertising performance
    "ad_personalization": (3, 4),  # create a personalised ads profile; use it
}
"""The TCF v2 purposes each signal needs, all of them consented."""
ADS: Final = ("ad_storage", "ad_user_data", "ad_personalization")
"""What Global Privacy Control denies: every signal but analytics."""

_VALUES: Final = {"granted": True, "denied": False}
_MAX_TCF: Final = 4096
"""Characters of a TC string at most: real ones are a few hundred."""
_BASE64URL_SEGMENTS: Final = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
"""A TC string: base64url segments without padding, joined by dots."""
_TCF_CORE_BITS: Final = 213
"""Bits of a TCF v2 core segment before its vendor sections (version to publisherCC)."""


class Consent(msgspec.Struct, frozen=True, kw_only=True):
    """The resolved consent of one event: each signal granted (True) or not."""

    analytics_storage: bool
    ad_storage: bool
    ad_user_data: bool
    ad_personalization: bool
    gpc: bool = False
    """The browser sent ``Sec-GPC: 1``."""
    tcf: str | None = None
    """The TC string as given, so a consumer can check its own vendor's consent."""

    @property
    def cookies(self) -> bool:
        """Whether a visitor cookie may be set and read: analytics granted, no GPC."""
        return self.analytics_storage and not self.gpc


def resolve(
    stated: Mapping[str, Any], *, gpc: bool, required: bool, reasons: dict[str, str]
) -> Consent | None:
    """The consent of an event from its consent fields (``stated``, a subset of :data:`FIELDS`).

    Malformed values are added to ``reasons`` by name and never guessed: the event is
    then rejected (dead-lettered), not counted under a consent it did not give.
    """
    if not stated and not gpc and not required:
        return None
    signals: dict[str, bool] = {}
    tcf = stated.get("gdpr_consent")
    applies = _gdpr_applies(stated.get("gdpr"), reasons)  # judged even without a string
    if tcf is not None and applies:
        try:
            signals.update(tcf_signals(tcf))
        except ValueError as exc:
            reasons["gdpr_consent"] = str(exc)
    for name in SIGNALS:
        if name not in stated:
            continue
        value = stated[name]
        granted = _VALUES.get(value.lower()) if isinstance(value, str) else None
        if isinstance(value, bool):  # JSON true and false, as some consent tools send
            granted = value
        if granted is None:
            reasons[name] = "must be granted or denied"
        else:
            signals[name] = granted
    default = not required
    resolved = {name: signals.get(name, default) for name in SIGNALS}
    if gpc:
        resolved.update(dict.fromkeys(ADS, False))
    return Consent(**resolved, gpc=gpc, tcf=tcf if isinstance(tcf, str) else None)


def cookieless_id(salt: bytes, ip: str | None, user_agent: str | None, site: str) -> str:
    """A visitor's id for one day, without a cookie: a keyed hash of IP, agent and site.

    The day's salt is the key (BLAKE2b's keyed mode, a MAC): without the salt, which
    lives one day and is never stored past it, nobody can recompute an id from an IP,
    nor link one day's id to the next. 128 bits: no two visitors share an id.
    """
    text = f"{ip or ''}\x1f{user_agent or ''}\x1f{site}".encode()
    return "cl-" + hashlib.blake2b(text, key=salt, digest_size=16).hexdigest()


def _gdpr_applies(raw: object, reasons: dict[str, str]) -> bool:
    """``gdpr``: 1 applies, 0 does not; absent, a TC string given is read."""
    if raw is None:
        return True
    if str(raw) in ("0", "1"):
        return str(raw) == "1"
    reasons["gdpr"] = "must be 0 or 1"
    return False


def tcf_signals(text: object) -> dict[str, bool]:
    """The Consent Mode signals an IAB TCF v2 consent string grants.

    Wraps ``iab-tcf`` (pinned), which decodes but does not check: a string cut short
    decodes with every missing bit read as consent, so the length is checked here
    against what the string's own header says it holds. Only the core segment is
    decoded: the signals are all in it, and the library's decoding of the other
    segments takes time quadratic in their range entries (seconds for a crafted 4 KB
    string, on the collector's event loop). Raises :class:`ValueError` with the reason.
    """
    consent = _decode(text)
    purposes = consent.purposes_consent
    return {
        signal: all(purposes.get(p, False) for p in needed)
        for signal, needed in TCF_PURPOSES.items()
    }


def _decode(text: object) -> ConsentV2:
    if not isinstance(text, str) or not text:
        raise ValueError("must be a TCF v2 consent string")
    if len(text) > _MAX_TCF:
        raise ValueError(f"longer than {_MAX_TCF} characters")
    if not _BASE64URL_SEGMENTS.fullmatch(text):
        raise ValueError("is not base64url")
    core = text.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(core + "=" * (-len(core) % 4))
    except binascii.Error:  # a length no base64 has (one character past a group)
        raise ValueError("is not base64url") from None
    if not raw or raw[0] >> 2 != 2:
        version = raw[0] >> 2 if raw else 0
        raise ValueError(f"is a TCF v{version} string; only TCF v2 strings are read")
    try:
        consent = ConsentV2(raw)
    except (ValueError, IndexError, binascii.Error) as exc:
        raise ValueError(f"is not a TCF v2 consent string ({exc})") from None
    # The decoder's reader walks past the end silently; where it stopped tells.
    reader = consent._reader  # iab-tcf 0.2.2 keeps it on the consent
    if reader._pointer > len(reader._consent) or len(raw) * 8 < _TCF_CORE_BITS:
        raise ValueError("is cut short: the TC string ends before its fields do")
    return consent


__all__ = [
    "ADS",
    "FIELDS",
    "SIGNALS",
    "TCF_PURPOSES",
    "Consent",
    "cookieless_id",
    "resolve",
    "tcf_signals",
]
