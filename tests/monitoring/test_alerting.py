"""In-process evaluator: every guide alert fires after its `for`, clears, and stays quiet below."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from nexus_ml.monitoring.alerting import (
    AlertEvaluator,
    DriftReading,
    Measurements,
    publish_firing,
)
from nexus_ml.monitoring.alerts import ALERTS, ALERTS_BY_NAME, Bounded
from nexus_ml.render.rules import render_rules
from nexus_ml.thresholds import Thresholds

T = Thresholds()
NOW = 1_900_000_000.0
M = "diagnostic"
POS, SEG = "malignant", "sex=2"
# A healthy snapshot: nothing fires on it (checked below).
HEALTHY = Measurements(
    cpu_percent=10,
    memory_ratio=0.3,
    memory_bytes=2e9,
    disk_ratio=0.2,
    request_rate=10,
    error_rate=0,
    error_ratio=0,
    latency_p95={M: 0.01},
    median_confidence={M: 0.9},
    accuracy={M: 0.95},
    accuracy_samples={M: 500},
    drift={(M, "age"): DriftReading(0.01, False)},
    training_failures={M: 0},
    last_training={M: NOW - 86400},
    db_connection_errors=0,
    prediction_rate=1.0,
    prediction_rate_by_model={M: 0.6, "other": 0.4},
    recall={(M, POS, "all"): Bounded(0.9, 0.85, 0.94), (M, POS, SEG): Bounded(0.88, 0.8, 0.93)},
    precision={(M, POS, "all"): Bounded(0.8, 0.75, 0.85), (M, POS, SEG): Bounded(0.79, 0.7, 0.86)},
    calibration_error={(M, "all"): 0.04, (M, SEG): 0.2},  # segments' ECE is not compared
    labelled_samples={(M, "all"): 500, (M, SEG): 200},
    baseline={
        (M, "recall", POS): 0.92,
        (M, "calibration_error", ""): 0.03,
        (M, "accuracy", ""): 0.96,
    },
    positive_classes=frozenset({(M, POS)}),
    now=NOW,
)
Case = tuple[str, dict[str, object], dict[str, object], dict[str, str]]


def _cases(t: Thresholds) -> list[Case]:
    """(alert, breach just past the limit, just inside it, expected extra labels)."""
    host = {"instance": "ml-1"}
    model = {"model": M}
    age = t.training_max_age
    return [
        ("MLServiceDown", {"service_up": False}, {"service_up": True}, host),
        (
            "CriticalCPUUsage",
            {"cpu_percent": t.cpu_usage_critical + 0.5},
            {"cpu_percent": t.cpu_usage_critical - 0.5},
            host,
        ),
        (
            "HighCPUUsage",
            {"cpu_percent": t.cpu_usage_high + 0.5},
            {"cpu_percent": t.cpu_usage_high - 0.5},
            host,
        ),
        (
            "HighMemoryUsage",
            {"memory_ratio": (t.memory_usage_high + 0.5) / 100},
            {"memory_ratio": (t.memory_usage_high - 0.5) / 100},
            host,
        ),
        (
            "HighDiskUsage",
            {"disk_ratio": (t.disk_usage_high + 0.5) / 100},
            {"disk_ratio": (t.disk_usage_high - 0.5) / 100},
            host,
        ),
        (
            "HighErrorRate",
            {"error_ratio": t.error_rate_high * 1.05, "error_rate": 1.0},
            {"error_ratio": t.error_rate_high * 0.95, "error_rate": 1.0},
            {},
        ),
        ("TrainingFailure", {"training_failures": {M: 1}}, {"training_failures": {M: 0}}, model),
        (
            "PredictionRecordsRejected",
            {"records_rejected": {M: t.records_rejected_high + 1}},
            {"records_rejected": {M: t.records_rejected_high}},
            model,
        ),
        (
            "ModelBundleRefused",
            {"bundles_refused": {(M, "integrity"): 1.0}},
            {"bundles_refused": {}},
            {"model": M, "reason": "integrity"},
        ),
        (
            "DatabaseConnectionErrors",
            {"db_connection_errors": 1},
            {"db_connection_errors": 0},
            host,
        ),
        (
            "LowModelAccuracy",
            {"accuracy": {M: t.training_accuracy_low - 0.01}},
            {"accuracy": {M: t.training_accuracy_low + 0.01}},
            model,
        ),
        (
            "HighPredictionLatency",
            {"latency_p95": {M: t.prediction_latency_high * 1.05}},
            {"latency_p95": {M: t.prediction_latency_high * 0.95}},
            model,
        ),
        (
            "LowModelConfidence",
            {"median_confidence": {M: t.model_confidence_low * 0.95}},
            {"median_confidence": {M: t.model_confidence_low * 1.05}},
            model,
        ),
        (
            "DataDriftDetected",
            {"drift": {(M, "age"): DriftReading(t.data_drift_high * 1.1, True)}},
            {"drift": {(M, "age"): DriftReading(t.data_drift_high * 0.9, True)}},
            {"model": M, "feature": "age"},
        ),
        (
            "NoRecentTraining",
            {"last_training": {M: NOW - age - 3600}},
            {"last_training": {M: NOW - age + 3600}},
            model,
        ),
        (
            "LowPredictionVolume",
            {"prediction_rate": t.prediction_volume_low * 0.9},
            {"prediction_rate": t.prediction_volume_low * 1.1},
            {},
        ),
        (
            "UnbalancedPredictions",
            {"prediction_rate_by_model": {M: 0.95, "other": 0.05}},
            {"prediction_rate_by_model": {M: 0.85, "other": 0.15}},
            {"model": M},
        ),
        (
            "SensitivityDrop",  # baseline 0.92: the limit is 0.87
            {"recall": {(M, POS, "all"): Bounded(0.8, 0.75, 0.85)}},
            {"recall": {(M, POS, "all"): Bounded(0.86, 0.8, 0.9)}},  # the interval reaches it
            {"model": M, "class": POS},
        ),
        (
            "SubgroupPerformanceGap",  # all: 0.9 [0.85, 0.94]
            {"recall": {**HEALTHY.recall, (M, POS, SEG): Bounded(0.7, 0.6, 0.8)}},
            {"recall": {**HEALTHY.recall, (M, POS, SEG): Bounded(0.82, 0.75, 0.88)}},
            {"model": M, "class": POS, "segment": SEG, "metric": "recall"},
        ),
        (
            "CalibrationDrift",  # baseline 0.03: the limit is 0.08
            {"calibration_error": {(M, "all"): 0.09}},
            {"calibration_error": {(M, "all"): 0.07}},
            model,
        ),
    ]


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _evaluator(clock: Callable[[], float], t: Thresholds = T) -> AlertEvaluator:
    return AlertEvaluator(t, clock=clock, wall_clock=lambda: NOW, instance="ml-1")


def _named(alerts: list, name: str) -> list:
    return [a for a in alerts if a.name == name]


def test_cases_cover_every_in_process_alert() -> None:
    assert sorted(c[0] for c in _cases(T)) == sorted(a.name for a in ALERTS if a.in_process)


def test_healthy_snapshot_raises_nothing() -> None:
    clock = Clock()
    ev = _evaluator(clock)
    assert ev.evaluate(HEALTHY) == []
    clock.now += 86400
    assert ev.evaluate(HEALTHY) == []


@pytest.mark.parametrize("case", _cases(T), ids=lambda c: c[0])
def test_breach_goes_pending_then_firing_then_clears(case: Case) -> None:
    name, breach, _, extra = case
    spec = ALERTS_BY_NAME[name]
    for_s = getattr(T, spec.for_key)
    clock = Clock()
    ev = _evaluator(clock)
    start = clock.now
    bad = replace(HEALTHY, **breach)  # type: ignore[arg-type]

    first = _named(ev.evaluate(bad), name)
    assert len(first) == 1
    expected_state = "firing" if for_s == 0 else "pending"
    assert first[0].state == expected_state
    if for_s > 0:
        clock.now = start + for_s - 1
        assert _named(ev.evaluate(bad), name)[0].state == "pending"
    clock.now = start + for_s
    (alert,) = _named(ev.evaluate(bad), name)
    assert alert.state == "firing"
    assert alert.severity == spec.severity
    assert alert.labels == {
        "alertname": name,
        "severity": spec.severity,
        "category": spec.category,
        "job": "nexus-ml",
        **extra,
    }
    assert set(extra) == set(spec.labels)  # the labels the definition declares
    assert alert.active_since == start
    assert alert.started_at.timestamp() == NOW
    assert alert.runbook_url.endswith(f"#{name.lower()}")
    assert "{" not in alert.summary + alert.description  # every placeholder filled
    assert alert in ev.firing()
    assert alert.to_dict()["annotations"]["summary"] == alert.summary

    clock.now += 15
    assert _named(ev.evaluate(HEALTHY), name) == []
    # A new breach starts a new pending period rather than firing at once.
    if for_s > 0:
        assert _named(ev.evaluate(bad), name)[0].state == "pending"


@pytest.mark.parametrize("case", _cases(T), ids=lambda c: c[0])
def test_just_inside_the_limit_never_fires(case: Case) -> None:
    name, _, ok, _ = case
    clock = Clock()
    ev = _evaluator(clock)
    quiet = replace(HEALTHY, **ok)  # type: ignore[arg-type]
    for _ in range(3):
        assert _named(ev.evaluate(quiet), name) == []
        clock.now += 86400


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("HighErrorRate", {"error_ratio": 0.5, "error_rate": 0.01}),  # one error in two requests
        ("LowModelAccuracy", {"accuracy": {M: 0.1}, "accuracy_samples": {M: 99}}),
        (
            "SensitivityDrop",
            {"recall": {(M, POS, "all"): Bounded(0.5, 0.4, 0.6)}, "labelled_samples": {}},
        ),
        ("SensitivityDrop", {"recall": {(M, POS, "all"): Bounded(0.5, 0.4, 0.6)}, "baseline": {}}),
        (
            "SensitivityDrop",  # a multiclass model has no positive class
            {"recall": {(M, POS, "all"): Bounded(0.5, 0.4, 0.6)}, "positive_classes": frozenset()},
        ),
        (
            "SubgroupPerformanceGap",
            {
                "recall": {**HEALTHY.recall, (M, POS, SEG): Bounded(0.5, 0.4, 0.6)},
                "labelled_samples": {(M, "all"): 500, (M, SEG): 99},
            },
        ),
        (
            "CalibrationDrift",
            {"calibration_error": {(M, "all"): 0.5}, "labelled_samples": {(M, "all"): 199}},
        ),
        ("DataDriftDetected", {"drift": {(M, "age"): DriftReading(5.0, False)}}),
        ("UnbalancedPredictions", {"prediction_rate_by_model": {M: 1.0}}),  # one model only
        ("UnbalancedPredictions", {"prediction_rate_by_model": {M: 0.0095, "other": 0.0001}}),
        ("LowPredictionVolume", {"service_up": False, "prediction_rate": 0.0}),
    ],
)
def test_guards_keep_low_evidence_quiet(name: str, change: dict[str, object]) -> None:
    ev = _evaluator(Clock())
    assert _named(ev.evaluate(replace(HEALTHY, **change)), name) == []  # type: ignore[arg-type]


def test_memory_ceiling_in_bytes_when_enabled() -> None:
    t = Thresholds(memory_usage_high_bytes=3 * 2**30, memory_usage_high_for=0)
    ev = _evaluator(Clock(), t)
    (alert,) = _named(ev.evaluate(replace(HEALTHY, memory_bytes=3.5 * 2**30)), "HighMemoryUsage")
    assert alert.value == pytest.approx(30.0)  # the value stays the percentage
    rule = next(
        r
        for g in render_rules(t)["groups"]
        for r in g["rules"]
        if r.get("alert") == "HighMemoryUsage"
    )
    assert "ml_system_memory_usage_bytes" in rule["expr"]
    assert "3221225472" in rule["expr"]


def test_overridden_thresholds_apply_on_next_evaluation() -> None:
    clock = Clock()
    ev = _evaluator(clock)
    snap = replace(HEALTHY, cpu_percent=70)
    assert _named(ev.evaluate(snap), "HighCPUUsage") == []
    ev.set_thresholds(Thresholds(cpu_usage_high=60, cpu_usage_high_for=0))
    assert _named(ev.evaluate(snap), "HighCPUUsage")[0].state == "firing"


def test_texts_match_the_prometheus_rule_wording() -> None:
    clock = Clock()
    ev = _evaluator(clock)
    (alert,) = _named(ev.evaluate(replace(HEALTHY, cpu_percent=96.5)), "CriticalCPUUsage")
    assert alert.description == "CPU usage on ml-1 is 96.5% (threshold 95%)."
    rule = next(
        r
        for g in render_rules(T)["groups"]
        for r in g["rules"]
        if r.get("alert") == "CriticalCPUUsage"
    )
    assert rule["annotations"]["description"] == (
        'CPU usage on {{ $labels.instance }} is {{ $value | printf "%.3g" }}% (threshold 95%).'
    )


def test_publish_firing_sets_the_gauge() -> None:
    from prometheus_client import CollectorRegistry

    from nexus_ml.monitoring.metrics import build_metrics

    metrics = build_metrics(CollectorRegistry())
    clock = Clock()
    ev = _evaluator(clock)
    bad = replace(HEALTHY, cpu_percent=99, disk_ratio=0.99)
    ev.evaluate(bad)
    clock.now += 10_000
    published = publish_firing(metrics.alerts_active, ev.evaluate(bad), set())
    get = metrics.registry.get_sample_value
    assert get("ml_alerts_active", {"alertname": "CriticalCPUUsage", "severity": "critical"}) == 1
    assert get("ml_alerts_active", {"alertname": "HighDiskUsage", "severity": "warning"}) == 1
    assert ("HighDiskUsage", "warning") in published
    published = publish_firing(metrics.alerts_active, ev.evaluate(HEALTHY), published)
    # Resolved: 0, not removed (a multiprocess gauge cannot remove a label set).
    assert get("ml_alerts_active", {"alertname": "HighDiskUsage", "severity": "warning"}) == 0
    assert get("ml_alerts_active", {"alertname": "CriticalCPUUsage", "severity": "critical"}) == 0
    assert ("HighDiskUsage", "warning") in published


def test_an_alert_as_the_api_shows_it() -> None:
    clock = Clock()
    ev = _evaluator(clock)
    (alert,) = _named(ev.evaluate(replace(HEALTHY, cpu_percent=96.5)), "CriticalCPUUsage")
    assert alert.to_dict() == {
        "name": "CriticalCPUUsage",
        "severity": "critical",
        "state": alert.state,
        "labels": {
            "alertname": "CriticalCPUUsage",
            "severity": "critical",
            "category": "resources",
            "job": "nexus-ml",
            "instance": "ml-1",
        },
        "value": 96.5,
        "annotations": {
            "summary": "CPU critically high on ml-1",
            "description": "CPU usage on ml-1 is 96.5% (threshold 95%).",
            "runbook_url": alert.runbook_url,
        },
        "started_at": "2030-03-17T17:46:40+00:00",  # NOW, in UTC whatever the local zone
    }
    assert alert.started_at.utcoffset() is not None


def test_before_the_first_evaluation_there_are_no_alerts() -> None:
    ev = _evaluator(Clock())
    assert ev.alerts() == []
    assert ev.firing() == []


def test_the_default_instance_label_and_a_custom_runbook_base() -> None:
    ev = AlertEvaluator(T, clock=Clock(), runbook_base="https://wiki.example/ml.md")
    (alert,) = _named(ev.evaluate(replace(HEALTHY, cpu_percent=96.5)), "CriticalCPUUsage")
    assert alert.labels["instance"] == "local"
    assert alert.runbook_url == "https://wiki.example/ml.md#criticalcpuusage"


def test_each_alert_instance_keeps_its_own_pending_timer() -> None:
    # Two models breach at different moments: each fires `for` after its own start.
    t = Thresholds(prediction_latency_high_for=600)
    clock = Clock()
    ev = _evaluator(clock, t)
    slow = t.prediction_latency_high * 2
    ev.evaluate(replace(HEALTHY, latency_p95={"a": slow}))
    clock.now += 300
    ev.evaluate(replace(HEALTHY, latency_p95={"a": slow, "b": slow}))
    clock.now += 300
    states = {
        a.labels["model"]: a.state
        for a in _named(
            ev.evaluate(replace(HEALTHY, latency_p95={"a": slow, "b": slow})),
            "HighPredictionLatency",
        )
    }
    assert states == {"a": "firing", "b": "pending"}


def test_publish_firing_counts_every_instance_of_an_alert() -> None:
    from prometheus_client import CollectorRegistry

    from nexus_ml.monitoring.metrics import build_metrics

    metrics = build_metrics(CollectorRegistry())
    ev = _evaluator(Clock(), Thresholds(prediction_latency_high_for=0))
    slow = {m: T.prediction_latency_high * 2 for m in ("a", "b", "c")}
    publish_firing(metrics.alerts_active, ev.evaluate(replace(HEALTHY, latency_p95=slow)), set())
    labels = {"alertname": "HighPredictionLatency", "severity": "warning"}
    assert metrics.registry.get_sample_value("ml_alerts_active", labels) == 3


@pytest.mark.parametrize("case", _cases(T), ids=lambda c: c[0])
def test_every_state_change_is_one_structured_log_line(
    case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    name, breach, _, extra = case
    for_s = getattr(T, ALERTS_BY_NAME[name].for_key)
    clock = Clock()
    ev = _evaluator(clock)
    bad = replace(HEALTHY, **breach)  # type: ignore[arg-type]
    caplog.set_level("INFO", logger="nexus_ml.alerts")

    start = clock.now
    ev.evaluate(bad)
    if for_s > 0:
        clock.now = start + for_s - 1
        ev.evaluate(bad)  # still pending: no new line
    clock.now = start + for_s
    ev.evaluate(bad)
    ev.evaluate(bad)  # still firing: no new line
    clock.now += 15
    ev.evaluate(HEALTHY)
    ev.evaluate(bad)
    ev.evaluate(HEALTHY)

    mine = [r for r in caplog.records if r.__dict__.get("alertname") == name]
    states = [r.__dict__["state"] for r in mine]
    if for_s > 0:
        assert states == ["pending", "firing", "resolved", "pending", "inactive"]
    else:  # no `for`: it fires at once, every time
        assert states == ["firing", "resolved", "firing", "resolved"]
    # A page-worthy change is a warning; the others (pending, resolved, inactive) are news.
    assert [r.levelname for r in mine] == ["WARNING" if s == "firing" else "INFO" for s in states]
    for r in mine:
        assert r.getMessage() == f"alert {r.__dict__['state']}"
        assert r.__dict__["severity"] == ALERTS_BY_NAME[name].severity
        # The alert's bounded labels are on the line; nothing else it carries (values, job,
        # instance) is.
        logged = {k: r.__dict__[k] for k in ("model", "feature", "segment", "class", "metric")
                  if k in r.__dict__}  # fmt: skip
        assert logged == {k: v for k, v in extra.items() if k in logged or k in (
            "model", "feature", "segment", "class", "metric")}  # fmt: skip
