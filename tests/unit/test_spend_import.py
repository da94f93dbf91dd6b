"""From exports to spend events: summing, mapping, channels, currencies, days, the summary.

The expected figures are the fixtures' amounts added by hand, in Decimal; events are
checked as the worker will read them (one per campaign and reporting day, all with the
import's time as their report time).
"""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tracker.events import Event
from tracker.money import convert
from tracker.settings import Settings
from tracker.spend import campaigns
from tracker.spend.campaigns import AS_NAMED, MAPPED_BY_ID, MAPPED_BY_NAME, CampaignMap
from tracker.spend.days import Placement, place
from tracker.spend.formats import UNPARSEABLE
from tracker.spend.importer import ZERO, Import, Options, Refused, Source, plan
from tracker.windows import HOUR, calendar

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/spend"
NOW = 1_780_000_000_000
SETTINGS = Settings(currency_rates="EUR=1.08")


def source(name: str) -> Source:
    return Source(name, (FIXTURES / name).read_bytes())


def campaign_map(name: str = "campaign-map.csv") -> CampaignMap:
    return campaigns.parse((FIXTURES / name).read_bytes(), name)


def run(*names: str, settings: Settings = SETTINGS, **options: Any) -> Import:
    return plan(
        [source(n) for n in names], dataclasses.replace(Options(), **options), settings, NOW
    )


def micros(units: str) -> int:
    return int(Decimal(units) * 1_000_000)


def figures(planned: Import) -> dict[tuple[str, str], tuple[str, str, int]]:
    """(campaign, period) -> (channel, currency, micros) of each event."""
    found = {}
    for event in planned.events:
        assert event.campaign is not None
        assert event.period is not None
        assert event.cost is not None
        found[event.campaign, event.period] = (event.channel, event.currency, event.cost)
    assert len(found) == len(planned.events), "one event per campaign and day"
    return found


def test_rows_of_one_campaign_and_day_are_summed_into_one_figure() -> None:
    planned = run("google-report.csv", "meta-de.csv", campaigns=campaign_map())
    assert figures(planned) == {
        # Google: campaign ids 1111111111 and 2222222222 both map to brand_de.
        ("brand_de", "2026-05-01"): ("search", "USD", micros("1234.56") + micros("65.44")),
        ("brand_de", "2026-05-02"): ("search", "USD", micros("1000.00")),
        ("Generic Shoes", "2026-05-01"): ("search", "USD", micros("310.10")),
        ("Generic Shoes", "2026-05-02"): ("search", "USD", 0),  # the export says: nothing
        ("Total Reach Q2", "2026-05-03"): ("search", "USD", micros("12.30")),
        # Meta: two ad sets of "Spring Sale" (mapped by name) on May 1, in EUR.
        ("spring_sale", "2026-05-01"): ("social", "EUR", micros("12.50") + micros("7.25")),
        ("spring_sale", "2026-05-02"): ("social", "EUR", micros("1234.56")),
    }


def test_every_figure_is_a_spend_report_of_the_import_s_time() -> None:
    planned = run("google-report.csv", "meta-de.csv")
    assert {(e.type, e.ts, e.received_at) for e in planned.events} == {("spend", NOW, NOW)}
    assert len({e.event_id for e in planned.events}) == len(planned.events)
    assert not any(e.bot or e.anonymous_id or e.user_id for e in planned.events)


def test_the_same_files_twice_give_the_same_figures() -> None:
    assert figures(run("google-excel.csv")) == figures(run("google-excel.csv"))
    assert figures(run("google-excel.csv")) == figures(run("google-report.csv"))


def test_the_summary_says_what_was_imported() -> None:
    summary = run("google-report.csv", "meta-de.csv", campaigns=campaign_map()).summary
    usd = (
        Decimal("1234.56")
        + Decimal("65.44")
        + Decimal("310.10")
        + Decimal("1000")
        + Decimal("12.30")
    )
    eur = Decimal("12.50") + Decimal("7.25") + Decimal("1234.56")
    assert summary.spend == {"USD": micros(str(usd)), "EUR": micros(str(eur))}
    # Each EUR figure converted on its own, as the worker does: 19.75 and 1234.56 * 1.08.
    base = usd + Decimal("19.75") * Decimal("1.08") + Decimal("1234.56") * Decimal("1.08")
    assert summary.spend_base == micros(str(base)) == micros("3977.0548")
    assert (summary.rows, summary.figures, summary.zero_figures) == (8, 7, 1)
    assert (summary.campaigns, summary.days) == (4, ("2026-05-01", "2026-05-02", "2026-05-03"))
    assert summary.mapped == {MAPPED_BY_ID: 3, MAPPED_BY_NAME: 3}
    assert [(p.file, p.line, p.reason) for p in summary.skipped] == [
        ("google-report.csv", 8, ZERO),
        ("google-report.csv", 10, "total row"),
        ("google-report.csv", 11, "total row"),
        ("google-report.csv", 12, "total row"),
    ]
    assert summary.render("tracker.events") == "\n".join(
        [
            "read google-report.csv: google, UTF-8, comma-separated: 5 rows, 4 skipped",
            "read meta-de.csv: meta, UTF-8 with BOM, semicolon-separated: 3 rows, 0 skipped",
            "imported 8 rows: 7 spend figures (1 of no spend), 4 campaigns, 3 days "
            "(2026-05-01 to 2026-05-03)",
            "spend: 1254.31 EUR, 2622.40 USD",
            "in USD: 3977.0548",
            "campaign map: 3 rows by campaign id, 3 by campaign name",
            "skipped 4 rows:",
            "       3  total row",
            "       1  zero spend",
            "sent 7 spend figures to tracker.events",
        ]
    )
    assert summary.render(None).endswith("dry run: nothing sent (7 spend figures would be)")


def test_the_answer_of_the_api_is_the_summary_as_json() -> None:
    answer = run("meta-en.csv").summary.as_json(None)
    assert answer == {
        "files": [
            {
                "name": "meta-en.csv",
                "platform": "meta",
                "encoding": "UTF-8 with BOM",
                "delimiter": "comma",
                "rows": 3,
                "skipped": 3,
            }
        ],
        "rows": 3,
        "figures": 2,
        "zero_figures": 0,
        "campaigns": 1,
        "days": 2,
        "first_day": "2026-05-01",
        "last_day": "2026-05-02",
        "spend": {"USD": 63.75},
        "currency": "USD",
        "spend_base": 63.75,
        "mapped": {"id": 0, "name": 0},
        "skipped": {"not one day": 1, "total row": 1, "zero spend": 1},
        "problems": [
            {
                "file": "meta-en.csv",
                "line": 7,
                "reason": "not one day",
                "detail": "2026-05-01 to 2026-05-02: export with the breakdown by day",
            }
        ],
        "timezone": {
            "account": "UTC",
            "reporting": "UTC",
            "straddling_days": 0,
            "hours_outside": 0.0,
        },
        "notes": [],
        "dry_run": True,
        "sent": 0,
    }


def test_a_currency_without_a_rate_refuses_the_whole_import() -> None:
    with pytest.raises(Refused) as refused:
        run("google-report.csv", "meta-de.csv", settings=Settings())
    assert str(refused.value) == (
        "meta-de.csv: no rate for EUR (3 rows; TRACKER_CURRENCY_RATES has USD): nothing was "
        "imported. Add EUR=<rate> to the rates of every tracker process, the workers' first"
    )


def test_an_export_given_twice_is_refused() -> None:
    with pytest.raises(Refused, match=r"the same export as google-excel\.csv: its rows would"):
        run("google-excel.csv", "meta-de.csv", "google-excel.csv")


def test_a_file_not_understood_refuses_the_whole_import() -> None:
    with pytest.raises(Refused, match=r"linkedin\.csv: not a spend export"):
        run("google-report.csv", "linkedin.csv")


def test_one_campaign_day_on_two_channels_is_refused_unless_one_channel_is_given() -> None:
    both = CampaignMap({(None, "Brand DE"): "brand", (None, "Spring Sale"): "brand"})
    with pytest.raises(Refused, match=r"'brand' has spend on search and social on 2026-05-01"):
        run("google-report.csv", "meta-de.csv", campaigns=both)
    summed = figures(run("google-report.csv", "meta-de.csv", campaigns=both, channel="search"))
    # Two currencies in one figure: it is given in the base currency.
    usd = micros("1234.56") + micros("65.44") + convert(micros("19.75"), "EUR", {"EUR": 1.08})
    assert summed["brand", "2026-05-01"] == ("search", "USD", usd)


def test_several_files_in_one_figure_are_noted() -> None:
    planned = run("google-report.csv", "google-api.csv")
    assert figures(planned)["Brand DE", "2026-05-01"][2] == 2 * micros("1300.00")
    assert planned.summary.notes == (
        "2 spend figures sum rows of several files: an import of one of them alone "
        "replaces the sum, so import them together again when one changes",
    )


def test_an_invalid_campaign_skips_its_rows_only() -> None:
    long = "x" * 300
    data = f"Day,Campaign,Currency code,Cost\n2026-05-01,{long},USD,1\n2026-05-01,ok,USD,2\n"
    planned = plan([Source("x.csv", data.encode())], Options(), SETTINGS, NOW)
    assert list(figures(planned)) == [("ok", "2026-05-01")]
    (problem,) = planned.summary.skipped
    assert (problem.line, problem.reason) == (2, UNPARSEABLE)
    assert problem.detail.endswith("campaign: longer than 256 characters")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"platform": "tiktok"}, "platform must be auto or one of google, meta, microsoft"),
        ({"channel": "tv"}, "channel must be one of search, social"),
        ({"account_timezone": "Mars/Base"}, "account time zone: 'Mars/Base' is not an IANA"),
        ({"account_timezone": ""}, "account time zone: '' is not an IANA"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(Refused, match=message):
        run("google-report.csv", **options)


# --- days ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "reporting", "day", "period", "outside_h"),
    [
        ("UTC", "UTC", "2026-05-01", "2026-05-01", 0),
        ("Europe/London", "UTC", "2026-01-15", "2026-01-15", 0),  # GMT: the same days
        ("Europe/London", "UTC", "2026-05-01", "2026-05-01", 1),  # BST: starts at 23:00 UTC
        ("America/Los_Angeles", "UTC", "2026-05-01", "2026-05-01", 7),
        ("Asia/Tokyo", "UTC", "2026-05-01", "2026-05-01", 9),
        ("Asia/Kolkata", "UTC", "2026-05-01", "2026-05-01", 5.5),
        ("Etc/GMT-12", "UTC", "2026-05-01", "2026-05-01", 12),  # halves: the same date
        # Auckland (UTC+12) seen from Los Angeles (UTC-7): its May 1 is mostly LA's April 30.
        ("Pacific/Auckland", "America/Los_Angeles", "2026-05-01", "2026-04-30", 5),
        # New York's spring-forward day lasts 23 hours: 19 of them on UTC's March 8.
        ("America/New_York", "UTC", "2026-03-08", "2026-03-08", 4),
        ("UTC", "America/New_York", "2026-03-08", "2026-03-08", 5),  # 00:00-05:00 UTC: the 7th
    ],
)
def test_an_account_day_counts_in_the_reporting_day_holding_most_of_it(
    account: str, reporting: str, day: str, period: str, outside_h: float
) -> None:
    placed = place(date.fromisoformat(day), calendar(account), calendar(reporting))
    assert placed == Placement(period, int(outside_h * HOUR))


def test_an_import_from_another_zone_says_how_its_days_are_placed() -> None:
    summary = run("meta-en.csv", account_timezone="America/Los_Angeles").summary
    assert (summary.straddling, summary.outside_ms) == (2, 7 * HOUR)
    assert summary.notes == (
        "the accounts' days (America/Los_Angeles) are not UTC days: each day's spend counts "
        "whole in the UTC day holding most of its hours, as a day's figure cannot be split by "
        "hour (days straddling two: 2; up to 7 h of one outside its UTC day)",
    )
    assert summary.as_json(None)["timezone"] == {
        "account": "America/Los_Angeles",
        "reporting": "UTC",
        "straddling_days": 2,
        "hours_outside": 7.0,
    }


def test_an_account_a_day_ahead_moves_its_figures_a_day() -> None:
    reporting = Settings(timezone="America/Los_Angeles")
    planned = run("meta-en.csv", settings=reporting, account_timezone="Pacific/Auckland")
    assert sorted(period for _, period in figures(planned)) == ["2026-04-30", "2026-05-01"]


def test_a_report_naming_its_time_zone_is_noted() -> None:
    notes = run("microsoft.csv").summary.notes
    assert notes == (
        "microsoft.csv says its time zone is '(GMT-05:00) Eastern Time (US & Canada)'",
        "days were read as UTC days",
    )


# --- the campaign map ------------------------------------------------------------


@pytest.mark.parametrize("name", ["campaign-map.csv", "campaign-map.json"])
def test_a_map_in_csv_or_json(name: str) -> None:
    mapping = campaign_map(name)
    assert mapping.campaign("google", "2222222222", "Brand DE") == ("brand_de", MAPPED_BY_ID)
    assert mapping.campaign("meta", None, "Spring Sale") == ("spring_sale", MAPPED_BY_NAME)
    assert mapping.campaign("microsoft", "555000222", "x") == ("brand_us", MAPPED_BY_ID)
    # Entries for one platform are that platform's only; unmapped names stay as they are.
    assert mapping.campaign("meta", "555000222", "Brand US") == ("Brand US", AS_NAMED)


def test_a_platform_s_own_entry_wins_over_one_for_any_platform() -> None:
    mapping = campaigns.parse(b'{"7": "any", "meta": {"7": "meta_7"}}', "m.json")
    assert mapping.campaign("meta", "7", "x") == ("meta_7", MAPPED_BY_ID)
    assert mapping.campaign("google", "7", "x") == ("any", MAPPED_BY_ID)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("campaign_id,campaign\n1,a\n1,b\n", r"m: '1' is mapped twice: to 'a' and to 'b'"),
        ("id,campaign\n1,a\n", "needs the columns campaign_id and campaign"),
        ("platform,campaign_id,campaign\ntiktok,1,a\n", "platform 'tiktok' is none of"),
        ("campaign_id,campaign\n1,\n", "the campaign must be 1 to 256 printable characters"),
        ('{"1": 2}', "2 is not a string"),
        ('{"1": "a"', "not JSON"),
    ],
)
def test_a_bad_map_is_refused_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        campaigns.parse(text.encode(), "m")


def test_no_map_file_is_an_empty_map(tmp_path: Path) -> None:
    assert campaigns.load("") == CampaignMap()
    path = tmp_path / "m.csv"
    path.write_text("campaign_id;campaign\n42;answer\n")
    assert campaigns.load(str(path)).campaign("google", "42", "x") == ("answer", MAPPED_BY_ID)


def test_events_are_what_the_worker_reads() -> None:
    (event,) = run("google-api.csv", platform="google").events[:1]
    assert isinstance(event, Event)
    assert (event.campaign, event.period, event.cost, event.currency) == (
        "Brand DE",
        "2026-05-01",
        micros("1234.56") + micros("65.44"),
        "USD",
    )
