"""Every setting of every tracker process, in one typed object.

Each field is a ``TRACKER_*`` environment variable (``TRACKER_KAFKA_BOOTSTRAP``) in
every command, and a flag (``--kafka-bootstrap``) of the commands that read it; a flag
wins over the environment, which wins over the default. Defaults work on localhost.
A field's declaration says which commands read it and the range of its values;
:func:`load` checks them and names the setting that is wrong.
Nothing here runs at import time: :func:`load` is called once by the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import operator
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tracker.channels import CHANNELS
from tracker.windows import Calendar, calendar

ENV_PREFIX = "TRACKER_"
# An allowed redirect host: a DNS name or IPv4 address, "*." for its subdomains, a port.
_ALLOWED_HOST = re.compile(
    r"(?P<host>(?:\*\.)?[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)
MIN_SECRET_CHARS = 16
_HASH_TAG = re.compile(r"\{[^}]+\}")
"""What Redis Cluster hashes a key by, when its name holds one."""
API_ROLES = ("read", "admin")
"""Roles of query API tokens, least first; admin may do whatever read may."""
# What an Authorization header carries after "Bearer " (RFC 6750 section 2.1, b64token).
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MAX_PORT = 65535
CLUSTER_SCHEME = "redis+cluster"
"""A Redis URL of this scheme names a node of a Redis Cluster (tracker/redis_clients.py)."""
TLS_CLUSTER_SCHEME = "rediss+cluster"
"""The same, over TLS, as ``rediss`` is ``redis`` over TLS."""
SENTINEL_SCHEME = "redis+sentinel"
"""A Redis URL of this scheme names Redis Sentinels and the primary they watch:
``redis+sentinel://[user:password@]host:26379[,host:port...]/<service>[/<db>]``."""
TLS_SENTINEL_SCHEME = "rediss+sentinel"
"""The same, over TLS."""
SENTINEL_PORT = 26379
SENTINEL_PASSWORD = "sentinel_password"  # noqa: S105 (a name, not a password)
"""The query argument of a Sentinel URL giving the Sentinels' password, where theirs
differs from the primary's."""
_SENTINEL_PASSWORD_GIVEN = re.compile(rf"([?&]{SENTINEL_PASSWORD}=)[^&#]+")
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
"""How a client reaches Kafka, as Kafka names it (``security.protocol``)."""
AWS_MSK_IAM = "AWS_MSK_IAM"
"""AWS MSK's IAM login: OAUTHBEARER on the wire, with a token signed by AWS credentials."""
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", AWS_MSK_IAM)

# The subcommands of tracker/cli.py, which declares one parser each.
COLLECTOR = "collector"
WORKER = "worker"
SERVE = "serve"
SIMULATE = "simulate"
BUDGET = "budget"
REPORT = "report"
REPLAY = "replay-dead-letters"
FORWARD = "forward"
REPLAY_FORWARDING = "replay-forwarding"
IMPORT_SPEND = "import-spend"
GOALS = "goals"
TARGETS = "targets"
CHECK = "check"
COMMANDS = (
    COLLECTOR,
    WORKER,
    SERVE,
    SIMULATE,
    BUDGET,
    REPORT,
    REPLAY,
    IMPORT_SPEND,
    FORWARD,
    REPLAY_FORWARDING,
    GOALS,
    TARGETS,
    CHECK,
)

# Commands that read the same settings for the same reason.
EVERY = frozenset(COMMANDS)
# They create the topics at start (tracker.kafka.ensure_topics).
# They send conversions to ad platforms and keep what they send in Redis (tracker.forward).
FORWARDERS = frozenset({FORWARD, REPLAY_FORWARDING})
TOPIC_MAKERS = frozenset({COLLECTOR, WORKER, REPLAY, IMPORT_SPEND}) | FORWARDERS
# serve reads the events topic's end offsets, for consumer lag.
KAFKA = TOPIC_MAKERS | {SERVE}
# tracker check reaches Kafka and the store as the others do, and reads tracker's topics
# (tracker/check.py).
KAFKA_CLIENTS = KAFKA | {CHECK}
TOPICS_READ = TOPIC_MAKERS | {CHECK}
# The collector and the replay of its dead letters: both judge input by
# collector.validation and write events with collector.producer.kafka_producer.
INTAKE = frozenset({COLLECTOR, REPLAY})
STORE = frozenset({WORKER, SERVE, BUDGET, REPORT})
# They fit response curves and recommend budgets (tracker.decide).
ADVISERS = frozenset({SERVE, BUDGET, REPORT})
# They write events with the collector's collector.producer.BatchingProducer: the
# collector, and the spend import (tracker import-spend, and serve's POST /v1/spend).
EVENT_SENDERS = frozenset({COLLECTOR, SERVE, IMPORT_SPEND})
# The spend import converts money and places days as the workers do (tracker.spend).
SPEND_IMPORT = frozenset({SERVE, IMPORT_SPEND})
# They save goal rules and KPI targets in the store (tracker.rulebook): PUT /v1/goals and
# /v1/targets, and the commands that save them from a file.
RULE_KEEPERS = frozenset({SERVE, GOALS, TARGETS})


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a field declares besides its type and default: its meaning, the commands
    that read it, and the values it takes (bounds inclusive except ``above``)."""

    help: str
    used_by: frozenset[str]
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> Any:
        """``value`` if the declaration allows it, a choice in its declared spelling.

        Raises ValueError saying what is allowed, for the caller to name the setting.
        """
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        if self.choices:
            # Any case, as people type it; stored as declared, as the code compares it.
            for choice in self.choices:
                if value.lower() == choice.lower():
                    return choice
            raise ValueError(f"expected one of {', '.join(self.choices)}, got {value!r}")
        for words, limit in self.bounds():
            if not _HOLDS[words](value, limit):
                raise ValueError(f"must be {words} {limit}")
        return value

    def bounds(self) -> list[tuple[str, float]]:
        """The bounds as ("at least", 1) pairs, for errors and --help."""
        pairs = (("at least", self.minimum), ("above", self.above), ("at most", self.maximum))
        return [(words, limit) for words, limit in pairs if limit is not None]


_HOLDS = {"at least": operator.ge, "above": operator.gt, "at most": operator.le}


def _setting(
    default: Any,
    help: str,
    used_by: Collection[str],
    *,
    secret: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    declared = Declaration(help, frozenset(used_by), minimum, maximum, above, choices)
    return field(default=default, repr=not secret, metadata={"declared": declared})


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = _setting(
        "127.0.0.1:9092", "Kafka bootstrap servers, comma separated", KAFKA_CLIENTS
    )
    kafka_security_protocol: str = _setting(
        "PLAINTEXT",
        "how every Kafka client reaches the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT "
        "or SASL_SSL (README, Running at scale)",
        KAFKA_CLIENTS,
        choices=KAFKA_PROTOCOLS,
    )
    kafka_sasl_mechanism: str = _setting(
        "PLAIN",
        "with SASL: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (an OAuth access "
        "token from the token URL) or AWS_MSK_IAM (a token signed with the machine's AWS "
        "credentials; pip install 'tracker[aws]')",
        KAFKA_CLIENTS,
        choices=SASL_MECHANISMS,
    )
    kafka_sasl_username: str = _setting(
        "", "with SASL: the user name; with OAUTHBEARER, the OAuth client id", KAFKA_CLIENTS
    )
    kafka_sasl_password: str = _setting(
        "",
        "with SASL: the password; with OAUTHBEARER, the OAuth client secret",
        KAFKA_CLIENTS,
        secret=True,
    )
    kafka_sasl_oauth_token_url: str = _setting(
        "",
        "with OAUTHBEARER: the OAuth token endpoint (https://...) that gives the client "
        "its access tokens (client credentials grant)",
        KAFKA_CLIENTS,
    )
    kafka_sasl_oauth_scope: str = _setting(
        "", "with OAUTHBEARER: the scope asked for, if the provider wants one", KAFKA_CLIENTS
    )
    kafka_aws_region: str = _setting(
        "", "with AWS_MSK_IAM: the AWS region of the MSK cluster, e.g. eu-west-1", KAFKA_CLIENTS
    )
    kafka_ssl_ca_file: str = _setting(
        "",
        "with TLS: a PEM file of the authorities the brokers' certificates are checked "
        "against; empty: the machine's",
        KAFKA_CLIENTS,
    )
    kafka_ssl_cert_file: str = _setting(
        "", "with TLS: a PEM certificate (chain) shown to brokers that ask for one", KAFKA_CLIENTS
    )
    kafka_ssl_key_file: str = _setting("", "with TLS: that certificate's PEM key", KAFKA_CLIENTS)
    # The collector reads the day's cookieless salt and the suppression list there.
    redis_url: str = _setting(
        "redis://127.0.0.1:6379/0",
        "Redis URL of the KPI store; rediss:// for TLS, redis+cluster:// for a Redis "
        "Cluster, redis+sentinel://host:26379,.../<service> for a primary Sentinels fail "
        "over (README, Running at scale)",
        STORE | INTAKE | FORWARDERS | RULE_KEEPERS | {CHECK},
    )
    redis_prefix: str = _setting(
        "tracker",
        "prefix of every Redis key, to share one Redis",
        STORE | INTAKE | FORWARDERS | RULE_KEEPERS | {CHECK},
    )
    redis_cluster: bool = _setting(
        False,
        f"the Redis URL names a node of a Redis Cluster (as {CLUSTER_SCHEME}:// and "
        f"{TLS_CLUSTER_SCHEME}:// URLs do)",
        STORE | INTAKE | FORWARDERS | RULE_KEEPERS | {CHECK},
    )
    redis_spread_sums: bool = _setting(
        False,
        "worker, on a Redis Cluster: each partition's sums under a hash tag of its own, "
        "shared by the primaries, not in the store's slot; costs more Redis work in all "
        "(README, Running at scale)",
        {WORKER},
    )
    redis_spread_clicks: bool = _setting(
        False,
        "worker, on a Redis Cluster: the clicks (most of the state) spread by id over 16 "
        "hash tags of their own, shared by the primaries, not in the store's slot "
        "(README, Running at scale)",
        {WORKER},
    )
    redis_spread_paths: bool = _setting(
        False,
        "worker, on a Redis Cluster: each person's touch path under the click shard their "
        "id hashes to, shared by the primaries, not in the store's slot; set it once every "
        "worker is of this version (README, Running at scale)",
        {WORKER},
    )
    events_topic: str = _setting("tracker.events", "topic of accepted events", KAFKA_CLIENTS)
    dead_letter_topic: str = _setting(
        "tracker.dead-letters", "topic of rejected input", TOPICS_READ
    )
    topic_partitions: int = _setting(
        4,
        "partitions of the events topic when it is created",
        TOPIC_MAKERS | EVENT_SENDERS,
        minimum=1,
    )
    topic_replicas: int = _setting(
        1, "replication factor of topics we create (3 in production)", TOPIC_MAKERS, minimum=1
    )
    # Set when a topic is made, never on one that exists: raising it on a topic with
    # fewer replicas in sync would stop every write to it. At most topic_replicas (_check).
    topic_min_insync_replicas: int = _setting(
        0,
        "min.insync.replicas of topics we create: replicas that hold an event before the "
        "collector answers (2 in production, with 3 replicas); 0 leaves the broker's default",
        TOPIC_MAKERS,
        minimum=0,
    )
    # An erased person's events stay in Kafka until its retention removes them (the
    # workers drop them meanwhile): erasure is complete this many days after it.
    events_retention_days: int = _setting(
        7,
        "days Kafka keeps the events and dead-letter topics (set on them at every start)",
        TOPICS_READ,
        minimum=1,
    )
    audit_topic: str = _setting(
        "tracker.audit", "topic of the audit log of erasures", KAFKA_CLIENTS
    )
    collector_host: str = _setting("127.0.0.1", "collector listen address", {COLLECTOR, SIMULATE})
    collector_port: int = _setting(
        8080, "collector listen port", {COLLECTOR, SIMULATE}, minimum=1, maximum=MAX_PORT
    )
    collector_workers: int = _setting(
        1,
        "collector: worker processes on its one port (--workers), one a core at most; "
        "/metrics answers for them all, rate limits hold per worker",
        {COLLECTOR},
        minimum=1,
        maximum=64,
    )
    exporter_host: str = _setting("127.0.0.1", "exporter and query API listen address", {SERVE})
    exporter_port: int = _setting(
        9108, "exporter and query API listen port", {SERVE}, minimum=1, maximum=MAX_PORT
    )
    api_tokens: str = _setting(
        "",
        "query API bearer tokens with their role, e.g. 'read:<token>,admin:<token>'; "
        "empty leaves /v1/* open",
        {SERVE},
        secret=True,
    )
    metrics_auth: bool = _setting(
        False, "/metrics needs a query API token too (read or admin)", {SERVE}
    )
    worker_port: int = _setting(
        6066, "worker health endpoint port", {WORKER}, minimum=1, maximum=MAX_PORT
    )
    app_id: str = _setting("tracker", "Faust application id (the Kafka consumer group)", {WORKER})
    # Static membership (KIP-345). Two live workers with one id fence each other: the
    # Helm chart's StatefulSet gives each its pod name, which only one pod has at a time.
    worker_instance_id: str = _setting(
        "",
        "worker: its Kafka group.instance.id, unique per worker (a pod name): back under it "
        "within the session timeout, it keeps its partitions and the group does not "
        "rebalance; empty: dynamic membership",
        {WORKER},
    )
    # Bounded by the broker's group.min.session.timeout.ms (6 s by default) and by Faust,
    # which refuses one longer than its request timeout (90 s).
    worker_session_timeout_s: float = _setting(
        60.0,
        "worker: how long the group waits for a worker that stopped heartbeating (killed, "
        "cut off) before its partitions go to another; shorter resumes them sooner, but a "
        "long pause (GC, a busy host) then costs a rebalance",
        {WORKER},
        minimum=6,
        maximum=90,
    )
    flush_ms: float = _setting(
        2.0, "collector: longest wait before a batch goes to Kafka", EVENT_SENDERS, minimum=0
    )
    flush_max_events: int = _setting(
        2000, "collector: events per Kafka record at most", EVENT_SENDERS, minimum=1
    )
    buffer_max_events: int = _setting(
        100_000, "collector: events held while Kafka is slow", EVENT_SENDERS, minimum=1
    )
    produce_timeout_s: float = _setting(
        10.0,
        "wait for Kafka to take a record before answering 503",
        INTAKE | EVENT_SENDERS | FORWARDERS,
        above=0,
    )
    kafka_compression: str = _setting(
        "zstd",
        "compression of the Kafka records we produce: none, gzip, snappy, lz4 or zstd",
        INTAKE | EVENT_SENDERS | FORWARDERS,
        choices=COMPRESSIONS,
    )
    max_body_bytes: int = _setting(
        1_048_576, "collector: largest request body", {COLLECTOR}, minimum=1
    )
    max_batch_events: int = _setting(
        1000, "collector: most events in one batch request", {COLLECTOR}, minimum=1
    )
    redirect_allow: str = _setting(
        "",
        "click redirect /r: allowed hosts, e.g. 'shop.example,*.shop.example,shop.example:8443'",
        INTAKE,
    )
    postback_secrets: str = _setting(
        "",
        "postback HMAC-SHA256 secrets per partner, e.g. 'net1=<secret>,net2=<secret>'",
        {COLLECTOR},
        secret=True,
    )
    postback_tolerance_s: int = _setting(
        300, "postback: largest clock difference of a signed ts", {COLLECTOR}, minimum=1
    )
    write_keys: str = _setting(
        "",
        "Segment API: accepted write keys, comma separated; empty accepts any key",
        {COLLECTOR},
        secret=True,
    )
    # Off by default: X-Forwarded-For is not read, so behind a proxy or load balancer
    # every request is the proxy's and any limit would cap the whole site.
    rate_limit: float = _setting(
        0.0,
        "collector: requests/s per client address (IPv6: per /64), then 429; 0 is off. "
        "The TCP peer's: behind a proxy, limit there. Facing clients, 200 is far above "
        "a browser or an office NAT and far below a flood (a core serves ~12,000/s)",
        {COLLECTOR},
        minimum=0,
    )
    rate_burst_s: float = _setting(
        10.0,
        "collector: seconds of its rate a limit lets through at once after a quiet spell "
        "(the burst; at least one request)",
        {COLLECTOR},
        minimum=0,
    )
    postback_rate_limit: float = _setting(
        100.0,
        "postback: requests/s per verified partner, instead of per address; 0: per address. "
        "Far above any network's conversions, it stops a partner's runaway loop",
        {COLLECTOR},
        minimum=0,
    )
    write_key_rate_limit: float = _setting(
        0.0,
        "Segment API: requests/s per write key of TRACKER_WRITE_KEYS, instead of per address "
        "(server SDKs send from few addresses); 0: per address. A browser source's key is "
        "shared by all its visitors: size it to the site's peak",
        {COLLECTOR},
        minimum=0,
    )
    conversion_events: str = _setting(
        "",
        "SDK event names that are conversions, with their goal: 'Signed Up=signup,Lead=lead'",
        INTAKE,
    )
    max_future_s: int = _setting(
        300, "reject events timed further than this in the future", INTAKE, minimum=0
    )
    max_age_days: int = _setting(
        30, "reject events older than this many days", INTAKE | {SIMULATE}, minimum=1
    )
    truncate_ip: bool = _setting(True, "store IPs truncated (IPv4 /24, IPv6 /48)", INTAKE)
    consent_required: bool = _setting(
        False,
        "treat consent not stated as denied: such visitors are counted cookieless",
        {COLLECTOR},
    )
    base_currency: str = _setting(
        "USD",
        "ISO 4217 currency all money is reported in",
        INTAKE | STORE | SPEND_IMPORT | RULE_KEEPERS,
    )
    currency_rates: str = _setting(
        "",
        "rates to the base currency, e.g. 'EUR=1.08,GBP=1.27' (1 EUR = 1.08 base)",
        INTAKE | {WORKER} | SPEND_IMPORT | RULE_KEEPERS,
    )
    max_goals: int = _setting(
        100,
        "most goal rules a save (PUT /v1/goals, tracker goals) may hold; each page view is "
        "matched against every page rule",
        RULE_KEEPERS,
        minimum=1,
        maximum=10_000,
    )
    max_targets: int = _setting(
        1000,
        "most KPI targets a save (PUT /v1/targets, tracker targets) may hold",
        RULE_KEEPERS,
        minimum=1,
        maximum=100_000,
    )
    grace_s: int = _setting(
        3600,
        "a bucket is final this long after it ends; events behind it count as late",
        {WORKER, SERVE, REPORT},
        minimum=0,
    )
    clock_skew_s: int = _setting(
        300,
        "attribution: a person's touch timed this far after a conversion still counts",
        {WORKER},
        minimum=0,
    )
    timezone: str = _setting(
        "UTC",
        "IANA time zone of reporting hours and days (day buckets, spend periods, report)",
        STORE | {SIMULATE} | SPEND_IMPORT,
    )
    # Read at each import, so an edit needs no restart of the exporter.
    campaign_map: str = _setting(
        "",
        "spend import: CSV or JSON file mapping the ad platforms' campaign ids (or names) to "
        "tracker's campaigns (see tracker/spend/campaigns.py); empty: their names as they are",
        {SERVE, IMPORT_SPEND},
    )
    lookback_days: float = _setting(
        30.0, "attribution lookback: touches this old still earn credit", {WORKER}, above=0
    )
    lookback_by_channel: str = _setting(
        "",
        "per-channel lookbacks in days overriding lookback_days, e.g. 'display=1,social=7'",
        {WORKER},
    )
    half_life_days: float = _setting(
        7.0, "time_decay model: a touch's credit halves this often", {WORKER}, above=0
    )
    path_max_touches: int = _setting(
        20,
        "touches remembered per person for attribution (serve: as GET /v1/people shows them)",
        {WORKER, SERVE},
        minimum=1,
    )
    max_ids_per_user: int = _setting(
        100,
        "identity: devices (anonymous ids) a user absorbs at most; more links are refused",
        {WORKER},
        minimum=1,
    )
    worker_batch_max: int = _setting(
        200, "worker: Kafka records applied per Redis transaction", {WORKER}, minimum=1
    )
    worker_batch_wait_s: float = _setting(
        0.05, "worker: longest wait to fill a batch", {WORKER}, above=0
    )
    retention_1m_days: int = _setting(
        2, "days 1-minute buckets are kept in Redis", {WORKER}, minimum=1
    )
    retention_1h_days: int = _setting(
        90, "days 1-hour buckets are kept in Redis", {WORKER}, minimum=1
    )
    retention_1d_days: int = _setting(
        1100, "days 1-day buckets are kept in Redis", {WORKER}, minimum=1
    )
    # Not 0: Redis reads ZREVRANGE 0 -1, every campaign, for a top of none.
    top_campaigns: int = _setting(
        50, "campaigns labelled in /metrics; the rest is 'other'", {SERVE}, minimum=1
    )
    trend_min_conversions: float = _setting(
        20.0,
        "trends: conversions each period needs before its CPA change is ranked",
        {SERVE, REPORT},
        minimum=0,
    )
    trend_min_spend: float = _setting(
        100.0,
        "trends: spend (base currency) each period needs before its ROAS change is ranked",
        {SERVE, REPORT},
        minimum=0,
    )
    # Fewer than 3 days fit no response curve; budget_min_days <= this is checked in _check.
    budget_history_days: int = _setting(
        28, "budget: days of history response curves are fitted on", ADVISERS, minimum=3
    )
    budget_min_days: int = _setting(
        14, "budget: days with spend a unit needs before it is moved", ADVISERS, minimum=3
    )
    budget_max_change: float = _setting(
        0.2,
        "budget: largest change of a unit's budget per recommendation, as a share",
        ADVISERS,
        minimum=0,
        maximum=1,
    )
    # Conversions forwarded to ad platforms (tracker.forward). A destination is on when
    # its id and token are set; its other settings have working defaults.
    meta_pixel_id: str = _setting(
        "", "Meta: the pixel (dataset) conversions are sent to", FORWARDERS
    )
    meta_access_token: str = _setting(
        "", "Meta: Conversions API access token", FORWARDERS, secret=True
    )
    meta_endpoint: str = _setting(
        "https://graph.facebook.com", "Meta: Graph API base URL", FORWARDERS
    )
    meta_event_names: str = _setting(
        "",
        "Meta: event names of goals besides purchase (Purchase) and lead (Lead), "
        "e.g. 'signup=CompleteRegistration'; other goals are not sent",
        FORWARDERS,
    )
    google_ads_customer_id: str = _setting(
        "", "Google Ads: customer id conversions are uploaded to (123-456-7890)", FORWARDERS
    )
    google_ads_login_customer_id: str = _setting(
        "", "Google Ads: manager account id, when access is through one", FORWARDERS
    )
    google_ads_conversion_action: str = _setting(
        "",
        "Google Ads: conversion action id for every goal, or per goal: 'purchase=123,lead=456'",
        FORWARDERS,
    )
    google_ads_developer_token: str = _setting(
        "", "Google Ads: API developer token", FORWARDERS, secret=True
    )
    google_ads_access_token: str = _setting(
        "", "Google Ads: OAuth 2 access token", FORWARDERS, secret=True
    )
    google_ads_endpoint: str = _setting(
        "https://googleads.googleapis.com", "Google Ads: API base URL", FORWARDERS
    )
    tiktok_pixel_code: str = _setting("", "TikTok: the pixel conversions are sent to", FORWARDERS)
    tiktok_access_token: str = _setting(
        "", "TikTok: Events API access token", FORWARDERS, secret=True
    )
    tiktok_endpoint: str = _setting(
        "https://business-api.tiktok.com", "TikTok: Business API base URL", FORWARDERS
    )
    # The forwarder's delivery (tracker.forward.lane and .delivery): how it batches,
    # retries and gives up; the platforms' limits are their modules'.
    forward_group: str = _setting(
        "tracker-forward",
        "forward: Kafka consumer group prefix; each destination reads as <group>.<destination>",
        {FORWARD},
    )
    forward_host: str = _setting(
        "127.0.0.1", "forward: listen address of /metrics, /healthz, /readyz", {FORWARD}
    )
    forward_port: int = _setting(
        9110,
        "forward: listen port of /metrics, /healthz, /readyz",
        {FORWARD},
        minimum=1,
        maximum=MAX_PORT,
    )
    forward_linger_s: float = _setting(
        1.0,
        "forward: longest wait to fill a batch after its first conversion",
        {FORWARD},
        minimum=0,
    )
    forward_timeout_s: float = _setting(
        30.0,
        "forward: a platform's answer to one request is awaited this long",
        FORWARDERS,
        above=0,
    )
    forward_backoff_s: float = _setting(
        1.0,
        "forward: first wait before retrying a throttled or failed request; doubles with each "
        "retry (with jitter, at most 5 minutes), or what the platform says",
        FORWARDERS,
        above=0,
    )
    forward_give_up_s: float = _setting(
        1800.0,
        "forward: throttled and failed requests are retried this long, then their conversions "
        "are dead-lettered (tracker replay-forwarding sends them again)",
        FORWARDERS,
        minimum=0,
    )
    forward_blocked_retry_s: float = _setting(
        60.0,
        "forward: a destination refusing its credentials or ids is tried again this often; "
        "it sends nothing meanwhile",
        FORWARDERS,
        above=0,
    )
    forward_dead_letter_topic: str = _setting(
        "tracker.forward-dead",
        "forward: conversions a platform refused go to <this>.<destination>",
        FORWARDERS,
    )
    log_format: str = _setting(
        "auto",
        "json, console, or auto (console on a terminal)",
        EVERY,
        choices=("auto", "json", "console"),
    )
    log_level: str = _setting(
        "info",
        "debug, info, warning or error",
        EVERY,
        choices=("debug", "info", "warning", "error"),
    )

    @property
    def redis_is_cluster(self) -> bool:
        scheme = self.redis_url.partition("://")[0]
        return self.redis_cluster or scheme in (CLUSTER_SCHEME, TLS_CLUSTER_SCHEME)

    @property
    def redis_is_sentinel(self) -> bool:
        return self.redis_url.partition("://")[0] in (SENTINEL_SCHEME, TLS_SENTINEL_SCHEME)

    @property
    def kafka_tls(self) -> bool:
        """Whether the Kafka clients speak TLS (SSL, SASL_SSL)."""
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def kafka_sasl(self) -> bool:
        """Whether the Kafka clients log in (SASL_PLAINTEXT, SASL_SSL)."""
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def kafka_oauth(self) -> bool:
        """Whether the Kafka clients log in with an access token (SASL OAUTHBEARER on
        the wire: an OAuth provider's, or AWS MSK's IAM login)."""
        return self.kafka_sasl and self.kafka_sasl_mechanism in ("OAUTHBEARER", AWS_MSK_IAM)

    @property
    def redis_shown(self) -> str:
        """The Redis URL as errors and logs show it: its passwords (the Sentinels' own
        too) starred out."""
        url = _SENTINEL_PASSWORD_GIVEN.sub(r"\1***", self.redis_url)
        scheme, _, rest = url.partition("://")
        userinfo, at, hosts = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        return f"{scheme}://{user}:***{at}{hosts}" if colon else url

    @property
    def key_prefix(self) -> str:
        """What every Redis key starts with: on a Redis Cluster, the prefix as a hash tag, so
        that a deployment's keys share a slot and its transactions stay on one primary."""
        if self.redis_is_cluster and not _HASH_TAG.search(self.redis_prefix):
            return f"{{{self.redis_prefix}}}"
        return self.redis_prefix

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

    def api_token_roles(self) -> list[tuple[str, str]]:
        """(role, token) of each query API token, from ``api_tokens``; none: the API is open.

        Errors name the item's position, never a token (nor a role, which a token
        written in its place would be).
        """
        found: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for position, item in enumerate(_items(self.api_tokens), 1):
            role, colon, token = (part.strip() for part in item.partition(":"))
            if not colon or not token:
                raise ValueError(f"item {position} is not role:token (read:<token>, admin:<token>)")
            if role not in API_ROLES:
                raise ValueError(f"item {position}: the role must be one of {', '.join(API_ROLES)}")
            if not _BEARER_TOKEN.fullmatch(token):
                raise ValueError(
                    f"item {position}: a token may hold letters, digits and -._~+/ "
                    "(then = padding) only, as a Bearer header carries it"
                )
            if len(token) < MIN_SECRET_CHARS:
                raise ValueError(
                    f"item {position}: the token is shorter than {MIN_SECRET_CHARS} characters"
                )
            if token in seen:
                raise ValueError(f"items {seen[token]} and {position} hold the same token")
            seen[token] = position
            found.append((role, token))
        return found

    def write_key_set(self) -> frozenset[str]:
        """The Segment write keys the collector accepts; empty: any."""
        return frozenset(_items(self.write_keys))

    def conversion_goals(self) -> dict[str, str]:
        """SDK event name -> conversion goal, from ``conversion_events``.

        ``Order Completed`` and its kin are conversions by Segment's e-commerce spec
        already; these are the site's own names (``Signed Up``).
        """
        goals: dict[str, str] = {}
        for position, (name, goal) in enumerate(_pairs(self.conversion_events), 1):
            if not name or not goal:
                raise ValueError(f"item {position} is not 'Event Name=goal'")
            if name in goals:
                raise ValueError(f"event {name!r} is given twice")
            if len(goal) > 64 or not goal.isprintable():
                raise ValueError(f"goal {goal!r} must be printable, at most 64 characters")
            goals[name] = goal
        return goals

    def calendar(self) -> Calendar:
        """Bucket arithmetic in the reporting time zone."""
        return calendar(self.timezone)

    def lookback_overrides(self) -> dict[str, float]:
        """Per-channel lookbacks in days, from ``lookback_by_channel``."""
        overrides: dict[str, float] = {}
        for channel, text in _pairs(self.lookback_by_channel):
            days = float(text)
            if not math.isfinite(days) or days <= 0:
                raise ValueError(f"the lookback of {channel} must be above 0 days, got {text}")
            overrides[channel] = days
        return overrides


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


def declaration(setting: dataclasses.Field[Any]) -> Declaration:
    declared: Declaration = setting.metadata["declared"]
    return declared


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Declare a flag for each setting ``command`` reads; unset flags defer to the environment.

    Every other setting is None in the parsed namespace: :func:`load` takes it from the
    environment, which all processes share.
    """
    if command not in COMMANDS:
        raise ValueError(f"no settings are declared for {command!r}, only for {COMMANDS}")
    group = parser.add_argument_group("settings (flag, or TRACKER_<NAME> in the environment)")
    for f in fields():
        declared = declaration(f)
        if command not in declared.used_by:
            continue
        notes = [env_name(f.name), f"default {f.default!r}"]
        notes += [f"{words} {limit}" for words, limit in declared.bounds()]
        group.add_argument(
            flag_name(f.name),
            dest=f.name,
            default=None,
            metavar=str(f.type).upper(),
            help=f"{declared.help} [{', '.join(notes)}]",
        )
    parser.set_defaults(**{f.name: None for f in fields()})


def load(
    namespace: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from flags, then ``TRACKER_*`` variables, then defaults.

    Raises :class:`SettingsError` naming the flag or variable of a value out of its
    declared type or range.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in fields():
        raw = getattr(namespace, f.name, None) if namespace is not None else None
        source = flag_name(f.name)
        if raw is None:
            raw, source = environ.get(env_name(f.name)), env_name(f.name)
        if raw is None:
            continue
        try:
            values[f.name] = declaration(f).check(_CONVERTERS[str(f.type)](raw))
        except ValueError as exc:
            raise SettingsError(f"{source}: {exc}") from exc
        sources[f.name] = source
    settings = Settings(**values)
    _check(settings, sources)
    return settings


def _check(settings: Settings, sources: Mapping[str, str]) -> None:
    """What a declaration cannot say: values parsed from text, and one setting bounded by
    another. ``sources`` names where each value came from (flag or variable)."""

    def named(name: str) -> str:
        return sources.get(name, env_name(name))

    for name, parse in (
        ("currency_rates", settings.rates),
        ("lookback_by_channel", settings.lookback_overrides),
        ("timezone", settings.calendar),
        ("redirect_allow", settings.redirect_hosts),
        ("postback_secrets", settings.postback_keys),
        ("conversion_events", settings.conversion_goals),
        ("api_tokens", settings.api_token_roles),
    ):
        try:
            parse()
        except ValueError as exc:
            raise SettingsError(f"{named(name)}: {exc}") from exc
    unknown = set(settings.lookback_overrides()) - set(CHANNELS)
    if unknown:
        raise SettingsError(f"{named('lookback_by_channel')}: unknown channel {sorted(unknown)}")
    if settings.topic_min_insync_replicas > settings.topic_replicas:
        raise SettingsError(
            f"{named('topic_min_insync_replicas')}: must be at most {named('topic_replicas')} "
            f"({settings.topic_replicas}); Kafka would refuse every event"
        )
    _check_kafka_login(settings, named)
    if bool(settings.kafka_ssl_cert_file) != bool(settings.kafka_ssl_key_file):
        raise SettingsError(
            f"{named('kafka_ssl_cert_file')} and {named('kafka_ssl_key_file')} go together"
        )
    if settings.redis_is_sentinel:
        if settings.redis_cluster:
            raise SettingsError(
                f"{named('redis_cluster')}: {named('redis_url')} names Sentinels, "
                "which watch one primary, not a Redis Cluster"
            )
        try:
            sentinel_service(settings.redis_url)
        except ValueError as exc:
            raise SettingsError(f"{named('redis_url')}: {exc}") from exc
    if settings.budget_min_days > settings.budget_history_days:
        raise SettingsError(
            f"{named('budget_min_days')}: must be at most {named('budget_history_days')} "
            f"({settings.budget_history_days})"
        )


def _check_kafka_login(settings: Settings, named: Callable[[str], str]) -> None:
    """What each SASL mechanism needs to log in."""
    if not settings.kafka_sasl:
        return
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == AWS_MSK_IAM:
        if not settings.kafka_aws_region:
            raise SettingsError(
                f"{named('kafka_sasl_mechanism')} {mechanism} needs {named('kafka_aws_region')}"
            )
        if importlib.util.find_spec("aws_msk_iam_sasl_signer") is None:
            raise SettingsError(
                f"{named('kafka_sasl_mechanism')} {mechanism} signs with AWS's own signer: "
                "pip install 'tracker[aws]'"
            )
        return
    if not (settings.kafka_sasl_username and settings.kafka_sasl_password):
        raise SettingsError(
            f"{named('kafka_security_protocol')} {settings.kafka_security_protocol} needs "
            f"{named('kafka_sasl_username')} and {named('kafka_sasl_password')}"
        )
    token_url = urlsplit(settings.kafka_sasl_oauth_token_url)
    if mechanism == "OAUTHBEARER" and not (
        token_url.scheme in ("http", "https") and token_url.netloc
    ):
        raise SettingsError(
            f"{named('kafka_sasl_mechanism')} OAUTHBEARER needs "
            f"{named('kafka_sasl_oauth_token_url')}, the token endpoint's https:// URL"
        )


def sentinel_service(url: str) -> tuple[str, int]:
    """The primary a Sentinel URL names (the name its Sentinels know it by, as in their
    ``sentinel monitor``), and the database number."""
    path = urlsplit(url).path.strip("/")
    service, _, db = path.partition("/")
    if not service:
        raise ValueError(
            f"a {SENTINEL_SCHEME}:// URL names the primary its Sentinels watch: "
            f"{SENTINEL_SCHEME}://host:{SENTINEL_PORT}/<service>[/<db>]"
        )
    if db and not db.isdigit():
        raise ValueError(f"the database after the service {service!r} is a number, not {db!r}")
    return service, int(db or 0)


def documented() -> Sequence[tuple[str, str, str, str, str]]:
    """(flag, variable, default, commands reading it, meaning) of every setting, for the
    README table."""
    rows = []
    for f in fields():
        declared = declaration(f)
        used_by = ", ".join(c for c in COMMANDS if c in declared.used_by)
        if declared.used_by == EVERY:
            used_by = "every command"
        rows.append((flag_name(f.name), env_name(f.name), repr(f.default), used_by, declared.help))
    return rows


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""
