"""Ids the tracker mints: UUIDv7 (RFC 9562), time-ordered, so they sort by minting time.

Every pixel hit mints two (its visitor's and its event's), so minting is on the
collector's hottest path: random bits come from one ``os.urandom`` call per few
hundred ids instead of a system call each, and the time part is formatted once per
millisecond: 0.5 us an id, against 1.7 with a system call each.
"""

from __future__ import annotations

import os
import time
from typing import Final

from tracker.types import EpochMs

_VARIANT: Final = {c: "89ab"[i & 3] for i, c in enumerate("0123456789abcdef")}
"""A random hex digit to the variant digit (binary 10xx) keeping its two low bits."""
_RANDOM_DIGITS: Final = 19
"""Hex digits of randomness per id: 12 bits ``rand_a``, then 2 + 60 bits ``rand_b``."""
_POOL_BYTES: Final = 8 * 1024

_pool: list[str] = []
"""Unused random digits, ``_RANDOM_DIGITS`` each: ``pop()`` hands each out once, even
between threads."""
_stamp: tuple[EpochMs, str] = (-1, "")
"""The last millisecond minted in, and its formatted id prefix."""


def _refill() -> None:
    digits = os.urandom(_POOL_BYTES).hex()
    end = len(digits) - _RANDOM_DIGITS + 1
    _pool[:] = [digits[i : i + _RANDOM_DIGITS] for i in range(0, end, _RANDOM_DIGITS)]


# A forked child (granian's worker, the bench's processes) must not mint the random
# digits its parent holds: same millisecond, same digits, same id.
os.register_at_fork(after_in_child=_pool.clear)


def new_id(now_ms: EpochMs | None = None) -> str:
    """A UUIDv7 for ``now_ms`` (default: now), with 74 random bits from the OS."""
    global _stamp
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    try:
        rand = _pool.pop()
    except IndexError:
        _refill()
        rand = _pool.pop()
    last, prefix = _stamp
    if ms != last:
        stamp = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
        prefix = f"{stamp[:8]}-{stamp[8:]}-7"
        _stamp = (ms, prefix)
    return f"{prefix}{rand[:3]}-{_VARIANT[rand[3]]}{rand[4:7]}-{rand[7:]}"
