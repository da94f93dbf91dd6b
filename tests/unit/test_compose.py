"""The Docker packaging agrees with the code, without a Docker engine.

docker-compose.yml, the Dockerfile, the Prometheus config for compose and the
Grafana provisioning are parsed and checked against the real CLI parser, the
real settings loader and the exporter's metric names: a flag or setting renamed
in code but not in compose fails here, not in a user's ``docker compose up``.
``docker compose config`` and ``promtool`` run only where they are installed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry

from collector.metrics import Metrics
from tracker import cli, settings, targets
from tracker.windows import WINDOWS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_COMPOSE = ROOT / "deploy" / "prometheus" / "prometheus.compose.yml"
PROMETHEUS_LOCAL = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
METRICS_SOURCE = ROOT / "tracker" / "export" / "metrics.py"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "tracker.rules.yml"

TRACKER_SERVICES = ("collector", "worker", "exporter", "simulator", "forward", "goals", "targets")

# The port each subcommand listens on, as a setting; the simulator listens on none.
LISTEN_PORT = {
    "collector": "collector_port",
    "serve": "exporter_port",
    "worker": "worker_port",
    "forward": "forward_port",
}
# ... and its listen address, where it has one.
LISTEN_HOST = {"collector": "collector_host", "serve": "exporter_host", "forward": "forward_host"}
# Subcommands that serve /metrics: Prometheus must scrape each of them.
SERVES_METRICS = {"collector", "serve", "forward"}
# The dependencies each subcommand talks to, as settings (or simulate's flag).
USES = {
    "collector": ("kafka_bootstrap",),
    "worker": ("kafka_bootstrap", "redis_url"),
    "serve": ("redis_url",),
    "forward": ("kafka_bootstrap", "redis_url"),
    "simulate": ("collector_url",),
    "goals": ("redis_url",),
    "targets": ("redis_url",),
}
# Metric families the Grafana dashboards query. Each must be produced by
# tracker/export/metrics.py; counters are queried with their "_total" suffix.
DASHBOARD_METRICS = (
    "tracker_channel_spend",
    "tracker_channel_revenue",
    "tracker_channel_roas",
    "tracker_campaign_spend",
    "tracker_campaign_revenue",
    "tracker_campaign_conversions",
    "tracker_campaign_clicks",
    "tracker_campaign_ctr",
    "tracker_campaign_cvr",
    "tracker_campaign_cpc",
    "tracker_campaign_cpa",
    "tracker_campaign_roas",
    "tracker_campaign_customer_lifetime_value",
    "tracker_campaigns_folded",
    "tracker_pipeline_events",
    "tracker_pipeline_duplicates",
    "tracker_pipeline_late",
    "tracker_pipeline_bots",
    "tracker_pipeline_newest_event_timestamp_seconds",
    "tracker_pipeline_consumer_lag_records",
    "tracker_store_memory_used_bytes",
    # KPI targets (PUT /v1/targets) and the day's spend their budgets bound: per
    # campaign, per channel, and for the total with a plain "tracker_" prefix.
    "tracker_campaign_target_cpa_max",
    "tracker_campaign_target_roas_min",
    "tracker_campaign_target_cvr_min",
    "tracker_campaign_target_daily_spend_max",
    "tracker_campaign_daily_spend",
    "tracker_channel_target_daily_spend_max",
    "tracker_channel_daily_spend",
    "tracker_target_daily_spend_max",
    "tracker_daily_spend",
)
# ... and the collector's own (collector/app.py).
DASHBOARD_COLLECTOR_METRICS = (
    "tracker_collector_events",
    "tracker_collector_unavailable",
    "tracker_collector_buffered_events",
    "tracker_collector_kafka_flush_events",
    "tracker_collector_kafka_flush_seconds",
)
# Series recorded by the rules ("level:metric:operation"), dashboards read them too.
RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    return data


@functools.cache
def _compose() -> dict[str, Any]:
    return _yaml(COMPOSE)


def _services() -> dict[str, Any]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _service(name: str) -> dict[str, Any]:
    service = _services().get(name)
    assert isinstance(service, dict), f"docker-compose.yml has no service {name!r}"
    return service


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, in either of compose's two forms."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(str(item).partition("=")[::2] for item in raw)
    # Compose rejects booleans here ("true" must be quoted); numbers are fine.
    assert all(not isinstance(v, bool) for v in raw.values()), raw
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _container_ports(service: dict[str, Any]) -> set[int]:
    """Container-side ports a service publishes or exposes."""
    ports: set[int] = set()
    for entry in [*service.get("ports", []), *service.get("expose", [])]:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def _healthcheck_urls(service: dict[str, Any]) -> list[str]:
    test = service.get("healthcheck", {}).get("test", [])
    text = test if isinstance(test, str) else " ".join(map(str, test))
    return re.findall(r"https?://[^\s'\"]+", text)


def _dockerfile_final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's last stage, continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions: list[tuple[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        if keyword.upper() == "FROM":
            instructions = []
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in _dockerfile_final_stage():
        if keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def _command(name: str) -> list[str]:
    command = _service(name)["command"]
    assert isinstance(command, list), f"{name}: write command as a list, not a shell string"
    return [str(part) for part in command]


def _args(name: str) -> Any:
    return cli.parser().parse_args(_command(name))


def _config(name: str) -> settings.Settings:
    """The settings the service's container will run with: image ENV, then compose env."""
    environ = {**_dockerfile_env(), **_environment(_service(name))}
    return settings.load(_args(name), environ=environ)


def _listen_port(name: str) -> int | None:
    field = LISTEN_PORT.get(_args(name).command)
    if field is None:
        return None
    port = getattr(_config(name), field)
    assert isinstance(port, int)
    return port


def _tracker_env_names() -> set[str]:
    return {settings.env_name(f.name) for f in settings.fields()}


# --- docker-compose.yml ---------------------------------------------------------


def _one_shots() -> set[str]:
    """Services others wait for to complete (``service_completed_successfully``)."""
    return {
        dependency
        for service in _services().values()
        for dependency, spec in (service.get("depends_on") or {}).items()
        if spec.get("condition") == "service_completed_successfully"
    }


def test_compose_parses_and_every_service_has_an_image_or_build() -> None:
    services = _services()
    assert services
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: no image, no build"
        # A one-shot restarted once it has done its work would run again and again.
        expected = "no" if name in _one_shots() else "unless-stopped"
        assert service.get("restart") == expected, name


def test_tracker_services_are_built_once_from_the_dockerfile() -> None:
    built = {name for name, service in _services().items() if "build" in service}
    assert built == set(TRACKER_SERVICES)
    # One shared definition (the x-tracker anchor): one build, one image name.
    assert "x-tracker" in _compose()
    assert len({json.dumps(_service(n)["build"], sort_keys=True) for n in built}) == 1
    assert len({_service(n).get("image") for n in built}) == 1


def test_every_tracker_variable_in_compose_is_a_setting() -> None:
    known = _tracker_env_names()
    for name, service in _services().items():
        for variable in _environment(service):
            if variable.startswith(settings.ENV_PREFIX):
                assert variable in known, f"{name}: {variable} is not in tracker/settings.py"


@pytest.mark.parametrize("name", TRACKER_SERVICES)
def test_tracker_service_is_configured_only_by_tracker_variables(name: str) -> None:
    for variable in _environment(_service(name)):
        assert variable.startswith(settings.ENV_PREFIX), f"{name}: {variable}"


@pytest.mark.parametrize("name", TRACKER_SERVICES)
def test_tracker_command_parses_with_the_real_cli(name: str) -> None:
    args = _args(name)
    assert args.command in cli.COMMANDS
    # Settings come from the environment, never from flags in the command.
    flags = [settings.flag_name(f.name) for f in settings.fields() if getattr(args, f.name)]
    assert not flags, f"{name}: set {flags} as {settings.ENV_PREFIX}* variables"
    _config(name)  # raises SettingsError on a value the real loader rejects


@pytest.mark.parametrize("name", TRACKER_SERVICES)
def test_tracker_service_reaches_compose_services_it_depends_on(name: str) -> None:
    args = _args(name)
    config = _config(name)
    depends_on = _service(name).get("depends_on", {})
    for used in USES[args.command]:
        if used == "kafka_bootstrap":
            for server in config.kafka_bootstrap.split(","):
                host, _, port = server.strip().rpartition(":")
                advertised = _environment(_service(host))["KAFKA_ADVERTISED_LISTENERS"]
                assert f"://{host}:{port}" in advertised, f"{name}: {server} not advertised"
                assert host in depends_on, f"{name}: does not wait for {host}"
        elif used == "redis_url":
            url = urlsplit(config.redis_url)
            assert url.hostname is not None
            assert "redis" in str(_service(url.hostname)["image"])
            assert (url.port or 6379) == 6379
            assert url.hostname in depends_on, f"{name}: does not wait for {url.hostname}"
        elif used == "collector_url":
            url = urlsplit(args.collector_url)
            assert url.hostname is not None, f"{name}: needs --collector-url"
            assert url.port == _listen_port(url.hostname)
            assert url.hostname in depends_on, f"{name}: does not wait for {url.hostname}"


@pytest.mark.parametrize("name", TRACKER_SERVICES)
def test_tracker_service_ports_match_its_settings(name: str) -> None:
    service = _service(name)
    port = _listen_port(name)
    urls = _healthcheck_urls(service)
    if port is None:
        assert not _container_ports(service), f"{name} listens on nothing"
        return
    assert urls, f"{name}: no HTTP healthcheck"
    assert {urlsplit(url).port for url in urls} == {port}, f"{name}: healthcheck port"
    if name == "worker":
        # The worker binds its health endpoint to 127.0.0.1 (no host setting):
        # publishing the port would not make it reachable.
        assert not _container_ports(service)
        return
    assert _container_ports(service) == {port}
    host = getattr(_config(name), LISTEN_HOST[_args(name).command])
    assert host == "0.0.0.0", f"{name} must listen on all interfaces of its container"


def test_depends_on_waits_for_health_where_there_is_a_healthcheck() -> None:
    services = _services()
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: use the long depends_on form"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            healthy = spec.get("condition") == "service_healthy"
            checked = "healthcheck" in services[dependency]
            assert healthy == checked, f"{name} -> {dependency}: condition {spec}"


def test_bind_mounts_exist_in_the_repository() -> None:
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def _mount_target(service: str, source: str) -> PurePosixPath:
    for volume in _service(service).get("volumes", []):
        parts = str(volume).split(":")
        if (ROOT / parts[0]).resolve() == (ROOT / source).resolve():
            return PurePosixPath(parts[1])
    raise AssertionError(f"{service} does not mount {source}")


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_docker_compose_config_accepts_the_file() -> None:
    def works(*command: str) -> bool:
        try:
            done = subprocess.run(["docker", *command], capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    if not works("compose", "version"):
        pytest.skip("docker compose plugin not installed")
    if not works("info"):
        pytest.skip("no Docker engine reachable")
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


def _volume_target(service: str, volume: str) -> PurePosixPath:
    """Where ``service`` mounts the named volume ``volume``."""
    for entry in _service(service).get("volumes", []):
        source, target, *_ = str(entry).split(":")
        if source == volume:
            return PurePosixPath(target)
    raise AssertionError(f"{service} does not mount the volume {volume}")


def test_the_query_api_token_is_made_once_for_the_exporter_and_prometheus() -> None:
    """api-token writes a copy per reader, owned by the user its image runs as; the
    exporter takes its copy as TRACKER_API_TOKENS, Prometheus sends the other."""
    assert "api-token" in _compose()["volumes"]
    made = _volume_target("api-token", "api-token")
    script = _service("api-token")["command"][-1]
    assert f"cd {made}" in script
    exporter_user = dict(_dockerfile_final_stage())["USER"]
    assert f"chown {exporter_user} api-token" in script
    assert "chown 65534:65534 prometheus-token" in script  # prom/prometheus runs as nobody
    assert "chmod 400 api-token prometheus-token" in script

    entrypoint = " ".join(map(str, _service("exporter")["entrypoint"]))
    held = _volume_target("exporter", "api-token")
    assert f'TRACKER_API_TOKENS="admin:$$(cat {held}/api-token)' in entrypoint
    assert entrypoint.endswith('exec tracker "$$@" tracker')  # then the command, as is
    jobs = {job["job_name"]: job for job in _yaml(PROMETHEUS_COMPOSE)["scrape_configs"]}
    credentials = jobs["tracker-exporter"]["authorization"]["credentials_file"]
    assert PurePosixPath(credentials) == _volume_target("prometheus", "api-token") / (
        "prometheus-token"
    )
    assert {"exporter", "prometheus"} <= {
        name
        for name, service in _services().items()
        if "api-token" in (service.get("depends_on") or {})
    }


# --- Dockerfile -----------------------------------------------------------------


def test_dockerfile_runs_the_tracker_command_as_an_unprivileged_user() -> None:
    final = dict(_dockerfile_final_stage())
    assert json.loads(final["ENTRYPOINT"]) == ["tracker"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "tracker" in scripts
    user = final["USER"].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_exposes_the_default_ports() -> None:
    exposed = {
        int(port.split("/")[0])
        for keyword, rest in _dockerfile_final_stage()
        if keyword == "EXPOSE"
        for port in rest.split()
    }
    defaults = {f.name: f.default for f in settings.fields()}
    assert exposed == {defaults[field] for field in LISTEN_PORT.values()}


def test_dockerfile_environment() -> None:
    env = _dockerfile_env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["TRACKER_LOG_FORMAT"] == "json"
    known = _tracker_env_names()
    assert all(name in known for name in env if name.startswith(settings.ENV_PREFIX))


@pytest.mark.parametrize("extras", ["", "aws"])
def test_dockerfile_installs_the_runtime_dependencies_and_the_extras_asked_for(
    extras: str,
) -> None:
    """The build stage's own requirements line, run as Docker runs it with ``EXTRAS``."""
    run = next(line for line in DOCKERFILE.read_text().splitlines() if "tomllib" in line)
    code = run.partition('python -c "')[2].partition('" >')[0]
    printed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "EXTRAS": extras},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"]
    assert printed[: len(runtime)] == runtime
    assert printed[len(runtime) :] == (project["optional-dependencies"]["aws"] if extras else [])
    assert not extras or any(d.startswith("aws-msk-iam-sasl-signer") for d in printed)


def test_dockerignore_lets_in_every_package() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "keep .dockerignore an allow-list"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} | {"pyproject.toml"} <= allowed


# --- Prometheus -----------------------------------------------------------------


def _scrape_targets(path: Path) -> dict[str, list[str]]:
    jobs = _yaml(path)["scrape_configs"]
    return {
        job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
        for job in jobs
    }


def test_prometheus_scrapes_every_compose_service_serving_metrics() -> None:
    targets = _scrape_targets(PROMETHEUS_COMPOSE)
    scraped: set[str] = set()
    for job, addresses in targets.items():
        for address in addresses:
            host, _, port = address.rpartition(":")
            assert host in _services(), f"{job}: {host} is not a compose service"
            assert int(port) in _container_ports(_service(host)), f"{job}: {address}"
            assert int(port) == _listen_port(host), f"{job}: {address}"
            scraped.add(host)
    serving = {n for n in TRACKER_SERVICES if _args(n).command in SERVES_METRICS}
    assert scraped == serving
    # Same job names as the local stack: rules and dashboards work on both.
    assert set(targets) == set(_scrape_targets(PROMETHEUS_LOCAL))


def test_prometheus_config_is_mounted_with_its_rules() -> None:
    config = _yaml(PROMETHEUS_COMPOSE)
    target = _mount_target("prometheus", "deploy/prometheus/prometheus.compose.yml")
    rules = _mount_target("prometheus", "deploy/prometheus/rules")
    assert target == PurePosixPath("/etc/prometheus/prometheus.yml")  # the image's default
    for pattern in config["rule_files"]:
        resolved = target.parent / pattern
        assert resolved.parent == rules, f"rule_files {pattern} is outside {rules}"
    interval = config["global"]["scrape_interval"]
    timeout = config["global"]["scrape_timeout"]
    assert int(timeout.rstrip("s")) <= int(interval.rstrip("s"))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_compose_config(tmp_path: Path) -> None:
    # promtool checks that credentials files exist: the token is made in the stack.
    # A copy reads a stand-in, and rule files from where compose mounts them.
    config = _yaml(PROMETHEUS_COMPOSE)
    config["rule_files"] = [str(PROMETHEUS_COMPOSE.parent / p) for p in config["rule_files"]]
    token = tmp_path / "token"
    token.write_text("stand-in-token-for-promtool")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token)
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        ["promtool", "check", "config", str(checked)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- Grafana --------------------------------------------------------------------


def _datasource() -> dict[str, Any]:
    sources = _yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert len(sources) == 1
    source = sources[0]
    assert isinstance(source, dict)
    return source


def _dashboards() -> list[Path]:
    found = sorted(DASHBOARDS.glob("*.json"))
    assert found, f"no dashboard in {DASHBOARDS}"
    return found


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from _panels(panel)  # rows hold their collapsed panels


def test_grafana_datasource_is_the_compose_prometheus() -> None:
    source = _datasource()
    url = urlsplit(source["url"])
    assert source["type"] == "prometheus"
    assert url.hostname in _services()
    assert url.port in _container_ports(_service(str(url.hostname)))


def test_grafana_dashboard_provider_reads_the_mounted_dashboards() -> None:
    provider = _yaml(GRAFANA / "provisioning" / "dashboards" / "tracker.yml")["providers"]
    (only,) = provider
    mounted = _mount_target("grafana", "deploy/grafana/dashboards")
    assert PurePosixPath(only["options"]["path"]) == mounted
    home = _environment(_service("grafana"))["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert PurePosixPath(home).parent == mounted
    assert (DASHBOARDS / PurePosixPath(home).name).exists()
    environment = _environment(_service("grafana"))
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.name)
def test_dashboard_queries_metrics_the_exporter_produces(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    uid = _datasource()["uid"]
    recorded = _recorded()
    known = DASHBOARD_METRICS + DASHBOARD_COLLECTOR_METRICS
    queried: set[str] = set()
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid, panel["title"]
            rules = set(RECORDED.findall(target["expr"]))
            assert rules <= recorded, f"{panel['title']}: {rules - recorded} not in {RULES.name}"
            names = re.findall(r"\btracker_[a-z0-9_]+", RECORDED.sub(" ", target["expr"]))
            assert names or rules, f"{panel['title']}: queries no tracker metric"
            for name in names:
                family = name.removesuffix("_total")
                if family not in known:  # a histogram's series
                    family = re.sub(r"_(bucket|sum|count)$", "", family)
                assert family in known, f"{panel['title']}: {name}"
                queried.add(family)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == uid, variable["name"]
            metric = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["definition"])
            assert metric, f"${variable['name']}: {variable['definition']}"
            assert metric[1].removesuffix("_total") in known, f"${variable['name']}"
    if path.name == "tracker-overview.json":
        assert {
            "tracker_channel_spend",
            "tracker_channel_revenue",
            "tracker_campaign_cpa",
        } <= queried


def _recorded() -> set[str]:
    groups = _yaml(RULES)["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_dashboard_collector_metrics_are_produced_by_the_collector() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    assert set(DASHBOARD_COLLECTOR_METRICS) <= {family.name for family in registry.collect()}


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.name)
def test_dashboard_window_choices_are_the_tracker_windows(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["name"] == "window":
            assert [o["value"] for o in variable["options"]] == list(WINDOWS)


@pytest.mark.parametrize("name", DASHBOARD_METRICS)
def test_dashboard_metric_is_produced_by_the_exporter(name: str) -> None:
    """The family name is in metrics.py literally, or an f-string template makes it
    with placeholder values that are string literals there ("channel", "spend")."""
    source = METRICS_SOURCE.read_text()
    if f'"{name}"' in source:
        return
    if name in _target_families() and all(
        template in source
        for template in (
            'prefix = "tracker" if dimension == "total" else f"tracker_{dimension}"',
            'f"{prefix}_daily_spend"',
            'f"{prefix}_target_{bound}"',
        )
    ):
        return
    literals = set(re.findall(r'"([a-z0-9_]+)"', source))
    for template in re.findall(r'f"(tracker_[^"]*\{[^"]*)"', source):
        pattern = "([a-z0-9]+)".join(map(re.escape, re.split(r"\{[^}]*\}", template)))
        match = re.fullmatch(pattern, name)
        if match and all(value in literals for value in match.groups()):
            return
    pytest.fail(f"{name} is not produced by tracker/export/metrics.py")


def _target_families() -> set[str]:
    """What the exporter's targets make: for each dimension of tracker/targets.py a
    daily spend and a gauge per bound, prefixed ``tracker_<dimension>`` or, for the
    total, ``tracker``."""
    prefixes = [f"tracker_{d}" if d != "total" else "tracker" for d in targets.DIMENSIONS]
    names = ("daily_spend", *(f"target_{bound}" for bound in targets.BOUNDS))
    return {f"{prefix}_{name}" for prefix in prefixes for name in names}
