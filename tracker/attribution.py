"""Attribution models: how one conversion's credit is shared among the touches before it.

Pure functions over plain values. Credit is split in exact integers (micro-units of
a conversion and of money) by largest remainder, so a conversion's shares always add
up to exactly one conversion and its revenue, never to 0.999999 or a drifting float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tracker.types import EpochMs

MODELS = ("last_click", "first_click", "linear", "time_decay", "position_based")
"""Every model; ``last_click`` is the default."""

ONE = 1_000_000
"""One conversion in micro-conversions, the unit fractional credit is counted in."""


@dataclass(frozen=True, slots=True)
class Touch:
    """A click or campaign pageview a conversion may be credited to."""

    ts: EpochMs
    campaign: str | None
    channel: str


def weights(model: str, touches: Sequence[Touch], half_life_ms: int) -> list[float]:
    """Each touch's relative weight under ``model``; ``touches`` oldest first.

    A touch's share is its weight over the sum. The weights are not normalised on
    purpose: small whole numbers and powers of two are exact in a float, so
    :func:`split` divides by the exact ratios (1:1:1, 2:1:2, 1/4:1/2:1) and not by
    rounded fractions such as 1/7, whose last micro-unit could land either way.

    - ``last_click`` / ``first_click``: all to the last / first touch;
    - ``linear``: equal shares;
    - ``time_decay``: a touch's weight halves every ``half_life_ms`` before the newest;
    - ``position_based``: 40% first, 40% last, 20% shared by the middle (50/50 for two).
    """
    n = len(touches)
    if n == 0:
        return []
    if n == 1:
        return [1.0]
    if model == "last_click":
        return [0.0] * (n - 1) + [1.0]
    if model == "first_click":
        return [1.0] + [0.0] * (n - 1)
    if model == "linear":
        return [1.0] * n
    if model == "time_decay":
        # Ages from the newest touch, not the conversion: the ratios are the same, and
        # the newest weighs 1, so very old paths cannot underflow to all zeros.
        newest = max(t.ts for t in touches)
        return [0.5 ** ((newest - t.ts) / half_life_ms) for t in touches]
    if model == "position_based":
        if n == 2:
            return [1.0, 1.0]
        # 40% : 20% / (n - 2) : 40%, as 2 (n - 2) : 1 : 2 (n - 2).
        end = 2.0 * (n - 2)
        return [end] + [1.0] * (n - 2) + [end]
    raise ValueError(f"unknown attribution model {model!r}")


def split(amount: int, shares: Sequence[float]) -> list[int]:
    """``amount`` divided in proportion to ``shares``, in integers that sum to ``amount``.

    Largest remainder, in integer arithmetic: each part is rounded down, then the
    units left over go to the parts with the largest remainders (the earlier part on
    ties, so the result is deterministic).
    """
    scaled = [round(s * _SCALE) for s in shares]
    total = sum(scaled)
    if total <= 0:
        return [0] * len(shares)
    parts = [amount * w // total for w in scaled]
    remainders = [amount * w % total for w in scaled]
    left = amount - sum(parts)
    for i in sorted(range(len(parts)), key=lambda i: (-remainders[i], i))[:left]:
        parts[i] += 1
    return parts


_SCALE = 1 << 48
