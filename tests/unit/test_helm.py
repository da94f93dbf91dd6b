"""The Helm chart and the Strimzi resources agree with Kubernetes and with the code.

deploy/helm/tracker is rendered with the real ``helm template`` (Helm 4, built once by
``deploy/local/tools.sh helm`` into .cache/helm) and every manifest is validated offline
against Kubernetes' own schemas (kubernetes-validate, strict: an unknown field fails).
As tests/unit/test_compose.py does for compose, each container's command is parsed by
the real CLI and its TRACKER_* variables loaded by the real settings loader. The Strimzi
resources are custom resources no schema here knows: their shape is checked by hand.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from tracker import cli, kafka, settings
from tracker.stream.app import build_app

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tracker"
STRIMZI = ROOT / "deploy" / "helm" / "strimzi"
COMPOSE = ROOT / "docker-compose.yml"
TOOLS = ROOT / "deploy" / "local" / "tools.sh"
HELM = ROOT / ".cache" / "helm" / "bin" / "helm"

RELEASE = "tracker"
NAMESPACE = "tracker"
TOKEN_SECRET = "tracker-api-token"  # noqa: S105  # the Secret's name, not a token
# The chart's kubeVersion floor (the collector's preStop sleep action) and the newest
# schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30", "1.37")
REDIS_CA = "/etc/tracker/redis-tls/ca.crt"
KAFKA_CA = "/etc/tracker/kafka-tls/ca.crt"
# Every switch of values.yaml turned away from its default at once.
EVERYTHING: dict[str, Any] = {
    "image": {"repository": "registry.example/tracker", "tag": "0.1.0"},
    "imagePullSecrets": [{"name": "registry"}],
    "config": {
        "TRACKER_TIMEZONE": "Europe/Berlin",
        "TRACKER_GRACE_S": 600,
        "TRACKER_KAFKA_SECURITY_PROTOCOL": "SSL",
        "TRACKER_KAFKA_SSL_CA_FILE": KAFKA_CA,
    },
    "kafka": {"bootstrap": "tracker-kafka-bootstrap:9093", "tlsSecret": "tracker-cluster-ca-cert"},
    "envFromSecrets": ["tracker-redis-url"],
    "redis": {
        "url": f"rediss+cluster://redis-0:6379/0?ssl_ca_certs={REDIS_CA}",
        "tlsSecret": "redis-ca",
    },
    "spreadAcrossNodes": False,
    "collector": {
        "env": {"TRACKER_COLLECTOR_WORKERS": 2, "TRACKER_REDIRECT_ALLOW": "shop.example"},
        "envFromSecrets": ["tracker-postbacks"],
        "service": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "annotations": {"example.com/lb": "internet-facing"},
        },
        "podDisruptionBudget": {"minAvailable": 2, "maxUnavailable": None},
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "worker": {"replicas": 4, "env": {"TRACKER_WORKER_BATCH_MAX": 500}},
    "exporter": {"env": {"TRACKER_METRICS_AUTH": "true"}},
    "forwarder": {
        "enabled": True,
        "env": {"TRACKER_META_PIXEL_ID": "1234567890"},
        "envFromSecrets": ["tracker-meta"],
    },
}
VARIANTS = {"defaults": {}, "everything": EVERYTHING}


# --- rendering ------------------------------------------------------------------


@functools.cache
def _helm() -> str:
    """Helm of tools.sh's version: there already (a tenth of a second) or built now (minutes
    the first time); the tests skip only when it cannot be built."""
    done = subprocess.run(["bash", str(TOOLS), "helm"], capture_output=True, text=True)
    if done.returncode != 0 or not HELM.exists():
        pytest.skip(
            f"helm is not in {HELM.parent} and `{TOOLS.name} helm` could not build it: "
            f"{(done.stderr or done.stdout)[-400:]}"
        )
    return str(HELM)


def _run_helm(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    # Helm keeps a cache and a config of its own: in the test's directory, not $HOME.
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(tmp / "cache"),
        "HELM_CONFIG_HOME": str(tmp / "config"),
        "HELM_DATA_HOME": str(tmp / "data"),
    }
    return subprocess.run([_helm(), *args], capture_output=True, text=True, env=env, timeout=120)


def _values_args(values: dict[str, Any], tmp: Path) -> list[str]:
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump({"exporter": {"apiTokenSecret": {"name": TOKEN_SECRET}}}))
    args = ["-f", str(path)]
    if values:
        more = tmp / "more-values.yaml"
        more.write_text(yaml.safe_dump(values))
        args += ["-f", str(more)]
    return args


def _template(
    tmp: Path, values: dict[str, Any] | None = None, *sets: str, kube: str = "1.37"
) -> subprocess.CompletedProcess[str]:
    return _run_helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube,
        *_values_args(values or {}, tmp),
        *[arg for value in sets for arg in ("--set", value)],
        tmp=tmp,
    )


@functools.cache
def _rendered(variant: str, kube: str = "1.37") -> tuple[dict[str, Any], ...]:
    """The manifests of a variant's values, rendered once per test run."""
    with tempfile.TemporaryDirectory(prefix="tracker-helm-") as tmp:
        done = _template(Path(tmp), VARIANTS[variant], kube=kube)
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def _refused(tmp: Path, *sets: str) -> str:
    """helm template's error for values it must refuse."""
    done = _template(tmp, {}, *sets)
    assert done.returncode != 0, f"the chart accepted {sets}"
    return done.stderr


def _one(docs: tuple[dict[str, Any], ...], kind: str, component: str) -> dict[str, Any]:
    found = [
        doc
        for doc in docs
        if doc["kind"] == kind
        and doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"{len(found)} {kind} of {component}"
    return found[0]


def _pods(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(component, pod template) of every workload."""
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            yield doc["metadata"]["labels"]["app.kubernetes.io/component"], doc["spec"]["template"]


def _configmap(docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    (configmap,) = (doc for doc in docs if doc["kind"] == "ConfigMap")
    data = configmap["data"]
    assert all(isinstance(value, str) for value in data.values())
    return dict(data)


def _environ(
    docs: tuple[dict[str, Any], ...], container: dict[str, Any], pod: str
) -> dict[str, str]:
    """What the container's process sees: the ConfigMap, then its own env; a field
    reference resolved as the kubelet would for a pod named ``pod``."""
    environ = _configmap(docs)
    for variable in container.get("env", []):
        source = variable.get("valueFrom")
        if source is None:
            environ[variable["name"]] = variable["value"]
        else:
            assert source == {"fieldRef": {"fieldPath": "metadata.name"}}, variable
            environ[variable["name"]] = pod
    return environ


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _tracker_args(container: dict[str, Any]) -> list[str]:
    """The ``tracker`` command line: the image's entrypoint is tracker; the exporter's
    shell wrapper execs ``tracker "$@"`` with the same args."""
    args = [str(arg) for arg in container["args"]]
    if "command" in container:
        assert container["command"][-1] == "tracker", container["command"]
        assert 'exec tracker "$@"' in container["command"][-2]
    return args


def _compose_grace_s(service: str) -> int:
    grace = yaml.safe_load(COMPOSE.read_text())["services"][service]["stop_grace_period"]
    match = re.fullmatch(r"(\d+)s", str(grace))
    assert match, grace
    return int(match[1])


# --- Kubernetes' own schemas ------------------------------------------------------


@pytest.mark.parametrize("kube", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_manifest_is_valid_kubernetes(variant: str, kube: str) -> None:
    docs = _rendered(variant, kube)
    kinds = {doc["kind"] for doc in docs}
    assert {"ConfigMap", "Deployment", "StatefulSet", "Service", "PodDisruptionBudget"} <= kinds
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(exc.message)


def test_helm_lint_is_clean(tmp_path: Path) -> None:
    done = _run_helm(
        "lint",
        "--strict",
        str(CHART),
        "--set",
        f"exporter.apiTokenSecret.name={TOKEN_SECRET}",
        tmp=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_chart_refuses_kubernetes_older_than_its_floor(tmp_path: Path) -> None:
    done = _template(tmp_path, kube="1.29")
    assert done.returncode != 0
    assert "requires kubeVersion: >=1.30.0-0" in done.stderr


# --- against the code: CLI and settings -----------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_tracker_variable_the_chart_sets_is_a_setting(variant: str) -> None:
    docs = _rendered(variant)
    known = {settings.env_name(f.name) for f in settings.fields()}
    set_by_chart = set(_configmap(docs))
    for _, pod in _pods(docs):
        container = _container(pod)
        names = {variable["name"] for variable in container.get("env", [])}
        # tracker processes are configured by TRACKER_* variables only.
        assert all(name.startswith(settings.ENV_PREFIX) for name in names), names
        set_by_chart |= names
    assert set_by_chart - known == set()


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_container_runs_a_real_command_with_settings_the_loader_accepts(variant: str) -> None:
    docs = _rendered(variant)
    components = set()
    for component, pod in _pods(docs):
        components.add(component)
        container = _container(pod)
        args = cli.parser().parse_args(_tracker_args(container))
        flags = [settings.flag_name(f.name) for f in settings.fields() if getattr(args, f.name)]
        assert not flags, f"{component}: set {flags} as TRACKER_* variables"
        config = settings.load(args, environ=_environ(docs, container, f"{component}-0"))
        port = {
            "collector": config.collector_port,
            "worker": config.worker_port,
            "serve": config.exporter_port,
            "forward": config.forward_port,
        }[args.command]
        host = {
            "collector": config.collector_host,
            "serve": config.exporter_host,
            "forward": config.forward_host,
        }.get(args.command)
        probes = [
            container[p]
            for p in ("startupProbe", "readinessProbe", "livenessProbe")
            if p in container
        ]
        assert probes, f"{component}: no probe"
        if host is None:
            # The worker answers on 127.0.0.1 only: its probes run inside the container.
            assert "ports" not in container
            # Ready once in its group with its partitions, alive once serving.
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                path = "/readyz" if kind == "readinessProbe" else "/healthz"
                command = " ".join(container[kind]["exec"]["command"])
                assert f"http://127.0.0.1:{port}{path}" in command, kind
            continue
        assert host == "0.0.0.0", f"{component} must listen on the pod's addresses"
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert {p["httpGet"]["port"] for p in probes} == {"http"}
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    expected = {"collector", "worker", "exporter"} | (
        {"forwarder"} if variant == "everything" else set()
    )
    assert components == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_test_runs_tracker_check_configured_as_the_workers(variant: str) -> None:
    """``helm test``: the check reaches Kafka and the store with what the workers have."""
    docs = _rendered(variant)
    (pod,) = (doc for doc in docs if doc["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    check = _container(pod)
    args = cli.parser().parse_args(_tracker_args(check))
    assert args.command == "check"
    (worker_pod,) = (template for component, template in _pods(docs) if component == "worker")
    worker = _container(worker_pod)
    assert check["envFrom"] == worker["envFrom"]
    assert check["volumeMounts"] == worker["volumeMounts"]
    assert pod["spec"]["volumes"] == worker_pod["spec"]["volumes"]
    loaded = settings.load(args, environ=_environ(docs, check, "check"))
    assert (loaded.kafka_bootstrap, loaded.redis_url) == (
        VARIANTS[variant].get("kafka", {}).get("bootstrap", "tracker-kafka-bootstrap:9092"),
        VARIANTS[variant].get("redis", {}).get("url", "redis://tracker-redis:6379/0"),
    )


def _ca_file(service: str, environ: dict[str, str]) -> str:
    """Where a container's settings look for ``service``'s TLS authority."""
    if service == "kafka":
        return environ["TRACKER_KAFKA_SSL_CA_FILE"]
    assert settings.Settings(redis_url=environ["TRACKER_REDIS_URL"]).redis_is_cluster
    return environ["TRACKER_REDIS_URL"].partition("ssl_ca_certs=")[2]


@pytest.mark.parametrize("service", ["kafka", "redis"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_mounts_a_tls_secret_where_its_settings_look(variant: str, service: str) -> None:
    docs = _rendered(variant)
    named = VARIANTS[variant].get(service, {}).get("tlsSecret")
    volume = f"{service}-tls"
    for component, pod in _pods(docs):
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        mounts = {m["name"]: m for m in _container(pod)["volumeMounts"]}
        if not named:
            assert volume not in volumes, component
            assert volume not in mounts, component
            continue
        assert volumes[volume]["secret"] == {"secretName": named, "defaultMode": 0o440}
        assert pod["spec"]["securityContext"]["fsGroup"] == 10001  # the image's user reads it
        assert mounts[volume]["readOnly"] is True, component
        ca = _ca_file(service, _environ(docs, _container(pod), "pod-0"))
        assert Path(ca).parent == Path(mounts[volume]["mountPath"]), component


def test_services_route_to_their_component_and_port() -> None:
    docs = _rendered("everything")
    for service in (doc for doc in docs if doc["kind"] == "Service"):
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        pods = dict(_pods(docs))[component]
        labels = pods["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"].get("ports", []):
            assert port["targetPort"] in {p["name"] for p in _container(pods)["ports"]}


def test_the_chart_refuses_what_no_tracker_process_reads(tmp_path: Path) -> None:
    assert "FOO is not a tracker setting" in _refused(tmp_path, "config.FOO=1")
    assert "collector.env: BAR is not a tracker setting" in _refused(
        tmp_path, "collector.env.BAR=1"
    )


# --- the collector: drain and disruption budget -----------------------------------


def test_grace_period_covers_the_collectors_drain_after_the_prestop() -> None:
    for variant in VARIANTS:
        pod = _one(_rendered(variant), "Deployment", "collector")["spec"]["template"]
        prestop = _container(pod)["lifecycle"]["preStop"]["sleep"]["seconds"]
        grace = pod["spec"]["terminationGracePeriodSeconds"]
        # compose's stop_grace_period is what the drain was sized by.
        assert grace - prestop >= _compose_grace_s("collector") >= 45
        assert prestop >= 5, "endpoints and load balancers need a few seconds to stop routing"


def test_the_chart_refuses_a_grace_period_that_cuts_the_drain_short(tmp_path: Path) -> None:
    error = _refused(tmp_path, "collector.terminationGracePeriodSeconds=50")
    assert "must cover preStopSleepSeconds (10) + 45 s" in error


def test_collector_rollout_keeps_every_replica_serving() -> None:
    strategy = _one(_rendered("defaults"), "Deployment", "collector")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_disruption_budget_selects_the_collector_pods_only(variant: str) -> None:
    docs = _rendered(variant)
    budget = _one(docs, "PodDisruptionBudget", "collector")
    selector = budget["spec"]["selector"]["matchLabels"].items()
    selected = {c for c, pod in _pods(docs) if selector <= pod["metadata"]["labels"].items()}
    assert selected == {"collector"}
    deployment = _one(docs, "Deployment", "collector")
    assert deployment["spec"]["selector"]["matchLabels"].items() == selector
    limits = {key for key in ("minAvailable", "maxUnavailable") if key in budget["spec"]}
    assert limits == ({"minAvailable"} if variant == "everything" else {"maxUnavailable"})
    # A budget the collectors cannot meet would block every node drain.
    assert budget["spec"].get("minAvailable", 0) < deployment["spec"]["replicas"]


def test_the_disruption_budget_takes_one_limit_only(tmp_path: Path) -> None:
    error = _refused(tmp_path, "collector.podDisruptionBudget.minAvailable=2")
    assert "set minAvailable or maxUnavailable, not both" in error


# --- the workers: static group membership -----------------------------------------


def test_each_worker_is_a_static_group_member_named_after_its_pod(tmp_path: Path) -> None:
    docs = _rendered("defaults")
    stateful = _one(docs, "StatefulSet", "worker")
    container = _container(stateful["spec"]["template"])
    (instance,) = (v for v in container["env"] if v["name"] == "TRACKER_WORKER_INSTANCE_ID")
    assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # Pod names come from the StatefulSet's name and an ordinal, one pod at a time.
    pod = f"{stateful['metadata']['name']}-1"
    assert pod == "tracker-worker-1"
    headless = _one(docs, "Service", "worker")
    assert stateful["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    assert stateful["spec"]["podManagementPolicy"] == "Parallel"
    # ... which reaches the Kafka consumer's group.instance.id through the settings.
    args = cli.parser().parse_args(_tracker_args(container))
    config = settings.load(args, environ=_environ(docs, container, pod))
    assert config.worker_instance_id == pod
    app = build_app(config, tmp_path)
    assert app.conf.consumer_group_instance_id == pod


def test_without_static_membership_a_worker_joins_dynamically(tmp_path: Path) -> None:
    done = _template(tmp_path, {"worker": {"staticMembership": False}})
    assert done.returncode == 0, done.stderr
    docs = tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)
    container = _container(_one(docs, "StatefulSet", "worker")["spec"]["template"])
    assert "env" not in container
    config = settings.load(cli.parser().parse_args(["worker"]), environ=_configmap(docs))
    assert build_app(config, tmp_path).conf.consumer_group_instance_id is None


def test_the_workers_budget_takes_one_down_at_a_time() -> None:
    docs = _rendered("defaults")
    budget = _one(docs, "PodDisruptionBudget", "worker")
    assert budget["spec"]["maxUnavailable"] == 1
    selector = budget["spec"]["selector"]["matchLabels"].items()
    assert {c for c, pod in _pods(docs) if selector <= pod["metadata"]["labels"].items()} == {
        "worker"
    }


# --- the exporter's token -----------------------------------------------------------


def test_the_exporter_needs_a_named_token_secret(tmp_path: Path) -> None:
    done = _run_helm("template", RELEASE, str(CHART), tmp=tmp_path)
    assert done.returncode != 0
    assert "exporter.apiTokenSecret.name" in done.stderr


def test_the_chart_holds_no_token() -> None:
    for variant in VARIANTS:
        docs = _rendered(variant)
        assert "Secret" not in {doc["kind"] for doc in docs}
        pod = _one(docs, "Deployment", "exporter")["spec"]["template"]
        (volume,) = (v for v in pod["spec"]["volumes"] if v["name"] == "api-token")
        assert volume["secret"]["secretName"] == TOKEN_SECRET
        # Root's, readable by the image's user through the pod's fsGroup, not by others.
        assert volume["secret"]["defaultMode"] == 0o440
        assert pod["spec"]["securityContext"]["fsGroup"] == 10001


def _kubelet_expanded(text: str, environ: dict[str, str]) -> str:
    """Kubernetes' expansion of a container's command: $(NAME) of a defined variable
    becomes its value, $$ a $, anything else stays as written."""

    def expand(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return environ.get(match[1], match[0])

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, text)


def test_the_exporter_serves_the_secrets_token_as_admin_before_its_own(tmp_path: Path) -> None:
    """Runs the exporter's shell wrapper as the container would, with a stand-in for
    tracker that prints what it was given."""
    pod = _one(_rendered("defaults"), "Deployment", "exporter")["spec"]["template"]
    container = _container(pod)
    (mount,) = (m for m in container["volumeMounts"] if m["name"] == "api-token")
    (volume,) = (v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    (item,) = volume["secret"]["items"]
    assert item["key"] == "api-token"  # values.yaml's default key
    token, own = "A" * 43, "read:" + "b" * 32
    (tmp_path / item["path"]).write_text(token)
    (tmp_path / "bin").mkdir()
    stand_in = tmp_path / "bin" / "tracker"
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$TRACKER_API_TOKENS" "$*"\n')
    stand_in.chmod(0o755)
    command = [_kubelet_expanded(part, {}) for part in container["command"]]
    command = [part.replace(mount["mountPath"], str(tmp_path)) for part in command]
    for environ, expected in (
        ({}, f"admin:{token}"),
        ({"TRACKER_API_TOKENS": own}, f"admin:{token},{own}"),
    ):
        done = subprocess.run(
            [*command, *container["args"]],
            capture_output=True,
            text=True,
            env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **environ},
            timeout=10,
        )
        assert done.returncode == 0, done.stderr
        tokens, args = done.stdout.splitlines()
        assert (tokens, args) == (expected, "serve")
        roles = settings.load(environ={"TRACKER_API_TOKENS": tokens}).api_token_roles()
        assert roles[0] == ("admin", token)


def test_notes_render_and_warn_of_idle_workers(tmp_path: Path) -> None:
    done = _run_helm(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        *_values_args({"worker": {"replicas": 13}}, tmp_path),
        tmp=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    notes = done.stdout.partition("NOTES:")[2]
    assert f"http://{RELEASE}-collector.{NAMESPACE}.svc:8080/p.gif" in notes
    assert "13 workers share 12 partitions: 1 of them will have no work" in notes


# --- Strimzi: Kafka and its topics ----------------------------------------------------

STRIMZI_API = "kafka.strimzi.io/v1"
# Kubernetes object names: DNS subdomains (RFC 1123).
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@functools.cache
def _strimzi(name: str) -> tuple[dict[str, Any], ...]:
    docs = tuple(doc for doc in yaml.safe_load_all((STRIMZI / name).read_text()) if doc)
    for doc in docs:
        assert doc["apiVersion"] == STRIMZI_API, doc["apiVersion"]
        assert _DNS_NAME.fullmatch(doc["metadata"]["name"]), doc["metadata"]["name"]
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, set(doc)
    return docs


def _kafka() -> dict[str, Any]:
    (cluster,) = (doc for doc in _strimzi("kafka.yaml") if doc["kind"] == "Kafka")
    return cluster


def test_strimzi_files_are_all_known_kinds() -> None:
    assert {path.name for path in STRIMZI.glob("*.yaml")} == {"kafka.yaml", "topics.yaml"}
    assert {doc["kind"] for doc in _strimzi("kafka.yaml")} == {"Kafka", "KafkaNodePool"}
    assert {doc["kind"] for doc in _strimzi("topics.yaml")} == {"KafkaTopic"}


def test_strimzi_kafka_is_kraft_with_three_brokers_and_a_controller_quorum() -> None:
    cluster = _kafka()
    name = cluster["metadata"]["name"]
    spec = cluster["spec"]
    assert "zookeeper" not in spec
    assert "topicOperator" in spec["entityOperator"]
    assert re.fullmatch(r"4\.\d+\.\d+", spec["kafka"]["version"])
    assert spec["kafka"]["metadataVersion"].startswith(spec["kafka"]["version"].rsplit(".", 1)[0])
    pools = [doc for doc in _strimzi("kafka.yaml") if doc["kind"] == "KafkaNodePool"]
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == name
        assert set(pool["spec"]["roles"]) <= {"broker", "controller"}
        assert pool["spec"]["storage"]["type"] in {"jbod", "persistent-claim"}
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert brokers == 3
    assert controllers >= 3, "a quorum that survives one loss"
    assert controllers % 2 == 1, "an even quorum survives no more losses than one less"
    config = spec["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["offsets.topic.replication.factor"] == 3


def test_strimzi_topics_are_trackers_topics_as_tracker_makes_them() -> None:
    defaults = settings.load(environ={})
    topics = {doc["spec"]["topicName"]: doc for doc in _strimzi("topics.yaml")}
    assert set(topics) == {defaults.events_topic, defaults.dead_letter_topic, defaults.audit_topic}
    made = kafka.topic_configs(defaults)
    for name, topic in topics.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == _kafka()["metadata"]["name"]
        spec = topic["spec"]
        assert spec["replicas"] == 3
        assert spec["config"]["min.insync.replicas"] == 2
        # tracker sets retention at every start: equal, or the two undo each other.
        assert str(spec["config"]["retention.ms"]) == made[name][kafka.RETENTION]
    assert topics[defaults.events_topic]["spec"]["partitions"] >= 8
    assert topics[defaults.audit_topic]["spec"]["partitions"] == 1  # one ordered log


def test_over_tls_the_chart_reaches_strimzis_tls_listener_trusting_its_ca() -> None:
    shared = _configmap(_rendered("everything"))
    assert shared["TRACKER_KAFKA_SECURITY_PROTOCOL"] == "SSL"
    cluster = _kafka()
    (tls,) = (one for one in cluster["spec"]["kafka"]["listeners"] if one["tls"])
    name = cluster["metadata"]["name"]
    assert shared["TRACKER_KAFKA_BOOTSTRAP"] == f"{name}-kafka-bootstrap:{tls['port']}"
    # The Secret Strimzi makes with its cluster's CA certificate (ca.crt).
    assert EVERYTHING["kafka"]["tlsSecret"] == f"{name}-cluster-ca-cert"
    assert shared["TRACKER_KAFKA_SSL_CA_FILE"].endswith("/ca.crt")


def test_the_charts_kafka_is_the_strimzi_cluster_and_topics() -> None:
    shared = _configmap(_rendered("defaults"))
    cluster = _kafka()
    (plain,) = (one for one in cluster["spec"]["kafka"]["listeners"] if not one["tls"])
    assert shared["TRACKER_KAFKA_BOOTSTRAP"] == (
        f"{cluster['metadata']['name']}-kafka-bootstrap:{plain['port']}"
    )
    (events,) = (
        doc for doc in _strimzi("topics.yaml") if doc["spec"]["topicName"] == "tracker.events"
    )
    assert int(shared["TRACKER_TOPIC_PARTITIONS"]) == events["spec"]["partitions"]
    assert int(shared["TRACKER_TOPIC_REPLICAS"]) == events["spec"]["replicas"]
    assert (
        int(shared["TRACKER_TOPIC_MIN_INSYNC_REPLICAS"])
        == (events["spec"]["config"]["min.insync.replicas"])
    )
