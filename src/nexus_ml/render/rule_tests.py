"""Render ``ml_alerts_test.yml``: promtool unit tests for every alert, from the thresholds.

Each alert's cases are data in its definition (``monitoring/alerts/``): a breach just past
its limit, checked one evaluation before the ``for`` duration runs out (no alert) and at
the moment it does (alert with exact labels and annotations), and quiet cases just on the
safe side of the limit (and of its guards). This module only formats them; generated from
the same Thresholds as the rules, so overrides keep both in step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nexus_ml.monitoring.alerts import ALERTS, Alert, Case
from nexus_ml.render.drift_rules import drift_rule_tests
from nexus_ml.render.rules import GROUPS, to_yaml
from nexus_ml.thresholds import RUNBOOK_BASE, Thresholds, format_duration


def _expected(alert: Alert, case: Case, t: Thresholds, runbook_base: str) -> dict[str, Any]:
    return {
        "exp_labels": {**case.labels, "severity": alert.severity, "category": alert.category},
        "exp_annotations": {
            "summary": alert.fill(alert.summary, t, case.labels, case.value),
            "description": alert.fill(alert.description, t, case.labels, case.value),
            "runbook_url": alert.runbook_url(runbook_base),
        },
    }


def promtool_test(alert: Alert, case: Case, t: Thresholds, runbook_base: str) -> dict[str, Any]:
    """One promtool test: the case's series and its checks around the ``for`` duration."""
    name = alert.name
    checks: list[dict[str, Any]] = []
    if case.fires:
        fire_at = case.active_from + alert.for_minutes(t)
        if fire_at > 0:
            checks.append({"eval_time": f"{fire_at - 1}m", "alertname": name, "exp_alerts": []})
        checks.append(
            {
                "eval_time": f"{fire_at}m",
                "alertname": name,
                "exp_alerts": [_expected(alert, case, t, runbook_base)],
            }
        )
    else:
        checks.append({"eval_time": f"{case.check_at}m", "alertname": name, "exp_alerts": []})
    for minute, value in case.later:
        exp = (
            [] if value is None else [_expected(alert, replace(case, value=value), t, runbook_base)]
        )
        checks.append({"eval_time": f"{minute}m", "alertname": name, "exp_alerts": exp})
    return {
        "name": f"{name}: {'fires' if case.fires else 'quiet'}"
        + (f" — {case.note}" if case.note else ""),
        "interval": format_duration(case.interval),
        "input_series": [{"series": s, "values": v} for s, v in case.series],
        "alert_rule_test": checks,
    }


def render_rule_tests(
    thresholds: Thresholds | None = None,
    *,
    rules_file: str = "ml_alerts.yml",
    runbook_base: str = RUNBOOK_BASE,
) -> dict[str, Any]:
    """The promtool test document for ``rules_file`` rendered from the same thresholds."""
    t = thresholds or Thresholds()
    tests = [
        promtool_test(alert, case, t, runbook_base)
        for alert in ALERTS
        for case in alert.promtool_cases(t)
    ]
    tests += drift_rule_tests(t)
    return {
        "rule_files": [rules_file],
        "evaluation_interval": "1m",
        "group_eval_order": list(GROUPS),
        "tests": tests,
    }


def render_rule_tests_yaml(
    thresholds: Thresholds | None = None,
    *,
    rules_file: str = "ml_alerts.yml",
    runbook_base: str = RUNBOOK_BASE,
) -> str:
    """``deploy/prometheus/ml_alerts_test.yml`` as text."""
    return to_yaml(render_rule_tests(thresholds, rules_file=rules_file, runbook_base=runbook_base))
