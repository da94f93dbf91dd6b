"""CPASpike pages for the campaign whose CPA jumped and stays quiet for steady ones;
every panel of every Grafana dashboard answers with series.

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
"""

from __future__ import annotations

import itertools
import json
import re
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

from tests.conftest import free_port, isolated_settings
from tests.processes import tracker, wait_for
from tests.prometheus import ROOT, Prometheus, binary, prometheus, scale_promql
from tracker.settings import Settings
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
RATE = 900  # events per second: with --ctr 0.4 --cvr 0.5, 8 events per conversion
SIMULATE = (
    "--scenario=cpa-spike",
    f"--spike-campaign={SPIKING}",
    f"--spike-after={SPIKE_AFTER_S}",
    "--spike-factor=5",
    f"--campaigns={len(CAMPAIGNS)}",
    f"--rate={RATE}",
    "--ctr=0.4",
    "--cvr=0.5",
    "--seed=1",
)
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
    """Every CPASpike alert /api/v1/alerts showed while waiting."""
    fired: dict[str, Any] | None = None

    def cpa_spike_firing(self) -> dict[str, Any]:
        """The spiking campaign's firing CPASpike; waits for it (once) until its deadline."""
        deadline = self.started + FIRING_DEADLINE_S
        while self.fired is None:
            alerts = [a for a in self.prometheus.alerts() if a["labels"]["alertname"] == "CPASpike"]
            self.seen += alerts
            self.fired = next(
                (
                    a
                    for a in alerts
                    if a["labels"].get("campaign") == SPIKING and a["state"] == "firing"
                ),
                None,
            )
            if self.fired is None and time.time() > deadline:
                pytest.fail(f"CPASpike not firing for {SPIKING} in time\n{self.diagnosis()}")
            time.sleep(0.2)
        return self.fired

    def value(self, expr: str) -> dict[str, float]:
        """``expr`` now, by campaign."""
        return {
            s["metric"].get("campaign", ""): float(s["value"][1])
            for s in self.prometheus.query(expr)
        }

    def diagnosis(self) -> str:
        exprs = (
            "campaign:tracker_cpa:ratio15m",
            "campaign:tracker_cpa:baseline_avg6h",
            "campaign:tracker_cpa:baseline_stddev6h",
            "campaign:tracker_cpa:zscore15m",
            f"campaign:tracker_conversions:rate15m * {WINDOW_S}",
            "up",
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
    settings = isolated_settings(servers)
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
    assert [a for a in stack.seen if a["labels"]["campaign"] != SPIKING] == []
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
