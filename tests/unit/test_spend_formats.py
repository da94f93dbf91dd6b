"""The ad platforms' spend exports as they write them: platform, columns, rows, money, days.

Fixtures in tests/fixtures/spend/ are exports as the platforms make them: title lines,
totals, localized headers, decimal commas, BOM, UTF-16. Amounts are checked against
the figure as a person reads it in the file, in micro-units.
"""

from __future__ import annotations

import codecs
from datetime import date
from pathlib import Path

import pytest

from tracker.spend.formats import (
    NOTE,
    SEVERAL_DAYS,
    TOTAL,
    UNPARSEABLE,
    Export,
    NotUnderstood,
    Row,
    read,
)
from tracker.spend.values import (
    decimal_mark,
    decode,
    parse_amount,
    parse_day,
    parse_micros_cell,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/spend"
MAY_1, MAY_2, MAY_3 = date(2026, 5, 1), date(2026, 5, 2), date(2026, 5, 3)


def fixture(name: str, platform: str = "auto") -> Export:
    return read((FIXTURES / name).read_bytes(), name, platform)


def reasons(export: Export) -> list[tuple[int, str]]:
    return [(s.line, s.reason) for s in export.skipped]


GOOGLE_ROWS = [
    Row(4, MAY_1, "Brand DE", "1111111111", "USD", 1_234_560_000),  # "1,234.56"
    Row(5, MAY_1, "Brand DE", "2222222222", "USD", 65_440_000),
    Row(6, MAY_1, "Generic Shoes", "3333333333", "USD", 310_100_000),
    Row(7, MAY_2, "Brand DE", "1111111111", "USD", 1_000_000_000),  # "1,000.00"
    Row(8, MAY_2, "Generic Shoes", "3333333333", "USD", 0),
    Row(9, MAY_3, "Total Reach Q2", "4444444444", "USD", 12_300_000),  # a name, not a total
]


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter"),
    [("google-report.csv", "UTF-8", "comma"), ("google-excel.csv", "UTF-16", "tab")],
)
def test_a_google_ads_report_skips_its_title_lines_and_totals(
    name: str, encoding: str, delimiter: str
) -> None:
    export = fixture(name)
    assert (export.platform, export.encoding, export.delimiter) == ("google", encoding, delimiter)
    assert list(export.rows) == GOOGLE_ROWS
    assert reasons(export) == [(10, TOTAL), (11, TOTAL), (12, TOTAL)]
    assert [s.detail for s in export.skipped] == [
        "Total: Account",
        "Total: Search",
        "Total: Campaigns",
    ]


def test_the_google_ads_api_export_is_in_micros() -> None:
    export = fixture("google-api.csv")
    assert export.platform == "google"
    assert [(r.day, r.campaign, r.campaign_id, r.micros) for r in export.rows] == [
        (MAY_1, "Brand DE", "1111111111", 1_234_560_000),
        (MAY_1, "Brand DE", "2222222222", 65_440_000),
        (MAY_2, "Brand DE", "1111111111", 1_000_000_000),
    ]


def test_meta_rows_per_ad_set_a_summary_row_and_a_row_over_several_days() -> None:
    export = fixture("meta-en.csv")
    assert (export.platform, export.encoding) == ("meta", "UTF-8 with BOM")
    assert [(r.line, r.day, r.campaign, r.currency, r.micros) for r in export.rows] == [
        (3, MAY_1, "Spring Sale", "USD", 12_500_000),
        (4, MAY_1, "Spring Sale", "USD", 7_250_000),
        (5, MAY_2, "Spring Sale", "USD", 44_000_000),
        (6, MAY_2, "Spring Sale", "USD", 0),
    ]
    assert reasons(export) == [(2, TOTAL), (7, SEVERAL_DAYS)]
    assert export.skipped[1].detail.startswith("2026-05-01 to 2026-05-02")


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter"),
    [
        ("meta-de.csv", "UTF-8 with BOM", "semicolon"),  # "1.234,56"
        ("meta-fr.csv", "UTF-8", "comma"),  # "1 234,56", a no-break space grouping
        ("meta-es.csv", "UTF-8", "semicolon"),
        ("meta-it.csv", "UTF-8", "tab"),
        ("meta-pt.csv", "UTF-8", "comma"),  # "1234.56": Meta's Portuguese keeps the point
        ("meta-nl.csv", "UTF-8 with BOM", "semicolon"),
    ],
)
def test_meta_in_every_language_reads_alike(name: str, encoding: str, delimiter: str) -> None:
    export = fixture(name)
    assert (export.platform, export.encoding, export.delimiter) == ("meta", encoding, delimiter)
    assert [(r.day, r.campaign, r.currency, r.micros) for r in export.rows] == [
        (MAY_1, "Spring Sale", "EUR", 12_500_000),
        (MAY_1, "Spring Sale", "EUR", 7_250_000),
        (MAY_2, "Spring Sale", "EUR", 1_234_560_000),
    ]
    assert export.skipped == ()


def test_meta_takes_the_currency_from_a_column_when_the_header_has_none() -> None:
    text = "Campaign name,Day,Currency,Amount spent\nSpring,2026-05-01,GBP,3.20\n"
    (row,) = read(text.encode(), "x.csv").rows
    assert (row.currency, row.micros) == ("GBP", 3_200_000)


def test_meta_without_a_currency_is_not_understood() -> None:
    with pytest.raises(NotUnderstood, match=r"meta misses the currency"):
        read(b"Campaign name,Day,Amount spent\nSpring,2026-05-01,3.20\n", "x.csv")


def test_microsoft_advertising_with_its_header_lines_and_copyright() -> None:
    export = fixture("microsoft.csv")
    assert export.platform == "microsoft"
    assert [(r.line, r.day, r.campaign, r.campaign_id, r.micros) for r in export.rows] == [
        (12, MAY_1, "Brand US", "555000111", 96_480_000),
        (13, MAY_1, "Brand US - Exact", "555000222", 23_520_000),
        (14, MAY_2, "Brand US", "555000111", 1_080_000_000),
    ]
    assert reasons(export) == [(16, NOTE)]
    assert export.notes == (
        "microsoft.csv says its time zone is '(GMT-05:00) Eastern Time (US & Canada)'",
    )


def test_microsoft_hourly_rows_are_their_day() -> None:
    text = "TimePeriod,CampaignName,CurrencyCode,Spend\n2026-05-01|13,Brand,USD,8.50\n"
    (row,) = read(text.encode(), "x.csv").rows
    assert row.day == MAY_1


@pytest.mark.parametrize("aggregation", ["Weekly", "Monthly", "Summary"])
def test_microsoft_reports_not_by_day_are_refused(aggregation: str) -> None:
    text = f'"Report Aggregation: {aggregation}"\nTimePeriod,CampaignName,CurrencyCode,Spend\n'
    with pytest.raises(NotUnderstood, match=f"Report Aggregation is {aggregation}"):
        read(text.encode(), "x.csv")


def test_a_file_not_understood_says_what_each_platform_misses() -> None:
    with pytest.raises(NotUnderstood) as refused:
        fixture("linkedin.csv")
    assert str(refused.value) == (
        "linkedin.csv: not a spend export tracker reads (no header line among its first 60): "
        "google needs Day, Campaign, Currency code, Cost (or metrics.cost_micros): none found; "
        "meta misses Amount spent, Day (or Reporting starts and Reporting ends) (line 3); "
        "microsoft misses TimePeriod, CurrencyCode, Spend (line 3)"
    )


def test_a_google_report_without_its_currency_names_the_column() -> None:
    with pytest.raises(NotUnderstood, match=r"google misses Currency code \(line 1\)$"):
        read(b"Day,Campaign,Cost\n2026-05-01,Brand,1.00\n", "x.csv", "google")


def test_a_named_platform_is_the_only_one_tried() -> None:
    with pytest.raises(
        NotUnderstood, match=r"\(no header line among its first 60\): meta misses Cam"
    ):
        fixture("google-report.csv", "meta")


def test_unreadable_cells_are_skipped_with_the_column_and_the_value() -> None:
    text = (
        "Day,Campaign,Currency code,Cost\n"
        "yesterday,Brand,USD,1.00\n"
        "2026-05-01,Brand,USD,-3.00\n"
        "2026-05-01,Brand,US,1.00\n"
        "2026-05-01,Brand,USD,1.0000001\n"
        "2026-05-01,Brand,USD,2.00\n"
    )
    export = read(text.encode(), "x.csv")
    assert [r.micros for r in export.rows] == [2_000_000]
    assert [(s.line, s.reason, s.detail) for s in export.skipped] == [
        (2, UNPARSEABLE, "Day: 'yesterday' is not a day (YYYY-MM-DD)"),
        (3, UNPARSEABLE, "Spend: '-3.00' is not an amount (negative)"),
        (4, UNPARSEABLE, "Currency 'US' is not an ISO 4217 code"),
        (5, UNPARSEABLE, "Spend: has more than 6 decimals"),
    ]


# --- text ------------------------------------------------------------------------

TEXT = "Day;Campaign;Currency code;Cost\n2026-05-01;Café Crème;EUR;1,50\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode(), "UTF-8"),
        (codecs.BOM_UTF8 + TEXT.encode(), "UTF-8 with BOM"),
        (TEXT.encode("utf-16"), "UTF-16"),  # with its BOM
        (TEXT.encode("utf-16-le"), "UTF-16"),  # without: every other byte is zero
        (TEXT.encode("utf-16-be"), "UTF-16"),
        (TEXT.encode("cp1252"), "Windows-1252"),  # é is not UTF-8 there
    ],
)
def test_every_encoding_reads_the_same_text(data: bytes, encoding: str) -> None:
    assert decode(data, "x.csv") == (TEXT, encoding)
    (row,) = read(data, "x.csv").rows
    assert (row.campaign, row.micros) == ("Café Crème", 1_500_000)


def test_bytes_that_are_no_text_are_not_understood() -> None:
    with pytest.raises(NotUnderstood, match="not text"):
        decode(b"\x81\x8d\x8f\x90\x9d", "x.csv")


# --- numbers and days ------------------------------------------------------------


@pytest.mark.parametrize(
    ("amounts", "mark"),
    [
        (["1,234.56", "3"], "."),
        (["1.234,56"], ","),
        (["12,5", "1,234"], ","),  # 1,234 is then one and a bit
        (["12.50", "1,234"], "."),  # and here a thousand and more
        (["1.234.567"], ","),  # a repeated mark groups
        (["1 234,56"], ","),
        (["12", "0", ""], "."),
        (["n/a", "1,2.3.x", "12,50"], ","),  # what is no amount decides nothing
    ],
)
def test_the_decimal_mark_is_what_the_amounts_show(amounts: list[str], mark: str) -> None:
    assert decimal_mark(amounts) == mark


def test_yen_have_no_decimals_to_mark() -> None:
    assert decimal_mark(["1,234", "56"], whole_units=True) == "."
    assert decimal_mark(["1.234"], whole_units=True) == ","


def test_amounts_that_never_show_the_mark_are_refused() -> None:
    with pytest.raises(NotUnderstood, match=r"'1\.234' may be thousands or have three decimals"):
        decimal_mark(["1.234", "5"])


def test_amounts_mixing_both_marks_are_refused() -> None:
    with pytest.raises(NotUnderstood, match="mix decimal points and decimal commas"):
        decimal_mark(["1,234.56", "7,5"])


@pytest.mark.parametrize(
    ("text", "mark", "micros"),
    [
        ("1,234.56", ".", 1_234_560_000),
        ("1.234,56", ",", 1_234_560_000),
        ("1\u202f234,56", ",", 1_234_560_000),  # a narrow no-break space
        ("1'234.56", ".", 1_234_560_000),  # Swiss
        ("0.000001", ".", 1),
        ("--", ".", 0),
        ("", ",", 0),
    ],
)
def test_amounts_are_exact_micro_units(text: str, mark: str, micros: int) -> None:
    assert parse_amount(text, mark) == micros


@pytest.mark.parametrize("text", ["1,23.4", "12.5.0", "1e3", "$12.50", "twelve"])
def test_what_is_no_amount_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not an amount"):
        parse_amount(text, ".")


def test_cost_micros_are_whole() -> None:
    assert parse_micros_cell("1234560000") == 1_234_560_000
    for bad in ("12.5", "9" * 20):
        with pytest.raises(ValueError, match="not a whole number"):
            parse_micros_cell(bad)


DAYS_WRITTEN = ["2026-05-01", "2026/05/01", "2026-05-01 00:00:00", "2026-05-01|13"]
DAYS_WRITTEN += ["May 1, 2026", "Fri, May 1, 2026", "1 May 2026", "1 May 2026 "]


@pytest.mark.parametrize("text", DAYS_WRITTEN)
def test_days_as_the_platforms_write_them(text: str) -> None:
    assert parse_day(text) == MAY_1


@pytest.mark.parametrize("text", ["01/05/2026", "5/1/2026", "2026-02-30", "0001-01-01", ""])
def test_days_that_are_ambiguous_or_none_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a day"):
        parse_day(text)
