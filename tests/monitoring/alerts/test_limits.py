"""Every in-process limit exactly at its value and one step past it, as the PromQL reads it.

The rules compare with strict ``>``/``<`` (a value *at* the limit is fine) except the
evidence guards, which are ``>=`` (exactly enough evidence is enough). The conditions must
agree at the limit itself, where a ``>`` written as ``>=`` is the only difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from nexus_ml.monitoring.alerts import (
    Alert,
    DriftReading,
    Measurements,
    database,
    host,
    http,
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
