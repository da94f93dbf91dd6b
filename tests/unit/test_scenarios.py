"""Scenarios shape the simulated campaigns over a run (tracker/scenarios.py)."""

from __future__ import annotations

import argparse
import random

import pytest

from tracker import cli, scenarios
from tracker.scenarios import CpaSpike, Funnel, Steady
from tracker.simulate import Campaign, campaigns


def _pool() -> list[Campaign]:
    return campaigns(3, random.Random(1))


def _cpa(campaign: Campaign) -> float:
    """Spend per conversion: each click costs the CPC, a CVR share of clicks convert."""
    return campaign.cpc / campaign.cvr


def _args(*flags: str) -> argparse.Namespace:
    return cli.parser().parse_args(["simulate", "--campaigns=3", *flags])


def test_steady_keeps_every_campaign_and_share_for_the_whole_run() -> None:
    pool, weights = Steady().market(_pool(), [3.0, 2.0, 1.0])
    assert pool == _pool()
    assert weights == [3.0, 2.0, 1.0]
    assert [Steady().at(c, 1e9) for c in pool] == pool


def test_cpa_spike_multiplies_one_campaigns_cpa_from_its_time_on() -> None:
    spike = CpaSpike(campaign="social-001", after_s=60, factor=5)
    pool, weights = spike.market(_pool(), [3.0, 2.0, 1.0])
    assert weights == [1.0, 1.0, 1.0]  # even traffic: every campaign clears the guards
    spiking = pool[1]
    assert spike.at(spiking, 59.9) == spiking
    after = spike.at(spiking, 60)
    assert _cpa(after) == pytest.approx(5 * _cpa(spiking))
    assert (after.ctr, after.cpc, after.order_value) == (
        spiking.ctr,
        spiking.cpc,
        spiking.order_value,
    )
    assert [spike.at(c, 3600) for c in (pool[0], pool[2])] == [pool[0], pool[2]]


def test_cpa_spike_names_a_campaign_of_the_run() -> None:
    with pytest.raises(ValueError, match=r"no campaign named 'nope'.*search-000, social-001"):
        CpaSpike(campaign="nope", after_s=0, factor=2).market(_pool(), [1.0, 1.0, 1.0])


def test_funnel_gives_every_campaign_the_same_rates() -> None:
    pool, _ = Steady(Funnel(ctr=0.4, cvr=0.5)).market(_pool(), [1.0, 1.0, 1.0])
    assert {(c.ctr, c.cvr) for c in pool} == {(0.4, 0.5)}
    assert [c.cpc for c in pool] == [c.cpc for c in _pool()]


def test_flags_build_the_scenario() -> None:
    assert scenarios.from_args(_args()) == Steady()
    built = scenarios.from_args(
        _args("--scenario=cpa-spike", "--spike-after=30", "--spike-factor=4", "--cvr=0.5")
    )
    assert built == CpaSpike("search-000", 30.0, 4.0, Funnel(cvr=0.5))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--ctr=0",), "--ctr must be a rate in"),
        (("--cvr=1.5",), "--cvr must be a rate in"),
        (("--scenario=cpa-spike", "--spike-factor=1"), "--spike-factor must be above 1"),
        (("--scenario=cpa-spike", "--spike-after=-1"), "--spike-after must be 0 or more"),
        (("--scenario=cpa-spike", "--spike-campaign=x"), "--spike-campaign: no campaign"),
        (("--scenario=cpa-spike", "--curves=default"), "use one or the other"),
    ],
)
def test_bad_flags_say_which_flag_is_wrong(flags: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scenarios.from_args(_args(*flags))


def test_the_cli_answers_a_bad_scenario_with_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "--scenario=cpa-spike", "--spike-campaign=nope"]) == 2
    assert "--spike-campaign: no campaign named 'nope'" in capsys.readouterr().err
