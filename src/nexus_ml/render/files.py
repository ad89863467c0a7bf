"""``nexus-ml render``: write every generated file under ``deploy/`` from the code.

Output is deterministic (fixed key order or sorted keys, stable file order), so
``tests/deploy/test_generated.py`` can prove the checked-in files are up to date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nexus_ml.render.alertmanager_config import Receivers, render_alertmanager_config_yaml
from nexus_ml.render.anomaly_rules import render_anomaly_rules_yaml
from nexus_ml.render.anomaly_tests import render_anomaly_tests_yaml
from nexus_ml.render.dashboards import build_dashboards, dashboard_json
from nexus_ml.render.dashboards.common import GENERATED
from nexus_ml.render.dashboards.provisioning import dashboard_providers, datasources
from nexus_ml.render.kubernetes import adapter_rules, manifests
from nexus_ml.render.prometheus_config import render_prometheus_config_yaml
from nexus_ml.render.rule_tests import render_rule_tests_yaml
from nexus_ml.render.rules import render_rules_yaml, to_yaml
from nexus_ml.thresholds import Thresholds

HEADER = f"# {GENERATED}\n"


def _yaml(document: dict[str, Any]) -> str:
    return to_yaml(document, header=HEADER)


def generated_files(
    thresholds: Thresholds | None = None, receivers: Receivers | None = None
) -> dict[str, str]:
    """Path relative to ``deploy/`` -> text, for every generated file."""
    t = thresholds if thresholds is not None else Thresholds()
    files = {
        # Compose defaults: targets by service name, as in docker-compose.monitoring.yml.
        "prometheus/prometheus.yml": render_prometheus_config_yaml(),
        "prometheus/ml_alerts.yml": render_rules_yaml(t),
        "prometheus/ml_alerts_test.yml": render_rule_tests_yaml(t),
        "prometheus/ml_anomaly.yml": render_anomaly_rules_yaml(t),
        "prometheus/ml_anomaly_test.yml": render_anomaly_tests_yaml(t),
        "alertmanager/alertmanager.yml": render_alertmanager_config_yaml(receivers),
    }
    # JSON has no comments: the dashboards carry the header in their description instead.
    for name, dashboard in build_dashboards(t).items():
        files[f"grafana/dashboards/{name}.json"] = dashboard_json(dashboard)
    files["grafana/provisioning/datasources/datasources.yml"] = _yaml(datasources())
    files["grafana/provisioning/dashboards/dashboards.yml"] = _yaml(dashboard_providers())
    for name, resource in manifests(t).items():
        files[f"kubernetes/{name}"] = _yaml(resource)
    # Helm values, not a resource: kept in a subfolder so `kubectl apply -f kubernetes/` skips it.
    files["kubernetes/adapter/prometheus-adapter-values.yaml"] = _yaml(adapter_rules())
    return files


def render_all(
    out_dir: Path, thresholds: Thresholds | None = None, receivers: Receivers | None = None
) -> list[Path]:
    """Write every generated file under ``out_dir``; return the paths.

    ``thresholds`` and ``receivers`` default to the defaults, never to the environment: the
    checked-in ``deploy/`` files are rendered (and tested) from the code alone.
    """
    written = []
    for relative, text in generated_files(thresholds, receivers).items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
