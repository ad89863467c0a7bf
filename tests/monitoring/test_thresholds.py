"""Thresholds: defaults, overrides from file and environment, validation, partial updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nexus_ml.config import Settings
from nexus_ml.thresholds import (
    ALERTS,
    GUIDE_ALERTS,
    ThresholdError,
    Thresholds,
    apply_update,
    describe_thresholds,
    format_duration,
    load_thresholds,
    parse_duration,
    unit_of,
)

GUIDE = {
    "cpu_usage_high": 80.0,
    "memory_usage_high": 85.0,
    "model_confidence_low": 0.3,
    "prediction_latency_high": 1.0,
    "training_accuracy_low": 0.8,
    "data_drift_high": 0.1,
    "error_rate_high": 0.05,
}


def test_defaults_are_the_guides_values() -> None:
    t = Thresholds()
    for key, value in GUIDE.items():
        assert getattr(t, key) == value, key
    # Settled contradictions (docs/thresholds.md): disk 85 % (rule), memory ceiling off.
    assert t.disk_usage_high == 85.0
    assert t.memory_usage_high_bytes is None
    assert t.error_rate_min_per_second == 0.1
    assert (t.cpu_usage_critical, t.cpu_usage_critical_for) == (95.0, 120)
    assert (t.cpu_usage_high_for, t.disk_usage_high_for, t.service_down_for) == (300, 600, 60)
    assert t.training_max_age == 7 * 86400


def test_the_guides_fifteen_alerts() -> None:
    assert len(GUIDE_ALERTS) == 15
    severities = {a.name: a.severity for a in ALERTS}
    for name in (
        "MLServiceDown",
        "CriticalCPUUsage",
        "HighErrorRate",
        "TrainingFailure",
        "DatabaseConnectionErrors",
    ):
        assert severities[name] == "critical"
    for name in (
        "HighCPUUsage",
        "HighMemoryUsage",
        "HighDiskUsage",
        "LowModelAccuracy",
        "HighPredictionLatency",
        "LowModelConfidence",
        "DataDriftDetected",
        "NoRecentTraining",
    ):
        assert severities[name] == "warning"
    business = [a for a in ALERTS if a.category == "business"]
    assert {a.name for a in business} == {"LowPredictionVolume", "UnbalancedPredictions"}
    assert all(a.severity == "info" for a in business)


def test_every_alert_names_real_keys() -> None:
    for a in ALERTS:
        assert a.for_key in Thresholds.model_fields, a.name
        assert a.threshold is None or a.threshold in Thresholds.model_fields, a.name
        assert a.window_key is None or a.window_key in Thresholds.model_fields, a.name
        assert a.window is None or a.window_key is None, a.name  # one source of the range


def test_db_connection_errors_window_is_a_threshold() -> None:
    spec = next(a for a in ALERTS if a.name == "DatabaseConnectionErrors")
    assert Thresholds().db_connection_errors_window == 300
    assert spec.window_text(Thresholds()) == "5m"
    env = {"ML_THRESHOLD_DB_CONNECTION_ERRORS_WINDOW": "20s"}
    t = load_thresholds(None, environ=env)
    assert t.db_connection_errors_window == 20
    assert spec.window_text(t) == "20s"
    assert unit_of("db_connection_errors_window") == "seconds"


def test_every_key_has_a_unit() -> None:
    rows = describe_thresholds(Thresholds())
    assert {r["key"] for r in rows} == set(Thresholds.model_fields)
    assert unit_of("cpu_usage_high") == "percent"
    assert unit_of("error_rate_high") == "ratio"
    assert unit_of("service_down_for") == "seconds"


def test_override_from_yaml_file(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("cpu_usage_high: 70\ncpu_usage_high_for: 10m\n")
    t = load_thresholds(f, environ={})
    assert t.cpu_usage_high == 70
    assert t.cpu_usage_high_for == 600


def test_override_from_json_file_via_settings(tmp_path: Path) -> None:
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"error_rate_high": 0.02}))
    t = load_thresholds(Settings(thresholds_file=f), environ={})
    assert t.error_rate_high == 0.02


def test_environment_wins_over_file(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("disk_usage_high: 80\n")
    env = {
        "ML_THRESHOLD_DISK_USAGE_HIGH": "75",
        "ML_THRESHOLD_SERVICE_DOWN_FOR": "2m",
        "UNRELATED": "x",
    }
    t = load_thresholds(f, environ=env)
    assert t.disk_usage_high == 75
    assert t.service_down_for == 120


def test_unknown_key_is_rejected_clearly(tmp_path: Path) -> None:
    with pytest.raises(ThresholdError, match=r"unknown threshold key.*cpu_usage_hihg"):
        load_thresholds(None, environ={"ML_THRESHOLD_CPU_USAGE_HIHG": "1"})
    f = tmp_path / "t.yaml"
    f.write_text("nope: 1\n")
    with pytest.raises(ThresholdError, match=r"t\.yaml: unknown threshold key"):
        load_thresholds(f, environ={})


@pytest.mark.parametrize(
    ("update", "fragment"),
    [
        ({"cpu_usage_high": 101}, "cpu_usage_high (percent)"),
        ({"error_rate_high": 1.5}, "error_rate_high (ratio)"),
        ({"model_confidence_low": -0.1}, "model_confidence_low (ratio)"),
        ({"training_max_age": 0}, "training_max_age (seconds)"),
        ({"cpu_usage_high_for": "-5m"}, "cpu_usage_high_for"),
        ({"service_down_for": "soon"}, "not a duration"),
        ({"prediction_latency_high": 0}, "prediction_latency_high (seconds)"),
        ({"cpu_usage_critical": 50}, "cpu_usage_critical must be >= cpu_usage_high"),
        ({"availability_slo": 1.0}, "strictly between 0 and 1"),
        ({"db_connection_errors_window": 0}, "db_connection_errors_window (seconds)"),
        ({"db_connection_errors_window": "2h"}, "db_connection_errors_window (seconds)"),
        ({"db_connection_errors_window": 1.5}, "db_connection_errors_window (seconds)"),
        ({"db_connection_errors_window": "soon"}, "not a duration"),
    ],
)
def test_invalid_values_are_rejected(update: dict[str, object], fragment: str) -> None:
    with pytest.raises(ThresholdError) as info:
        apply_update(Thresholds(), update)
    assert fragment in str(info.value)


def test_partial_update_keeps_the_rest_and_does_not_mutate() -> None:
    before = Thresholds()
    after = apply_update(before, {"model_confidence_low": 0.4})
    assert after.model_confidence_low == 0.4
    assert after.cpu_usage_high == before.cpu_usage_high
    assert before.model_confidence_low == 0.3
    with pytest.raises(ThresholdError, match="expected a mapping"):
        apply_update(before, [1, 2])  # type: ignore[arg-type]


def test_memory_ceiling_can_be_enabled_and_unset() -> None:
    t = load_thresholds(None, environ={"ML_THRESHOLD_MEMORY_USAGE_HIGH_BYTES": "3221225472"})
    assert t.memory_usage_high_bytes == 3 * 2**30
    t = load_thresholds(None, environ={"ML_THRESHOLD_MEMORY_USAGE_HIGH_BYTES": ""})
    assert t.memory_usage_high_bytes is None


def test_not_a_mapping_file(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ThresholdError, match="mapping"):
        load_thresholds(f, environ={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("12.5", 12.5), (30, 30)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 60, 120, 5400, 604800)] == [
        "0s",
        "1m",
        "2m",
        "1h30m",
        "7d",
    ]
