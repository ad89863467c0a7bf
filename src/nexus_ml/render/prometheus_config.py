"""Render ``prometheus.yml``: scrape jobs, rule files and the Alertmanager to notify.

Parameters cover what differs between the checked-in Compose variant, Kubernetes and the
loopback stack the live test starts, so nobody edits the generated file by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nexus_ml.render.rules import to_yaml
from nexus_ml.thresholds import JOB

SERVICE_TARGETS = ("nexus-ml:8001",)
NODE_EXPORTER_TARGETS = ("node-exporter:9100",)
ALERTMANAGER_TARGETS = ("alertmanager:9093",)
RULE_FILES = ("ml_alerts.yml", "ml_anomaly.yml")


def render_prometheus_config(
    *,
    service_targets: Sequence[str] = SERVICE_TARGETS,
    node_exporter_targets: Sequence[str] = NODE_EXPORTER_TARGETS,
    alertmanager_targets: Sequence[str] = ALERTMANAGER_TARGETS,
    rule_files: Sequence[str] = RULE_FILES,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    scrape_timeout: str = "10s",
    metrics_token_file: str | None = None,
    metrics_path: str = "/metrics",
    job: str = JOB,
    external_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``prometheus.yml`` as a dict; relative ``rule_files`` resolve next to the config file."""
    service: dict[str, Any] = {
        "job_name": job,
        "metrics_path": metrics_path,
        "static_configs": [{"targets": list(service_targets)}],
    }
    if metrics_token_file:
        # The token is read from a file at each scrape: never inline in a committed config.
        service["authorization"] = {"type": "Bearer", "credentials_file": metrics_token_file}
    scrape = [service]
    if node_exporter_targets:
        scrape.append(
            {
                "job_name": "node-exporter",
                "static_configs": [{"targets": list(node_exporter_targets)}],
            }
        )
    if alertmanager_targets:
        scrape.append(
            {
                "job_name": "alertmanager",
                "static_configs": [{"targets": list(alertmanager_targets)}],
            }
        )
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "scrape_timeout": scrape_timeout,
        },
        "rule_files": list(rule_files),
        "scrape_configs": scrape,
    }
    if external_labels:
        config["global"]["external_labels"] = dict(external_labels)
    if alertmanager_targets:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanager_targets)}]}]
        }
    return config


def render_prometheus_config_yaml(**kwargs: Any) -> str:
    """``deploy/prometheus/prometheus.yml`` as text (keyword arguments as above)."""
    return to_yaml(render_prometheus_config(**kwargs))
