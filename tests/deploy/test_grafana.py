"""Grafana dashboards and provisioning: guide panels, real metric names, thresholds, promtool."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from nexus_ml.monitoring.metrics import CLINICAL_GAUGES, build_metrics
from nexus_ml.render.dashboards import (
    DASHBOARDS,
    build_dashboards,
    dashboard_queries,
    iter_targets,
)
from nexus_ml.render.dashboards.common import ALERTMANAGER_UID, PROMETHEUS_UID
from nexus_ml.render.dashboards.provisioning import DASHBOARDS_PATH
from nexus_ml.render.rules import recording_rule_names
from nexus_ml.thresholds import Thresholds

GUIDE_PANELS = [
    "Service Health Status",
    "CPU Usage",
    "Memory Usage",
    "Active Alerts",
    "Prediction Requests/min",
    "Model Prediction Latency",
    "Model Accuracy",
    "Confidence Score Distribution",
    "Training Jobs/day",
    "Error Rate",
    "Database Operations",
    "Data Drift Scores",
]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _by_title(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in _panels(dashboard)}


def _steps(panel: dict[str, Any]) -> list[float]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [s["value"] for s in steps if s["value"] is not None]


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return build_dashboards()


def _exported_names() -> set[str]:
    registry = CollectorRegistry()
    build_metrics(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_count", "_sum"):
            names.add(family.name + suffix)
    return names


def test_overview_has_the_guide_twelve_panels_in_order(dashboards: dict[str, Any]) -> None:
    titles = [p["title"] for p in _panels(dashboards["nexus-ml-overview"])]
    assert titles == GUIDE_PANELS


def test_three_dashboards_with_matching_uid(dashboards: dict[str, Any]) -> None:
    assert set(dashboards) == {"nexus-ml-overview", "nexus-ml-oncall", "nexus-ml-data-science"}
    for name, dashboard in dashboards.items():
        assert dashboard["uid"] == name
        assert dashboard["editable"] is False
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_panel_has_a_query_on_the_provisioned_datasource(dashboards: dict[str, Any]) -> None:
    for dashboard in dashboards.values():
        for panel in _panels(dashboard):
            assert panel["datasource"] == {"type": "prometheus", "uid": PROMETHEUS_UID}
            assert panel.get("targets"), panel["title"]
        for panel, target in iter_targets(dashboard):
            assert target["datasource"]["uid"] == PROMETHEUS_UID, panel["title"]
            assert target["expr"].strip(), panel["title"]
        for variable in dashboard.get("templating", {}).get("list", []):
            assert variable["datasource"]["uid"] == PROMETHEUS_UID


def test_model_variable_on_model_dashboards(dashboards: dict[str, Any]) -> None:
    for name in ("nexus-ml-overview", "nexus-ml-data-science"):
        variables = {v["name"]: v for v in dashboards[name]["templating"]["list"]}
        assert variables["model"]["allValue"] == ".*"
        uses = [t["expr"] for _, t in iter_targets(dashboards[name]) if "$model" in t["expr"]]
        assert uses, name


def test_queries_use_only_metrics_defined_in_metrics_py() -> None:
    known = _exported_names() | set(recording_rule_names())
    used = set()
    for query in dashboard_queries():
        bare = re.sub(r'"[^"]*"', '""', query)  # label values are not metric names
        used |= set(re.findall(r"\b(?:ml_[a-z0-9_]+|job[a-z_]*:[a-z0-9_:]+)", bare))
    assert used, "no metric found in any query"
    assert not used - known, f"not defined in metrics.py or the recording rules: {used - known}"


def test_queries_have_no_grafana_variables_left() -> None:
    queries = dashboard_queries()
    assert len(queries) == len(set(queries))
    assert not [q for q in queries if "$" in q]


def test_guide_queries_present() -> None:
    queries = "\n".join(dashboard_queries())
    for fragment in (
        'up{job="nexus-ml"}',
        "ml_system_cpu_usage_percent",
        "ml_system_memory_usage_ratio",
        'count(ALERTS{alertstate="firing"})',
        "sum by (model) (rate(ml_model_predictions_total",
        "histogram_quantile(0.95, sum by (le, model) "
        "(rate(ml_model_prediction_duration_seconds_bucket",
        "ml_model_accuracy",
        "ml_model_confidence_score_bucket",
        "increase(ml_model_training_runs_total",
        'ml_api_requests_total{status=~"5.."}',
        "ml_db_operation_duration_seconds_bucket",
        "ml_db_operation_errors_total",
        "ml_data_drift_score",
        "ml_model_estimated_accuracy_stderr",
        "ml_model_holdout_accuracy",
        "ml_data_drift_share",
        "ml_data_quality_score",
        "ml_data_quality_issues_total",
    ):
        assert fragment in queries, fragment


def test_threshold_lines_follow_the_thresholds_definition() -> None:
    # Unusual values everywhere: a literal left in a panel would not move with them.
    t = Thresholds(
        cpu_usage_high=71.0,
        cpu_usage_critical=93.0,
        memory_usage_high=77.0,
        prediction_latency_high=0.25,
        training_accuracy_low=0.66,
        data_drift_high=0.17,
        error_rate_high=0.03,
        model_confidence_low=0.45,
        availability_slo=0.995,
        latency_slo=0.98,
        prediction_volume_low=0.5,
    )
    dashboards = build_dashboards(t)
    overview = _by_title(dashboards["nexus-ml-overview"])
    assert _steps(overview["CPU Usage"]) == [71.0, 93.0]
    assert _steps(overview["Memory Usage"]) == [0.77]
    assert _steps(overview["Model Prediction Latency"]) == [0.25]
    assert _steps(overview["Model Accuracy"]) == [0.66]
    assert _steps(overview["Data Drift Scores"]) == [0.17]
    assert _steps(overview["Error Rate"]) == [0.03]
    assert _steps(overview["Prediction Requests/min"]) == [30.0]
    science = _by_title(dashboards["nexus-ml-data-science"])
    assert _steps(science["Median confidence"]) == [0.45]
    assert _steps(science["Realised accuracy"]) == [0.66]
    oncall = _by_title(dashboards["nexus-ml-oncall"])
    assert _steps(oncall["Availability (30d)"]) == [0.995]
    budget = oncall["Availability error budget left"]["targets"][0]["expr"]
    assert budget.endswith("/ 0.005")


def test_every_query_parses_with_promtool(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    promtool = require_tool("promtool")
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": expr}
        for i, expr in enumerate(dashboard_queries())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_promtool_rejects_a_broken_query(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    # The check above is only worth something if promtool really parses each expression.
    promtool = require_tool("promtool")
    path = tmp_path / "bad.yml"
    rule = {"record": "dashboard:bad", "expr": "sum by (model (rate(x[5m]))"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [rule]}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


def test_checked_in_dashboards_are_grafana_json(deploy_dir: Path) -> None:
    for name in DASHBOARDS:
        text = (deploy_dir / "grafana" / "dashboards" / f"{name}.json").read_text()
        assert f'"uid": "{name}"' in text
        assert "generated by `nexus-ml render`" in text


def test_provisioning_points_at_fixed_uids_and_the_mounted_folder(deploy_dir: Path) -> None:
    provisioning = deploy_dir / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())
    by_uid = {s["uid"]: s for s in sources["datasources"]}
    assert by_uid[PROMETHEUS_UID]["url"] == "http://prometheus:9090"
    assert by_uid[PROMETHEUS_UID]["type"] == "prometheus"
    assert by_uid[ALERTMANAGER_UID]["url"] == "http://alertmanager:9093"
    assert by_uid[ALERTMANAGER_UID]["type"] == "alertmanager"
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["options"]["path"] == DASHBOARDS_PATH
    compose = yaml.safe_load((deploy_dir / "docker-compose.monitoring.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{DASHBOARDS_PATH}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_science_dashboard_reads_every_clinical_gauge(dashboards: dict[str, Any]) -> None:
    science = dashboards["nexus-ml-data-science"]
    used = " ".join(t["expr"] for _, t in iter_targets(science))
    missing = [name for name, _, _ in CLINICAL_GAUGES.values() if name not in used]
    assert not missing, f"clinical gauges no panel shows: {missing}"


def test_clinical_panels_draw_intervals_and_baselines(dashboards: dict[str, Any]) -> None:
    science = _by_title(dashboards["nexus-ml-data-science"])
    for title, metric in (
        ("Recall (sensitivity) with 95 % interval", "recall"),
        ("Precision (PPV) with 95 % interval", "precision"),
    ):
        panel = science[title]
        exprs = {t["legendFormat"].rsplit(" ", 1)[-1]: t["expr"] for t in panel["targets"]}
        sel = '{model=~"$model", class=~"$class", segment=~"$segment"}'
        assert exprs["lower"] == f"ml_model_{metric}_lower{sel}"
        assert exprs["upper"] == f"ml_model_{metric}_upper{sel}"
        assert f'metric="{metric}"' in exprs["baseline"]
        # Bounds and baseline are drawn dashed, the value itself solid.
        (dashed,) = panel["fieldConfig"]["overrides"]
        assert re.fullmatch(dashed["matcher"]["options"], "m high sex=1 lower")
        assert not re.fullmatch(dashed["matcher"]["options"], "m high sex=1")
    table = science["Recall and precision by segment (latest, 95 % interval)"]
    organize = next(t for t in table["transformations"] if t["id"] == "organize")
    renamed = set(organize["options"]["renameByName"].values())
    assert {"recall", "recall lower 95%", "recall upper 95%", "precision lower 95%"} <= renamed
    assert [t["id"] for t in table["transformations"]] == ["merge", "organize"]
    alert_rate = science["Alert rate (share of predictions flagging the class)"]
    assert alert_rate["targets"][0]["expr"].startswith("ml_model_positive_rate{")
    reliability = science["Reliability curve (latest, segment all)"]
    assert reliability["type"] == "barchart" and reliability["options"]["xField"] == "bin"
    variables = {v["name"]: v for v in dashboards["nexus-ml-data-science"]["templating"]["list"]}
    assert variables["segment"]["current"]["value"] == "all"  # one line per model by default
    assert variables["class"]["allValue"] == ".*"


def test_clinical_alert_limits_follow_the_thresholds_definition() -> None:
    # Unusual tolerances: a literal left in a panel would not move with them.
    t = Thresholds(
        sensitivity_drop_tolerance=0.07,
        subgroup_gap_tolerance=0.13,
        calibration_error_tolerance=0.06,
        clinical_min_samples=77,
    )
    science = _by_title(build_dashboards(t)["nexus-ml-data-science"])

    def limits(title: str) -> dict[str, str]:
        return {
            target["legendFormat"].split(" ")[-2]: target["expr"]
            for target in science[title]["targets"]
            if target["legendFormat"].endswith(" limit")
        }

    recall = limits("Recall (sensitivity) with 95 % interval")
    assert recall["SensitivityDrop"] == (
        '(ml_model_baseline{model=~"$model", metric="recall", class=~"$class"} - 0.07) '
        "and on (model, class) (ml_model_positive_class == 1)"
    )
    assert recall["SubgroupPerformanceGap"] == (
        'ml_model_recall{model=~"$model", class=~"$class", segment="all"} - 0.13'
    )
    precision = limits("Precision (PPV) with 95 % interval")
    assert set(precision) == {"SubgroupPerformanceGap"}  # SensitivityDrop reads recall only
    assert precision["SubgroupPerformanceGap"].endswith(' segment="all"} - 0.13')
    calibration = limits("Calibration error (ECE) and Brier score")
    assert calibration["CalibrationDrift"].endswith('metric="calibration_error"} + 0.06')
    assert _steps(science["Labelled predictions per segment"]) == [77.0]
