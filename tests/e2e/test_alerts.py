"""CPASpike pages for the campaign whose CPA jumped and stays quiet for steady ones;
CPAAboveTarget pages for it once its CPA passes the target set for it, and for no
campaign that meets its own; every panel of every Grafana dashboard answers with series.

The collector, worker and exporter run as real processes on real Kafka and Redis,
``tracker simulate --scenario cpa-spike`` drives the collector, and a real Prometheus of
our own scrapes the exporter and the collector with the shipped config and rules at
1/120 of the clock (tests/prometheus.py): 15 minutes last 7.5 s, the baseline's 6
hours 3 minutes, the hour it ends before 30 s. Rule time is what the comments count in.

The campaigns share the traffic evenly. For 4 hours every funnel stays as it is: the
least the baseline needs (3 hours of CPA, ending an hour ago). Then one campaign's
conversion rate falls 5-fold, so its CPA rises 5-fold; Prometheus must page within the
minutes the 15-minute CPA needs to rise, plus the alert's ``for: 15m``. Each window
must hold as many conversions as a busy campaign's real 15 minutes, or a steady
campaign's noise would page too: the funnel rates are set high (CTR 40%, CVR 50%),
about 270 conversions per campaign and window, so a rise of 30% in a steady CPA (the
least that scores 3) would take a dip of over 5 standard deviations in its conversions.

Before any traffic, the test saves KPI targets through the exporter's ``PUT /v1/targets``
with an admin token, as a marketer would: every campaign and channel may pay twice its
steady CPA (the spiked CPA is five times it), ROAS, CVR and daily budgets every campaign
meets, and a total daily budget the first second of traffic overspends. The target
alerts need no baseline: CPAAboveTarget is due about 25 rule minutes after the spike
(10 for the 15-minute CPA to pass twice the steady one, then ``for: 15m``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import re
import secrets
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from harness.isolation import free_port, isolated_settings
from harness.processes import tracker, wait_for
from tests.prometheus import ROOT, Prometheus, binary, prometheus, scale_promql
from tracker.settings import Settings
from tracker.simulate import campaigns
from tracker.store import Keys

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(binary() is None, reason="prometheus is not installed"),
]

FACTOR = 1 / 120
HOUR = 3600 * FACTOR  # seconds of test time per hour of rule time
CAMPAIGNS = ("search-000", "social-001", "email-002")  # what --campaigns 3 draws
SPIKING, STEADY = CAMPAIGNS[0], CAMPAIGNS[1:]
SPIKE_AFTER_S = 4 * HOUR
# Firing is due about 20 rule minutes after the spike; the baseline takes the spike in
# from 1 hour after it, and then the alert would fade. Waiting longer proves nothing.
FIRING_DEADLINE_S = SPIKE_AFTER_S + 1 * HOUR
# The target alerts are due about 25 rule minutes after it and then stay firing as long
# as the spike lasts (no baseline takes it in): a busy machine may take longer.
TARGET_DEADLINE_S = SPIKE_AFTER_S + 2 * HOUR
RATE = 900  # events per second: with --ctr 0.4 --cvr 0.5, 8 events per conversion
CTR, CVR, SEED = 0.4, 0.5, 1
SIMULATE = (
    "--scenario=cpa-spike",
    f"--spike-campaign={SPIKING}",
    f"--spike-after={SPIKE_AFTER_S}",
    "--spike-factor=5",
    f"--campaigns={len(CAMPAIGNS)}",
    f"--rate={RATE}",
    f"--ctr={CTR}",
    f"--cvr={CVR}",
    f"--seed={SEED}",
)
# The campaigns as the simulator draws them from its seed: each click costs the
# campaign's CPC, and CVR of the clicks convert, so its steady CPA is CPC / CVR
# (search-000: 1.96 / 0.5 = 3.92; spiked, five times that).
DRAWN = {c.name: c for c in campaigns(len(CAMPAIGNS), random.Random(SEED))}
STEADY_CPA = {name: DRAWN[name].cpc / CVR for name in CAMPAIGNS}
CPA_MAX = {name: round(2 * STEADY_CPA[name], 2) for name in CAMPAIGNS}
SPIKING_CHANNEL = DRAWN[SPIKING].channel
# Bounds every campaign meets, spiked or not (the spiked ROAS is still about 3), so
# each dashboard's target line has a series; and a total budget that fires at once.
ROAS_MIN, CVR_MIN, DAILY_SPEND_MAX, TOTAL_DAILY_SPEND_MAX = 1, 0.05, 1_000_000, 100
TARGETS = {
    "targets": [
        *(
            {
                "dimension": "campaign",
                "value": name,
                "cpa_max": CPA_MAX[name],
                "roas_min": ROAS_MIN,
                "cvr_min": CVR_MIN,
                "daily_spend_max": DAILY_SPEND_MAX,
            }
            for name in CAMPAIGNS
        ),
        *(
            {
                "dimension": "channel",
                "value": DRAWN[name].channel,
                "cpa_max": CPA_MAX[name],
                "daily_spend_max": DAILY_SPEND_MAX,
            }
            for name in CAMPAIGNS
        ),
        {"dimension": "total", "daily_spend_max": TOTAL_DAILY_SPEND_MAX},
    ]
}
ADMIN_TOKEN = secrets.token_urlsafe(24)
WINDOW_S = 900 * FACTOR  # the 15-minute window, in seconds of test time
# The 5 s scrape interval would become 42 ms, but a scrape of the exporter waits for
# Kafka's end offsets and Redis whatever the clock (tens of ms on a busy machine): it is
# scraped every 250 ms instead, still 30 samples per 15-minute window.
SCRAPE_FLOOR = "250ms"


@dataclass
class Stack:
    settings: Settings
    prometheus: Prometheus
    started: float
    """Epoch seconds just before the simulator started."""
    seen: list[dict[str, Any]] = field(default_factory=list)
    """Every alert /api/v1/alerts showed while waiting for one to fire."""
    fired: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)

    def firing(
        self, alertname: str, deadline_s: float = FIRING_DEADLINE_S, **labels: str
    ) -> dict[str, Any]:
        """The alert ``alertname`` with ``labels``, firing; waits for it (once) until
        ``deadline_s`` after the start."""
        key = (alertname, *(f"{name}={value}" for name, value in sorted(labels.items())))
        deadline = self.started + deadline_s
        while key not in self.fired:
            alerts = self.prometheus.alerts()
            self.seen += alerts
            for alert in alerts:
                wanted = {"alertname": alertname, **labels}.items() <= alert["labels"].items()
                if wanted and alert["state"] == "firing":
                    self.fired[key] = alert
            if key not in self.fired:
                if time.time() > deadline:
                    pytest.fail(f"{alertname} {labels} not firing in time\n{self.diagnosis()}")
                time.sleep(0.2)
        return self.fired[key]

    def cpa_spike_firing(self) -> dict[str, Any]:
        """The spiking campaign's firing CPASpike."""
        return self.firing("CPASpike", campaign=SPIKING)

    def seen_of(self, alertname: str) -> list[dict[str, Any]]:
        return [a for a in self.seen if a["labels"]["alertname"] == alertname]

    def ever(self, selector: str, start: float, end: float) -> list[dict[str, Any]]:
        """Series of ALERTS{selector} pending or firing at any evaluation in [start, end]."""
        since = f"[{max(1, round(end - start))}s]"
        found: list[dict[str, Any]] = self.prometheus.get(
            "/api/v1/query", query=f"max_over_time(ALERTS{{{selector}}}{since})", time=str(end)
        )["result"]
        return found

    def value(self, expr: str) -> dict[str, float]:
        """``expr`` now, by campaign."""
        return {
            s["metric"].get("campaign", ""): float(s["value"][1])
            for s in self.prometheus.query(expr)
        }

    def diagnosis(self) -> str:
        since = f"{max(1, round(time.time() - self.started))}s"
        exprs = (
            "campaign:tracker_cpa:ratio15m",
            "campaign:tracker_cpa:baseline_avg6h",
            "campaign:tracker_cpa:baseline_stddev6h",
            "campaign:tracker_cpa:zscore15m",
            f"campaign:tracker_conversions:rate15m * {WINDOW_S}",
            f"campaign:tracker_spend:rate15m * {WINDOW_S}",
            "max by (campaign) (tracker_campaign_target_cpa_max)",
            "max by (channel) (tracker_channel_target_cpa_max)",
            "channel:tracker_cpa:ratio15m",
            "max(tracker_daily_spend)",
            "up",
            f"count_over_time(up[{since}]) - sum_over_time(up[{since}])",  # failed scrapes
            "scrape_duration_seconds",
            "prometheus_rule_group_iterations_missed_total",
        )
        lines = [f"{e} = {self.prometheus.query(e)}" for e in exprs]
        lines.append(f"alerts = {self.prometheus.alerts()}")
        return "\n".join(lines)


def _post(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + "/v1/events",
        data=orjson.dumps(events),
        method="POST",
        headers={"content-type": "application/json", "user-agent": "Mozilla/5.0 test"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = orjson.loads(answer.read())
        return result


def _set_targets(exporter: str) -> None:
    """Save ``TARGETS`` as a marketer does: the exporter's PUT /v1/targets, as an admin."""
    request = urllib.request.Request(
        exporter + "/v1/targets",
        data=orjson.dumps(TARGETS),
        method="PUT",
        headers={"content-type": "application/json", "authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        saved = orjson.loads(answer.read())
    assert len(saved["targets"]) == len(TARGETS["targets"]), saved


def _incidents(collector: str) -> None:
    """What the pipeline-health panels count: a rejected event (dead-lettered), a
    duplicate and a late event (2 hours behind the live traffic: counted, and as late)."""
    old = int((time.time() - 7200) * 1000)
    duplicate = {"type": "click", "campaign": SPIKING, "event_id": uuid.uuid4().hex}
    answer = _post(
        collector,
        [
            {"type": "click", "campaign": SPIKING, "cost": "-1"},
            duplicate,
            duplicate,
            {"type": "click", "campaign": SPIKING, "ts": old},
        ],
    )
    assert (answer["accepted"], answer["rejected"]) == (3, 1), answer


@pytest.fixture(scope="module")
def stack(servers: tuple[str, str]) -> Iterator[Stack]:
    settings = dataclasses.replace(isolated_settings(servers), api_tokens=f"admin:{ADMIN_TOKEN}")
    collector = f"http://127.0.0.1:{settings.collector_port}"
    exporter = f"http://127.0.0.1:{settings.exporter_port}"
    targets = {
        "tracker-exporter": f"127.0.0.1:{settings.exporter_port}",
        "tracker-collector": f"127.0.0.1:{settings.collector_port}",
    }
    with (
        tracker("worker", settings, f"http://127.0.0.1:{settings.worker_port}/healthz"),
        tracker("collector", settings, f"{collector}/healthz"),
        tracker("serve", settings, f"{exporter}/healthz"),
        prometheus(FACTOR, targets, free_port(), SCRAPE_FLOOR) as api,
    ):
        _set_targets(exporter)  # before any spend, so each is judged from the start
        started = time.time()
        with tracker("simulate", settings, None, [f"--collector-url={collector}", *SIMULATE]):
            stack = Stack(settings, api, started)
            # The late event lands on any partition: it is late only once every
            # partition has applied live traffic (and so has a watermark).
            store = redis.Redis.from_url(settings.redis_url)
            try:
                wait_for(
                    lambda: (
                        store.scard(Keys(settings.redis_prefix).sources)
                        >= settings.topic_partitions
                    ),
                    timeout=60,
                    what="every partition applying live traffic",
                )
            finally:
                store.close()
            _incidents(collector)
            yield stack


def test_cpa_spike_fires_for_the_spiking_campaign_only(stack: Stack) -> None:
    alert = stack.cpa_spike_firing()
    fired_at = time.time()

    assert alert["labels"]["severity"] == "warning"
    assert SPIKING in alert["annotations"]["summary"]
    assert "standard deviations above its 6-hour baseline" in alert["annotations"]["description"]

    # Nothing paged before the spike, and no steady campaign was ever pending or firing:
    # ALERTS holds every evaluation's pending and firing alerts, so polls cannot miss one.
    since = f"[{int(fired_at - stack.started) + 5}s]"
    steady = stack.value(
        f'max_over_time(ALERTS{{alertname="CPASpike",campaign!="{SPIKING}"}}{since})'
    )
    assert steady == {}
    assert [a for a in stack.seen_of("CPASpike") if a["labels"]["campaign"] != SPIKING] == []
    spike = stack.started + SPIKE_AFTER_S
    before = stack.prometheus.get(
        "/api/v1/query",
        query=f'max_over_time(ALERTS{{alertname="CPASpike"}}[{int(spike - stack.started)}s])',
        time=str(spike),
    )["result"]
    assert before == []

    # The steady campaigns were eligible to page: they have a baseline, they pass the
    # volume guards by far, and their CPA is where it was.
    zscores = stack.value("campaign:tracker_cpa:zscore15m")
    assert set(zscores) == set(CAMPAIGNS), zscores
    assert all(zscores[c] < 3 for c in STEADY), zscores
    assert zscores[SPIKING] > 3
    conversions = stack.value(f"campaign:tracker_conversions:rate15m * {WINDOW_S}")
    assert all(conversions[c] >= 150 for c in STEADY), conversions
    assert conversions[SPIKING] >= 10, conversions
    spend = stack.value(f"campaign:tracker_spend:rate15m * {WINDOW_S}")
    assert all(amount >= 10 for amount in spend.values()), spend
    ratio = stack.value("campaign:tracker_cpa:ratio15m / campaign:tracker_cpa:baseline_avg6h")
    assert ratio[SPIKING] > 2, ratio
    assert all(0.8 < ratio[c] < 1.25 for c in STEADY), ratio


def test_cpa_above_target_fires_for_the_spiking_campaign_only(stack: Stack) -> None:
    campaign = stack.firing("CPAAboveTarget", TARGET_DEADLINE_S, campaign=SPIKING)
    channel = stack.firing("CPAAboveTarget", TARGET_DEADLINE_S, channel=SPIKING_CHANNEL)
    fired_at = time.time()

    assert campaign["labels"] == {
        "alertname": "CPAAboveTarget",
        "severity": "warning",
        "dimension": "campaign",
        "campaign": SPIKING,
    }
    assert channel["labels"]["dimension"] == "channel"
    annotations = campaign["annotations"]
    assert annotations["summary"] == f"CPA of campaign {SPIKING} is above its target"
    assert f"above its target of at most {CPA_MAX[SPIKING]:g}." in annotations["description"]

    # No steady campaign or channel was ever pending or firing, and nothing before the
    # spike: ALERTS holds every evaluation's pending and firing alerts.
    others = f'alertname="CPAAboveTarget",campaign!="{SPIKING}",channel!="{SPIKING_CHANNEL}"'
    assert stack.ever(others, stack.started, fired_at + 1) == []
    assert (
        stack.ever('alertname="CPAAboveTarget"', stack.started, stack.started + SPIKE_AFTER_S) == []
    )
    spiking = {SPIKING, SPIKING_CHANNEL}
    assert [
        a
        for a in stack.seen_of("CPAAboveTarget")
        if not spiking & {a["labels"].get("campaign"), a["labels"].get("channel")}
    ] == []

    # The exporter serves the targets saved, and the steady campaigns could have paged:
    # they spend far beyond the guard, at about their steady CPA, half their target.
    served = stack.value("max by (campaign) (tracker_campaign_target_cpa_max)")
    assert served == pytest.approx(CPA_MAX), served
    spend = stack.value(f"campaign:tracker_spend:rate15m * {WINDOW_S}")
    assert all(spend[c] >= 2 * CPA_MAX[c] for c in CAMPAIGNS), spend
    cpa = stack.value("campaign:tracker_cpa:ratio15m")
    assert all(0.8 < cpa[c] / STEADY_CPA[c] < 1.25 for c in STEADY), (cpa, STEADY_CPA)
    assert cpa[SPIKING] > CPA_MAX[SPIKING], cpa


def test_targets_met_stay_quiet_and_the_total_budget_pages(stack: Stack) -> None:
    """Every campaign meets its ROAS target and daily budget, spiked or not; all of them
    together overspend the total budget from the first second."""
    total = stack.firing("SpendOverDailyBudget", TARGET_DEADLINE_S, dimension="total")
    assert total["labels"] == {
        "alertname": "SpendOverDailyBudget",
        "severity": "warning",
        "dimension": "total",
    }
    assert float(total["value"]) > TOTAL_DAILY_SPEND_MAX
    # The spike has gone on for a while.
    stack.firing("CPAAboveTarget", TARGET_DEADLINE_S, campaign=SPIKING)
    now = time.time()
    assert stack.ever('alertname="ROASBelowTarget"', stack.started, now) == []
    assert (
        stack.ever('alertname="SpendOverDailyBudget",dimension!="total"', stack.started, now) == []
    )
    roas = stack.value("campaign:tracker_roas:ratio15m")
    assert set(roas) == set(CAMPAIGNS), roas
    assert all(value > 2 * ROAS_MIN for value in roas.values()), roas


# --- Dashboards ---------------------------------------------------------------------

DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES = re.compile(r"label_values\((\w+), *(\w+)\)")
SHOWN_S = 3600 * FACTOR  # the dashboards open on the last hour


def _panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels", []):
        yield panel
        yield from _panels(panel)  # rows hold their collapsed panels


def _choices(stack: Stack, dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Each template variable's values: a custom one's options, a query's answers."""
    choices = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "custom":
            values = [option["value"] for option in variable["options"]]
        else:
            assert variable["type"] == "query", variable
            query = LABEL_VALUES.fullmatch(variable["definition"])
            assert query, variable["definition"]
            metric, label = query.groups()
            values = stack.prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
        assert values, f"${variable['name']} has no values"
        choices[variable["name"]] = values
    return choices


def _grafana(stack: Stack) -> dict[str, str]:
    """What Grafana puts for its own variables, given the datasource's scrape interval
    (timeInterval) and the dashboards' hour: the interval is the scrape interval, and
    $__rate_interval = max($__interval + scrape interval, 4 * scrape interval)."""
    scrape = stack.prometheus.scrape_interval_s
    return {
        "__interval": f"{round(scrape * 1000)}ms",
        "__rate_interval": f"{round(4 * scrape * 1000)}ms",
        "__range": f"{round(SHOWN_S * 1000)}ms",
    }


def _bindings(expr: str, choices: dict[str, list[str]]) -> Iterator[dict[str, str]]:
    """Every combination of values of the template variables ``expr`` uses."""
    used = sorted({next(filter(None, m.groups())) for m in VARIABLE.finditer(expr)})
    used = [name for name in used if name in choices]
    for values in itertools.product(*(choices[name] for name in used)):
        yield dict(zip(used, values, strict=True))


def _substitute(expr: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = next(filter(None, match.groups()))
        assert name in values, f"${name} is neither a template variable nor Grafana's"
        return values[name]

    return VARIABLE.sub(value, expr)


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.stem)
def test_every_dashboard_query_answers_with_series(stack: Stack, path: Path) -> None:
    stack.cpa_spike_firing()  # the baselines and the alert exist by then
    dashboard = json.loads(path.read_text())
    choices = _choices(stack, dashboard)
    end = time.time()
    problems = []
    evaluated = 0
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            # The dashboards' own durations run at the test's clock too.
            expr = scale_promql(target["expr"], FACTOR)
            for values in _bindings(expr, choices):
                query = _substitute(expr, {**_grafana(stack), **values})
                try:
                    series = stack.prometheus.query_range(
                        query, end - SHOWN_S, end, stack.prometheus.scrape_interval_s
                    )
                except AssertionError as exc:
                    problems.append(f"{panel['title']} {values}: {query}: {exc}")
                    continue
                evaluated += 1
                if not series:
                    problems.append(f"{panel['title']} {values}: {query}: no series")
    assert problems == []
    assert evaluated >= len(list(_panels(dashboard)))

    # Annotations: each query works; the spiking campaign's shows its CPASpike.
    for annotation in dashboard["annotations"]["list"]:
        expr = scale_promql(annotation["expr"], FACTOR)
        for values in _bindings(expr, choices):
            names = {
                s["metric"]["alertname"]
                for s in stack.prometheus.query_range(
                    _substitute(expr, {**_grafana(stack), **values}), end - SHOWN_S, end, 1
                )
            }
            if values.get("campaign") == SPIKING:
                assert "CPASpike" in names, annotation["name"]


def test_pipeline_health_counts_what_went_wrong(stack: Stack) -> None:
    """The dead letter, the duplicate and the late event sent at the start are counted."""
    counted = (
        "max(tracker_pipeline_duplicates_total)",
        "max(tracker_pipeline_late_total)",
        'sum(tracker_collector_events_total{outcome="rejected"})',
    )
    wait_for(
        lambda: all(stack.value(expr).get("", 0) >= 1 for expr in counted),
        timeout=30,
        what="the incidents counted",
    )
