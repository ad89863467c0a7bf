"""One definition per alert: it is registered, documented, tested on both sides, evaluated."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from nexus_ml.monitoring.alerts import (
    ALERTS,
    Alert,
    clinical,
    database,
    feature_drift,
    format_number,
    host,
    http,
    integrity,
    model,
    slo,
    target,
    usage,
)
from nexus_ml.render.anomaly_rules import ALERT_NAMES as ANOMALY_ALERTS
from nexus_ml.render.rule_tests import promtool_test
from nexus_ml.stats import drift_methods
from nexus_ml.thresholds import RUNBOOK_BASE, Thresholds

RUNBOOKS = Path(__file__).resolve().parents[3] / "docs" / "runbooks.md"
ANOMALY_SHARED = "Anomaly bands (shared by the six alerts below)"
# The monitoring guide's fifteen alerts by severity: the service evaluates each itself.
GUIDE_CRITICAL = [
    "MLServiceDown",
    "CriticalCPUUsage",
    "HighErrorRate",
    "TrainingFailure",
    "DatabaseConnectionErrors",
]
GUIDE_WARNING = [
    "HighCPUUsage",
    "HighMemoryUsage",
    "HighDiskUsage",
    "LowModelAccuracy",
    "HighPredictionLatency",
    "LowModelConfidence",
    "DataDriftDetected",
    "NoRecentTraining",
]
GUIDE_BUSINESS = ["LowPredictionVolume", "UnbalancedPredictions"]
GUIDE = GUIDE_CRITICAL + GUIDE_WARNING + GUIDE_BUSINESS
# Issue 14's clinical alerts, relative to each model's validated baseline: warnings, in-process.
CLINICAL = ["SensitivityDrop", "SubgroupPerformanceGap", "CalibrationDrift"]
# Ours, critical, in-process: what the service refused to keep (a record the database
# rejected) or to serve (a bundle refused at load) pages someone.
INTEGRITY = ["PredictionRecordsRejected", "ModelBundleRefused"]
IN_PROCESS = GUIDE + CLINICAL + INTEGRITY
# Ours, Prometheus only: they need the scrape itself or days of history.
PROMETHEUS_ONLY = [
    "MLServiceTargetMissing",
    "AvailabilitySLOFastBurn",
    "AvailabilitySLOSlowBurn",
    "LatencySLOFastBurn",
    "LatencySLOSlowBurn",
    "FeatureDriftPromQL",  # every replica's per-bin counters: only Prometheus adds them up
]
FAMILIES = (clinical, database, feature_drift, host, http, integrity, model, slo, target, usage)
_FOR_KEYS = sorted({a.for_key for a in ALERTS})
# Defaults, and every `for` the same non-zero length (TrainingFailure's default is 0).
THRESHOLDS = {
    "defaults": Thresholds(),
    "for 3m": Thresholds.model_validate(dict.fromkeys(_FOR_KEYS, "3m")),
    "for 20m": Thresholds.model_validate(dict.fromkeys(_FOR_KEYS, "20m")),
}


def _alert_id(alert: Alert) -> str:
    return alert.name


def test_the_alerts_are_the_guides_clinical_slo_and_target_absence() -> None:
    names = [a.name for a in ALERTS]
    assert len(names) == len(set(names)), "two definitions share a name"
    assert sorted(names) == sorted(IN_PROCESS + PROMETHEUS_ONLY)
    assert sorted(a.name for a in ALERTS if a.in_process) == sorted(IN_PROCESS)


def test_the_guides_severities() -> None:
    by_severity = {
        severity: sorted(a.name for a in ALERTS if a.severity == severity and a.in_process)
        for severity in ("critical", "warning", "info")
    }
    assert by_severity == {
        "critical": sorted(GUIDE_CRITICAL + INTEGRITY),
        "warning": sorted(GUIDE_WARNING + CLINICAL),
        "info": sorted(GUIDE_BUSINESS),
    }
    business = sorted(a.name for a in ALERTS if a.category == "business")
    assert business == sorted(GUIDE_BUSINESS)


def test_every_alert_names_real_keys() -> None:
    for a in ALERTS:
        assert a.for_key in Thresholds.model_fields, a.name
        assert all(key in Thresholds.model_fields for key in a.reads), a.name
        assert a.threshold is None or a.threshold in Thresholds.model_fields, a.name
        assert a.window_key is None or a.window_key in Thresholds.model_fields, a.name
        assert a.window is None or a.window_key is None, a.name  # one source of the range


def test_every_definition_in_a_family_module_is_registered() -> None:
    # A definition left out of ALERTS would be rendered, evaluated and tested by nothing.
    defined = [
        value for module in FAMILIES for value in vars(module).values() if isinstance(value, Alert)
    ]
    assert len(defined) == len(ALERTS)
    assert set(map(id, defined)) == set(map(id, ALERTS))


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_has_its_runbook_section_and_no_section_is_orphaned() -> None:
    headings = [
        line.removeprefix("## ")
        for line in RUNBOOKS.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    ]
    anchors = {_github_anchor(h): h for h in headings}
    for alert in ALERTS:
        assert alert.anchor in anchors, f"docs/runbooks.md lacks '## {alert.name}'"
        assert anchors[alert.anchor] == alert.name  # the heading is the alert's name exactly
        assert alert.runbook_url() == f"{RUNBOOK_BASE}#{alert.anchor}"
    # The anomaly alerts are generated from stats/anomaly.py (render/anomaly_rules.py), with one
    # section shared by the six.
    assert sorted(headings) == sorted([*(a.name for a in ALERTS), *ANOMALY_ALERTS, ANOMALY_SHARED])


def test_the_threshold_display_is_part_of_the_definition() -> None:
    t = Thresholds()
    # NoRecentTraining's limit is seconds, its text days: the definition says so, not its name.
    assert model.NO_RECENT_TRAINING.threshold_divisor == 86400
    assert model.NO_RECENT_TRAINING.threshold_text(t) == "7"
    assert model.NO_RECENT_TRAINING.threshold_text(Thresholds(training_max_age="36h")) == "1.5"
    assert host.HIGH_CPU.threshold_text(t) == "80"
    assert slo.AVAILABILITY_FAST_BURN.threshold_text(t) == "0.999"
    assert target.SERVICE_DOWN.threshold_text(t) == ""
    divided = [a.name for a in ALERTS if a.threshold_divisor != 1]
    assert divided == ["NoRecentTraining"]


@pytest.mark.parametrize("thresholds", THRESHOLDS.values(), ids=THRESHOLDS.keys())
@pytest.mark.parametrize("alert", ALERTS, ids=_alert_id)
def test_cases_on_both_sides_of_the_threshold_and_of_for(
    alert: Alert, thresholds: Thresholds
) -> None:
    cases = alert.promtool_cases(thresholds)
    firing = [c for c in cases if c.fires]
    quiet = [c for c in cases if not c.fires]
    assert firing, f"{alert.name}: no case past the limit"
    assert quiet, f"{alert.name}: no case inside the limit"
    for_m = alert.for_minutes(thresholds)
    for case in firing:
        # The instance the rule yields carries exactly the labels the alert declares.
        assert set(case.labels) == {"job", *alert.labels}, case.note
        checks = promtool_test(alert, case, thresholds, RUNBOOK_BASE)["alert_rule_test"]
        fire_at = case.active_from + for_m
        assert fire_at > 0, f"{alert.name}: nothing checks the moment before it fires"
        assert checks[0] == {
            "eval_time": f"{fire_at - 1}m",
            "alertname": alert.name,
            "exp_alerts": [],
        }
        assert checks[1]["eval_time"] == f"{fire_at}m"
        assert len(checks[1]["exp_alerts"]) == 1
    # A quiet case proves something only once a breach would have fired.
    latest_firing = max(c.active_from for c in firing) + for_m
    for case in quiet:
        assert case.check_at is not None and case.check_at >= latest_firing, case.note


@pytest.mark.parametrize("alert", [a for a in ALERTS if a.in_process], ids=_alert_id)
def test_in_process_alerts_have_a_condition_that_reads_the_snapshot(alert: Alert) -> None:
    from nexus_ml.monitoring.alerts import Measurements

    assert alert.condition is not None
    # An empty snapshot is "not measured": only the volume alert counts that as zero.
    found = list(alert.breaches(Measurements(), Thresholds(), "ml-1"))
    assert found == ([({}, 0.0)] if alert is usage.LOW_VOLUME else [])


def test_the_database_cases_sample_step_keeps_its_three_rules_for_any_window() -> None:
    # The step of DatabaseConnectionErrors' cases (database._sample_step's docstring): under a
    # minute and a divisor of 60, at most half the window, no range starting on a sample; the
    # largest such (the fewest samples). Every window from 2 s to 2 h, in whole seconds.
    divisors = [d for d in range(59, 0, -1) if 60 % d == 0]
    for window in range(2, 7201):
        fits = [d for d in divisors if 2 * d <= window and (window - d) % 60]
        assert database._sample_step(window) == fits[0], window
    with pytest.raises(ValueError, match=r"^no sample step fits db_connection_errors_window 1s$"):
        database._sample_step(1)


@pytest.mark.parametrize("low_share", [0.5, 0.51, 0.6, 0.7, 0.85, 0.99, 1.0])
def test_the_drift_cases_psi_is_the_services_psi(low_share: float) -> None:
    # feature_drift cannot import stats; its cases' PSI must still be the service's, or the
    # "just past the limit" case is past some other limit.
    reference = np.array([0.5, 0.5, 0.0]) * 1000
    window = np.array([low_share, 1 - low_share, 0.0]) * 1000
    assert feature_drift._EPS == drift_methods.PSI_EPS
    assert feature_drift._psi(low_share) == pytest.approx(drift_methods.psi(reference, window))


def test_an_annotation_shows_nan_and_the_window_as_prometheus_fills_them() -> None:
    # Go's printf "%.3g" writes NaN as "NaN"; {window} is the alert's range, e.g. "5m".
    assert format_number(math.nan) == "NaN"
    text = http.HIGH_ERROR_RATE.fill(
        http.HIGH_ERROR_RATE.description, Thresholds(), {"job": "nexus-ml"}, math.nan
    )
    assert text.startswith("NaN of requests to nexus-ml failed with 5xx over 5m "), text
