"""Properties of the parsers that meet untrusted input, checked on generated input.

Each parser may refuse input only with its own exception (which the HTTP edge turns
into a 4xx with a reason); anything else would be a 500. What it accepts keeps the
invariants the rest of the pipeline relies on.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from collector import validation
from collector.postback import Unauthorized, canonical, sign, verify
from collector.redirect import AllowList, BadDestination, check_destination
from tracker.channels import CHANNELS
from tracker.events import (
    ALIASES,
    EVENT_TYPES,
    STATUSES,
    Context,
    Event,
    InvalidEvent,
    Rules,
    parse_event,
    parse_ts,
)
from tracker.money import MAX_MICROS, MICROS_PER_UNIT, MoneyError, parse_micros
from tracker.records import decode_events, encode_events

PROPERTY = settings(
    max_examples=200,
    deadline=timedelta(seconds=1),  # each call takes microseconds; a second means a blow-up
    derandomize=True,  # the same examples on every run and machine
    database=None,
)

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RULES = Rules(currencies=frozenset({"USD", "EUR"}), default_currency="USD")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(),
    st.text(),
    st.decimals(),
    st.binary(),
)
json_values = st.recursive(
    # What a JSON parser can hand us: orjson refuses NaN and infinities.
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
unicode_text = st.text(st.characters(exclude_categories=["Cs"]))
"""Text that UTF-8 can encode (no lone surrogates)."""

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def outcome(call: Callable[[], T], refusal: type[E]) -> T | E:
    """What ``call`` answers, or the ``refusal`` it raises; any other exception fails the test."""
    try:
        return call()
    except refusal as exc:
        return exc


# Money


@PROPERTY
@given(st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False))
def test_decimal_strings_with_six_decimals_parse_exactly(amount: Decimal) -> None:
    expected = int(amount * MICROS_PER_UNIT)
    assert parse_micros(str(amount)) == expected
    assert parse_micros(f"{amount:f}") == expected


@PROPERTY
@given(st.integers(min_value=0, max_value=MAX_MICROS))
def test_micros_written_as_decimals_round_trip(micros: int) -> None:
    units, rest = divmod(micros, MICROS_PER_UNIT)
    assert parse_micros(f"{units}.{rest:06d}") == micros
    assert parse_micros(f"{units}.{rest:06d}".rstrip("0").rstrip(".")) == micros


@PROPERTY
@given(st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False, allow_infinity=False))
def test_more_than_six_decimals_are_refused_unless_they_are_zeros(amount: Decimal) -> None:
    if amount == amount.quantize(Decimal("0.000001")):
        assert parse_micros(f"{amount:f}") == int(amount * MICROS_PER_UNIT)
    else:
        with pytest.raises(MoneyError, match=r"^has more than 6 decimals$"):
            parse_micros(f"{amount:f}")


@PROPERTY
@given(st.decimals(max_value=Decimal("-0.000001"), allow_nan=False, allow_infinity=False))
def test_negative_amounts_are_refused(amount: Decimal) -> None:
    with pytest.raises(MoneyError):
        parse_micros(str(amount))


@PROPERTY
@given(scalars)
@example(10**5000)  # str() of it raises ValueError
@example(float("inf"))
@example("NaN")
@example("1_000")
def test_parse_micros_answers_micros_or_money_error(raw: object) -> None:
    micros = outcome(lambda: parse_micros(raw), MoneyError)
    if not isinstance(micros, MoneyError):
        assert isinstance(micros, int)
        assert 0 <= micros <= MAX_MICROS


# Timestamps

offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ).map(lambda delta: timedelta(minutes=delta // timedelta(minutes=1))),
)


@PROPERTY
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)
)
def test_rfc3339_with_an_offset_is_the_instant_it_names(moment: datetime) -> None:
    expected = (moment - EPOCH) // timedelta(milliseconds=1)
    assert parse_ts(moment.isoformat()) == expected
    assert parse_ts(moment.isoformat(timespec="seconds")) == (
        (moment.replace(microsecond=0) - EPOCH) // timedelta(milliseconds=1)
    )
    if moment.utcoffset() == timedelta(0):
        assert parse_ts(moment.isoformat().replace("+00:00", "Z")) == expected


@PROPERTY
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_times_without_an_offset_are_refused(moment: datetime) -> None:
    with pytest.raises(ValueError, match="needs an offset"):
        parse_ts(moment.isoformat())


@PROPERTY
@given(st.integers(min_value=0, max_value=10**18 - 1))
def test_epoch_milliseconds_as_digits_or_numbers(ms: int) -> None:
    assert parse_ts(str(ms)) == ms
    assert parse_ts(ms) == ms
    assert parse_ts(f" {ms} ") == ms


@PROPERTY
@given(st.one_of(scalars, st.text(string.digits + "-+:.TZtz "), st.text(min_size=1)))
@example(float("inf"))
@example("٣")  # an Arabic-Indic digit: str.isdigit() takes it, int() too
@example("9" * 5000)
@example("0001-01-01T00:00:00+23:59")
def test_parse_ts_answers_an_integer_or_value_error(raw: object) -> None:
    ms = outcome(lambda: parse_ts(raw), ValueError)
    if not isinstance(ms, ValueError):
        assert isinstance(ms, int)
        if isinstance(raw, str) and raw.strip().isdigit():
            assert raw.strip().isascii()


# Events

FIELD_NAMES = sorted(set(Event.__struct_fields__) - {"received_at", "device_ts", "bot"})
names = st.sampled_from([*FIELD_NAMES, *ALIASES]) | st.text(max_size=12)
valid_values: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(sorted(EVENT_TYPES)),
    "channel": st.sampled_from(CHANNELS),
    "status": st.sampled_from(sorted(STATUSES)),
    "currency": st.sampled_from(["USD", "eur", "JPY"]),
    "cost": st.decimals(min_value=0, max_value=1000, places=2).map(str) | st.integers(0, 10**6),
    "value": st.decimals(min_value=0, max_value=1000, places=6).map(str) | st.floats(0, 1e6),
    "ts": st.integers(NOW - 86_400_000, NOW + 60_000) | st.just("2024-05-01T09:00:00+02:00"),
    "period": st.sampled_from(["2024-05-01", "2024-05-01T09", "2024-13-01", "2024-5-1"]),
    "ip": st.sampled_from(["203.0.113.7", "2001:db8::1", "not an ip", "999.1.1.1"]),
}
field_values = st.one_of(json_values, st.text(max_size=300))


@st.composite
def raw_events(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly plausible events with some fields wrong, and now and then pure noise."""
    event: dict[str, Any] = {"type": draw(valid_values["type"] | json_values)}
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=8, unique=True)):
        plausible = valid_values.get(name, st.text(max_size=70))
        event[name] = draw(plausible | field_values)
    event.update(draw(st.dictionaries(names, json_values, max_size=3)))
    return event


def check_invariants(raw: dict[str, Any], visitor: str | None = None) -> None:
    context = Context(received_at=NOW, ip="198.51.100.23", anonymous_id=visitor)
    event = outcome(lambda: parse_event(raw, context, RULES), InvalidEvent)
    if isinstance(event, InvalidEvent):
        assert event.reasons
        assert all(isinstance(reason, str) for reason in event.reasons.values())
        return
    assert event.type in EVENT_TYPES
    assert event.channel in CHANNELS
    assert 0 < len(event.event_id) <= 64
    for amount in (event.cost, event.value):
        assert amount is None or 0 <= amount <= MAX_MICROS
    assert event.currency in RULES.currencies
    assert NOW - RULES.max_age_ms <= event.ts <= NOW + RULES.max_future_ms
    assert event.status in STATUSES if event.type == "conversion" else True
    for text in (event.campaign, event.source, event.medium, event.ad_group, event.creative):
        assert text is None or (text.isprintable() and len(text) <= 256)
    if event.type == "spend":
        assert event.campaign is not None
        assert event.cost is not None
    if event.type in ("identify", "reset"):
        assert event.anonymous_id  # the event's own, else the request's visitor cookie
        assert event.anonymous_id.strip()
    if event.type == "identify":
        assert event.user_id
        assert event.user_id.strip()
        assert event.user_id != event.anonymous_id
        assert event.user_id in (raw.get("user_id"), str(raw.get("user_id")))  # never a header
    assert decode_events(encode_events([event])) == [event]  # the wire form round-trips


@PROPERTY
@given(raw_events())
def test_parse_event_accepts_only_sound_events(raw: dict[str, Any]) -> None:
    check_invariants(raw)


@PROPERTY
@given(st.dictionaries(names, json_values, max_size=10))
def test_parse_event_refuses_anything_else_with_reasons(raw: dict[str, Any]) -> None:
    check_invariants(raw)


@PROPERTY
@given(st.dictionaries(names, st.text(max_size=40), max_size=10))
def test_parse_event_of_pixel_queries(raw: dict[str, str]) -> None:
    check_invariants(raw)


ids = st.sampled_from(["a-1", "u-1", "", " ", "42"]) | st.integers(0, 50) | json_values


@PROPERTY
@given(
    st.sampled_from(["identify", "reset"]),
    st.dictionaries(st.sampled_from(["anonymous_id", "user_id"]), ids),
    st.none() | st.sampled_from(["a-1", "u-1", "42"]),
)
def test_identify_and_reset_name_their_ids_or_are_refused(
    kind: str, given_ids: dict[str, Any], visitor: str | None
) -> None:
    """A pixel's visitor cookie may be the device, never the user."""
    check_invariants({"type": kind, **given_ids}, visitor)


# Query strings and batch items

pairs = st.lists(st.tuples(unicode_text, unicode_text), max_size=8)


@PROPERTY
@given(pairs)
def test_queries_round_trip_with_the_first_of_repeated_names_winning(
    items: list[tuple[str, str]],
) -> None:
    expected: dict[str, str] = {}
    for name, value in items:
        expected.setdefault(name, value)
    encoded = urlencode(items)
    assert validation.parse_query(encoded.encode()) == expected
    assert validation.parse_query(encoded) == expected


@PROPERTY
@given(st.text(alphabet="ab=&;% +\x00é", max_size=30))
def test_queries_read_as_parse_qsl_reads_them(query: str) -> None:
    """The split taken when nothing needs unescaping reads what parse_qsl reads."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return  # "%" escapes of bad UTF-8: rejected, covered below
    expected: dict[str, str] = {}
    for name, value in pairs:
        expected.setdefault(name, value)
    assert validation.parse_query(query) == expected


@PROPERTY
@given(
    st.binary(max_size=200)
    | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
@example(b"campaign=%FF")
@example(b"c=%ED%A0%80")  # an encoded surrogate: not UTF-8
def test_query_parsing_answers_text_or_a_reason(raw: bytes) -> None:
    params = outcome(lambda: validation.parse_query(raw), InvalidEvent)
    if isinstance(params, InvalidEvent):
        assert params.reasons == {"query": "is not valid UTF-8"}
        return
    for name, value in params.items():
        name.encode(), value.encode()  # proper text: no lone surrogates


@PROPERTY
@given(json_values)
def test_batch_items_are_sized_or_refused_never_crash(item: Any) -> None:
    outcome(lambda: validation.check_size(item), InvalidEvent)
    assert orjson.loads(validation.raw_item(item)) is not None or item is None


# The redirect allow-list

labels = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6)
hosts = st.lists(labels, min_size=1, max_size=3).map(".".join)
entries = st.tuples(st.booleans(), hosts, st.none() | st.sampled_from([80, 443, 8443])).map(
    lambda e: (("*." if e[0] else "") + e[1], e[2])
)
tricks = st.sampled_from(
    [
        "",
        "@",
        "//",
        "\\",
        ":",
        ".",
        "..",
        "%2e",
        "%40",
        "#",
        "?",
        " ",
        "\t",
        "\n",
        "\x00",
        "user@",
        "user:pw@",
        "[::1]",
        ":80",
        ":443",
        ":8443",
        ":99999",
        "\u3002",
        "\uff0e",
        "é",
        "evil.example",
        "http:",
        "https:",
        "///",
        "/\\",
        "%00",
        "\u2028",
    ]
)


@st.composite
def destinations(draw: st.DrawFn, allowed: AllowList) -> str:
    """URLs near the allowed ones: their hosts with tricks spliced in, or other hosts."""
    known = [pattern.removeprefix("*.") for pattern, _ in allowed.hosts]
    host = draw(st.sampled_from(known) | hosts)
    if draw(st.booleans()):
        host = draw(labels) + "." + host
    parts = [
        draw(st.sampled_from(["http://", "https://", "HTTPS://", "http:/", "//", "https:", ""])),
        draw(tricks),
        host,
        draw(tricks),
        draw(st.sampled_from(["", ":80", ":443", ":8443", ":0", ":65536"])),
        draw(st.sampled_from(["", "/", "/path?q=1", "#frag"])),
        draw(tricks),
    ]
    return "".join(parts)


def allowed_by(allowed: AllowList, scheme: str, host: str, port: int | None) -> bool:
    """An independent statement of the rule: exact host, or a subdomain of a ``*.`` entry."""
    default = {"http": 80, "https": 443}[scheme]
    for pattern, allowed_port in allowed.hosts:
        if (port or default) != (allowed_port or default):
            continue
        if pattern.startswith("*."):
            parent = pattern[2:]
            if host.endswith("." + parent) and host != parent:
                return True
        elif host == pattern:
            return True
    return False


@PROPERTY
@given(st.lists(entries, min_size=1, max_size=4).map(lambda e: AllowList(tuple(e))), st.data())
def test_the_redirect_never_sends_anyone_to_a_host_not_on_the_list(
    allowed: AllowList, data: st.DataObject
) -> None:
    to = data.draw(destinations(allowed))
    url = outcome(lambda: check_destination(to, allowed), BadDestination)
    if isinstance(url, BadDestination):
        return
    # What a browser would see: the URL as given, parsed afresh.
    seen = urlsplit(to)
    assert seen.scheme in ("http", "https")
    assert seen.username is None
    assert seen.password is None
    assert seen.hostname is not None
    assert allowed_by(allowed, seen.scheme, seen.hostname, seen.port)
    assert url.netloc == seen.netloc.lower()
    assert to.isascii()
    assert not any(c.isspace() or c == "\\" for c in to)


@PROPERTY
@given(
    st.lists(entries, min_size=1, max_size=4).map(lambda e: AllowList(tuple(e))),
    hosts,
    st.sampled_from(["http", "https"]),
    st.none() | st.integers(1, 65535),
)
def test_permits_agrees_with_the_rule(
    allowed: AllowList, host: str, scheme: str, port: int | None
) -> None:
    assert allowed.permits(scheme, host, port) == allowed_by(allowed, scheme, host, port)


# Postback signatures

SECRET = "correct-horse-battery-staple"  # noqa: S105  # the docstring example, not a real one
NOW_S = NOW // 1000
params = st.dictionaries(unicode_text.filter(lambda n: n != "sig"), unicode_text, max_size=6).map(
    lambda p: p | {"partner": "net1", "ts": str(NOW_S)}
)


@PROPERTY
@given(params)
def test_what_sign_produces_verifies(signed: dict[str, str]) -> None:
    sig = sign(signed, SECRET)
    assert verify(signed | {"sig": sig}, {"net1": SECRET}, NOW_S, 300) == "net1"
    assert verify(signed | {"sig": f" {sig.upper()} "}, {"net1": SECRET}, NOW_S, 300) == "net1"


@PROPERTY
@given(params, st.data())
def test_any_change_to_signed_parameters_is_refused(
    signed: dict[str, str], data: st.DataObject
) -> None:
    sig = sign(signed, SECRET)
    name = data.draw(st.sampled_from(sorted(signed)) | unicode_text.filter(lambda n: n != "sig"))
    changed = dict(signed)
    if data.draw(st.booleans()) and name in changed and name not in ("partner", "ts"):
        del changed[name]
    else:
        changed[name] = data.draw(unicode_text)
    assume(changed != signed)
    with pytest.raises(Unauthorized):
        verify(changed | {"sig": sig}, {"net1": SECRET, "net2": SECRET + "2"}, NOW_S, 300)


@PROPERTY
@given(params)
def test_the_signed_string_names_every_parameter_but_sig_once(signed: dict[str, str]) -> None:
    assert parse_qsl(canonical(signed | {"sig": "x"}), keep_blank_values=True) == sorted(
        signed.items()
    )


@PROPERTY
@given(st.dictionaries(unicode_text, unicode_text, max_size=6), st.data())
def test_verify_answers_a_partner_or_unauthorized(raw: dict[str, str], data: st.DataObject) -> None:
    if data.draw(st.booleans()):  # signed, with whatever ts and partner it holds
        raw = raw | {"partner": "net1"}
        raw["ts"] = data.draw(st.sampled_from([str(NOW_S), "9" * 5000, "", "-1", "١٢"]))
        raw["sig"] = sign(raw, SECRET)
    partner = outcome(lambda: verify(raw, {"net1": SECRET}, NOW_S, 300), Unauthorized)
    assert partner == "net1" or isinstance(partner, Unauthorized)
