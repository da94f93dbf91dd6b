"""Scenarios for ``tracker simulate``: how the simulated campaigns behave over a run.

``steady`` keeps every campaign's funnel and share of the traffic for the whole run
(the simulator's behaviour without a scenario). ``cpa-spike`` gives every campaign the
same share of the traffic, then, ``--spike-after`` seconds into the run, divides one
campaign's conversion rate by ``--spike-factor``: its clicks and spend go on as before,
so its CPA (spend per conversion) jumps by that factor while the others stay steady.
That is the incident the CPASpike alert pages on.

``--ctr`` and ``--cvr`` give every campaign the same funnel rates instead of its own
drawn ones, for runs that need many conversions from few events (the end-to-end alert
test runs Prometheus' rules at a faster clock, so each window must hold as many
conversions as a busy campaign's 15 minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tracker.simulate import Campaign

NAMES = ("steady", "cpa-spike")


class Scenario(Protocol):
    def market(
        self, pool: list[Campaign], weights: list[float]
    ) -> tuple[list[Campaign], list[float]]:
        """The campaigns and their relative shares of the traffic when the run starts."""
        ...

    def at(self, campaign: Campaign, elapsed_s: float) -> Campaign:
        """``campaign`` as it behaves ``elapsed_s`` seconds into the run."""
        ...


@dataclass(frozen=True, slots=True)
class Funnel:
    """Rates every campaign shares instead of its own; None keeps each campaign's."""

    ctr: float | None = None
    cvr: float | None = None

    def apply(self, campaign: Campaign) -> Campaign:
        return dataclasses.replace(
            campaign,
            ctr=campaign.ctr if self.ctr is None else self.ctr,
            cvr=campaign.cvr if self.cvr is None else self.cvr,
        )


@dataclass(frozen=True, slots=True)
class Steady:
    """Every campaign keeps its funnel and share of the traffic for the whole run."""

    funnel: Funnel = Funnel()

    def market(
        self, pool: list[Campaign], weights: list[float]
    ) -> tuple[list[Campaign], list[float]]:
        return [self.funnel.apply(c) for c in pool], weights

    def at(self, campaign: Campaign, elapsed_s: float) -> Campaign:
        return campaign


@dataclass(frozen=True, slots=True)
class CpaSpike:
    """Even traffic; from ``after_s`` on, ``campaign`` converts ``factor`` times less often.

    Its CPA is then ``factor`` times its usual one; every other campaign stays as it was.
    """

    campaign: str
    after_s: float
    factor: float
    funnel: Funnel = Funnel()

    def market(
        self, pool: list[Campaign], weights: list[float]
    ) -> tuple[list[Campaign], list[float]]:
        names = [c.name for c in pool]
        if self.campaign not in names:
            raise ValueError(
                f"--spike-campaign: no campaign named {self.campaign!r} in this run; "
                f"its campaigns are {', '.join(names)}"
            )
        # Even shares: every steady campaign is as busy as the spiking one, so each
        # clears the alert's volume guards and could page if it misbehaved.
        return [self.funnel.apply(c) for c in pool], [1.0] * len(pool)

    def at(self, campaign: Campaign, elapsed_s: float) -> Campaign:
        if campaign.name != self.campaign or elapsed_s < self.after_s:
            return campaign
        return dataclasses.replace(campaign, cvr=campaign.cvr / self.factor)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario flags of ``tracker simulate``."""
    parser.add_argument(
        "--scenario",
        choices=NAMES,
        default="steady",
        help="steady: every campaign as drawn; cpa-spike: even traffic, then one "
        "campaign's conversion rate collapses and its CPA jumps (see tracker/scenarios.py)",
    )
    parser.add_argument(
        "--spike-campaign",
        default=None,
        metavar="NAME",
        help="cpa-spike: the campaign whose CPA jumps; default the first (search-000)",
    )
    parser.add_argument(
        "--spike-after",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="cpa-spike: seconds of steady traffic before the spike (default 600)",
    )
    parser.add_argument(
        "--spike-factor",
        type=float,
        default=5.0,
        metavar="F",
        help="cpa-spike: the campaign's CPA is multiplied by F, its conversion rate "
        "divided by F (default 5)",
    )
    parser.add_argument(
        "--ctr", type=float, default=None, help="every campaign's click-through rate (0-1]"
    )
    parser.add_argument(
        "--cvr", type=float, default=None, help="every campaign's conversion rate of clicks (0-1]"
    )


def from_args(args: argparse.Namespace) -> Scenario:
    """The scenario the flags describe; ``ValueError`` saying which flag is wrong."""
    from tracker.simulate import campaigns  # the simulator only loads when it runs

    for flag, rate in (("--ctr", args.ctr), ("--cvr", args.cvr)):
        if rate is not None and not 0 < rate <= 1:
            raise ValueError(f"{flag} must be a rate in (0, 1], got {rate}")
    curves = getattr(args, "curves", None) or getattr(args, "backfill_days", 0)
    shaped = args.scenario != "steady" or args.ctr is not None or args.cvr is not None
    if curves and shaped:
        raise ValueError(
            "--scenario, --ctr and --cvr shape the drawn campaigns; --curves and "
            "--backfill-days simulate response curves instead: use one or the other"
        )
    funnel = Funnel(ctr=args.ctr, cvr=args.cvr)
    if args.scenario == "steady":
        return Steady(funnel)
    if not args.spike_factor > 1:
        raise ValueError(f"--spike-factor must be above 1, got {args.spike_factor}")
    if not args.spike_after >= 0:
        raise ValueError(f"--spike-after must be 0 or more seconds, got {args.spike_after}")
    pool = campaigns(args.campaigns, random.Random(args.seed))
    if not pool:
        raise ValueError("--campaigns must be at least 1 for cpa-spike")
    scenario = CpaSpike(
        campaign=args.spike_campaign or pool[0].name,
        after_s=args.spike_after,
        factor=args.spike_factor,
        funnel=funnel,
    )
    scenario.market(pool, [])  # an unknown --spike-campaign fails here, before any traffic
    return scenario
