"""The exporter's customer lifetime value families, from the all-time sums."""

from __future__ import annotations

from tests.unit.test_pipeline_health import samples
from tracker.export.metrics import lifetime_values


def test_customers_that_moved_away_stay_counted_so_the_counter_never_goes_down() -> None:
    """A campaign that won a customer, who moved to another when an earlier conversion of
    theirs came later, holds none now: its counter stays 1, and ``_moved`` says why."""
    folded = {
        ("campaign", "brand"): {"customers": 0, "customers_moved": 1, "customer_revenue": 0},
        ("campaign", "partner"): {"customers": 2, "customer_revenue": 30_000_000},
        ("channel", "search"): {"customers": 1, "customer_revenue": 4_000_000},
    }
    families = {f.name: samples(f) for f in lifetime_values(folded, "EUR")}
    won = families["tracker_campaign_customers"]
    assert won == {
        ("tracker_campaign_customers_total", (("campaign", "brand"),)): 1,
        ("tracker_campaign_customers_total", (("campaign", "partner"),)): 2,
    }
    moved = families["tracker_campaign_customers_moved"]
    assert moved == {("tracker_campaign_customers_moved_total", (("campaign", "brand"),)): 1}
    value = families["tracker_campaign_customer_lifetime_value"]
    assert value == {("tracker_campaign_customer_lifetime_value", (("campaign", "partner"),)): 15}
    channel = families["tracker_channel_customer_lifetime_value"]
    assert channel == {("tracker_channel_customer_lifetime_value", (("channel", "search"),)): 4}
