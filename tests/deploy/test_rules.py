"""Prometheus rules and config: promtool check/test, and the checked-in files are current."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from tests.helpers import PROMTOOL_OVERRIDES

from nexus_ml.monitoring.alerts import ALERTS
from nexus_ml.render.prometheus_config import render_prometheus_config_yaml
from nexus_ml.render.rule_tests import promtool_test, render_rule_tests, render_rule_tests_yaml
from nexus_ml.render.rules import (
    GROUPS,
    recording_rule_names,
    render_rules,
    render_rules_yaml,
    to_yaml,
)
from nexus_ml.thresholds import Thresholds

pytestmark = pytest.mark.stack


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, cwd=cwd, timeout=240, check=False
    )


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_checked_in_rule_files_are_current(deploy_dir: Path) -> None:
    prom = deploy_dir / "prometheus"
    assert (prom / "ml_alerts.yml").read_text(encoding="utf-8") == render_rules_yaml()
    assert (prom / "ml_alerts_test.yml").read_text(encoding="utf-8") == render_rule_tests_yaml()
    assert (prom / "prometheus.yml").read_text(encoding="utf-8") == render_prometheus_config_yaml()


def test_every_alert_is_rendered_with_labels_and_runbook() -> None:
    rules = [r for g in render_rules()["groups"] for r in g["rules"] if "alert" in r]
    assert [r["alert"] for r in rules] == [a.name for a in ALERTS]
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["labels"]["category"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert rule["annotations"]["runbook_url"].endswith(
            "docs/runbooks.md#" + rule["alert"].lower()
        )


def test_recording_rules_cover_dashboards_and_slo_windows() -> None:
    names = set(recording_rule_names())
    for q in ("p50", "p95", "p99"):
        assert f"job_model:ml_model_prediction_duration_seconds:{q}_5m" in names
        assert f"job_endpoint:ml_api_request_duration_seconds:{q}_5m" in names
    for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"job:ml_api_request_errors:ratio_rate{w}" in names
        assert f"job:ml_model_predictions_slow:ratio_rate{w}" in names
    assert [g["name"] for g in render_rules()["groups"]] == list(GROUPS)


def test_latency_slo_bound_must_be_a_bucket() -> None:
    with pytest.raises(ValueError, match="bucket"):
        render_rules(Thresholds(latency_slo_threshold=0.7))


def test_promtool_check_rules(deploy_dir: Path, require_tool: Callable[[str], str]) -> None:
    promtool = require_tool("promtool")
    _ok(_run(promtool, "check", "rules", str(deploy_dir / "prometheus" / "ml_alerts.yml")))


def test_promtool_unit_tests(deploy_dir: Path, require_tool: Callable[[str], str]) -> None:
    promtool = require_tool("promtool")
    _ok(_run(promtool, "test", "rules", "ml_alerts_test.yml", cwd=deploy_dir / "prometheus"))


def test_promtool_unit_tests_follow_overrides(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    # Overridden thresholds render rules and tests that still agree with each other.
    promtool = require_tool("promtool")
    t = Thresholds(**PROMTOOL_OVERRIDES)
    (tmp_path / "ml_alerts.yml").write_text(render_rules_yaml(t))
    (tmp_path / "ml_alerts_test.yml").write_text(render_rule_tests_yaml(t))
    _ok(_run(promtool, "test", "rules", "ml_alerts_test.yml", cwd=tmp_path))


def test_promtool_unit_tests_follow_every_for(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    # Each alert's cases take its `for` from the definition: with every `for` at 20m
    # (TrainingFailure's default is 0) rules and tests still agree on both sides of it.
    promtool = require_tool("promtool")
    t = Thresholds.model_validate(dict.fromkeys({a.for_key for a in ALERTS}, "20m"))
    (tmp_path / "ml_alerts.yml").write_text(render_rules_yaml(t))
    (tmp_path / "ml_alerts_test.yml").write_text(render_rule_tests_yaml(t))
    _ok(_run(promtool, "test", "rules", "ml_alerts_test.yml", cwd=tmp_path))


@pytest.mark.parametrize("window", ["20s", "1m30s", "1h"])
def test_promtool_db_connection_errors_follow_their_window(
    window: str, tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    # The range is a threshold; rules and cases agree for windows under a minute, odd
    # sizes and the one-hour maximum (a burst resolves exactly one window later).
    promtool = require_tool("promtool")
    t = Thresholds(db_connection_errors_window=window, db_connection_errors_for=0)
    rules = render_rules_yaml(t)
    assert f'error_type="connection"}}[{window}]' in rules
    (tmp_path / "ml_alerts.yml").write_text(rules)
    (tmp_path / "ml_alerts_test.yml").write_text(_db_cases_only(t))
    _ok(_run(promtool, "test", "rules", "ml_alerts_test.yml", cwd=tmp_path))


def _db_cases_only(t: Thresholds | None = None) -> str:
    document = render_rule_tests(t)
    document["tests"] = [c for c in document["tests"] if c["name"].startswith("DatabaseConn")]
    return to_yaml(document)


def test_promtool_catches_a_drifted_db_window(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    # A rule whose range is one minute shorter resolves a minute early: the burst case fails.
    promtool = require_tool("promtool")
    t = Thresholds(db_connection_errors_window="4m")
    (tmp_path / "ml_alerts.yml").write_text(render_rules_yaml(t))
    (tmp_path / "ml_alerts_test.yml").write_text(_db_cases_only())
    result = _run(promtool, "test", "rules", "ml_alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "one burst" in result.stdout + result.stderr


def test_promtool_catches_a_drifted_threshold(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    # The tests are not vacuous: rules rendered from other limits fail them.
    promtool = require_tool("promtool")
    (tmp_path / "ml_alerts.yml").write_text(render_rules_yaml(Thresholds(cpu_usage_high=81)))
    (tmp_path / "ml_alerts_test.yml").write_text(render_rule_tests_yaml())
    result = _run(promtool, "test", "rules", "ml_alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "HighCPUUsage" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "alert"),
    [
        ({"sensitivity_drop_tolerance": 0.04}, "SensitivityDrop"),
        ({"subgroup_gap_tolerance": 0.11}, "SubgroupPerformanceGap"),
        ({"calibration_error_tolerance": 0.06}, "CalibrationDrift"),
        ({"accuracy_baseline_tolerance": 0.09}, "LowModelAccuracy"),
        ({"clinical_min_samples": 101}, "SubgroupPerformanceGap"),
        ({"calibration_min_samples": 201}, "CalibrationDrift"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else v,
)
def test_promtool_catches_a_drifted_clinical_limit(
    change: dict[str, float], alert: str, tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    # The baseline-relative cases pin each tolerance and minimum: a rule one step off fails.
    promtool = require_tool("promtool")
    (tmp_path / "ml_alerts.yml").write_text(render_rules_yaml(Thresholds(**change)))
    document = render_rule_tests()  # the default cases of this alert only: a short run
    document["tests"] = [c for c in document["tests"] if c["name"].startswith(f"{alert}:")]
    (tmp_path / "ml_alerts_test.yml").write_text(to_yaml(document))
    result = _run(promtool, "test", "rules", "ml_alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert f"name: {alert}" in result.stdout + result.stderr


def test_promtool_check_config(
    tmp_path: Path, deploy_dir: Path, require_tool: Callable[[str], str]
) -> None:
    promtool = require_tool("promtool")
    token = tmp_path / "metrics_token"
    token.write_text("not-a-real-token\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        render_prometheus_config_yaml(
            service_targets=["127.0.0.1:18001"],
            node_exporter_targets=[],
            alertmanager_targets=["127.0.0.1:19093"],
            rule_files=[str(deploy_dir / "prometheus" / "ml_alerts.yml")],
            metrics_token_file=str(token),
        )
    )
    _ok(_run(promtool, "check", "config", str(config)))
    _ok(_run(promtool, "check", "config", str(deploy_dir / "prometheus" / "prometheus.yml")))


def test_prometheus_config_shape() -> None:
    config = yaml.safe_load(render_prometheus_config_yaml(metrics_token_file="/run/secrets/t"))
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "15s"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["nexus-ml"]["static_configs"][0]["targets"] == ["nexus-ml:8001"]
    assert jobs["nexus-ml"]["metrics_path"] == "/metrics"
    assert jobs["nexus-ml"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/run/secrets/t",
    }
    assert "credentials" not in jobs["nexus-ml"]["authorization"]
    assert jobs["node-exporter"]["static_configs"][0]["targets"] == ["node-exporter:9100"]
    assert jobs["alertmanager"]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert config["rule_files"] == ["ml_alerts.yml", "ml_anomaly.yml"]


def test_only_known_metric_names_in_rules() -> None:
    # Every ml_* name used in an expression is one metrics.py exports.
    import re

    from prometheus_client import CollectorRegistry

    from nexus_ml.monitoring.metrics import build_metrics

    registry = CollectorRegistry()
    build_metrics(registry)
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",)}
    exported = {m.name + sfx for m in registry.collect() for sfx in suffixes.get(m.type, ("",))}
    checked = 0
    for group in render_rules()["groups"]:
        for rule in group["rules"]:
            # A name after ':' is part of a recording rule's level:metric:op name.
            names = re.findall(r"(?<![:\w])(ml_[a-z_]+)\b", rule["expr"])
            # Every rule reads a metric of ours, a recording rule, or the scrape's `up`:
            # a rule where the pattern finds nothing would be checked vacuously.
            # (level:metric:op, or the feature-drift group's ml:<name>).
            recorded = re.search(r"\b\w+:\w+:\w+|\bml:feature_\w+", rule["expr"])
            assert names or recorded or "up{" in rule["expr"], rule["expr"]
            for name in names:
                assert name in exported, (name, rule["expr"])
            checked += len(names)
    assert checked >= 30, checked


def test_rule_tests_name_the_rule_file_and_runbooks_they_are_given() -> None:
    # A deployment that renames the rule file or hosts the runbooks elsewhere gets tests that
    # load that file and expect those links.
    base = "https://runbooks.example/ml.md"
    document = yaml.safe_load(render_rule_tests_yaml(rules_file="other.yml", runbook_base=base))
    assert document["rule_files"] == ["other.yml"]
    urls = {
        a["exp_annotations"]["runbook_url"]
        for test in document["tests"]
        for check in test.get("alert_rule_test", [])
        for a in check["exp_alerts"]
    }
    assert urls == {f"{base}#{alert.name.lower()}" for alert in ALERTS}


def test_a_later_check_expects_the_value_of_its_own_minute() -> None:
    # A case's `later` checks say what the alert shows at that minute: firing with that
    # value (in the description), or silent.
    alert = next(a for a in ALERTS if a.name == "HighCPUUsage")
    t = Thresholds()
    case = alert.promtool_cases(t)[0]
    checks = promtool_test(
        alert, replace(case, later=[(30, 99.5), (40, None)]), t, "https://r.example/x.md"
    )["alert_rule_test"]
    at_30, at_40 = checks[-2], checks[-1]
    assert at_30["eval_time"] == "30m"
    assert "99.5%" in at_30["exp_alerts"][0]["exp_annotations"]["description"]
    assert at_40 == {"eval_time": "40m", "alertname": "HighCPUUsage", "exp_alerts": []}


def test_rules_read_the_job_and_link_the_runbooks_they_are_given() -> None:
    # A deployment with another scrape job name or runbook host gets rules for that job only.
    base = "https://runbooks.example/ml.md"
    document = yaml.safe_load(render_rules_yaml(job="ml-eu", runbook_base=base))
    rules = [r for g in document["groups"] for r in g["rules"]]
    for rule in rules:
        assert 'job="nexus-ml"' not in rule["expr"], rule
    alerts = [r for r in rules if "alert" in r]
    assert all('job="ml-eu"' in r["expr"] for r in alerts if "up{" not in r["expr"])
    assert {r["annotations"]["runbook_url"] for r in alerts} == {
        f"{base}#{a.name.lower()}" for a in ALERTS
    }
