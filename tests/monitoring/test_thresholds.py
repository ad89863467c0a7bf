"""Thresholds: defaults, overrides from file and environment, validation, partial updates."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

import pytest
from prometheus_client import CollectorRegistry

from nexus_ml.config import Settings
from nexus_ml.monitoring.alerts import ALERTS_BY_NAME
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.render.rules import le_matcher, render_rules
from nexus_ml.thresholds import (
    LATENCY_BUCKETS,
    TYPES_OF_UNIT,
    ThresholdError,
    Thresholds,
    apply_update,
    apply_valid_overrides,
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


def test_db_connection_errors_window_is_a_threshold() -> None:
    spec = ALERTS_BY_NAME["DatabaseConnectionErrors"]
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


# -- every limit is finite, bounded and fits its unit (issue 10, defect 7) ------------------------


def test_every_key_is_typed_by_its_unit() -> None:
    hints = get_type_hints(Thresholds, include_extras=True)
    for key in Thresholds.model_fields:
        annotation = hints[key]
        if get_origin(annotation) in (Union, UnionType):  # the optional bytes ceiling
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        assert any(annotation == t for t in TYPES_OF_UNIT[unit_of(key)]), key


_NOT_FINITE: list[object] = [math.inf, -math.inf, math.nan, "inf", "Infinity", "-inf", "nan"]
_NOT_FINITE += ["1e999", 10**400]
_NOT_NUMBERS: list[object] = [True, False, None, [60], {"s": 1}, "PATIENT7777", ""]
BAD: list[tuple[str, object]] = [
    # Durations: `for`, an age, a range. Whole seconds, finite, >= 0 (> 0, >= 1s), bounded.
    *((k, v) for k in ("cpu_usage_high_for", "training_max_age") for v in _NOT_FINITE),
    *((k, v) for k in ("service_down_for", "db_connection_errors_window") for v in _NOT_NUMBERS),
    ("cpu_usage_high_for", -1),
    ("cpu_usage_high_for", "-5m"),
    ("cpu_usage_high_for", 1.5),
    ("cpu_usage_high_for", "2.5"),
    ("cpu_usage_high_for", "367d"),
    ("training_max_age", 0),
    ("training_max_age", 31622401),
    ("db_connection_errors_window", "1h1s"),
    ("db_connection_errors_window", 0.5),
    # Percent, ratio: finite and within 0-100, 0-1.
    *(("cpu_usage_high", v) for v in (*_NOT_FINITE, *_NOT_NUMBERS, 100.0001, -0.1)),
    *(("error_rate_high", v) for v in (1.0001, -1e-9, math.inf, "nan", True)),
    ("model_confidence_low", 2),
    ("availability_slo", 1),
    ("latency_slo", 0),
    # Counts: whole, finite, bounded; rates and scores: finite, bounded.
    *(("accuracy_min_samples", v) for v in (0.5, -1, math.inf, 2e9, "1e10", "many")),
    *(("training_failures_high", v) for v in (1.5, -1)),
    *(("error_rate_min_per_second", v) for v in (-0.1, math.inf, 1e10, "fast")),
    *(("slo_min_request_rate", v) for v in (-1, "inf")),
    *(("data_drift_high", v) for v in (-0.1, math.inf, 1001)),
    # Bytes: whole, positive, exact in a float.
    *(("memory_usage_high_bytes", v) for v in (0, -1, 1.5, math.inf, 2**60, "3GB")),
    # A P95 limit the histogram can exceed: above 0, below its last finite bucket.
    *(("prediction_latency_high", v) for v in (0, -1, 10, 11, math.inf)),
    # The latency SLO bound: one of the histogram's bucket bounds, nothing else.
    *(("latency_slo_threshold", v) for v in (0.3, 0.75, 3, 1e-9, 0, -1, 10.0000001, math.inf)),
    ("latency_slo_threshold", "PATIENT7777"),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v!r}"[:60] for k, v in BAD])
def test_bad_values_are_refused_by_key_and_unit(key: str, value: object) -> None:
    with pytest.raises(ThresholdError) as info:
        apply_update(Thresholds(), {key: value})
    message = str(info.value)
    assert f"{key} ({unit_of(key)})" in message or key in message, message
    if isinstance(value, str) and len(value) > 3:
        assert value not in message, message  # the rule, never the value


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        ("cpu_usage_high_for", "90s", 90),
        ("cpu_usage_high_for", "90", 90),
        ("cpu_usage_high_for", 0, 0),
        ("cpu_usage_high_for", "366d", 366 * 86400),
        ("training_max_age", "1s", 1),
        ("db_connection_errors_window", "1h", 3600),
        ("cpu_usage_high", 0, 0),
        ("cpu_usage_high", "79.5", 79.5),
        ("error_rate_high", 1, 1),
        ("accuracy_min_samples", 1e9, 1e9),
        ("memory_usage_high_bytes", 2**53, 2**53),
        ("prediction_latency_high", 9.99, 9.99),
        ("data_drift_high", 1000, 1000),
    ],
)
def test_values_at_the_bounds_are_accepted(key: str, value: object, stored: float) -> None:
    assert getattr(apply_update(Thresholds(), {key: value}), key) == stored


def test_every_latency_bucket_is_a_valid_slo_bound_and_renders() -> None:
    for bound in LATENCY_BUCKETS:
        t = apply_update(Thresholds(), {"latency_slo_threshold": bound})
        groups = render_rules(t)["groups"]
        exprs = "\n".join(r["expr"] for g in groups for r in g["rules"])
        assert le_matcher(bound) in exprs, bound


def test_the_renderer_and_the_model_share_the_bucket_check() -> None:
    with pytest.raises(ThresholdError) as refused:
        apply_update(Thresholds(), {"latency_slo_threshold": 0.3})
    # model_construct skips validation: the renderer must still refuse the same way.
    unchecked = Thresholds.model_construct(
        **{**Thresholds().model_dump(), "latency_slo_threshold": 0.3}
    )
    with pytest.raises(ValueError, match="bucket bounds") as rendered:
        render_rules(unchecked)
    assert str(rendered.value) in str(refused.value)


def test_the_histogram_is_built_from_the_same_buckets() -> None:
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    metrics.model_prediction_duration_seconds.labels("m").observe(0.001)
    bounds = [
        float(s.labels["le"])
        for f in registry.collect()
        if f.name == "ml_model_prediction_duration_seconds"
        for s in f.samples
        if s.name.endswith("_bucket")
    ]
    assert tuple(bounds[:-1]) == LATENCY_BUCKETS and math.isinf(bounds[-1])


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"ML_THRESHOLD_CPU_USAGE_HIGH_FOR": "inf"}, "cpu_usage_high_for"),
        ({"ML_THRESHOLD_TRAINING_MAX_AGE": "Infinity"}, "training_max_age"),
        ({"ML_THRESHOLD_LATENCY_SLO_THRESHOLD": "0.3"}, "latency_slo_threshold"),
        ({"ML_THRESHOLD_ACCURACY_MIN_SAMPLES": "nan"}, "accuracy_min_samples"),
        ({"ML_THRESHOLD_MEMORY_USAGE_HIGH_BYTES": "1e400"}, "memory_usage_high_bytes"),
    ],
)
def test_bad_environment_overrides_are_refused_by_key(environ: dict[str, str], names: str) -> None:
    with pytest.raises(ThresholdError, match=rf"ML_THRESHOLD_\*: {names} \(") as info:
        load_thresholds(None, environ=environ)
    value = next(iter(environ.values()))
    assert len(value) <= 3 or value not in str(info.value), info.value


@pytest.mark.parametrize(
    ("name", "text", "key"),
    [
        ("t.yaml", "cpu_usage_high_for: .inf\n", "cpu_usage_high_for"),
        ("t.yaml", "disk_usage_high: .nan\n", "disk_usage_high"),
        ("t.yaml", "error_rate_high: yes\n", "error_rate_high"),
        ("t.yaml", "latency_slo_threshold: 0.75\n", "latency_slo_threshold"),
        ("t.json", '{"training_max_age": Infinity}', "training_max_age"),
        ("t.json", '{"accuracy_min_samples": 1e999}', "accuracy_min_samples"),
    ],
)
def test_bad_file_overrides_are_refused_by_key(
    tmp_path: Path, name: str, text: str, key: str
) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ThresholdError, match=rf"{name}: {key} \("):
        load_thresholds(f, environ={})


def test_stored_overrides_are_refused_one_by_one() -> None:
    stored = {
        "cpu_usage_high": 70,
        "cpu_usage_high_for": math.inf,  # stored by a version that accepted it
        "latency_slo_threshold": 0.3,
        "gone_key": 1,  # a key a later version dropped
        "disk_usage_high_for": 120,
    }
    t, refused = apply_valid_overrides(Thresholds(), stored, source="database")
    assert refused == ["cpu_usage_high_for", "gone_key", "latency_slo_threshold"]
    assert (t.cpu_usage_high, t.disk_usage_high_for) == (70, 120)
    assert t.cpu_usage_high_for == Thresholds().cpu_usage_high_for
    # Valid together though not alone: applied together.
    pair = {"cpu_usage_high": 40, "cpu_usage_critical": 50}
    assert apply_valid_overrides(Thresholds(), pair, source="database") == (
        apply_update(Thresholds(), pair),
        [],
    )
