"""The alerting and recording rules in deploy/prometheus/rules hold together.

promtool checks the rules and runs their unit tests (tracker.rules.test.yml); the
rest needs no promtool: every alert carries what a responder needs, has a firing
and a quiet test case, and reads only series that the exporter, the collector,
Prometheus itself or another rule in the file produce.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from collector.metrics import Metrics
from tracker import targets
from tracker.export import metrics as exporter
from tracker.forward import metrics as forwarder

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "tracker.rules.yml"
RULE_TESTS = PROMETHEUS / "rules" / "tracker.rules.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
LOCAL_SCRIPT = ROOT / "deploy" / "local" / "prometheus.sh"

requires_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (deploy/local/prometheus.sh installs it; make test runs it)",
)

# What the exporter serves (tracker/export/metrics.py), as sample names.
COUNTED = ("impressions", "clicks", "conversions", "spend", "revenue", "bots")
KPIS = ("ctr", "cvr", "cpc", "cpa", "roas")
PIPELINE_COUNTED = ("events", "duplicates", "late", "bots")
PIPELINE_HISTOGRAMS = ("lateness_seconds",)
EXPORTER_LITERALS = (
    "tracker_campaigns_folded",
    "tracker_pipeline_newest_event_timestamp_seconds",
    "tracker_pipeline_consumer_lag_records",
    "tracker_store_memory_used_bytes",
    "tracker_store_memory_max_bytes",
    "tracker_store_may_evict",
)
# The KPI targets (PUT /v1/targets) and the day's spend their budgets bound: per
# campaign, per channel, and unlabelled for the total (tracker_target_cpa_max).
TARGET_PREFIXES = {"campaign": "tracker_campaign", "channel": "tracker_channel", "total": "tracker"}
TARGET_SERIES = frozenset(
    f"{TARGET_PREFIXES[d]}_{name}"
    for d in targets.DIMENSIONS
    for name in ("daily_spend", *(f"target_{bound}" for bound in targets.BOUNDS))
)
EXPORTER_SERIES = frozenset(
    [f"tracker_{d}_{m}_total" for d in ("campaign", "channel") for m in COUNTED]
    + [f"tracker_{d}_{k}" for d in ("campaign", "channel") for k in KPIS]
    + [f"tracker_pipeline_{name}_total" for name in PIPELINE_COUNTED]
    + [
        f"tracker_pipeline_{h}_{part}"
        for h in PIPELINE_HISTOGRAMS
        for part in ("bucket", "sum", "count")
    ]
    + list(EXPORTER_LITERALS)
    + list(TARGET_SERIES)
)
# What the collector serves (collector/app.py), as sample names.
COLLECTOR_SERIES = frozenset(
    {
        "tracker_collector_events_total",
        "tracker_collector_unavailable_total",
        "tracker_collector_request_duration_seconds_bucket",
        "tracker_collector_request_duration_seconds_count",
        "tracker_collector_request_duration_seconds_sum",
        "tracker_collector_kafka_flush_seconds_bucket",
    }
)
# What the forwarder serves (tracker/forward/metrics.py), as sample names.
FORWARD_SERIES = frozenset({"tracker_forward_failed_total", "tracker_forward_lag_seconds"})
# What Prometheus records about each scrape.
SCRAPE_SERIES = frozenset({"up"})

SEVERITIES = {"critical", "warning"}
PROMQL_WORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring"}
PROMQL_WORDS |= {"group_left", "group_right", "inf", "nan", "atan2"}
RECORD_NAME = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load(RULES)["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (label values, label lists,
    ranges, functions and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])[A-Za-z_:][\w:]*", text):
        called = text[match.end() :].lstrip().startswith("(")
        if not called and match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def _template_names(text: str) -> set[str]:
    """Metric names queried from annotation templates (``printf "..." | query`` or
    ``query "..."``): each name a selector or a range follows, or a bare name."""
    queries = re.findall(r'(?:printf|query)\s+"([^"]*)"', text)
    bare = {q for q in queries if re.fullmatch(r"[A-Za-z_:][\w:]*", q)}
    return bare | {n for q in queries for n in re.findall(r"([A-Za-z_:][\w:]*)\s*[{\[]", q)}


def _promtool(*args: str) -> None:
    result = subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=300, check=False
    )
    output = f"$ promtool {' '.join(args)}\n{result.stdout}{result.stderr}"
    assert result.returncode == 0, output


@requires_promtool
def test_promtool_accepts_the_rules() -> None:
    _promtool("check", "rules", str(RULES))


@requires_promtool
def test_rule_unit_tests_pass() -> None:
    _promtool("test", "rules", str(RULE_TESTS))


def test_the_config_loads_the_rules_and_not_their_tests() -> None:
    patterns = _load(CONFIG)["rule_files"]
    loaded = {path for pattern in patterns for path in PROMETHEUS.glob(pattern)}
    assert RULES in loaded
    assert RULE_TESTS not in loaded


@requires_promtool
def test_promtool_accepts_the_config() -> None:
    _promtool("check", "config", str(CONFIG))


@requires_promtool
def test_the_local_script_renders_a_valid_config(tmp_path: Path) -> None:
    out = tmp_path / "prometheus.yml"
    result = subprocess.run(
        ["bash", str(LOCAL_SCRIPT), "render", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "TRACKER_EXPORTER_PORT": "19108"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = _load(out)
    assert rendered["rule_files"] == [str(PROMETHEUS / "rules" / "*.rules.yml")]
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in rendered["scrape_configs"]
    }
    assert targets["tracker-exporter"] == ["127.0.0.1:19108"]


def test_every_alert_carries_what_a_responder_needs() -> None:
    problems = []
    for alert in _alerts():
        name = alert["alert"]
        annotations = alert.get("annotations", {})
        if not re.fullmatch(r"[1-9][0-9]*[smh]", str(alert.get("for", ""))):
            problems.append(f"{name}: no 'for' duration")
        if alert.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: labels.severity not one of {sorted(SEVERITIES)}")
        for key in ("summary", "description"):
            if not annotations.get(key):
                problems.append(f"{name}: no annotations.{key}")
        if "$value" not in annotations.get("description", ""):
            problems.append(f"{name}: the description does not show {{{{ $value }}}}")
        if "campaign:" in alert["expr"] and "$labels.campaign" not in annotations.get(
            "description", ""
        ):
            problems.append(f"{name}: a per-campaign alert that does not name the campaign")
        if annotations.get("runbook_url") != f"README.md#runbook-{name.lower()}":
            problems.append(f"{name}: runbook_url is not README.md#runbook-{name.lower()}")
    assert problems == []


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases: dict[str, set[str]] = {alert["alert"]: set() for alert in _alerts()}
    for test in _load(RULE_TESTS)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases[case["alertname"]].add("firing" if case["exp_alerts"] else "quiet")
    assert {name: kinds for name, kinds in cases.items() if kinds != {"firing", "quiet"}} == {}


def test_recording_rules_are_named_level_metric_operation() -> None:
    records = [rule["record"] for rule in _rules() if "record" in rule]
    assert [name for name in records if not RECORD_NAME.match(name)] == []
    assert len(records) == len(set(records))


def test_rules_read_only_series_that_exist() -> None:
    known = EXPORTER_SERIES | COLLECTOR_SERIES | FORWARD_SERIES | SCRAPE_SERIES | _recorded()
    used: dict[str, set[str]] = {}
    for rule in _rules():
        name = rule.get("alert") or rule["record"]
        names = metric_names(rule["expr"])
        for text in rule.get("annotations", {}).values():
            names |= _template_names(text)
        for metric in names:
            used.setdefault(metric, set()).add(name)
    assert "tracker_campaign_spend_total" in used  # the parser finds names at all
    assert {metric: sorted(rules) for metric, rules in used.items() if metric not in known} == {}


def test_the_exporter_still_serves_the_listed_series() -> None:
    # The families built from templates share the exporter's own list of counted
    # metrics; the others are spelled out in its source.
    assert set(COUNTED) <= {counted.name for counted in exporter.COUNTED}
    source = Path(exporter.__file__).read_text()
    assert [name for name in EXPORTER_LITERALS if f'"{name}"' not in source] == []
    # Targets: one family per dimension and bound, named from a prefix per dimension.
    assert set(TARGET_PREFIXES) == set(targets.DIMENSIONS)
    for template in ('f"{prefix}_daily_spend"', 'f"{prefix}_target_{bound}"'):
        assert template in source, template
    assert 'prefix = "tracker" if dimension == "total" else f"tracker_{dimension}"' in source


def test_the_collector_still_serves_the_listed_series() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    served = set()
    for family in registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        served |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    assert served >= COLLECTOR_SERIES


def test_the_forwarder_still_serves_the_listed_series() -> None:
    registry = CollectorRegistry()
    forwarder.Metrics(registry, ["meta"])
    served = {sample.name for family in registry.collect() for sample in family.samples}
    assert served >= FORWARD_SERIES


def test_metric_names_skips_labels_functions_and_keywords() -> None:
    expr = (
        'max by (campaign) (rate(a_total{x="b_total"}[5m] offset 1h)) / on (campaign)'
        " (c:d:e > 0.1e3) unless f and time() - g bool > 1"
    )
    assert metric_names(expr) == {"a_total", "c:d:e", "f", "g"}
