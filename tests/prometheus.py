"""A real Prometheus for tests, running the shipped rules and config at a faster clock.

Alerts wait for hours of baseline and minutes of ``for:``. A test cannot, so
:func:`scale_rules` and :func:`scale_config` multiply every duration in the shipped
files by one factor (1/120 turns 15 minutes into 7.5 seconds): ranges (``[15m]``),
subquery ranges and steps (``[6h:1m]``), ``offset``, ``for:``, group ``interval:``,
and the scrape and evaluation intervals. Plain numbers that stand for a window's length
in seconds scale with it, so the rules keep their meaning:

- a volume guard is a rate times its window (``rate15m * 900`` is the count in 15
  minutes): the 900 becomes 7.5, and 10 conversions per window stay 10;
- an age is ``time() - t`` compared with seconds (``> 300``): the 300 becomes 2.5.

Counts of subquery samples (``count_over_time(...[6h:1m]) >= 180``) do not change:
range and step scale together, so the count of samples stays the same. Every other
number is a threshold on a ratio or a count and is left alone.

Only the time a scrape takes does not shrink with the clock: a scrape interval may be
given a floor (its timeout is then the whole interval), which leaves fewer samples per
range but the same rules.

:func:`prometheus` runs ``prometheus`` with such a config on its own port and data
directory until the block ends.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from harness.processes import http_get, stop, wait_for

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "rules" / "tracker.rules.yml"
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
LOOKBACK_DELTA = "5m"  # Prometheus' default; an instant vector looks this far back

_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_MS |= {"w": 7 * _MS["d"], "y": 365 * _MS["d"]}
_UNIT = r"(?:ms|s|m|h|d|w|y)"
DURATION = re.compile(rf"(?:[0-9]+{_UNIT})+")
_PART = re.compile(rf"([0-9]+)({_UNIT})")
# [range], [range:step], [range:]
_RANGE = re.compile(rf"\[\s*({DURATION.pattern})\s*(?::\s*({DURATION.pattern})?\s*)?\]")
_OFFSET = re.compile(rf"\boffset(\s+)(-?)({DURATION.pattern})")
# A rate times its window in seconds: "...:rate15m * 900" (a selector may come between,
# "...:rate15m{campaign!~...} * 900") or "rate(x[5m])) * 300".
_WINDOW_COUNT = re.compile(
    rf":rate({DURATION.pattern})((?:\{{[^}}]*\}})?\s*\*\s*)([0-9]+(?:\.[0-9]+)?)\b"
    rf"|\[({DURATION.pattern})\]((?:\s*\))+\s*\*\s*)([0-9]+(?:\.[0-9]+)?)\b"
)
# An age compared with seconds: "time() - max(t) > 300".
_AGE = re.compile(r"(\btime\(\)\s*-[^<>]*?[<>]=?\s*)([0-9]+(?:\.[0-9]+)?)\b")
# String literals (label values, regexes) are never scaled.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')


def duration_ms(text: str) -> int:
    """``1h30m`` -> 5400000; ``ValueError`` for anything Prometheus would not parse."""
    if not DURATION.fullmatch(text):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _MS[unit] for n, unit in _PART.findall(text))


def format_ms(ms: int) -> str:
    """A duration in the largest unit that keeps it whole: 7500 -> ``7500ms``, 180000 -> ``3m``."""
    if ms <= 0:
        raise ValueError(f"durations must be positive, got {ms} ms")
    for unit in ("h", "m", "s"):
        if ms % _MS[unit] == 0:
            return f"{ms // _MS[unit]}{unit}"
    return f"{ms}ms"


def scale_duration(text: str, factor: float) -> str:
    """``text`` times ``factor``, rounded to the millisecond (at least 1 ms)."""
    return format_ms(max(1, round(duration_ms(text) * factor)))


def _number(value: float) -> str:
    return format(value, ".12g")


def scale_promql(expr: str, factor: float) -> str:
    """``expr`` with its ranges, steps, offsets, window counts and ages scaled by ``factor``."""

    def window_count(match: re.Match[str]) -> str:
        window = match[1] or match[4]
        glue = match[2] or match[5]
        seconds = float(match[3] or match[6])
        if seconds * 1000 != duration_ms(window):
            return match[0]  # a rate times something other than its window
        head = f":rate{window}" if match[1] else f"[{window}]"
        return f"{head}{glue}{_number(seconds * factor)}"

    def scaled_range(match: re.Match[str]) -> str:
        scaled = scale_duration(match[1], factor)
        if ":" not in match[0]:
            return f"[{scaled}]"
        step = scale_duration(match[2], factor) if match[2] else ""
        return f"[{scaled}:{step}]"

    strings: list[str] = []

    def hide(match: re.Match[str]) -> str:
        strings.append(match[0])
        return f"\0{len(strings) - 1}\0"

    expr = _STRING.sub(hide, expr)
    # Window counts first: they read the window off the unscaled range or rule name.
    expr = _WINDOW_COUNT.sub(window_count, expr)
    expr = _AGE.sub(lambda m: m[1] + _number(float(m[2]) * factor), expr)
    expr = _RANGE.sub(scaled_range, expr)
    expr = _OFFSET.sub(lambda m: f"offset{m[1]}{m[2]}{scale_duration(m[3], factor)}", expr)
    return re.sub(r"\0([0-9]+)\0", lambda m: strings[int(m[1])], expr)


def scale_rules(rules: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """A rule file (as parsed YAML) with every duration scaled; the input is not changed."""
    groups = []
    for group in rules["groups"]:
        scaled_group = dict(group)
        if "interval" in group:
            scaled_group["interval"] = scale_duration(str(group["interval"]), factor)
        scaled_group["rules"] = []
        for rule in group["rules"]:
            scaled = dict(rule, expr=scale_promql(str(rule["expr"]), factor))
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    scaled[key] = scale_duration(str(rule[key]), factor)
            scaled_group["rules"].append(scaled)
        groups.append(scaled_group)
    return {**rules, "groups": groups}


def scale_config(
    config: Mapping[str, Any],
    factor: float,
    targets: Mapping[str, str],
    rule_files: list[str],
    min_scrape_interval: str = "1ms",
) -> dict[str, Any]:
    """A Prometheus config with its intervals and timeouts scaled, scraping ``targets``
    (job name -> host:port) and loading ``rule_files``; jobs not in ``targets`` are dropped.

    A scrape interval is never shorter than ``min_scrape_interval``, and then its timeout
    is the whole interval: a scrape takes what it takes, whatever the clock.
    """
    floor = duration_ms(min_scrape_interval)

    def scaled(section: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(section)
        for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
            if key in section:
                result[key] = scale_duration(str(section[key]), factor)
        if "scrape_interval" in section and duration_ms(result["scrape_interval"]) < floor:
            result["scrape_interval"] = format_ms(floor)
            result["scrape_timeout"] = format_ms(floor)
        return result

    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job = scaled(job)
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
            jobs.append(job)
    missing = set(targets) - {job["job_name"] for job in jobs}
    assert not missing, f"no scrape job {sorted(missing)} in the config"
    return {
        **config,
        "global": scaled(config.get("global", {})),
        "rule_files": rule_files,
        "scrape_configs": jobs,
    }


@dataclass(frozen=True, slots=True)
class Prometheus:
    """A running Prometheus' HTTP API."""

    url: str
    scrape_interval_s: float

    def get(self, path: str, **params: str) -> Any:
        """``data`` of a successful API answer; AssertionError with the error otherwise."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"{self.url}{path}{query}", timeout=10)
        answer = orjson.loads(body)
        assert status == 200, f"{path} {params}: {status} {answer}"
        assert answer["status"] == "success", f"{path} {params}: {answer}"
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now."""
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: a {data['resultType']}, not a vector"
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        """``expr`` over [start, end] every ``step`` seconds (epoch seconds), as series."""
        data = self.get(
            "/api/v1/query_range", query=expr, start=str(start), end=str(end), step=str(step)
        )
        result: list[Any] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now."""
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["alerts"]
        return alerts


def binary() -> str | None:
    """The ``prometheus`` server on PATH (Debian's package), if any."""
    return shutil.which("prometheus")


@contextmanager
def prometheus(
    factor: float,
    targets: Mapping[str, str],
    port: int,
    min_scrape_interval: str = "1ms",
    rules: Path = RULES,
) -> Iterator[Prometheus]:
    """Run Prometheus with the shipped config and ``rules`` at ``factor`` times the
    clock (see :func:`scale_config` for ``min_scrape_interval``), scraping ``targets``,
    on 127.0.0.1:``port`` with a fresh data directory. SIGTERM at the end; its log is
    printed when the block fails."""
    server = binary()
    assert server is not None, "prometheus is not installed (deploy/local/prometheus.sh)"
    run = Path(tempfile.mkdtemp(prefix="prometheus-"))
    scaled_rules = run / "tracker.rules.yml"
    scaled_rules.write_text(yaml.safe_dump(scale_rules(yaml.safe_load(rules.read_text()), factor)))
    config = scale_config(
        yaml.safe_load(CONFIG.read_text()),
        factor,
        targets,
        [str(scaled_rules)],
        min_scrape_interval,
    )
    (run / "prometheus.yml").write_text(yaml.safe_dump(config))
    log_path = run / "prometheus.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            server,
            f"--config.file={run / 'prometheus.yml'}",
            f"--storage.tsdb.path={run / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--query.lookback-delta={scale_duration(LOOKBACK_DELTA, factor)}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = Prometheus(
        f"http://127.0.0.1:{port}", duration_ms(config["global"]["scrape_interval"]) / 1000
    )
    failed = True
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise SystemExit(f"prometheus exited with {process.returncode}")
            return http_get(f"{api.url}/-/ready", timeout=2)[0] == 200

        wait_for(ready, timeout=60, what="prometheus ready")
        yield api
        failed = False
    finally:
        stop(process, timeout=30)
        log.close()
        if failed:
            tail = log_path.read_text()[-5000:]
            sys.stderr.write(f"--- prometheus log (files kept in {run}) ---\n{tail}")
        else:
            shutil.rmtree(run, ignore_errors=True)
