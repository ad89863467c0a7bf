"""The promtool cases, evaluated in-process: both paths agree on the same gauges.

Every case whose input series are constant gauges (``v+0xN``) is turned into one scrape,
recorded by :class:`MetricHistory` as the service records its own metrics, and given to the
alert's condition: it must breach exactly when the case expects the rule to fire, with the
case's labels and value. That covers the snapshot (NaN left out, bounds joined, ``== 1``
for the positive class, the max over versions) as well as the condition, on the data the
Prometheus rule is proven with.
"""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client import Metric

from nexus_ml.monitoring.alerts import ALERTS, Alert, Case
from nexus_ml.monitoring.measurements import MetricHistory
from nexus_ml.thresholds import Thresholds

T0 = 1_900_000_000.0
CONSTANT = re.compile(r"^(\S+)\+0x\d+$")
SELECTOR = re.compile(r"^(\w+)\{(.*)\}$")
LABEL = re.compile(r'(\w+)="([^"]*)"')
# Alerts that read gauges at one instant. Not here: MLServiceDown (the scrape's `up`),
# NoRecentTraining (promtool's clock starts at the epoch: its timestamps are negative) and
# the rate alerts (their cases are counters and histograms, not constants).
INSTANT = {
    "SensitivityDrop",
    "SubgroupPerformanceGap",
    "CalibrationDrift",
    "LowModelAccuracy",
    "DataDriftDetected",
    "HighCPUUsage",
    "CriticalCPUUsage",
    "HighMemoryUsage",
    "HighDiskUsage",
}
THRESHOLDS = {
    "defaults": Thresholds(),
    "overridden": Thresholds(
        sensitivity_drop_tolerance=0.08,
        subgroup_gap_tolerance=0.15,
        calibration_error_tolerance=0.02,
        accuracy_baseline_tolerance=0.05,
        clinical_min_samples=40,
        calibration_min_samples=500,
        training_accuracy_low=0.7,
    ),
}


def _gauge_cases() -> list[tuple[Alert, Thresholds, Case]]:
    out = []
    for t in THRESHOLDS.values():
        for alert in ALERTS:
            if alert.name in INSTANT:
                out += [(alert, t, c) for c in alert.promtool_cases(t)]
    return out


def _scrape(case: Case) -> list[Metric]:
    """The case's series as one scrape of gauges (what ``registry.collect()`` yields)."""
    families: dict[str, Metric] = {}
    for selector, values in case.series:
        match, constant = SELECTOR.match(selector), CONSTANT.match(values)
        assert match and constant, selector
        name, body = match.groups()
        family = families.setdefault(name, Metric(name, name, "gauge"))
        family.add_sample(name, dict(LABEL.findall(body)), float(constant.group(1)))
    return list(families.values())


CASES = _gauge_cases()


def test_every_instant_alert_is_checked() -> None:
    assert {a.name for a, _, _ in CASES} == INSTANT


@pytest.mark.parametrize(
    ("alert", "t", "case"),
    CASES,
    ids=[
        f"{a.name}-{k}-{'fires' if c.fires else 'quiet'}-{c.note or 'breach'}"
        for a, t, c in CASES
        for k in [next(k for k, v in THRESHOLDS.items() if v is t)]
    ],
)
def test_the_condition_agrees_with_the_rule_on_each_case(
    alert: Alert, t: Thresholds, case: Case
) -> None:
    history = MetricHistory()
    history.record(_scrape(case), T0)
    models = sorted({LABEL.findall(s)[0][1] for s, _ in case.series if 'model="' in s} or {"m"})
    snapshot = history.measurements(models, T0, thresholds=t)
    found = list(alert.breaches(snapshot, t, case.labels.get("instance", "ml-1:8001")))
    if not case.fires:
        assert found == [], case.note
        return
    expected = {k: v for k, v in case.labels.items() if k != "job"}
    assert len(found) == 1, (case.note, found)
    labels, value = found[0]
    assert labels == expected
    assert math.isclose(value, case.value, rel_tol=1e-12), (value, case.value)
