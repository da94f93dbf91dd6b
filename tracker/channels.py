"""Marketing channels and how one is derived when an event does not name it."""

from __future__ import annotations

CHANNELS = ("search", "social", "email", "affiliate", "display", "direct", "other")

# Rules read top to bottom; the first whose medium (or source) matches wins.
# Values are lower-cased before lookup.
_MEDIUM_RULES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"cpc", "ppc", "paid search", "paidsearch", "sem", "paid_search"}), "search"),
    (frozenset({"paid social", "paidsocial", "social", "paid_social", "social-paid"}), "social"),
    (frozenset({"email", "e-mail", "newsletter"}), "email"),
    (frozenset({"affiliate", "affiliates", "partner"}), "affiliate"),
    (frozenset({"display", "banner", "cpm", "programmatic"}), "display"),
)
# Click ids betray the platform the click came from.
CLICK_ID_CHANNELS = {
    "gclid": "search",
    "msclkid": "search",
    "fbclid": "social",
    "ttclid": "social",  # TikTok's
    "tclid": "social",
}


def derive_channel(source: str | None, medium: str | None) -> str:
    """The channel of an event from its source and medium; ``direct`` when neither."""
    for value in (medium, source):
        if not value:
            continue
        key = value.strip().lower()
        for names, channel in _MEDIUM_RULES:
            if key in names:
                return channel
    return "other" if (source or medium) else "direct"
