"""Spend imported from a Google Ads and a Meta export, through worker and exporter: KPIs exact.

The exports are fixtures as the platforms write them: Google Ads' "CSV for Excel"
(UTF-16, tabs, title lines, total rows, one campaign under two campaign ids) and a
German Meta export (semicolons, decimal commas, one row per ad set), moved to recent
days. ``tracker import-spend`` imports them, clicks and conversions for their campaigns
go through the collector's ``/v1/events``, and ``/v1/kpis`` must show the spend, CPA and
ROAS computed here from the fixtures by hand, in Decimal. Then the same exports again,
and an overlapping one with one day changed: the figures are replaced, never added to.
"""

from __future__ import annotations

import codecs
import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.processes import command_output, running, wait_for
from tests.e2e.test_oracle import settled
from tests.e2e.test_pipeline import kpis, post
from tracker.settings import Settings
from tracker.spend.values import decode

pytestmark = pytest.mark.services

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/spend"
RATE = Decimal("1.08")
"""EUR in USD, the base currency."""
FIXTURE_DAYS = ("2026-05-01", "2026-05-02", "2026-05-03")
TODAY = datetime.now(UTC).date()
DAYS = tuple(TODAY - timedelta(days=back) for back in (4, 3, 2))
"""The fixtures' days moved to recent ones: the collector takes events of the last 30 days."""

# The fixtures' rows, by hand (campaign-map.csv maps Google's campaign ids 1111111111 and
# 2222222222 to brand_de, Meta's "Spring Sale" to spring_sale):
BRAND_DE = {  # google-excel.csv, USD: "1,234.56" and 65.44 on day 1, "1,000.00" on day 2
    DAYS[0]: Decimal("1234.56") + Decimal("65.44"),
    DAYS[1]: Decimal("1000.00"),
}
SPRING_SALE = {  # meta-de.csv, EUR: ad sets "12,50" and "7,25" on day 1, "1.234,56" on day 2
    DAYS[0]: (Decimal("12.50") + Decimal("7.25")) * RATE,
    DAYS[1]: Decimal("1234.56") * RATE,
}
GENERIC_SHOES = {DAYS[0]: Decimal("310.10")}  # and 0.00 on day 2: no row, nothing there
TOTAL_REACH = {DAYS[2]: Decimal("12.30")}

# Traffic: (campaign, channel, day) -> conversions' values, each after a click of its own.
ORDERS = {
    ("brand_de", "search", DAYS[0]): ["100.00", "1200.00"],
    ("brand_de", "search", DAYS[1]): ["250.00"],
    ("spring_sale", "social", DAYS[0]): ["20.00", "22.66"],
    ("spring_sale", "social", DAYS[1]): ["1000.00", "1000.00", "666.6496"],
}


def recent(name: str, directory: Path) -> Path:
    """The fixture ``name`` with its days moved to :data:`DAYS`, in its own encoding."""
    text, encoding = decode((FIXTURES / name).read_bytes(), name)
    for old, new in zip(FIXTURE_DAYS, DAYS, strict=True):
        text = text.replace(old, new.isoformat())
    if encoding == "UTF-16":
        data = text.encode("utf-16")
    else:
        data = (codecs.BOM_UTF8 if encoding == "UTF-8 with BOM" else b"") + text.encode()
    path = directory / name
    path.write_bytes(data)
    return path


def import_spend(settings: Settings, *files: Path) -> str:
    return command_output(settings, "import-spend", *map(str, files))


def send_traffic(settings: Settings) -> None:
    """A click and then a conversion (naming the click) per order, at noon of its day."""
    events: list[dict[str, Any]] = []
    for (campaign, channel, day), values in ORDERS.items():
        noon = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
        for value in values:
            tag = uuid.uuid4().hex[:10]
            common = {"campaign": campaign, "channel": channel, "anonymous_id": f"v-{tag}"}
            click_ts = noon.isoformat().replace("+00:00", "Z")
            converted_ts = (noon + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
            events += [
                {**common, "type": "click", "click_id": f"k-{tag}", "ts": click_ts},
                {
                    **common,
                    "type": "conversion",
                    "click_id": f"k-{tag}",
                    "order_id": f"o-{tag}",
                    "value": value,
                    "ts": converted_ts,
                },
            ]
    status, answer = post(
        f"http://127.0.0.1:{settings.collector_port}/v1/events", orjson.dumps(events)
    )
    assert status == 200, answer
    assert answer["accepted"] == len(events), answer


def midnight(day: date) -> str:
    return datetime.combine(day, datetime.min.time(), UTC).isoformat()


Rows = dict[tuple[str, date], dict[str, Any]]


def rows_of(settings: Settings, dimension: str = "campaign") -> Rows:
    """/v1/kpis per value of ``dimension`` and day, over :data:`DAYS`."""
    span = {"from": midnight(DAYS[0]), "to": midnight(DAYS[-1] + timedelta(days=1))}
    answer = kpis(settings, dimension=dimension, window="1d", **span)
    return {
        (row["value"], datetime.fromisoformat(row["bucket"]).date()): row for row in answer["rows"]
    }


def expected_spend(brand_de: dict[date, Decimal]) -> dict[tuple[str, date], Decimal]:
    return {
        **{("brand_de", day): amount for day, amount in brand_de.items()},
        **{("spring_sale", day): amount for day, amount in SPRING_SALE.items()},
        **{("Generic Shoes", day): amount for day, amount in GENERIC_SHOES.items()},
        **{("Total Reach Q2", day): amount for day, amount in TOTAL_REACH.items()},
    }


def spend_of(rows: Rows) -> dict[tuple[str, date], Decimal]:
    return {key: Decimal(str(row["spend"])) for key, row in rows.items()}


def applied(settings: Settings, brand_de: dict[date, Decimal]) -> Rows | None:
    """The campaign rows once they hold the expected spend and every order; else None."""
    rows = rows_of(settings)
    counted = all(
        rows.get((campaign, day), {}).get("conversions") == len(values)
        for (campaign, _, day), values in ORDERS.items()
    )
    return rows if counted and spend_of(rows) == expected_spend(brand_de) else None


def check_kpis(rows: Rows, brand_de: dict[date, Decimal]) -> None:
    """Spend, CPA and ROAS of every campaign day with orders, to the micro-unit."""
    assert spend_of(rows) == expected_spend(brand_de)
    for (campaign, _, day), values in ORDERS.items():
        spend = expected_spend(brand_de)[campaign, day]
        revenue = sum(map(Decimal, values))
        row = rows[campaign, day]
        assert row["conversions"] == len(values)
        assert Decimal(str(row["revenue"])) == revenue
        cpa = (spend / len(values)).quantize(Decimal("0.000001"), ROUND_HALF_EVEN)
        assert Decimal(str(row["cpa"])) == cpa, (campaign, day)
        # A ratio, not money: the float nearest to the exact revenue / spend.
        assert row["roas"] == float(Fraction(revenue) / Fraction(spend)), (campaign, day)


def test_imported_spend_gives_exact_cpa_and_roas_and_reimports_replace_it(
    settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(
        settings, currency_rates="EUR=1.08", campaign_map=str(FIXTURES / "campaign-map.csv")
    )
    google, meta = recent("google-excel.csv", tmp_path), recent("meta-de.csv", tmp_path)
    with running(settings, "worker", "collector", "serve"):
        output = import_spend(settings, google, meta)
        assert output.splitlines()[2].startswith("imported 8 rows: 7 spend figures")
        send_traffic(settings)
        first = wait_for(lambda: applied(settings, BRAND_DE), timeout=60, what="all applied")
        check_kpis(first, BRAND_DE)
        # spring_sale's day 1 in figures: 19.75 EUR = 21.33 USD; 2 orders of 42.66 in all.
        assert (first["spring_sale", DAYS[0]]["cpa"], first["spring_sale", DAYS[0]]["roas"]) == (
            10.665,
            2.0,
        )

        # The same exports again: the same figures, nothing added.
        import_spend(settings, google, meta)
        wait_for(lambda: settled(settings), timeout=60, what="the re-import applied")
        assert rows_of(settings) == first

        # An export overlapping days 2 and 3, brand_de's day 2 now 1,500.00: replaced.
        overlap = tmp_path / "google-overlap.csv"
        overlap.write_text(
            "Campaign report\n"
            f'"{DAYS[1]} - {DAYS[2]}"\n'
            "Day,Campaign,Campaign ID,Currency code,Cost\n"
            f'{DAYS[1]},Brand DE,1111111111,USD,"1,500.00"\n'
            f"{DAYS[1]},Generic Shoes,3333333333,USD,0.00\n"
            f"{DAYS[2]},Total Reach Q2,4444444444,USD,12.30\n"
            'Total: Account,,,USD,"1,512.30"\n'
        )
        import_spend(settings, overlap)
        changed = {**BRAND_DE, DAYS[1]: Decimal("1500.00")}
        rows = wait_for(lambda: applied(settings, changed), timeout=60, what="overlap applied")
        check_kpis(rows, changed)
        assert {k: v for k, v in rows.items() if k != ("brand_de", DAYS[1])} == {
            k: v for k, v in first.items() if k != ("brand_de", DAYS[1])
        }
        totals = rows_of(settings, "total")
        assert Decimal(str(totals["total", DAYS[1]]["spend"])) == (
            Decimal("1500.00") + SPRING_SALE[DAYS[1]]
        )
