from __future__ import annotations

import pytest

from tracker.money import MAX_MICROS, MoneyError, convert, parse_micros, to_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("19.99", 19_990_000),  # 19.99 * 1_000_000
        (19.99, 19_990_000),  # a float goes through its repr "19.99": no binary drift
        (0.1, 100_000),
        (12, 12_000_000),
        ("12.5", 12_500_000),
        ("0", 0),
        ("-0", 0),  # negative zero is zero, not a negative amount
        ("0.000001", 1),  # one micro, the smallest amount
        ("  2.5 ", 2_500_000),  # surrounding whitespace is stripped
        ("1e3", 1_000_000_000),  # scientific notation: 1000 units
        ("1000000000", MAX_MICROS),  # 1e9 units = 1e15 micros, exactly the limit
    ],
)
def test_parse_micros_accepts(raw: object, expected: int) -> None:
    assert parse_micros(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1.0000001", "more than 6 decimals"),  # 7 decimals
        (1e-7, "more than 6 decimals"),
        ("-1", "negative"),
        (-0.01, "negative"),
        (True, "must be a number"),  # bool is an int, but never an amount
        (False, "must be a number"),
        (None, "must be a number"),
        ([1], "must be a number"),
        ("abc", "is not a number"),
        ("", "is not a number"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        ("1000000000.000001", "too large"),  # MAX_MICROS + 1
        (10**10, "too large"),  # 1e16 micros
        (1e20, "too large"),
    ],
)
def test_parse_micros_rejects(raw: object, message: str) -> None:
    with pytest.raises(MoneyError, match=message):
        parse_micros(raw)


def test_money_error_is_a_value_error() -> None:
    assert issubclass(MoneyError, ValueError)


def test_parse_micros_rejects_huge_exponent_as_money_error() -> None:
    with pytest.raises(MoneyError):
        parse_micros("1e1000000")


def test_parse_micros_rejects_many_decimals_beyond_context_precision() -> None:
    with pytest.raises(MoneyError, match="more than 6 decimals"):
        parse_micros("1.0000000000000000000000000001")  # 28 decimals


@pytest.mark.parametrize(
    ("micros", "currency", "rates", "expected"),
    [
        (19_990_000, "USD", {"USD": 1.0}, 19_990_000),  # the base currency is unchanged
        (19_990_000, "EUR", {"EUR": 1.08}, 21_589_200),  # 19.99 * 1.08 = 21.5892
        (100_000_000, "GBP", {"GBP": 1.27}, 127_000_000),
        (5, "X", {"X": 0.5}, 2),  # 2.5 -> 2, half to even
        (7, "X", {"X": 0.5}, 4),  # 3.5 -> 4, half to even
        (3, "X", {"X": 0.5}, 2),  # 1.5 -> 2
        (25, "X", {"X": 0.1}, 2),  # exactly 2.5 (the rate is read as "0.1", not 0.1000...0555)
        (15, "X", {"X": 0.1}, 2),  # exactly 1.5 -> 2
        (0, "EUR", {"EUR": 1.08}, 0),
    ],
)
def test_convert(micros: int, currency: str, rates: dict[str, float], expected: int) -> None:
    assert convert(micros, currency, rates) == expected


def test_convert_without_rate_names_the_currency() -> None:
    with pytest.raises(MoneyError, match="'GBP'"):
        convert(1_000_000, "GBP", {"USD": 1.0, "EUR": 1.08})


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (19_990_000, "19.99"),
        (1, "1e-06"),
        (0, "0.0"),
        (123_456_789_012_345, "123456789.012345"),  # 15 significant digits, printed exactly
        (999_999_999_999_999, "999999999.999999"),
        (MAX_MICROS, "1000000000.0"),
    ],
)
def test_to_number_prints_the_exact_decimal(micros: int, text: str) -> None:
    assert repr(to_number(micros)) == text
