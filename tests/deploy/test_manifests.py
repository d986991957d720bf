"""docker-compose.yml and deploy/k8s/ against what the code reads.

No Docker engine runs here, so the manifests are parsed and checked: every service,
port, probe and environment variable the settings classes read must be there. A new
setting without a manifest entry fails these tests.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.stack import DEFAULT_PORTS, SERVICES
from services.ingest.outbox.relay import LOG_MARKER_TOPIC
from shared.erasure import erasure_topics
from shared.events import DEADLETTER_TOPIC, EVENT_TYPES
from shared.http_server import HTTP_PROTOCOL
from shared.settings import env_var_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def settings_vars(service: str) -> set[str]:
    return env_var_names(importlib.import_module(f"services.{service}.config").Settings)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def k8s_documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def serves_with_our_protocol(command: list[str]) -> bool:
    """uvicorn runs the protocol that limits a request head's time, as the launcher does."""
    return command[command.index("--http") + 1] == HTTP_PROTOCOL


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


@pytest.mark.parametrize("service", SERVICES)
def test_compose_runs_each_service_with_every_variable(
    compose: dict[str, Any], service: str
) -> None:
    entry = compose["services"][service]
    port = DEFAULT_PORTS[service]
    assert entry["build"] == "."
    assert f"services.{service}.app:create_app" in entry["command"]
    assert str(port) in entry["command"]
    assert serves_with_our_protocol(entry["command"])
    if service == "gateway":
        assert entry["ports"] == [f"{port}:{port}"]
    else:
        # A service believes the X-Forwarded-For it is sent: only the gateway reaches it.
        assert "ports" not in entry and entry["expose"] == [str(port)]
    assert "/readyz" in " ".join(entry["healthcheck"]["test"])
    assert f":{port}/" in " ".join(entry["healthcheck"]["test"])
    missing = settings_vars(service) - set(entry["environment"])
    assert not missing, f"{service} lacks {sorted(missing)} in docker-compose.yml"
    assert entry["environment"]["OTEL_SERVICE_NAME"] == f"lodestar-{service}"
    assert entry["environment"][f"LODESTAR_{service.upper()}_PORT"] == str(port)
    assert entry["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_has_postgres_kafka_kraft_and_a_collector(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "otel-collector" in services
    assert (ROOT / "deploy" / "otel-collector.yaml").exists()
    assert (ROOT / "Dockerfile").exists()
    assert "shared.migrations" in " ".join(services["migrate"]["command"])


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_deployment_service_and_config(service: str) -> None:
    documents = k8s_documents(f"{service}.yaml")
    port = DEFAULT_PORTS[service]
    config = of_kind(documents, "ConfigMap")
    deployment = of_kind(documents, "Deployment")
    svc = of_kind(documents, "Service")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert serves_with_our_protocol(container["command"])
    assert svc["spec"]["ports"][0]["port"] == port
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    if service != "gateway":
        # A service believes the X-Forwarded-For it is sent: only the gateway reaches it.
        policy = of_kind(documents, "NetworkPolicy")["spec"]
        assert policy["podSelector"] == deployment["spec"]["selector"]
        assert policy["ingress"] == [
            {
                "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}}}],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        ]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    # A read-only root: a temporary file (an export's archive) goes to a volume.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert pod["initContainers"][0]["command"][-1] == service

    provided = set(config["data"])
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])}
    missing = settings_vars(service) - provided - set(secrets)
    assert not missing, f"{service} lacks {sorted(missing)} in deploy/k8s/{service}.yaml"
    # Secrets only by reference, never as literal values.
    assert "DATABASE_URL" in secrets and "DATABASE_URL" not in provided
    assert all(ref["name"] == "lodestar-secrets" for ref in secrets.values())
    assert all("value" not in e for e in container.get("env", []))
    # Topics are kafka.yaml's (three replicas), never a replica's first guess at them.
    assert config["data"]["LODESTAR_KAFKA_CREATE_TOPICS"] == "false"


def test_kafka_through_strimzi_with_every_topic() -> None:
    documents = k8s_documents("kafka.yaml")
    kafka = of_kind(documents, "Kafka")
    assert kafka["apiVersion"].startswith("kafka.strimzi.io/")
    topics = {d["spec"]["topicName"] for d in documents if d["kind"] == "KafkaTopic"}
    expected = {f"lodestar.{t}.v1" for t in EVENT_TYPES}
    assert expected | {"lodestar.deadletter.v1", "lodestar.alerts.v1"} <= topics
    assert {DEADLETTER_TOPIC, LOG_MARKER_TOPIC} <= topics
    assert set(erasure_topics()) <= topics


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {f"{s}.yaml" for s in SERVICES} | {"kafka.yaml"}
    example = k8s_documents("secrets.example.yaml")[0]
    assert example["metadata"]["name"] == "lodestar-secrets"
