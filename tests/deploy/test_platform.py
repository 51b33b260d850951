"""What `dagyo deploy` renders for the catalogue to run on: three schedulers sharing a
PostgreSQL behind a Service and a budget, RabbitMQ as a cluster of three (the operator's
RabbitmqCluster, or a StatefulSet with Kubernetes peer discovery), and a PostgreSQL for
the development profile only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from executor.core.brokerurls import split_urls
from executor.core.progdef import load_catalogue
from executor.core.settings import check_url
from scheduler.cli.deploy import deploy
from scheduler.deploy import DeploySettings, render_catalogue
from scheduler.deploy.broker import node_hosts
from scheduler.deploy.platform import render_platform
from scheduler.errors import ManifestError
from tests.deploy import (
    K8S,
    PROGDEFS,
    check_names_and_labels,
    validate_any,
    validate_rabbitmq_cluster,
)


@pytest.fixture(autouse=True)
def _no_baked_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)
    monkeypatch.setenv("DAGYO_IMAGES_LOCK", str(tmp_path / "images.lock.json"))


def rendered(**settings: Any) -> list[dict[str, Any]]:
    """Everything `dagyo deploy` applies, in its order."""
    chosen = DeploySettings(allow_tags=True, **settings)
    return render_platform(chosen) + render_catalogue(load_catalogue(PROGDEFS), chosen)


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def kinds(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objects]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


def selects(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
    return selector.items() <= pod_labels.items()


@pytest.mark.parametrize("broker", ["operator", "statefulset", "none"])
@pytest.mark.parametrize("profile", ["production", "development"])
@pytest.mark.parametrize("schedulers", [3, 1])
def test_every_variant_validates_strictly(broker: str, profile: str, schedulers: int) -> None:
    for obj in rendered(broker=broker, profile=profile, schedulers=schedulers):
        validate_any(obj)
        check_names_and_labels(obj)


def test_three_schedulers_share_the_postgresql_of_a_secret_behind_a_service_and_a_budget() -> None:
    objects = rendered()
    scheduler = one(objects, "Deployment", "dagyo-scheduler")
    spec = scheduler["spec"]
    assert spec["replicas"] == 3
    # Rolled one at a time: the others take the flows of the one replaced.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1},
    }
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    assert env["DAGYO_STATE"] == {"secretKeyRef": {"name": "dagyo-state", "key": "url"}}
    assert env["DAGYO_LEASE_S"] == "10"
    assert not [v for v in pod["volumes"] if v["name"] == "state"], "no SQLite volume"
    labels = spec["template"]["metadata"]["labels"]
    service = one(objects, "Service", "dagyo-scheduler")
    assert selects(service["spec"]["selector"], labels)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} == {
        ("grpc", ports["grpc"]),
        ("metrics", ports["metrics"]),
    }
    budget = one(objects, "PodDisruptionBudget", "dagyo-scheduler")
    assert budget["spec"]["maxUnavailable"] == 1
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)
    # Spread over machines where there are several.
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], labels)
    # The platform comes before the catalogue; the schedulers' Deployment last.
    assert kinds(objects).index(("Service", "dagyo-scheduler")) < kinds(objects).index(
        ("ConfigMap", "dagyo-catalogue")
    )
    assert objects[-1] is scheduler


def test_the_lease_and_the_replicas_can_be_chosen() -> None:
    scheduler = one(rendered(schedulers=5, lease_s=2.5), "Deployment", "dagyo-scheduler")
    assert scheduler["spec"]["replicas"] == 5
    (container,) = scheduler["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["DAGYO_LEASE_S"] == "2.5"


def test_one_scheduler_on_sqlite_is_replaced_not_rolled() -> None:
    scheduler = one(rendered(schedulers=1, state_secret=""), "Deployment", "dagyo-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = scheduler["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["DAGYO_STATE"] == "/var/lib/dagyo/scheduler.sqlite3"
    assert "DAGYO_LEASE_S" not in env_of(container)


def test_several_schedulers_on_sqlite_are_refused_saying_why() -> None:
    with pytest.raises(ManifestError, match="schedulers can only share a PostgreSQL state"):
        DeploySettings(schedulers=2, state_secret="")
    result = CliRunner().invoke(
        deploy, ["--dry-run", "--allow-tags", "--progdefs", str(PROGDEFS), "--state-secret", "none"]
    )
    assert (result.exit_code, result.output) == (
        2,
        "dagyo: --schedulers 3: schedulers can only share a PostgreSQL state: give them "
        "--state-secret, or run one with --schedulers 1\n",
    )


def test_the_development_profile_alone_renders_a_postgresql_the_schedulers_use() -> None:
    production = rendered()
    assert not [o for o in production if o["metadata"]["name"] == "dagyo-postgresql"]
    assert not [o for o in production if o["kind"] == "Secret"]
    objects = rendered(profile="development", namespace="jobs")
    secret = one(objects, "Secret", "dagyo-state")
    service = one(objects, "Service", "dagyo-postgresql")
    stateful = one(objects, "StatefulSet", "dagyo-postgresql")
    url = secret["stringData"]["url"]
    assert url.startswith("postgresql://dagyo:")
    assert url.endswith("@dagyo-postgresql.jobs.svc:5432/dagyo")
    assert f":{secret['stringData']['password']}@" in url
    pod = stateful["spec"]["template"]
    assert selects(service["spec"]["selector"], pod["metadata"]["labels"])
    assert stateful["spec"]["replicas"] == 1
    (claim,) = stateful["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    (container,) = pod["spec"]["containers"]
    assert env_of(container)["POSTGRES_PASSWORD"] == {
        "secretKeyRef": {"name": "dagyo-state", "key": "password"}
    }
    ports = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    # The schedulers read the Secret rendered, and it is applied before them.
    scheduler = one(objects, "Deployment", "dagyo-scheduler")
    (container,) = scheduler["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["DAGYO_STATE"] == {
        "secretKeyRef": {"name": "dagyo-state", "key": "url"}
    }
    assert objects.index(secret) < objects.index(scheduler)


def test_rabbitmq_is_a_rabbitmq_cluster_of_three_with_a_budget_by_default() -> None:
    objects = rendered()
    cluster = one(objects, "RabbitmqCluster", "rabbitmq")
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["spec"]["replicas"] == 3
    assert cluster["spec"]["persistence"]["storage"]
    assert (
        "cluster_partition_handling = pause_minority"
        in (cluster["spec"]["rabbitmq"]["additionalConfig"])
    )
    budget = one(objects, "PodDisruptionBudget", "rabbitmq")
    assert budget["spec"]["maxUnavailable"] == 1
    # The operator labels its pods app.kubernetes.io/name=<the cluster's name>.
    assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "rabbitmq"}
    assert not [o for o in objects if o["kind"] == "StatefulSet"]
    assert node_hosts(DeploySettings()) == [
        f"rabbitmq-server-{i}.rabbitmq-nodes.dagyo.svc" for i in range(3)
    ]


def test_the_rabbitmq_cluster_check_holds_to_the_operators_fields() -> None:
    cluster = one(rendered(), "RabbitmqCluster", "rabbitmq")
    for broken in (
        {**cluster, "spec": {k: v for k, v in cluster["spec"].items() if k != "replicas"}},
        {**cluster, "spec": {**cluster["spec"], "nodes": 3}},
        {**cluster, "spec": {**cluster["spec"], "persistence": {"storage": "lots"}}},
        {**cluster, "spec": {**cluster["spec"], "rabbitmq": {"config": "x"}}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate_rabbitmq_cluster(broken)


def test_the_statefulset_alternative_finds_its_peers_through_kubernetes() -> None:
    objects = rendered(broker="statefulset")
    assert not [o for o in objects if o["kind"] == "RabbitmqCluster"]
    stateful = one(objects, "StatefulSet", "rabbitmq")
    assert stateful["spec"]["replicas"] == 3
    pod = stateful["spec"]["template"]
    labels = pod["metadata"]["labels"]
    headless = one(objects, "Service", stateful["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert selects(headless["spec"]["selector"], labels)
    assert selects(one(objects, "Service", "rabbitmq")["spec"]["selector"], labels)
    budget = one(objects, "PodDisruptionBudget", "rabbitmq")
    assert budget["spec"]["maxUnavailable"] == 1
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)
    config = one(objects, "ConfigMap", "rabbitmq-config")["data"]
    assert "rabbitmq_peer_discovery_k8s" in config["enabled_plugins"]
    conf = config["20-dagyo.conf"]
    assert "cluster_formation.peer_discovery_backend = k8s" in conf
    assert f"cluster_formation.k8s.service_name = {headless['metadata']['name']}" in conf
    # The node asks the API for the headless Service's endpoints, as its account may.
    assert pod["spec"]["serviceAccountName"] == "rabbitmq"
    one(objects, "ServiceAccount", "rabbitmq")
    role = one(objects, "Role", "rabbitmq")
    assert {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get"]} in role["rules"]
    binding = one(objects, "RoleBinding", "rabbitmq")
    assert binding["roleRef"]["name"] == "rabbitmq"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rabbitmq"}]
    # The Secret template's three URLs name its three pods.
    secret = yaml.safe_load((K8S / "queue-secret.example.yaml").read_text())["stringData"]
    check_url(secret["url"])
    hosts = node_hosts(DeploySettings(broker="statefulset"))
    assert hosts == [f"rabbitmq-{i}.rabbitmq-headless.dagyo.svc" for i in range(3)]
    urls = split_urls(secret["url"])
    assert [url.partition("@")[2].partition(":")[0] for url in urls] == hosts
    (container,) = pod["spec"]["containers"]
    assert env_of(container)["RABBITMQ_ERLANG_COOKIE"] == {
        "secretKeyRef": {"name": "dagyo-queue", "key": "erlang-cookie"}
    }
    assert {"username", "password", "erlang-cookie"} <= set(secret)


def test_no_broker_renders_none() -> None:
    objects = rendered(broker="none")
    assert not [o for o in objects if o["metadata"]["name"].startswith("rabbitmq")]


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_every_dagyo_process_gets_the_broker_urls_and_the_queue_type(queue_type: str) -> None:
    pods = [
        o["spec"]["template"]["spec"]
        for o in rendered(queue_type=queue_type)
        if o["kind"] == "Deployment"
    ]
    assert len(pods) > 2
    for pod in pods:
        (container,) = pod["containers"]
        env = env_of(container)
        assert env["DAGYO_QUEUE"] == {"secretKeyRef": {"name": "dagyo-queue", "key": "url"}}
        assert env["DAGYO_QUEUE_TYPE"] == queue_type


def test_dry_run_prints_the_platform_and_help_names_every_option() -> None:
    result = CliRunner().invoke(
        deploy,
        ["--dry-run", "--allow-tags", "--progdefs", str(PROGDEFS), "--profile", "development"],
    )
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.output))
    names = kinds(documents)
    for expected in (
        ("RabbitmqCluster", "rabbitmq"),
        ("PodDisruptionBudget", "rabbitmq"),
        ("Secret", "dagyo-state"),
        ("StatefulSet", "dagyo-postgresql"),
        ("Service", "dagyo-postgresql"),
        ("Service", "dagyo-scheduler"),
        ("PodDisruptionBudget", "dagyo-scheduler"),
        ("Deployment", "dagyo-scheduler"),
    ):
        assert expected in names
    help_text = CliRunner().invoke(deploy, ["--help"]).output
    for option in ("--schedulers", "--state-secret", "--lease", "--broker", "--profile"):
        assert option in help_text
    assert "--queue-type" in help_text
