from __future__ import annotations

import argparse
import dataclasses

import pytest

from tracker.settings import (
    Settings,
    SettingsError,
    add_arguments,
    documented,
    env_name,
    flag_name,
    load,
)


def flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    loaded = load(flags(), {})
    assert loaded == Settings()
    assert loaded.kafka_bootstrap == "127.0.0.1:9092"
    assert loaded.topic_partitions == 4
    assert loaded.truncate_ip is True


def test_names() -> None:
    assert env_name("kafka_bootstrap") == "TRACKER_KAFKA_BOOTSTRAP"
    assert flag_name("kafka_bootstrap") == "--kafka-bootstrap"


def test_environment_overrides_default() -> None:
    loaded = load(None, {"TRACKER_TOPIC_PARTITIONS": "12", "TRACKER_FLUSH_MS": "0.5"})
    assert loaded.topic_partitions == 12  # converted to int
    assert loaded.flush_ms == 0.5  # converted to float


def test_flag_overrides_environment() -> None:
    environ = {"TRACKER_TOPIC_PARTITIONS": "12", "TRACKER_REDIS_PREFIX": "from-env"}
    loaded = load(flags("--topic-partitions", "8"), environ)
    assert loaded.topic_partitions == 8  # flag > env
    assert loaded.redis_prefix == "from-env"  # no flag: env > default
    assert loaded.app_id == "tracker"  # neither: default


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_REDIS_PREFIX", "from-process")
    assert load().redis_prefix == "from-process"


def test_unrelated_variables_ignored() -> None:
    assert load(None, {"KAFKA_BOOTSTRAP": "x", "TRACKER_NOPE": "y"}) == Settings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_bool_parsing(text: str, expected: bool) -> None:
    assert load(None, {"TRACKER_TRUNCATE_IP": text}).truncate_ip is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", "y"])
def test_bad_bool_names_the_variable(text: str) -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_TRUNCATE_IP: expected true or false"):
        load(None, {"TRACKER_TRUNCATE_IP": text})


def test_bad_int_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_COLLECTOR_PORT: invalid literal"):
        load(None, {"TRACKER_COLLECTOR_PORT": "eighty"})


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"^--flush-ms: could not convert"):
        load(flags("--flush-ms", "soon"), {"TRACKER_FLUSH_MS": "2"})


@pytest.mark.parametrize("rates", ["EUR", "EUR=", "EUR=abc", "EUR=1.08;GBP=1.27"])
def test_bad_currency_rates(rates: str) -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_CURRENCY_RATES: "):
        load(None, {"TRACKER_CURRENCY_RATES": rates})


def test_bad_log_format() -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_LOG_FORMAT: "):
        load(None, {"TRACKER_LOG_FORMAT": "xml"})


def test_kafka_compression_is_one_aiokafka_knows() -> None:
    assert load(environ={"TRACKER_KAFKA_COMPRESSION": "none"}).kafka_compression == "none"
    with pytest.raises(SettingsError, match=r"^TRACKER_KAFKA_COMPRESSION: expected one of"):
        load(environ={"TRACKER_KAFKA_COMPRESSION": "brotli"})


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize(
    ("base", "rates", "expected"),
    [
        ("USD", "", {"USD": 1.0}),
        ("USD", "EUR=1.08, gbp = 1.27,", {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}),
        ("eur", "usd=0.93", {"EUR": 1.0, "USD": 0.93}),  # codes are upper-cased
        ("USD", " , ,EUR=1.1", {"USD": 1.0, "EUR": 1.1}),  # empty items skipped
    ],
)
def test_rates_table(base: str, rates: str, expected: dict[str, float]) -> None:
    assert Settings(base_currency=base, currency_rates=rates).rates() == expected


def test_rates_from_the_environment() -> None:
    loaded = load(None, {"TRACKER_CURRENCY_RATES": "EUR=1.08", "TRACKER_BASE_CURRENCY": "usd"})
    assert loaded.rates() == {"USD": 1.0, "EUR": 1.08}


@pytest.mark.parametrize("rates", ["EUR=nan", "EUR=inf", "EUR=-1.08"])
def test_unusable_rates_rejected(rates: str) -> None:
    with pytest.raises(SettingsError, match="TRACKER_CURRENCY_RATES"):
        load(None, {"TRACKER_CURRENCY_RATES": rates})


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().app_id = "other"  # type: ignore[misc]


def test_documented() -> None:
    rows = documented()
    assert len(rows) == len(dataclasses.fields(Settings))
    flag, variable, default, meaning = rows[0]
    assert (flag, variable, default) == (
        "--kafka-bootstrap",
        "TRACKER_KAFKA_BOOTSTRAP",
        "'127.0.0.1:9092'",
    )
    assert meaning == "Kafka bootstrap servers, comma separated"


def test_every_setting_has_a_flag() -> None:
    namespace = flags()
    for field in dataclasses.fields(Settings):
        assert getattr(namespace, field.name) is None  # unset flags defer to the environment


def test_the_reporting_time_zone() -> None:
    assert Settings().timezone == "UTC"
    assert Settings().calendar().timezone == "UTC"
    loaded = load(None, {"TRACKER_TIMEZONE": "Europe/Berlin"})
    assert loaded.calendar().timezone == "Europe/Berlin"
    assert loaded.calendar() is loaded.calendar()  # one shared calendar per zone
    assert load(flags("--timezone", "Asia/Kolkata"), {}).timezone == "Asia/Kolkata"


@pytest.mark.parametrize("zone", ["Europe/Nowhere", "CEST", "", "+02:00", "../etc/passwd"])
def test_an_unknown_time_zone_names_the_variable(zone: str) -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_TIMEZONE: .* is not an IANA time zone"):
        load(None, {"TRACKER_TIMEZONE": zone})


def test_a_time_zone_folder_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_TIMEZONE: "):
        load(None, {"TRACKER_TIMEZONE": "America"})


def test_clock_skew_is_not_negative() -> None:
    assert Settings().clock_skew_s == 300
    assert load(None, {"TRACKER_CLOCK_SKEW_S": "0"}).clock_skew_s == 0
    with pytest.raises(SettingsError, match=r"^TRACKER_CLOCK_SKEW_S: must be at least 0"):
        load(None, {"TRACKER_CLOCK_SKEW_S": "-1"})
