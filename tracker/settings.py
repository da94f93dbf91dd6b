"""Every setting of every tracker process, in one typed object.

Each field is settable as a command-line flag (``--kafka-bootstrap``) or a
``TRACKER_*`` environment variable (``TRACKER_KAFKA_BOOTSTRAP``); a flag wins over
the environment, which wins over the default. Defaults work on localhost.
Nothing here runs at import time: :func:`load` is called once by the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker.channels import CHANNELS
from tracker.windows import Calendar, calendar

ENV_PREFIX = "TRACKER_"
# An allowed redirect host: a DNS name or IPv4 address, "*." for its subdomains, a port.
_ALLOWED_HOST = re.compile(
    r"(?P<host>(?:\*\.)?[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)
MIN_SECRET_CHARS = 16


def _setting(default: Any, help: str, secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = _setting("127.0.0.1:9092", "Kafka bootstrap servers, comma separated")
    redis_url: str = _setting("redis://127.0.0.1:6379/0", "Redis URL of the KPI store")
    redis_prefix: str = _setting("tracker", "prefix of every Redis key, to share one Redis")
    events_topic: str = _setting("tracker.events", "topic of accepted events")
    dead_letter_topic: str = _setting("tracker.dead-letters", "topic of rejected input")
    topic_partitions: int = _setting(4, "partitions of the events topic when it is created")
    topic_replicas: int = _setting(1, "replication factor of topics we create (3 in production)")
    collector_host: str = _setting("127.0.0.1", "collector listen address")
    collector_port: int = _setting(8080, "collector listen port")
    exporter_host: str = _setting("127.0.0.1", "exporter and query API listen address")
    exporter_port: int = _setting(9108, "exporter and query API listen port")
    worker_port: int = _setting(6066, "worker health endpoint port")
    app_id: str = _setting("tracker", "Faust application id (the Kafka consumer group)")
    flush_ms: float = _setting(2.0, "collector: longest wait before a batch goes to Kafka")
    flush_max_events: int = _setting(2000, "collector: events per Kafka record at most")
    buffer_max_events: int = _setting(100_000, "collector: events held while Kafka is slow")
    produce_timeout_s: float = _setting(10.0, "collector: wait for Kafka before answering 503")
    kafka_compression: str = _setting(
        "zstd", "collector: compression of Kafka records: none, gzip, snappy, lz4 or zstd"
    )
    max_body_bytes: int = _setting(1_048_576, "collector: largest request body")
    max_batch_events: int = _setting(1000, "collector: most events in one batch request")
    redirect_allow: str = _setting(
        "", "click redirect /r: allowed hosts, e.g. 'shop.example,*.shop.example,shop.example:8443'"
    )
    postback_secrets: str = _setting(
        "", "postback HMAC-SHA256 secrets per partner, e.g. 'net1=<secret>,net2=<secret>'", True
    )
    postback_tolerance_s: int = _setting(300, "postback: largest clock difference of a signed ts")
    max_future_s: int = _setting(300, "reject events timed further than this in the future")
    max_age_days: int = _setting(30, "reject events older than this many days")
    truncate_ip: bool = _setting(True, "store IPs truncated (IPv4 /24, IPv6 /48)")
    base_currency: str = _setting("USD", "ISO 4217 currency all money is reported in")
    currency_rates: str = _setting(
        "", "rates to the base currency, e.g. 'EUR=1.08,GBP=1.27' (1 EUR = 1.08 base)"
    )
    grace_s: int = _setting(
        3600, "a bucket is final this long after it ends; events behind it count as late"
    )
    clock_skew_s: int = _setting(
        300, "attribution: a person's touch timed this far after a conversion still counts"
    )
    timezone: str = _setting(
        "UTC", "IANA time zone of reporting hours and days (day buckets, spend periods, report)"
    )
    lookback_days: float = _setting(
        30.0, "attribution lookback: touches this old still earn credit"
    )
    lookback_by_channel: str = _setting(
        "", "per-channel lookbacks in days overriding lookback_days, e.g. 'display=1,social=7'"
    )
    half_life_days: float = _setting(7.0, "time_decay model: a touch's credit halves this often")
    path_max_touches: int = _setting(20, "touches remembered per person for attribution")
    max_ids_per_user: int = _setting(
        100, "identity: devices (anonymous ids) a user absorbs at most; more links are refused"
    )
    worker_batch_max: int = _setting(200, "worker: Kafka records applied per Redis transaction")
    worker_batch_wait_s: float = _setting(0.05, "worker: longest wait to fill a batch")
    retention_1m_days: int = _setting(2, "days 1-minute buckets are kept in Redis")
    retention_1h_days: int = _setting(90, "days 1-hour buckets are kept in Redis")
    retention_1d_days: int = _setting(1100, "days 1-day buckets are kept in Redis")
    top_campaigns: int = _setting(50, "campaigns labelled in /metrics; the rest is 'other'")
    trend_min_conversions: float = _setting(
        20.0, "trends: conversions each period needs before its CPA change is ranked"
    )
    trend_min_spend: float = _setting(
        100.0, "trends: spend (base currency) each period needs before its ROAS change is ranked"
    )
    budget_history_days: int = _setting(28, "budget: days of history response curves are fitted on")
    budget_min_days: int = _setting(14, "budget: days with spend a unit needs before it is moved")
    budget_max_change: float = _setting(
        0.2, "budget: largest change of a unit's budget per recommendation, as a share"
    )
    log_format: str = _setting("auto", "json, console, or auto (console on a terminal)")
    log_level: str = _setting("info", "debug, info, warning or error")

    def rates(self) -> dict[str, float]:
        """The currency table as a mapping, the base currency at rate 1."""
        table = {self.base_currency.upper(): 1.0}
        for code, text in _pairs(self.currency_rates):
            rate = float(text)
            if not math.isfinite(rate) or rate <= 0:
                raise ValueError(f"rate of {code} must be a positive number, got {text}")
            table[code.upper()] = rate
        return table

    def redirect_hosts(self) -> list[tuple[str, int | None]]:
        """Allowed redirect destinations as (host, port or None), lower-cased.

        A ``*.name`` host stands for the subdomains of name (not name itself); no port
        means the scheme's default port.
        """
        hosts: list[tuple[str, int | None]] = []
        for item in _items(self.redirect_allow.lower()):
            match = _ALLOWED_HOST.fullmatch(item)
            if match is None or (match["port"] and int(match["port"]) > 65535):
                raise ValueError(
                    f"{item!r} is not a host: write 'shop.example', '*.shop.example' or "
                    "'shop.example:8443' (no scheme or path; IDN hosts in their xn-- form)"
                )
            hosts.append((match["host"], int(match["port"]) if match["port"] else None))
        return hosts

    def postback_keys(self) -> dict[str, str]:
        """Each postback partner's secret, from ``postback_secrets``.

        Errors name the partner or the item's position, never a secret.
        """
        keys: dict[str, str] = {}
        for position, (partner, secret) in enumerate(_pairs(self.postback_secrets), 1):
            if not partner or not secret:
                raise ValueError(f"item {position} is not partner=secret")
            if partner in keys:
                raise ValueError(f"partner {partner!r} is given twice")
            if len(secret) < MIN_SECRET_CHARS:
                raise ValueError(
                    f"the secret of {partner!r} is shorter than {MIN_SECRET_CHARS} characters"
                )
            keys[partner] = secret
        return keys

    def calendar(self) -> Calendar:
        """Bucket arithmetic in the reporting time zone."""
        return calendar(self.timezone)

    def lookback_overrides(self) -> dict[str, float]:
        """Per-channel lookbacks in days, from ``lookback_by_channel``."""
        return {channel: float(days) for channel, days in _pairs(self.lookback_by_channel)}


def _items(text: str) -> list[str]:
    """The items of a comma-separated setting, stripped, empty ones left out."""
    return [item for item in (part.strip() for part in text.split(",")) if item]


def _pairs(text: str) -> list[tuple[str, str]]:
    """The ``name=value`` items of a comma-separated setting, both sides stripped."""
    split = (item.partition("=") for item in _items(text))
    return [(name.strip(), value.strip()) for name, _, value in split]


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


_CONVERTERS: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": _parse_bool}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def fields() -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(Settings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare one flag per setting; unset flags fall back to the environment."""
    group = parser.add_argument_group("settings (flag, or TRACKER_<NAME> in the environment)")
    for f in fields():
        group.add_argument(
            flag_name(f.name),
            dest=f.name,
            default=None,
            metavar=str(f.type).upper(),
            help=f"{f.metadata['help']} [{env_name(f.name)}, default {f.default!r}]",
        )


def load(
    namespace: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from flags, then ``TRACKER_*`` variables, then defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields():
        raw = getattr(namespace, f.name, None) if namespace is not None else None
        source = flag_name(f.name)
        if raw is None:
            raw, source = environ.get(env_name(f.name)), env_name(f.name)
        if raw is None:
            continue
        try:
            values[f.name] = _CONVERTERS[str(f.type)](raw)
        except ValueError as exc:
            raise SettingsError(f"{source}: {exc}") from exc
    settings = Settings(**values)
    _check(settings)
    return settings


COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


def _check(settings: Settings) -> None:
    try:
        settings.rates()
    except ValueError as exc:
        raise SettingsError(f"{env_name('currency_rates')}: {exc}") from exc
    try:
        overrides = settings.lookback_overrides()
    except ValueError as exc:
        raise SettingsError(f"{env_name('lookback_by_channel')}: {exc}") from exc
    unknown = set(overrides) - set(CHANNELS)
    if unknown:
        raise SettingsError(f"{env_name('lookback_by_channel')}: unknown channel {sorted(unknown)}")
    for name, parse in (
        ("timezone", settings.calendar),
        ("redirect_allow", settings.redirect_hosts),
        ("postback_secrets", settings.postback_keys),
    ):
        try:
            parse()
        except ValueError as exc:
            raise SettingsError(f"{env_name(name)}: {exc}") from exc
    for name, value, floor in (
        ("half_life_days", settings.half_life_days, 0.0),
        ("lookback_days", settings.lookback_days, 0.0),
    ):
        if not value > floor:
            raise SettingsError(f"{env_name(name)}: must be above {floor:g}")
    for name, value, floor in (
        ("trend_min_conversions", settings.trend_min_conversions, 0.0),
        ("trend_min_spend", settings.trend_min_spend, 0.0),
        ("budget_max_change", settings.budget_max_change, 0.0),
    ):
        if not value >= floor:
            raise SettingsError(f"{env_name(name)}: must be at least {floor:g}")
    if not settings.budget_max_change <= 1:
        raise SettingsError(f"{env_name('budget_max_change')}: must be at most 1 (100%)")
    if not 3 <= settings.budget_min_days <= settings.budget_history_days:
        raise SettingsError(
            f"{env_name('budget_min_days')}: must be between 3 and "
            f"{env_name('budget_history_days')} ({settings.budget_history_days})"
        )
    if settings.clock_skew_s < 0:
        raise SettingsError(f"{env_name('clock_skew_s')}: must be at least 0")
    if settings.max_ids_per_user < 1:
        raise SettingsError(f"{env_name('max_ids_per_user')}: must be at least 1")
    if settings.path_max_touches < 1:
        raise SettingsError(f"{env_name('path_max_touches')}: must be at least 1")
    if settings.kafka_compression not in COMPRESSIONS:
        raise SettingsError(
            f"{env_name('kafka_compression')}: expected one of {', '.join(COMPRESSIONS)}"
        )
    if settings.log_format not in {"auto", "json", "console"}:
        raise SettingsError(f"{env_name('log_format')}: expected auto, json or console")
    if settings.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise SettingsError(f"{env_name('log_level')}: expected debug, info, warning or error")


def documented() -> Sequence[tuple[str, str, str, str]]:
    """(flag, variable, default, meaning) of every setting, for the README table."""
    return [
        (flag_name(f.name), env_name(f.name), repr(f.default), f.metadata["help"]) for f in fields()
    ]


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""
