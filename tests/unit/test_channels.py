from __future__ import annotations

import pytest

from tracker.channels import CHANNELS, CLICK_ID_CHANNELS, derive_channel


@pytest.mark.parametrize(
    ("source", "medium", "expected"),
    [
        (None, None, "direct"),  # nothing said: typed in or bookmarked
        ("", "", "direct"),
        ("google", "cpc", "search"),
        (None, " CPC ", "search"),  # stripped and lower-cased before lookup
        ("bing", "Paid Search", "search"),
        ("facebook", "paid_social", "social"),
        ("linkedin", "social-paid", "social"),
        (None, "newsletter", "email"),
        (None, "E-Mail", "email"),
        (None, "partner", "affiliate"),
        (None, "banner", "display"),
        ("dv360", "programmatic", "display"),
        ("partner", None, "affiliate"),  # the source is read when there is no medium
        ("email", "organic", "email"),  # ... and when the medium matches no rule
        ("newsletter", "cpc", "search"),  # the medium is read first
        ("google", None, "other"),  # something was said, but nothing we know
        ("x", "y", "other"),
        (None, "referral", "other"),
    ],
)
def test_derive_channel(source: str | None, medium: str | None, expected: str) -> None:
    assert derive_channel(source, medium) == expected


def test_click_id_channels_are_channels() -> None:
    assert set(CLICK_ID_CHANNELS.values()) <= set(CHANNELS)
    assert CLICK_ID_CHANNELS["gclid"] == "search"
    assert CLICK_ID_CHANNELS["fbclid"] == "social"


def test_derived_channels_are_channels() -> None:
    for medium in ("cpc", "social", "email", "affiliate", "display", "whatever"):
        assert derive_channel(None, medium) in CHANNELS
    assert derive_channel(None, None) in CHANNELS
