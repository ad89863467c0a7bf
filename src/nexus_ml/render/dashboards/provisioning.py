"""Grafana provisioning: the datasources (fixed uids) and the dashboard file provider."""

from __future__ import annotations

from typing import Any

from nexus_ml.render.dashboards.common import ALERTMANAGER_UID, PROMETHEUS_UID

# Where docker-compose.monitoring.yml mounts deploy/grafana/dashboards inside the container.
DASHBOARDS_PATH = "/etc/grafana/dashboards"


def datasources(
    prometheus_url: str = "http://prometheus:9090",
    alertmanager_url: str = "http://alertmanager:9093",
) -> dict[str, Any]:
    """``provisioning/datasources/datasources.yml``: Prometheus (default) and Alertmanager."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": PROMETHEUS_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
                "editable": False,
                # The scrape interval: Grafana never asks for a step finer than the data.
                "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
            },
            {
                "name": "Alertmanager",
                "uid": ALERTMANAGER_UID,
                "type": "alertmanager",
                "access": "proxy",
                "url": alertmanager_url,
                "editable": False,
                "jsonData": {"implementation": "prometheus", "handleGrafanaManagedAlerts": False},
            },
        ],
    }


def dashboard_providers(path: str = DASHBOARDS_PATH) -> dict[str, Any]:
    """``provisioning/dashboards/dashboards.yml``: load every JSON under ``path``, read-only."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "nexus-ml",
                "orgId": 1,
                "folder": "Nexus ML",
                "type": "file",
                # The JSON is generated: a UI edit would be lost at the next render.
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": path, "foldersFromFilesStructure": False},
            }
        ],
    }
