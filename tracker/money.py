"""Money as integer micro-units: parsed exactly at the edge, printed at the output.

Floats never hold money in flight: ``0.1 + 0.2`` drifts, ``100_000 + 200_000`` does
not. Parsing goes through :class:`decimal.Decimal` so "19.99" is exactly 19_990_000.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DecimalException,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)

from tracker.types import Micros

MICROS_PER_UNIT = 1_000_000
# Far above any single event's amount, far below where a float would lose the micro.
MAX_MICROS: Micros = 10**15
_MAX_DIGITS = 40
# Enough precision that no amount of _MAX_DIGITS characters is ever rounded, and
# a trap on every signal that would mean it was (or that it is not a number).
_EXACT = Context(prec=2 * _MAX_DIGITS, traps=[InvalidOperation, Overflow, Rounded])


class MoneyError(ValueError):
    """An amount that is not a valid non-negative sum of money."""


def parse_micros(raw: object) -> Micros:
    """Parse a decimal amount ("12.5", 12.5, 12) into micro-units, exactly.

    Rejects negatives, more than six decimals, non-numbers and absurd sizes.
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise MoneyError("must be a number")
    if isinstance(raw, int) and raw >= 10**_MAX_DIGITS:
        raise MoneyError("is too large")  # before str(), which refuses ints of 4,300+ digits
    text = str(raw).strip()
    if len(text) > _MAX_DIGITS:
        raise MoneyError(f"has more than {_MAX_DIGITS} characters")
    with localcontext(_EXACT):
        try:
            amount = Decimal(text)
            if not amount.is_finite():
                raise MoneyError("must be finite")
            if amount.adjusted() > 15:
                raise MoneyError("is too large")
            micros = amount.scaleb(6)
        except DecimalException:
            raise MoneyError(f"{raw!r} is not a number") from None
    if amount < 0:
        raise MoneyError("must not be negative")
    if micros != micros.to_integral_value():
        raise MoneyError("has more than 6 decimals")
    if micros > MAX_MICROS:
        raise MoneyError("is too large")
    return int(micros)


def convert(micros: Micros, currency: str, rates: Mapping[str, float]) -> Micros:
    """Convert an amount into the base currency, rounding half-even to the micro."""
    rate = rates.get(currency)
    if rate is None:
        raise MoneyError(f"no rate configured for currency {currency!r}")
    if rate == 1.0:
        return micros
    exact = Decimal(micros) * Decimal(str(rate))
    return int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))


def to_number(micros: Micros) -> float:
    """Micro-units as a JSON number of currency units.

    Exact to the micro: below ``MAX_MICROS`` the shortest float repr of n/1e6 has
    at most 15 significant digits, so it prints as the exact decimal.
    """
    return micros / MICROS_PER_UNIT
