"""Kubernetes manifests: valid core resources, a secure pod, rules identical to the rule file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nexus_ml.render.anomaly_rules import anomaly_group
from nexus_ml.render.kubernetes import ADAPTER_METRIC, SECRET, manifests
from nexus_ml.render.rules import render_rules

# A version kubernetes-validate carries; bump together with the cluster.
K8S_VERSION = "1.30.0"
CORE_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim"}


@pytest.fixture(scope="module")
def resources(deploy_dir: Path) -> dict[str, dict[str, Any]]:
    folder = deploy_dir / "kubernetes"
    docs = {p.name: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}
    assert docs, "no manifests under deploy/kubernetes"
    return {doc["kind"]: doc for doc in docs.values()}


def test_core_resources_match_their_schemas(resources: dict[str, Any]) -> None:
    assert set(resources) >= CORE_KINDS
    for kind in CORE_KINDS:
        kubernetes_validate.validate(resources[kind], K8S_VERSION, strict=True)


def test_the_validator_really_rejects_a_bad_manifest(resources: dict[str, Any]) -> None:
    broken = copy.deepcopy(resources["Deployment"])
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_pod_is_non_root_read_only_with_probes_and_resources(resources: dict[str, Any]) -> None:
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    writable = {m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"]["value"] in writable
    assert "--workers" in container["args"]


def test_secrets_are_referenced_never_committed(
    resources: dict[str, Any], deploy_dir: Path
) -> None:
    assert "Secret" not in resources
    (container,) = resources["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("DATABASE_URL", "ML_API_KEYS", "ML_METRICS_TOKEN"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == SECRET
    auth = resources["ServiceMonitor"]["spec"]["endpoints"][0]["authorization"]
    assert auth["credentials"] == {"name": SECRET, "key": "ML_METRICS_TOKEN"}


def test_service_monitor_selects_the_service_port(resources: dict[str, Any]) -> None:
    monitor, service = resources["ServiceMonitor"], resources["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert service["spec"]["selector"].items() <= (
        resources["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    )


def test_prometheus_rule_groups_equal_the_rule_file(
    resources: dict[str, Any], deploy_dir: Path
) -> None:
    rule = resources["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == [*render_rules()["groups"], anomaly_group()]
    files = [deploy_dir / "prometheus" / name for name in ("ml_alerts.yml", "ml_anomaly.yml")]
    if all(f.exists() for f in files):  # written by the rules renderers; test_generated demands it
        groups = [g for f in files for g in yaml.safe_load(f.read_text())["groups"]]
        assert rule["spec"]["groups"] == groups


def test_hpa_scales_on_the_adapter_metric(resources: dict[str, Any], deploy_dir: Path) -> None:
    hpa = resources["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == resources["Deployment"]["metadata"]["name"]
    pods = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert [p["metric"]["name"] for p in pods] == [ADAPTER_METRIC]
    values = yaml.safe_load(
        (deploy_dir / "kubernetes" / "adapter" / "prometheus-adapter-values.yaml").read_text()
    )
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == ADAPTER_METRIC
    assert rule["seriesQuery"].startswith("ml_model_predictions_total{")


def test_manifests_cover_every_file(deploy_dir: Path) -> None:
    on_disk = {p.name for p in (deploy_dir / "kubernetes").glob("*.yaml")}
    assert on_disk == set(manifests())
