"""The shipped rules and config at a faster clock (tests/prometheus.py) mean the same.

Every duration scales by the factor, numbers that stand for a window's seconds scale
with it, and nothing else changes: at factor 1 the rules come back unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus import (
    CONFIG,
    RULES,
    duration_ms,
    format_ms,
    scale_config,
    scale_duration,
    scale_promql,
    scale_rules,
)

FAST = 1 / 120
TARGETS = {"tracker-exporter": "127.0.0.1:19108", "tracker-collector": "127.0.0.1:18080"}


def _shipped() -> dict[str, Any]:
    rules = yaml.safe_load(RULES.read_text())
    assert isinstance(rules, dict)
    return rules


def _by_name(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        rule.get("alert") or rule["record"]: rule
        for group in rules["groups"]
        for rule in group["rules"]
    }


def test_durations_parse_and_print_as_prometheus_writes_them() -> None:
    assert duration_ms("1h30m") == 5_400_000
    assert duration_ms("250ms") == 250
    assert duration_ms("1d") == 86_400_000
    assert [format_ms(ms) for ms in (7500, 180_000, 30_000, 3_600_000, 42)] == [
        "7500ms",
        "3m",
        "30s",
        "1h",
        "42ms",
    ]
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        duration_ms("1.5m")
    with pytest.raises(ValueError, match="positive"):
        format_ms(0)


def test_scale_duration_rounds_to_the_millisecond() -> None:
    assert scale_duration("15m", FAST) == "7500ms"
    assert scale_duration("6h", FAST) == "3m"
    assert scale_duration("5s", FAST) == "42ms"  # 41.67 ms
    assert scale_duration("1ms", FAST) == "1ms"  # never zero


@pytest.mark.parametrize(
    ("expr", "scaled"),
    [
        ("rate(x_total[15m])", "rate(x_total[7500ms])"),
        ("avg_over_time(r:x:y[6h:1m] offset 1h)", "avg_over_time(r:x:y[3m:500ms] offset 30s)"),
        ("max_over_time(x[5m:])", "max_over_time(x[2500ms:])"),
        ("x offset -2h", "x offset -1m"),
        # A volume guard: the count in the window stays the count in the window.
        ("c:x:rate15m * 900 >= 10", "c:x:rate15m * 7.5 >= 10"),
        ('c:x:rate15m{c!~"|other"} * 900 >= 10', 'c:x:rate15m{c!~"|other"} * 7.5 >= 10'),
        ("sum(rate(x_total[5m])) * 300 >= 5", "sum(rate(x_total[2500ms])) * 2.5 >= 5"),
        # A rate times something else than its window is a threshold: unchanged.
        ("c:x:rate15m * 60 > 1", "c:x:rate15m * 60 > 1"),
        # An age in seconds.
        ("time() - max(t) > 300", "time() - max(t) > 2.5"),
        # Thresholds and sample counts (range and step scale together) stay.
        ("count_over_time(y[6h:1m]) >= 180 > 3", "count_over_time(y[3m:500ms]) >= 180 > 3"),
        ('x{a=~"[5m]x"} > 1000', 'x{a=~"[5m]x"} > 1000'),
    ],
)
def test_scale_promql(expr: str, scaled: str) -> None:
    assert scale_promql(expr, FAST) == scaled


def test_at_factor_one_the_shipped_rules_come_back_unchanged() -> None:
    assert scale_rules(_shipped(), 1) == _shipped()


def _all(rules: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rule in order: an alert may have several rules (one per dimension)."""
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_every_duration_of_the_shipped_rules_scales() -> None:
    shipped, scaled = _shipped(), scale_rules(_shipped(), FAST)
    found = re.compile(r"\[([^\]:]+)(?::([^\]]*))?\]|offset ([0-9a-z]+)")
    for rule, fast in zip(_all(shipped), _all(scaled), strict=True):
        name = rule.get("alert") or rule["record"]
        before = [d for match in found.findall(rule["expr"]) for d in match if d]
        after = [d for match in found.findall(fast["expr"]) for d in match if d]
        assert after == [scale_duration(d, FAST) for d in before], name
        if "for" in rule:
            assert fast["for"] == scale_duration(rule["for"], FAST), name
    intervals = [g.get("interval") for g in scaled["groups"]]
    assert "500ms" in intervals  # the baselines' 1m
    # The shipped file keeps its meaning at the faster clock:
    cpa = _by_name(scaled)["CPASpike"]
    assert cpa["for"] == "7500ms"
    assert "campaign:tracker_conversions:rate15m * 7.5 >= 10" in cpa["expr"]
    stopped = _by_name(scaled)["ConversionsStoppedWhileClicksFlow"]["expr"]
    assert 'campaign:tracker_clicks:rate15m{campaign!~"|other"} * 7.5 *' in stopped
    assert "> 2.5" in _by_name(scaled)["IngestionStalled"]["expr"]
    assert "> 1000" in _by_name(scaled)["ConsumerLag"]["expr"]
    assert ">= 180" in _by_name(scaled)["campaign:tracker_cpa:baseline_avg6h"]["expr"]
    assert (
        _by_name(scaled)["CPASpike"]["annotations"] == _by_name(shipped)["CPASpike"]["annotations"]
    )
    # The target alerts: the spend guard counts per window, the target stays money.
    for rule in _all(scaled):
        if rule.get("alert") == "CPAAboveTarget":
            assert rule["for"] == "7500ms"
            assert re.search(r":tracker_spend:rate15m(\{[^}]*\})? \* 7\.5\n", rule["expr"])
            assert "* 900" not in rule["expr"]
        if rule.get("alert") == "ROASBelowTarget":
            assert rule["for"] == "15s"
            assert "spend:rate15m * 7.5 >= 10" in rule["expr"]
        if rule.get("alert") == "SpendOverDailyBudget":
            assert rule["for"] == "500ms"


def test_scale_config_scales_timing_and_points_at_the_targets() -> None:
    config = scale_config(yaml.safe_load(CONFIG.read_text()), FAST, TARGETS, ["/r.yml"])
    assert config["global"] == {
        "scrape_interval": "42ms",
        "evaluation_interval": "42ms",
        "scrape_timeout": "33ms",
    }
    assert config["rule_files"] == ["/r.yml"]
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert jobs == {name: [{"targets": [target]}] for name, target in TARGETS.items()}
    floored = scale_config(yaml.safe_load(CONFIG.read_text()), FAST, TARGETS, [], "250ms")
    assert floored["global"] == {
        "scrape_interval": "250ms",
        "evaluation_interval": "42ms",  # rules still run at the test's clock
        "scrape_timeout": "250ms",
    }
    with pytest.raises(AssertionError, match="no scrape job"):
        scale_config(yaml.safe_load(CONFIG.read_text()), FAST, {"nope": "x:1"}, [])


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_scaled_rules_and_config(tmp_path: Path) -> None:
    rules = tmp_path / "tracker.rules.yml"
    rules.write_text(yaml.safe_dump(scale_rules(_shipped(), FAST)))
    config = tmp_path / "prometheus.yml"
    scaled = scale_config(yaml.safe_load(CONFIG.read_text()), FAST, TARGETS, [str(rules)])
    config.write_text(yaml.safe_dump(scaled))
    for command in (["check", "rules", str(rules)], ["check", "config", str(config)]):
        done = subprocess.run(
            ["promtool", *command], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
