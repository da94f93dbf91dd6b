"""Diminishing-returns response curves: how a unit's daily outcome answers its daily spend.

The curve is the Hill (saturation) curve with shape 1, also called Michaelis-Menten::

    outcome(spend) = saturation * spend / (spend + half_spend)

It starts at 0, rises with slope ``saturation / half_spend`` (the ROAS of the first
unit of money), reaches half of ``saturation`` at ``half_spend`` and never exceeds
``saturation``: every extra unit of money earns less than the one before (concave),
which is what allocating by marginal return needs. Two parameters is what four weeks
of noisy daily figures can pin down; a free Hill shape or an S-curve would fit noise.

The fit is a bounded non-linear least squares by :func:`scipy.optimize.curve_fit`
(trust-region reflective): SciPy is the maintained standard for it, and its bounds
keep both parameters positive, which keeps the curve concave.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import OptimizeWarning, curve_fit

MIN_SPEND_SPREAD = 0.05
"""Least coefficient of variation of daily spend a curve is fitted from: with spend
always about the same, the data cannot show how the outcome answers more or less."""
_LINEAR_SPAN = 50.0
"""The half-saturation spend is bounded at this many times the largest daily spend
seen: beyond, the curve is a straight line over every spend in question anyway."""


@dataclass(frozen=True, slots=True)
class Curve:
    """``outcome(spend) = saturation * spend / (spend + half_spend)``, per day.

    Spend and ``half_spend`` in currency units; ``saturation`` in outcome units
    (currency for revenue, conversions for conversions).
    """

    saturation: float
    half_spend: float

    def outcome(self, spend: float) -> float:
        return self.saturation * spend / (spend + self.half_spend) if spend > 0 else 0.0

    def marginal(self, spend: float) -> float:
        """Outcome of the next unit of money at ``spend``: the derivative, always > 0."""
        return self.saturation * self.half_spend / (max(spend, 0.0) + self.half_spend) ** 2

    def spend_at(self, marginal: float) -> float:
        """The spend at which the marginal return has fallen to ``marginal`` (0 if never)."""
        if marginal <= 0:
            return math.inf
        return max(0.0, math.sqrt(self.saturation * self.half_spend / marginal) - self.half_spend)


@dataclass(frozen=True, slots=True)
class Fit:
    """A fitted curve and how well it describes the days it was fitted on."""

    curve: Curve
    days: int
    r2: float
    """Share of the day-to-day variance of the outcome the curve explains (1 is all)."""
    linear: bool
    """True when the data show no saturation: the curve is a straight line over them."""
    uncertain: bool
    """True when SciPy could not estimate the parameters' uncertainty."""


class FitError(ValueError):
    """The days given cannot support a curve; the message says why, in plain words."""


def _hill(spend: NDArray[np.float64], saturation: float, half_spend: float) -> NDArray[np.float64]:
    result: NDArray[np.float64] = saturation * spend / (spend + half_spend)
    return result


def fit(spend: Sequence[float], outcome: Sequence[float]) -> Fit:
    """Fit a :class:`Curve` to daily ``spend`` and ``outcome`` (same length).

    Raises :class:`FitError` when the days cannot support one: fewer than three
    with spend, no outcome at all, or spend that hardly varied.
    """
    x = np.asarray(spend, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError("spend and outcome need one figure per day each")
    paid = x[x > 0]
    if paid.size < 3:
        raise FitError(f"only {paid.size} days with spend")
    if not y.sum() > 0:
        raise FitError("no outcome at all in these days")
    spread = float(paid.std() / paid.mean())
    if spread < MIN_SPEND_SPREAD:
        raise FitError(
            f"daily spend hardly varied (by {spread:.1%}): the data cannot show how "
            "the outcome answers more or less budget"
        )
    top = float(x.max())
    low = float(paid.min()) / 100
    high = top * _LINEAR_SPAN
    half0 = float(np.clip(np.median(paid), low, high))
    saturation0 = max(float(np.mean(y[x > 0] * (x[x > 0] + half0) / x[x > 0])), 1e-9)
    with warnings.catch_warnings(record=True) as caught:
        # The only warning curve_fit gives on valid input says the parameters'
        # covariance could not be estimated: the fit stands, flagged as uncertain.
        warnings.simplefilter("always", OptimizeWarning)
        try:
            params, _ = curve_fit(
                _hill,
                x,
                y,
                p0=(saturation0, half0),
                bounds=((0.0, low), (np.inf, high)),
                method="trf",
                x_scale="jac",
                max_nfev=2000,
            )
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:  # no convergence
            raise FitError(f"no curve converged on these days ({exc})") from None
    saturation, half_spend = (float(p) for p in params)
    predicted = _hill(x, saturation, half_spend)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - predicted) ** 2).sum()) / total if total > 0 else 1.0
    return Fit(
        curve=Curve(saturation, half_spend),
        days=int(x.size),
        r2=r2,
        linear=half_spend >= high * 0.99,
        uncertain=any(issubclass(w.category, OptimizeWarning) for w in caught),
    )
