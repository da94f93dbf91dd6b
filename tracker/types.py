"""Type aliases shared across the code base, so units are visible in signatures."""

from __future__ import annotations

from typing import TypeAlias

Micros: TypeAlias = int
"""An amount of money in millionths of a currency unit (as ad platforms' ``cost_micros``)."""

EpochMs: TypeAlias = int
"""A point in time: milliseconds since 1970-01-01 UTC."""
