from __future__ import annotations

import pytest

from collector.postback import (
    Unauthorized,
    canonical,
    conversion,
    event_fields,
    sign,
    status_of,
    verify,
)
from tracker.events import InvalidEvent, Rules
from tracker.settings import Settings, SettingsError, load

SECRET = "correct-horse-battery-staple"  # noqa: S105  # the docstring example, not a real one
KEYS = {"net1": SECRET}
NOW_S = 1_714_557_600
NOW_MS = NOW_S * 1000
RULES = Rules(currencies=frozenset({"USD", "EUR"}), default_currency="USD")
EXAMPLE = {"partner": "net1", "ts": str(NOW_S), "subid": "abc", "payout": "12.50", "txid": "T-1"}


def signed(**params: str) -> dict[str, str]:
    return params | {"sig": sign(params, SECRET)}


# The signed string and the signature


def test_canonical_string_is_sorted_form_encoding_without_sig() -> None:
    assert canonical(EXAMPLE | {"sig": "ignored"}) == (
        "partner=net1&payout=12.50&subid=abc&ts=1714557600&txid=T-1"
    )


def test_canonical_string_percent_encodes_values_and_names() -> None:
    params = {"b": "x y&z=1", "a": "é/~", "c d": ""}
    assert canonical(params) == "a=%C3%A9%2F~&b=x+y%26z%3D1&c+d="


def test_signature_matches_an_independent_implementation() -> None:
    # printf '%s' 'partner=net1&payout=12.50&subid=abc&ts=1714557600&txid=T-1' \
    #   | openssl dgst -sha256 -hmac correct-horse-battery-staple
    expected = "04b2878e5c699771ba17d8979d5459a029c35f4a010194afeec3912931c7e464"
    assert sign(EXAMPLE, SECRET) == expected
    assert sign(EXAMPLE | {"sig": "whatever"}, SECRET) == expected  # sig is not signed


def test_signature_depends_on_every_parameter_and_the_secret() -> None:
    base = sign(EXAMPLE, SECRET)
    assert sign(EXAMPLE | {"payout": "12.51"}, SECRET) != base
    assert sign(EXAMPLE | {"extra": ""}, SECRET) != base
    assert sign(EXAMPLE, SECRET + "x") != base


# Verification


def test_verify_accepts_a_fresh_correct_signature() -> None:
    assert verify(signed(**EXAMPLE), KEYS, NOW_S, 300) == "net1"
    assert verify(signed(**EXAMPLE), KEYS, NOW_S + 300, 300) == "net1"  # at the edge
    assert verify(signed(**EXAMPLE), KEYS, NOW_S - 300, 300) == "net1"  # sender ahead


def test_verify_accepts_an_upper_case_signature() -> None:
    params = signed(**EXAMPLE)
    assert verify(params | {"sig": params["sig"].upper()}, KEYS, NOW_S, 300) == "net1"


@pytest.mark.parametrize(
    ("params", "keys", "reason"),
    [
        (signed(**EXAMPLE), {}, "postbacks are not configured: set TRACKER_POSTBACK_SECRETS"),
        ({k: v for k, v in signed(**EXAMPLE).items() if k != "partner"}, KEYS, "missing partner"),
        (signed(**EXAMPLE | {"partner": "net2"}), KEYS, "unknown partner 'net2'"),
        (EXAMPLE, KEYS, "missing sig"),
        (signed(**EXAMPLE) | {"payout": "999"}, KEYS, r"^signature mismatch$"),
        (signed(**EXAMPLE) | {"extra": "1"}, KEYS, r"^signature mismatch$"),
        (signed(**EXAMPLE) | {"sig": "00" * 32}, KEYS, r"^signature mismatch$"),
        (signed(**EXAMPLE) | {"sig": "ünïcode"}, KEYS, r"^signature mismatch$"),
        (signed(**EXAMPLE | {"partner": "net1"}) | {"partner": "net1 "}, KEYS, "unknown"),
        (signed(**EXAMPLE | {"ts": str(NOW_S - 301)}), KEYS, "more than 300 s away"),
        (signed(**EXAMPLE | {"ts": str(NOW_S + 301)}), KEYS, "more than 300 s away"),
        (signed(**EXAMPLE | {"ts": str(NOW_MS)}), KEYS, "not milliseconds"),
        (signed(**{k: v for k, v in EXAMPLE.items() if k != "ts"}), KEYS, "missing or malformed"),
        (signed(**EXAMPLE | {"ts": "1714557600.5"}), KEYS, "missing or malformed ts"),
        (signed(**EXAMPLE | {"ts": "١٧١٤٥٥٧٦٠٠"}), KEYS, "missing or malformed ts"),
    ],
)
def test_verify_refuses(params: dict[str, str], keys: dict[str, str], reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        verify(params, keys, NOW_S, 300)


def test_a_signature_for_one_partner_does_not_pass_for_another() -> None:
    keys = KEYS | {"net2": "another-long-secret-value"}
    params = signed(**EXAMPLE)
    with pytest.raises(Unauthorized, match=r"^signature mismatch$"):
        verify(params | {"partner": "net2"}, keys, NOW_S, 300)


# Network words


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("approved", "approved"),
        ("APPROVE", "approved"),
        ("1", "approved"),
        (" pending ", "pending"),
        ("0", "pending"),
        ("rejected", "rejected"),
        ("declined", "rejected"),
        ("Reversed", "rejected"),
        ("refund", "refund"),
        ("refunded", "refund"),
        ("chargeback", "refund"),
    ],
)
def test_status_words(word: str, status: str) -> None:
    assert status_of(word) == status


@pytest.mark.parametrize("word", ["", "2", "ok", "cancelled", "approved!"])
def test_unknown_status_words(word: str) -> None:
    with pytest.raises(ValueError, match="unknown status"):
        status_of(word)


def test_network_names_become_event_fields() -> None:
    params = signed(**EXAMPLE, status="chargeback", currency="EUR", goal="lead", campaign="c1")
    assert event_fields(params, "E") == {
        "type": "conversion",
        "medium": "affiliate",
        "source": "net1",
        "event_id": "E",
        "click_id": "abc",
        "value": "12.50",
        "order_id": "T-1",
        "status": "refund",
        "currency": "EUR",
        "goal": "lead",
        "campaign": "c1",
    }


def test_cid_is_a_click_id_too_and_own_names_win_over_defaults() -> None:
    fields = event_fields({"partner": "net1", "cid": "k", "source": "mine", "medium": "cpa"}, None)
    assert (fields["click_id"], fields["source"], fields["medium"]) == ("k", "mine", "cpa")


def test_disagreeing_names_and_bad_words_are_reasons() -> None:
    with pytest.raises(InvalidEvent) as caught:
        event_fields({"subid": "a", "cid": "b", "status": "maybe", "type": "click"}, None)
    assert caught.value.reasons == {
        "cid": "disagrees with click_id",
        "type": "a postback is a conversion",
        "status": "unknown status 'maybe'; use approved, pending, rejected or refund",
    }


def test_conversion_of_a_postback() -> None:
    params = signed(**EXAMPLE, currency="EUR")
    event = conversion(params, NOW_MS, RULES)
    assert event.event_id == "pb-" + params["sig"][:32]  # the same postback twice: one event
    assert (event.type, event.status, event.goal, event.channel) == (
        "conversion",
        "approved",
        "purchase",
        "affiliate",
    )
    assert (event.click_id, event.order_id, event.value, event.currency) == (
        "abc",
        "T-1",
        12_500_000,
        "EUR",
    )
    assert (event.ts, event.received_at) == (NOW_MS, NOW_MS)
    # The partner's server, not the customer: no agent, IP or visitor from the request.
    assert (event.user_agent, event.ip, event.anonymous_id, event.bot) == (None, None, None, False)


def test_conversion_rejects_bad_money_and_unknown_fields() -> None:
    with pytest.raises(InvalidEvent) as caught:
        conversion(signed(**EXAMPLE | {"payout": "-5"}, currency="JPY", sub9="x"), NOW_MS, RULES)
    assert caught.value.reasons == {
        "sub9": "unknown field",
        "currency": "no rate configured for 'JPY'",
        "value": "must not be negative",
    }


# The secrets setting


def test_secrets_setting() -> None:
    settings = Settings(postback_secrets=" net1 = abcdefghijklmnop== , net2=0123456789abcdefXYZ,")
    assert settings.postback_keys() == {"net1": "abcdefghijklmnop==", "net2": "0123456789abcdefXYZ"}
    assert "abcdefghijklmnop" not in repr(settings)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("net1", "item 1 is not partner=secret"),
        ("net1=0123456789abcdef,=0123456789abcdef", "item 2 is not partner=secret"),
        ("net1=", "item 1 is not partner=secret"),
        ("net1=0123456789abcdef,net1=0123456789abcdeX", "partner 'net1' is given twice"),
        ("net1=short-secret", "the secret of 'net1' is shorter than 16 characters"),
    ],
)
def test_bad_secrets_setting_never_quotes_a_secret(value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(None, {"TRACKER_POSTBACK_SECRETS": value})
    assert str(caught.value) == f"TRACKER_POSTBACK_SECRETS: {reason}"
    assert "0123456789abcde" not in str(caught.value)
    assert "short-secret" not in str(caught.value)
