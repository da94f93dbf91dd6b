"""A simulated market with known response curves: the truth budget advice is checked against.

Each channel runs one campaign (``<channel>-curve``) whose expected daily revenue
follows a saturation curve of that day's spend::

    revenue(spend) = saturation * spend / (spend + half_spend)

Parameters per channel (money in the base currency):

- ``spend``: typical daily spend; each day's spend is drawn uniformly from
  ``spend * (1 - vary) .. spend * (1 + vary)`` (``vary`` defaults to 0.5), as a
  marketer trying budgets would, so the curve can be seen in the history;
- ``saturation``: the daily revenue approached as spend grows without bound;
- ``half_spend``: the daily spend that earns half of ``saturation``;
- ``cpc`` (default 2.0), ``ctr`` (0.05) and ``order_value`` (50.0): the funnel. Clicks
  are ``spend / cpc``, impressions ``clicks / ctr``; conversions are a Poisson draw
  around ``revenue / order_value``, each worth about ``order_value``.

Days are the reporting zone's (a :class:`~tracker.windows.Calendar`): 23 or 25 hours
long across a daylight-saving change. A day's events: impressions and clicks spread
over the day, conversions within two hours of their click, and spend as the ad
platform reports it, every hour the day's running total for the local day (an
upsert: the last report of the day stands). ``assist_share`` of the
converting visitors first saw another channel's campaign page (a pageview touch), so
``last_click`` and the other attribution models differ.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from tracker.channels import CHANNELS
from tracker.ids import new_id
from tracker.types import EpochMs
from tracker.windows import DAY, HOUR, Calendar

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0"
"""The user agent of simulated visitors, here and in :mod:`tracker.simulate`."""


@dataclass(frozen=True, slots=True)
class ChannelCurve:
    """One channel's known response curve and funnel; money in currency units."""

    channel: str
    spend: float
    saturation: float
    half_spend: float
    cpc: float = 2.0
    ctr: float = 0.05
    order_value: float = 50.0
    vary: float = 0.5

    @property
    def campaign(self) -> str:
        return f"{self.channel}-curve"

    def revenue(self, spend: float) -> float:
        """Expected revenue of a day with ``spend``."""
        return self.saturation * spend / (spend + self.half_spend)

    def marginal(self, spend: float) -> float:
        """Revenue of the next unit of money at ``spend`` (the true marginal ROAS)."""
        return self.saturation * self.half_spend / (spend + self.half_spend) ** 2


PRESET: dict[str, dict[str, float]] = {
    "search": {"spend": 1500, "saturation": 9000, "half_spend": 2500, "cpc": 6, "ctr": 0.2},
    "social": {"spend": 1200, "saturation": 3600, "half_spend": 1500, "cpc": 5, "ctr": 0.1},
    "display": {"spend": 1000, "saturation": 1600, "half_spend": 900, "cpc": 5, "ctr": 0.1},
    "email": {"spend": 300, "saturation": 2500, "half_spend": 400, "cpc": 2, "ctr": 0.25},
    "affiliate": {"spend": 800, "saturation": 3000, "half_spend": 1200, "cpc": 8, "ctr": 0.1},
}
"""The curves of ``--curves default``."""


def parse_curves(text: str) -> list[ChannelCurve]:
    """Curves from ``default``, a JSON object or a JSON file: ``{channel: {parameter: value}}``.

    Raises ``ValueError`` naming what is wrong.
    """
    if text == "default":
        spec: Any = PRESET
    elif text.lstrip().startswith(("{", "[")):
        spec = orjson.loads(text)
    else:
        spec = orjson.loads(Path(text).read_bytes())
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError("curves are a JSON object of channel -> parameters")
    known = {f.name for f in fields(ChannelCurve)} - {"channel"}
    curves = []
    for channel, params in spec.items():
        if channel not in CHANNELS:
            raise ValueError(f"{channel!r} is not a channel ({', '.join(CHANNELS)})")
        if not isinstance(params, Mapping):
            raise ValueError(f"{channel}: parameters are a JSON object")
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"{channel}: unknown parameters {sorted(unknown)}")
        try:
            curve = ChannelCurve(channel, **{k: float(v) for k, v in params.items()})
        except TypeError as exc:
            raise ValueError(f"{channel}: {exc}") from None
        for name in ("spend", "saturation", "half_spend", "cpc", "ctr", "order_value"):
            if not getattr(curve, name) > 0:
                raise ValueError(f"{channel}: {name} must be above 0")
        if not 0 <= curve.vary < 1 or curve.ctr > 1:
            raise ValueError(f"{channel}: vary must be in [0, 1) and ctr at most 1")
        curves.append(curve)
    return curves


def day_spend(
    curves: list[ChannelCurve], day_start: EpochMs, seed: int, calendar: Calendar
) -> dict[str, float]:
    """Each channel's spend on the local day starting at ``day_start`` (whole cents)."""
    rng = _rng(seed, day_start, calendar, "spend")
    return {c.channel: round(c.spend * rng.uniform(1 - c.vary, 1 + c.vary), 2) for c in curves}


def day_events(
    curves: list[ChannelCurve], day_start: EpochMs, seed: int, calendar: Calendar
) -> list[dict[str, Any]]:
    """Every event of the local day starting at ``day_start``, in time order.

    The same ``seed`` and day give the same figures and the same event ids, so sending
    a day twice (a backfill run again, a simulator restarted) counts it once.
    """
    spend = day_spend(curves, day_start, seed, calendar)
    rng = _rng(seed, day_start, calendar, "events")
    day = (day_start, calendar.bucket_end(day_start, "1d"))
    period = calendar.day_of(day_start)
    events: list[dict[str, Any]] = []
    others = {c.channel: [o for o in curves if o is not c] for c in curves}
    for curve in curves:
        amount = spend[curve.channel]
        events.extend(_spend_reports(curve, amount, day, period))
        events.extend(_traffic(curve, amount, day, others[curve.channel], rng))
    events.sort(key=lambda e: e["ts"])
    for index, event in enumerate(events):
        event["event_id"] = f"sim-{seed}-{day_start}-{index}"
    return events


ASSIST_SHARE = 0.3
"""Share of converting visitors who first saw another channel's campaign page."""


def _traffic(
    curve: ChannelCurve,
    spend: float,
    day: tuple[EpochMs, EpochMs],
    others: list[ChannelCurve],
    rng: random.Random,
) -> Iterator[dict[str, Any]]:
    conversions = _poisson(curve.revenue(spend) / curve.order_value, rng)
    clicks = max(round(spend / curve.cpc), conversions)
    impressions = max(round(clicks / curve.ctr), clicks)
    converting = set(rng.sample(range(clicks), conversions))
    common = {"campaign": curve.campaign, "channel": curve.channel, "user_agent": BROWSER}
    day_start, day_end = day
    last = day_end - 1
    for index in range(impressions):
        ts = day_start + HOUR + rng.randrange(day_end - day_start - 4 * HOUR)
        visitor = new_id(ts)
        yield {"type": "impression", "ts": ts, "anonymous_id": visitor, **common}
        if index >= clicks:
            continue
        click_ts = ts + rng.randrange(1_000, 60_000)
        click_id = new_id(click_ts)
        if index in converting and others and rng.random() < ASSIST_SHARE:
            assist = rng.choice(others)
            yield {
                "type": "pageview",
                "ts": ts - rng.randrange(60_000, HOUR),
                "anonymous_id": visitor,
                "campaign": assist.campaign,
                "channel": assist.channel,
                "user_agent": BROWSER,
            }
        yield {
            "type": "click",
            "ts": click_ts,
            "anonymous_id": visitor,
            "click_id": click_id,
            **common,
        }
        if index in converting:
            value = max(1.0, rng.gauss(curve.order_value, curve.order_value / 4))
            yield {
                "type": "conversion",
                "ts": min(click_ts + rng.randrange(60_000, 2 * HOUR), last),
                "anonymous_id": visitor,
                "click_id": click_id,
                "order_id": new_id(click_ts),
                "value": round(value, 2),
                "user_agent": BROWSER,
            }


def _spend_reports(
    curve: ChannelCurve, spend: float, day: tuple[EpochMs, EpochMs], period: str
) -> Iterator[dict[str, Any]]:
    """The ad platform's hourly reports of the day's running spend; the last one stands.

    One report at the end of every hour of the local day: 23 or 25 of them across a
    daylight-saving change.
    """
    day_start, day_end = day
    cents = round(spend * 100)
    hours = -(-(day_end - day_start) // HOUR)
    for hour in range(hours):
        yield {
            "type": "spend",
            "ts": min(day_start + (hour + 1) * HOUR, day_end) - 1,
            "campaign": curve.campaign,
            "channel": curve.channel,
            "period": period,
            "cost": f"{cents * (hour + 1) // hours / 100:.2f}",
        }


def _poisson(mean: float, rng: random.Random) -> int:
    """A Poisson draw: Knuth's method for small means, a rounded normal for large ones."""
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _rng(seed: int, day_start: EpochMs, calendar: Calendar, purpose: str) -> random.Random:
    # The local day's number: unique per day (two local midnights can share a UTC day),
    # and the UTC day's number in UTC, so the figures of a seed do not change there.
    day = (day_start + calendar.offset(day_start)) // DAY
    return random.Random(f"{seed}:{day}:{purpose}")
