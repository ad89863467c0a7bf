"""Kubernetes manifests: Deployment, Service, ServiceMonitor, PrometheusRule, HPA and friends.

The PrometheusRule's groups come from :func:`nexus_ml.render.rules.render_rules` and
:func:`nexus_ml.render.anomaly_rules.anomaly_group`, the renderers of
``deploy/prometheus/ml_alerts.yml`` and ``ml_anomaly.yml``, so promtool's tests of the files
cover both.
Secrets are referenced by name (``nexus-ml-secrets``) and never written here.
"""

from __future__ import annotations

from typing import Any

from nexus_ml.render.anomaly_rules import anomaly_group
from nexus_ml.render.rules import render_rules
from nexus_ml.stats.anomaly import specs_of
from nexus_ml.thresholds import JOB, Thresholds

NAME = JOB  # the Service name becomes the job label, which the rules and dashboards filter on
SECRET = "nexus-ml-secrets"  # noqa: S105 - a Secret's name; its values are never here
MODELS_CLAIM = "nexus-ml-models"
IMAGE = "nexus-ml:0.1.0"
PORT = 8001
UID = 10001  # the image's `nexus` user
WORKERS = 2
MULTIPROC_DIR = "/tmp/prometheus-multiproc"  # noqa: S108 - a private in-memory emptyDir
# Per-pod prediction rate the HPA aims for; a 4-vCPU pod sustains far more, the headroom
# absorbs bursts while new pods start.
PREDICTIONS_PER_POD = "50"
ADAPTER_METRIC = "ml_model_predictions_per_second"

LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "nexus-ml"}
SELECTOR = {"app.kubernetes.io/name": NAME}


def _meta(name: str, **extra_labels: str) -> dict[str, Any]:
    return {"name": name, "labels": {**LABELS, **extra_labels}}


def _secret_env(name: str, *, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": SECRET, "key": name}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _probe(path: str, *, period: int, failures: int, delay: int = 0) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _container() -> dict[str, Any]:
    env = [
        _secret_env("DATABASE_URL"),
        _secret_env("ML_API_KEYS"),
        _secret_env("ML_METRICS_TOKEN"),
        {"name": "ML_MODEL_PATH", "value": "/app/models"},
        {"name": "ML_DATA_DIR", "value": "/app/data"},
        {"name": "ML_LOG_JSON", "value": "true"},
        {"name": "PROMETHEUS_MULTIPROC_DIR", "value": MULTIPROC_DIR},
    ]
    return {
        "name": NAME,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "nexus-ml",
            "serve",
            "--host",
            "0.0.0.0",  # noqa: S104 - the pod's own network namespace; the Service fronts it
            "--port",
            str(PORT),
            "--workers",
            str(WORKERS),
        ],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        # Generous start-up: the first start of an empty model volume trains the bundled models.
        "startupProbe": _probe("/health/live", period=5, failures=60),
        "livenessProbe": _probe("/health/live", period=20, failures=3),
        # Ready only with models loaded and the database reachable: traffic waits for both.
        "readinessProbe": _probe("/health/ready", period=10, failures=3),
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "models", "mountPath": "/app/models"},
            {"name": "data", "mountPath": "/app/data"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
            {"name": "metrics", "mountPath": MULTIPROC_DIR},
        ],
    }


def deployment(replicas: int = 2) -> dict[str, Any]:
    """The service: non-root, read-only root filesystem, probes, resources, secrets by reference."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": SELECTOR},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "automountServiceAccountToken": False,
                    # shutdown_grace_seconds (20) to flush prediction records, plus margin.
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [_container()],
                    "volumes": [
                        {"name": "models", "persistentVolumeClaim": {"claimName": MODELS_CLAIM}},
                        # Spill buffer and SQLite fallback: per pod, survives container restarts.
                        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                        # Metric files are rewritten constantly: keep them in memory.
                        {"name": "metrics", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


def models_claim() -> dict[str, Any]:
    """Model bundles shared by every replica (ReadWriteMany: training on one, serving on all)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(MODELS_CLAIM),
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}}},
    }


def service() -> dict[str, Any]:
    """ClusterIP Service on the guide's port; its name becomes the scrape job."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(NAME),
        "spec": {
            "type": "ClusterIP",
            "selector": SELECTOR,
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_monitor() -> dict[str, Any]:
    """Prometheus Operator scrape of /metrics every 15s, with the bearer token from the Secret."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(NAME),
        "spec": {
            "selector": {"matchLabels": SELECTOR},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": "15s",
                    "scrapeTimeout": "10s",
                    "authorization": {
                        "type": "Bearer",
                        "credentials": {"name": SECRET, "key": "ML_METRICS_TOKEN"},
                    },
                }
            ],
        },
    }


def prometheus_rule(thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The groups of ml_alerts.yml, then ml_anomaly.yml, unchanged, as a PrometheusRule."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(f"{NAME}-rules"),
        "spec": {
            "groups": [
                *render_rules(thresholds)["groups"],
                anomaly_group(specs=specs_of(thresholds or Thresholds())),
            ]
        },
    }


def horizontal_pod_autoscaler(min_replicas: int = 2, max_replicas: int = 10) -> dict[str, Any]:
    """Scale on predictions per second per pod (via prometheus-adapter), CPU as a backstop."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(NAME),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": ADAPTER_METRIC},
                        "target": {"type": "AverageValue", "averageValue": PREDICTIONS_PER_POD},
                    },
                },
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 75},
                    },
                },
            ],
            # Scale down slowly: a model reload or a quiet minute must not shed capacity.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def adapter_rules() -> dict[str, Any]:
    """prometheus-adapter Helm values exposing ``ml_model_predictions_per_second`` per pod."""
    return {
        "rules": {
            "default": False,
            "custom": [
                {
                    "seriesQuery": 'ml_model_predictions_total{namespace!="",pod!=""}',
                    "resources": {
                        "overrides": {
                            "namespace": {"resource": "namespace"},
                            "pod": {"resource": "pod"},
                        }
                    },
                    "name": {"matches": "^ml_model_predictions_total$", "as": ADAPTER_METRIC},
                    "metricsQuery": (
                        "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)"
                    ),
                }
            ],
        }
    }


def manifests(thresholds: Thresholds | None = None) -> dict[str, dict[str, Any]]:
    """File name (under deploy/kubernetes/) -> resource, in apply order."""
    return {
        "pvc.yaml": models_claim(),
        "deployment.yaml": deployment(),
        "service.yaml": service(),
        "servicemonitor.yaml": service_monitor(),
        "prometheusrule.yaml": prometheus_rule(thresholds),
        "hpa.yaml": horizontal_pod_autoscaler(),
    }
