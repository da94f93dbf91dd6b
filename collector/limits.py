"""Rate limits at the edge: a token bucket per sender, each a single number.

A sender's budget is ``rate`` requests a second on average and ``burst`` at once
after a quiet spell (the bucket's size). Who the sender is:

- the client address, for every event request (an IPv6 address by its /64, which one
  subscriber holds whole, so rotating addresses inside it buys nothing);
- the partner, for a postback whose signature it verified: a network's servers send
  for all its publishers, from few addresses;
- the write key, for a Segment call with one of ``TRACKER_WRITE_KEYS`` (unset, any key
  is accepted, so a key says nothing about who sends and the address is used).

A limit of 0 is off; an own limit (partner, write key) that is off leaves those
requests to the address's limit. The address is the TCP peer's: ``X-Forwarded-For``
is not read, since without a list of trusted proxies anyone could write it and spend
another's budget or escape their own. Behind a proxy every request comes from the
proxy, so the address limit is off by default (a default that drops a site's traffic
is worse than none); rate-limit at the proxy, or turn it on where clients connect
directly.

Each bucket is GCRA's one number, the time its sender is next "on schedule" (the
theoretical arrival time), in integer nanoseconds of the monotonic clock: a request
is admitted when that time is at most ``burst - 1`` intervals ahead of now, and then
moves it one interval on. That is the token bucket's arithmetic without refilling
anything, and integers keep a burst of exactly ``burst`` (with floats, ten additions
of 0.1 exceed 0.9). It costs a clock read, a dict lookup and a few additions: 0.24 us
a request, 0.62 us with the intake's hook and the route's wrapper around it, 0.35 us
more for an IPv6 client's /64 (best of five ``timeit`` rounds of a million); a whole
pixel hit dispatched in-process took 0.7-1.0 us more CPU with limits on, of 13-15 us
(the server adds ~50 more). ``bench/collector`` measures the pixel with them on and off.

Memory is bounded: a bucket whose time has passed is full, the same as none, so it
is forgotten once the table reaches ``max_keys``; if more than half the table is
still busy then (a flood from more addresses than that, each over its rate), the
oldest are forgotten too, which gives those senders their burst again but keeps the
table, and the sweep's cost, bounded.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from itertools import islice
from typing import Final

from tracker.settings import Settings

Clock = Callable[[], int]
"""Nanoseconds of a monotonic clock."""
NS: Final = 1_000_000_000
MAX_KEYS: Final = 100_000
"""Senders remembered per limit at most (about 15 MB for IPv4 addresses)."""
_V4_MAPPED: Final = bytes(10) + b"\xff\xff"


class Limiter:
    """Admits each key's requests at ``rate`` a second, ``burst`` at once."""

    __slots__ = ("_clock", "_interval", "_max_keys", "_tolerance", "_when", "burst", "rate")

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Clock = time.monotonic_ns,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 2:
            raise ValueError(f"a limit needs rate > 0, burst >= 1, max_keys >= 2: {rate}, {burst}")
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._interval = max(1, round(NS / rate))
        self._tolerance = round((burst - 1) * self._interval)
        self._max_keys = max_keys
        self._when: dict[str, int] = {}

    def wait(self, key: str) -> int:
        """0 if ``key`` may send now (the request is charged); else nanoseconds until it may."""
        now = self._clock()
        when = self._when.get(key)
        if when is None:
            if len(self._when) >= self._max_keys:
                self._forget(now)
            when = now
        elif when < now:
            when = now
        ahead = when - now - self._tolerance
        if ahead > 0:
            return ahead
        self._when[key] = when + self._interval
        return 0

    @property
    def remembered(self) -> int:
        """Senders with a bucket now (not ``__len__``: an empty limiter must stay truthy)."""
        return len(self._when)

    def _forget(self, now: int) -> None:
        kept = {key: when for key, when in self._when.items() if when > now}
        half = self._max_keys // 2
        if len(kept) > half:  # busy senders past half the table: the oldest go
            kept = dict(islice(kept.items(), len(kept) - half, None))
        self._when = kept


def limiter(rate: float, burst_s: float, clock: Clock = time.monotonic_ns) -> Limiter | None:
    """A limiter of ``rate`` a second holding ``burst_s`` seconds of it (at least one
    request); None for a rate of 0, which is off."""
    if rate == 0:
        return None
    return Limiter(rate, max(1.0, rate * burst_s), clock)


def retry_after_s(wait_ns: int) -> int:
    """``Retry-After`` for a wait: whole seconds, rounded up, at least 1."""
    return max(1, -(-wait_ns // NS))


def address_key(address: str) -> str:
    """The bucket of a client address: itself, or an IPv6 address's /64."""
    if ":" not in address:
        return address
    try:
        packed = socket.inet_pton(socket.AF_INET6, address)
    except OSError:  # a zone index (fe80::1%eth0) or other text: the address as it is
        return address
    if packed.startswith(_V4_MAPPED):  # an IPv4 client of a dual-stack socket
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return packed[:8].hex() + "::/64"


class Limits:
    """The collector's limits, from its settings: per address, per partner, per write key."""

    __slots__ = ("address", "partner", "write_key")

    def __init__(self, settings: Settings, clock: Clock = time.monotonic_ns) -> None:
        burst_s = settings.rate_burst_s
        self.address = limiter(settings.rate_limit, burst_s, clock)
        self.partner = limiter(settings.postback_rate_limit, burst_s, clock)
        self.write_key = limiter(settings.write_key_rate_limit, burst_s, clock)

    def wait(
        self, address: str | None, partner: str | None = None, write_key: str | None = None
    ) -> tuple[int, str]:
        """Nanoseconds the request must wait (0: admitted, and charged), and whose budget
        it spent: ``partner``, ``write key`` or ``address`` (for the refusal to say).

        ``partner`` and ``write_key`` are only ever a verified partner and a configured
        key: anything a client may choose freely would let it pick a fresh budget.
        """
        if partner is not None and self.partner is not None:
            return self.partner.wait(partner), "partner"
        if write_key is not None and self.write_key is not None:
            return self.write_key.wait(write_key), "write key"
        if address is not None and self.address is not None:
            return self.address.wait(address_key(address)), "address"
        return 0, ""


__all__ = ["MAX_KEYS", "Limiter", "Limits", "address_key", "limiter", "retry_after_s"]
