"""Every in-process limit exactly at its value and one step past it, as the PromQL reads it.

The rules compare with strict ``>``/``<`` (a value *at* the limit is fine) except the
evidence guards, which are ``>=`` (exactly enough evidence is enough). The conditions must
agree at the limit itself, where a ``>`` written as ``>=`` is the only difference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from nexus_ml.monitoring.alerts import (
    Alert,
    Bounded,
    DriftReading,
    Measurements,
    clinical,
    database,
    host,
    http,
    integrity,
    model,
    usage,
)
from nexus_ml.thresholds import Thresholds

M = "diagnostic"
NOW = 1_900_000_000.0
DAY = 86400.0


@dataclass(frozen=True)
class Limit:
    """An alert's limit: the snapshot holding ``v``, and whether it fires above or below."""

    alert: Alert
    key: str  # the Thresholds key
    snapshot: Callable[[float, Thresholds], dict[str, Any]]
    fires_above: bool  # True: `> limit` breaches; False: `< limit` breaches
    name: str = ""

    def __str__(self) -> str:
        return self.name or f"{self.alert.name}.{self.key}"


def _drift(v: float, t: Thresholds) -> dict[str, Any]:
    return {"drift": {(M, "age"): DriftReading(v, True)}}


def _share(v: float, t: Thresholds) -> dict[str, Any]:
    # Two models, plenty of traffic: only the share decides.
    return {"prediction_rate_by_model": {M: v * 10, "other": (1 - v) * 10}}


LIMITS = [
    Limit(host.CRITICAL_CPU, "cpu_usage_critical", lambda v, t: {"cpu_percent": v}, True),
    Limit(host.HIGH_CPU, "cpu_usage_high", lambda v, t: {"cpu_percent": v}, True),
    Limit(host.HIGH_MEMORY, "memory_usage_high", lambda v, t: {"memory_ratio": v / 100}, True),
    Limit(
        host.HIGH_MEMORY,
        "memory_usage_high_bytes",
        lambda v, t: {"memory_ratio": 0.1, "memory_bytes": v},
        True,
        "HighMemoryUsage.bytes ceiling",
    ),
    Limit(host.HIGH_DISK, "disk_usage_high", lambda v, t: {"disk_ratio": v / 100}, True),
    Limit(
        http.HIGH_ERROR_RATE,
        "error_rate_high",
        lambda v, t: {"error_ratio": v, "error_rate": 10.0},
        True,
    ),
    Limit(
        http.HIGH_ERROR_RATE,
        "error_rate_min_per_second",
        lambda v, t: {"error_ratio": 0.5, "error_rate": v},
        True,
    ),
    Limit(http.HIGH_LATENCY, "prediction_latency_high", lambda v, t: {"latency_p95": {M: v}}, True),
    Limit(
        model.TRAINING_FAILURE,
        "training_failures_high",
        lambda v, t: {"training_failures": {M: v}},
        True,
    ),
    Limit(
        model.LOW_ACCURACY,
        "training_accuracy_low",
        lambda v, t: {"accuracy": {M: v}, "accuracy_samples": {M: 10 * t.accuracy_min_samples}},
        False,
    ),
    Limit(
        model.LOW_CONFIDENCE,
        "model_confidence_low",
        lambda v, t: {"median_confidence": {M: v}},
        False,
    ),
    Limit(model.DATA_DRIFT, "data_drift_high", _drift, True),
    Limit(
        model.NO_RECENT_TRAINING,
        "training_max_age",
        # The limit is an age in seconds; the snapshot holds the training's timestamp.
        lambda v, t: {"last_training": {M: NOW - v}, "now": NOW},
        True,
    ),
    Limit(
        database.CONNECTION_ERRORS,
        "db_connection_errors_high",
        lambda v, t: {"db_connection_errors": v},
        True,
    ),
    Limit(usage.LOW_VOLUME, "prediction_volume_low", lambda v, t: {"prediction_rate": v}, False),
    Limit(usage.UNBALANCED, "prediction_share_high", _share, True),
]
# Thresholds where every limit above is exactly representable in its snapshot (v / 100 * 100
# and the two-model share give back v), with the optional byte ceiling switched on.
T = Thresholds(memory_usage_high_bytes=3 * 2**30, prediction_share_high=0.75)


def _breaches(limit: Limit, v: float, t: Thresholds = T) -> list[tuple[dict[str, str], float]]:
    m = Measurements(**limit.snapshot(v, t))
    return list(limit.alert.breaches(m, t, "ml-1"))


@pytest.mark.parametrize("limit", LIMITS, ids=str)
def test_exactly_at_the_limit_is_quiet_and_one_step_past_it_breaches(limit: Limit) -> None:
    at = float(getattr(T, limit.key))
    past = math.nextafter(at, math.inf if limit.fires_above else -math.inf)
    inside = math.nextafter(at, -math.inf if limit.fires_above else math.inf)
    if limit.key == "training_max_age":
        # Timestamps near 1.9e9 s step by 2**-22 s; one whole second is the finest real step.
        past, inside = at + 1, at - 1
    assert _breaches(limit, inside) == []
    assert _breaches(limit, at) == [], f"{limit}: fires exactly at the limit {at}"
    found = _breaches(limit, past)
    assert len(found) == 1, f"{limit}: quiet one step past the limit"


def test_the_snapshots_hold_the_limits_exactly() -> None:
    # Otherwise "at the limit" above would be a hair off it.
    for key in ("memory_usage_high", "disk_usage_high"):
        v = getattr(T, key)
        assert v / 100 * 100 == v
    share = T.prediction_share_high
    assert (share * 10) / (share * 10 + (1 - share) * 10) == share


def test_no_recent_training_reads_the_limit_in_seconds_and_reports_days() -> None:
    age = float(T.training_max_age)
    (found,) = _breaches(LIMITS[12], age + 1)
    labels, value = found
    assert labels == {"model": M}
    assert value == pytest.approx((age + 1) / DAY)  # the value is in days, like the rule


@pytest.mark.parametrize(
    ("alert", "key", "snapshot"),
    [
        (
            model.LOW_ACCURACY,
            "accuracy_min_samples",
            lambda v, t: {"accuracy": {M: 0.0}, "accuracy_samples": {M: v}},
        ),
        (
            usage.UNBALANCED,
            "prediction_volume_low",
            lambda v, t: {"prediction_rate_by_model": {M: v, "other": 0.0}},
        ),
    ],
    ids=["LowModelAccuracy.min_samples", "UnbalancedPredictions.min_volume"],
)
def test_an_evidence_guard_is_met_exactly_at_its_minimum(
    alert: Alert, key: str, snapshot: Callable[[float, Thresholds], dict[str, Any]]
) -> None:
    # `>= minimum` in the rule: exactly the minimum is enough evidence, a hair less is not.
    at = float(getattr(T, key))
    below = math.nextafter(at, -math.inf)
    assert len(list(alert.breaches(Measurements(**snapshot(at, T)), T, "ml-1"))) == 1
    assert list(alert.breaches(Measurements(**snapshot(below, T)), T, "ml-1")) == []


def test_unbalanced_needs_a_second_loaded_model_even_with_no_traffic_on_it() -> None:
    one = Measurements(prediction_rate_by_model={M: 5.0})
    two = Measurements(prediction_rate_by_model={M: 5.0, "other": 0.0})
    assert list(usage.UNBALANCED.breaches(one, T, "ml-1")) == []
    assert list(usage.UNBALANCED.breaches(two, T, "ml-1")) == [({"model": M}, 1.0)]
    assert list(usage.UNBALANCED.breaches(Measurements(), T, "ml-1")) == []


# -- limits relative to a baseline: the limit is computed, so "at" is that very float -------

POS, SEG = "malignant", "sex=2"


def _sensitivity(value: float, upper: float) -> dict[str, Any]:
    return {
        "recall": {(M, POS, "all"): Bounded(value, value - 0.1, upper)},
        "baseline": {(M, "recall", POS): 0.92},
        "labelled_samples": {(M, "all"): T.clinical_min_samples},
        "positive_classes": frozenset({(M, POS)}),
    }


def _gap(value: float, upper: float, metric: str = "recall") -> dict[str, Any]:
    return {
        metric: {
            (M, POS, "all"): Bounded(0.9, 0.85, 0.94),
            (M, POS, SEG): Bounded(value, value - 0.1, upper),
        },
        "labelled_samples": {(M, "all"): 500, (M, SEG): T.clinical_min_samples},
    }


@dataclass(frozen=True)
class Relative:
    """A limit computed from a baseline: where it lies, and the snapshot measuring ``v``."""

    name: str
    alert: Alert
    limit: float  # as the condition computes it
    snapshot: Callable[[float], dict[str, Any]]
    fires_above: bool

    def __str__(self) -> str:
        return self.name


RELATIVE = [
    Relative(
        "SensitivityDrop.recall_and_upper",
        clinical.SENSITIVITY_DROP,
        0.92 - T.sensitivity_drop_tolerance,
        lambda v: _sensitivity(v, v),
        False,
    ),
    Relative(
        "SensitivityDrop.upper",
        clinical.SENSITIVITY_DROP,
        0.92 - T.sensitivity_drop_tolerance,
        lambda v: _sensitivity(0.5, v),
        False,
    ),
    Relative(
        "SubgroupPerformanceGap.recall",
        clinical.SUBGROUP_GAP,
        0.9 - T.subgroup_gap_tolerance,
        lambda v: _gap(v, 0.8),
        False,
    ),
    Relative(
        "SubgroupPerformanceGap.precision",
        clinical.SUBGROUP_GAP,
        0.9 - T.subgroup_gap_tolerance,
        lambda v: _gap(v, 0.8, "precision"),
        False,
    ),
    Relative(
        "SubgroupPerformanceGap.intervals",
        clinical.SUBGROUP_GAP,
        0.85,  # the whole's lower bound
        lambda v: _gap(0.5, v),
        False,
    ),
    Relative(
        "CalibrationDrift",
        clinical.CALIBRATION_DRIFT,
        0.03 + T.calibration_error_tolerance,
        lambda v: {
            "calibration_error": {(M, "all"): v},
            "baseline": {(M, "calibration_error", ""): 0.03},
            "labelled_samples": {(M, "all"): T.calibration_min_samples},
        },
        True,
    ),
    Relative(
        "LowModelAccuracy.weak_baseline",
        model.LOW_ACCURACY,
        0.674 - T.accuracy_baseline_tolerance,
        lambda v: {
            "accuracy": {M: v},
            "accuracy_samples": {M: T.accuracy_min_samples},
            "baseline": {(M, "accuracy", ""): 0.674},
        },
        False,
    ),
    Relative(
        "LowModelAccuracy.holdout_of_an_older_bundle",
        model.LOW_ACCURACY,
        0.674 - T.accuracy_baseline_tolerance,
        lambda v: {
            "accuracy": {M: v},
            "accuracy_samples": {M: T.accuracy_min_samples},
            "holdout_accuracy": {M: 0.674},
        },
        False,
    ),
    Relative(
        "LowModelAccuracy.strong_baseline_keeps_the_floor",
        model.LOW_ACCURACY,
        T.training_accuracy_low,
        lambda v: {
            "accuracy": {M: v},
            "accuracy_samples": {M: T.accuracy_min_samples},
            "baseline": {(M, "accuracy", ""): 0.96},
        },
        False,
    ),
]


@pytest.mark.parametrize("limit", RELATIVE, ids=str)
def test_a_baseline_relative_limit_is_quiet_exactly_at_it(limit: Relative) -> None:
    at = limit.limit
    past = math.nextafter(at, math.inf if limit.fires_above else -math.inf)
    inside = math.nextafter(at, -math.inf if limit.fires_above else math.inf)

    def found(v: float) -> list[tuple[dict[str, str], float]]:
        return list(limit.alert.breaches(Measurements(**limit.snapshot(v)), T, "ml-1"))

    assert found(inside) == []
    assert found(at) == [], f"{limit}: fires exactly at the limit {at}"
    assert len(found(past)) == 1, f"{limit}: quiet one step past the limit"


@pytest.mark.parametrize(
    ("alert", "key", "snapshot"),
    [
        (
            clinical.SENSITIVITY_DROP,
            "clinical_min_samples",
            lambda v: {**_sensitivity(0.5, 0.6), "labelled_samples": {(M, "all"): v}},
        ),
        (
            clinical.SUBGROUP_GAP,
            "clinical_min_samples",
            lambda v: {**_gap(0.5, 0.6), "labelled_samples": {(M, "all"): 500, (M, SEG): v}},
        ),
        (
            clinical.CALIBRATION_DRIFT,
            "calibration_min_samples",
            lambda v: {
                "calibration_error": {(M, "all"): 0.5},
                "baseline": {(M, "calibration_error", ""): 0.03},
                "labelled_samples": {(M, "all"): v},
            },
        ),
    ],
    ids=["SensitivityDrop", "SubgroupPerformanceGap", "CalibrationDrift"],
)
def test_a_clinical_minimum_is_enough_exactly(
    alert: Alert, key: str, snapshot: Callable[[float], dict[str, Any]]
) -> None:
    at = float(getattr(T, key))
    assert len(list(alert.breaches(Measurements(**snapshot(at)), T, "ml-1"))) == 1
    below = Measurements(**snapshot(math.nextafter(at, -math.inf)))
    assert list(alert.breaches(below, T, "ml-1")) == []


NAN = math.nan


@pytest.mark.parametrize(
    ("alert", "snapshot"),
    [
        (clinical.SENSITIVITY_DROP, _sensitivity(NAN, NAN)),
        (
            clinical.SENSITIVITY_DROP,
            {**_sensitivity(0.5, 0.6), "baseline": {(M, "recall", POS): NAN}},
        ),
        (clinical.SUBGROUP_GAP, _gap(NAN, NAN)),
        (
            clinical.SUBGROUP_GAP,
            {
                **_gap(0.5, 0.6),
                "recall": {
                    (M, POS, "all"): Bounded(NAN, NAN, NAN),
                    (M, POS, SEG): Bounded(0.5, 0.4, 0.6),
                },
            },
        ),
        (
            clinical.CALIBRATION_DRIFT,
            {
                "calibration_error": {(M, "all"): NAN},
                "baseline": {(M, "calibration_error", ""): 0.03},
                "labelled_samples": {(M, "all"): 1000},
            },
        ),
        (model.LOW_ACCURACY, {"accuracy": {M: NAN}, "accuracy_samples": {M: 1000}}),
    ],
    ids=["sensitivity", "sensitivity-baseline", "segment", "whole", "calibration", "accuracy"],
)
def test_a_nan_value_never_breaches(alert: Alert, snapshot: dict[str, Any]) -> None:
    # The snapshot leaves NaN out (MetricHistory); a NaN reaching a condition must not fire
    # either, as every PromQL comparison with NaN is false.
    assert list(alert.breaches(Measurements(**snapshot), T, "ml-1")) == []


def test_a_nan_baseline_accuracy_is_no_baseline() -> None:
    # `>= 0` in the rule drops a NaN baseline, and the floor applies, as in the promtool case.
    snap = {"accuracy": {M: 0.79}, "accuracy_samples": {M: 1000}}
    nan_baseline = Measurements(**snap, baseline={(M, "accuracy", ""): NAN})
    assert list(model.LOW_ACCURACY.breaches(nan_baseline, T, "ml-1")) == [({"model": M}, 0.79)]
    weak = Measurements(**snap, baseline={(M, "accuracy", ""): 0.674})
    assert list(model.LOW_ACCURACY.breaches(weak, T, "ml-1")) == []


# -- incomplete readings and several models ---------------------------------------------------
# A gauge the quality job withdrew (or never exported) is absent from the snapshot, as it is
# from PromQL's vectors: it decides nothing, and one model's missing reading never hides
# another model's breach.


@pytest.mark.parametrize(
    ("part", "whole"),
    [
        (Bounded(None, 0.4, 0.6), Bounded(0.9, 0.85, 0.94)),
        (Bounded(0.5, 0.4, None), Bounded(0.9, 0.85, 0.94)),
        (Bounded(0.5, 0.4, 0.6), Bounded(None, 0.85, 0.94)),
        (Bounded(0.5, 0.4, 0.6), Bounded(0.9, None, 0.94)),
    ],
    ids=["segment-value", "segment-upper", "whole-value", "whole-lower"],
)
def test_a_gap_with_a_bound_missing_decides_nothing(part: Bounded, whole: Bounded) -> None:
    snap = {**_gap(0.5, 0.6), "recall": {(M, POS, "all"): whole, (M, POS, SEG): part}}
    assert list(clinical.SUBGROUP_GAP.breaches(Measurements(**snap), T, "ml-1")) == []


def test_a_sensitivity_without_its_upper_bound_decides_nothing() -> None:
    snap = {**_sensitivity(0.5, 0.6), "recall": {(M, POS, "all"): Bounded(0.5, 0.4, None)}}
    assert list(clinical.SENSITIVITY_DROP.breaches(Measurements(**snap), T, "ml-1")) == []


@pytest.mark.parametrize("missing", ["recall", "baseline"])
def test_one_models_missing_sensitivity_reading_does_not_hide_anothers_drop(
    missing: str,
) -> None:
    # Models are read in name order: "a" (incomplete) first, then "b", which dropped.
    snap: dict[str, Any] = {
        "recall": {
            ("a", POS, "all"): Bounded(0.5, 0.4, 0.6),
            ("b", POS, "all"): Bounded(0.5, 0.4, 0.6),
        },
        "baseline": {("a", "recall", POS): 0.92, ("b", "recall", POS): 0.92},
        "labelled_samples": {("a", "all"): 1000, ("b", "all"): 1000},
        "positive_classes": frozenset({("a", POS), ("b", POS)}),
    }
    del snap[missing][("a", POS, "all") if missing == "recall" else ("a", "recall", POS)]
    found = list(clinical.SENSITIVITY_DROP.breaches(Measurements(**snap), T, "ml-1"))
    assert found == [({"model": "b", "class": POS}, 0.5)]


def test_one_models_missing_calibration_baseline_does_not_hide_anothers_drift() -> None:
    snap = {
        "calibration_error": {("a", "all"): 0.5, ("b", "all"): 0.5},
        "baseline": {("b", "calibration_error", ""): 0.03},
        "labelled_samples": {("a", "all"): 1000, ("b", "all"): 1000},
    }
    found = list(clinical.CALIBRATION_DRIFT.breaches(Measurements(**snap), T, "ml-1"))
    assert found == [({"model": "b"}, 0.5)]


def test_an_accuracy_without_a_labelled_count_is_not_enough_evidence() -> None:
    # No count is no evidence, even where a single labelled prediction would be enough.
    t = Thresholds(accuracy_min_samples=1)
    lone = Measurements(accuracy={M: 0.1})
    assert list(model.LOW_ACCURACY.breaches(lone, t, "ml-1")) == []
    counted = Measurements(accuracy={M: 0.1}, accuracy_samples={M: 1})
    assert list(model.LOW_ACCURACY.breaches(counted, t, "ml-1")) == [({"model": M}, 0.1)]


def test_a_zero_accuracy_baseline_is_a_baseline() -> None:
    # `>= 0` in the rule: a model validated at 0 keeps its (useless) baseline, not the
    # holdout accuracy of an older bundle nor the floor.
    low = -T.accuracy_baseline_tolerance
    assert model.accuracy_limit_of(T, 0.0) == low
    m = Measurements(baseline={(M, "accuracy", ""): 0.0}, holdout_accuracy={M: 0.9})
    assert model.accuracy_limit(m, T, M) == low


def test_a_refusal_gauge_at_zero_does_not_fire() -> None:
    # The rule is `> 0`: only a refusal that holds (1) pages.
    quiet = Measurements(bundles_refused={(M, "integrity"): 0.0})
    assert list(integrity.BUNDLE_REFUSED.breaches(quiet, T, "ml-1")) == []
    held = Measurements(bundles_refused={(M, "integrity"): 1.0})
    assert list(integrity.BUNDLE_REFUSED.breaches(held, T, "ml-1")) == [
        ({"model": M, "reason": "integrity"}, 1.0)
    ]


def test_no_traffic_on_any_model_is_not_unbalanced() -> None:
    idle = Measurements(prediction_rate_by_model={M: 0.0, "other": 0.0})
    assert list(usage.UNBALANCED.breaches(idle, T, "ml-1")) == []


def test_a_snapshot_without_a_clock_reads_the_training_age_from_now() -> None:
    age = float(T.training_max_age)
    old = Measurements(last_training={M: time.time() - age - 3600})
    assert [labels for labels, _ in model.NO_RECENT_TRAINING.breaches(old, T, "ml-1")] == [
        {"model": M}
    ]
    recent = Measurements(last_training={M: time.time() - 60})
    assert list(model.NO_RECENT_TRAINING.breaches(recent, T, "ml-1")) == []
