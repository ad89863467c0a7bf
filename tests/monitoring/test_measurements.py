"""MetricHistory computes the Prometheus rules' numbers from snapshots of our own metrics."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Gauge, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from nexus_ml.monitoring.alerting import AlertEvaluator, DriftReading
from nexus_ml.monitoring.alerts import Bounded
from nexus_ml.monitoring.measurements import LOOKBACK_SECONDS, MetricHistory, bucket_quantile
from nexus_ml.monitoring.metrics import CLINICAL_GAUGES, LATENCY_BUCKETS, Metrics, build_metrics
from nexus_ml.thresholds import Thresholds

T0 = 1_900_000_000.0
M = "diagnostic"
INF = math.inf


def _fresh() -> tuple[Metrics, MetricHistory]:
    return build_metrics(CollectorRegistry()), MetricHistory()


def _snap(h: MetricHistory, m: Metrics, t: float) -> None:
    h.record(m.registry.collect(), t)


def _requests(m: Metrics, status: str, n: int, endpoint: str = "/predict") -> None:
    m.api_requests_total.labels("POST", endpoint, status).inc(n)


# -- histogram_quantile ------------------------------------------------------------------


BUCKETS = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (INF, 40.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.1, 0.0 + 0.1 * (4 / 10)),  # lowest bucket: lower bound 0
        (0.5, 0.1 + 0.4 * (10 / 20)),  # rank 20: 10 into the (0.1, 0.5] bucket of 20
        (0.95, 0.5 + 0.5 * (8 / 10)),  # rank 38: 8 into the (0.5, 1] bucket of 10
        (1.0, 1.0),
    ],
)
def test_bucket_quantile_matches_hand_computation(q: float, expected: float) -> None:
    assert bucket_quantile(q, BUCKETS) == pytest.approx(expected)
    assert bucket_quantile(q, list(reversed(BUCKETS))) == pytest.approx(expected)  # unsorted


def test_bucket_quantile_special_cases() -> None:
    # In the +Inf bucket: the highest finite bound, as Prometheus answers.
    assert bucket_quantile(0.9, [(1.0, 5.0), (INF, 10.0)]) == 1.0
    assert bucket_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None  # no observations
    # No observations is NaN whatever the buckets, a lowest bound <= 0 included.
    assert bucket_quantile(0.5, [(-1.0, 0.0), (1.0, 0.0), (INF, 0.0)]) is None
    assert bucket_quantile(0.5, [(1.0, 5.0), (2.0, 5.0)]) is None  # no +Inf bucket
    assert bucket_quantile(0.5, [(INF, 5.0)]) is None  # fewer than two buckets
    assert bucket_quantile(0.5, [(-1.0, 4.0), (1.0, 4.0), (INF, 4.0)]) == -1.0  # bound <= 0
    assert bucket_quantile(-0.1, BUCKETS) == -INF
    assert bucket_quantile(1.1, BUCKETS) == INF
    # Equal bounds (``1`` and ``1.0`` from two collectors) are added together.
    assert bucket_quantile(0.5, [(1.0, 2.0), (1.0, 2.0), (INF, 4.0)]) == pytest.approx(0.5)
    # A non-monotonic bucket is lifted to the envelope: (0.5, 5) counts as (0.5, 10).
    assert bucket_quantile(0.5, [(0.1, 10.0), (0.5, 5.0), (1.0, 20.0), (INF, 20.0)]) == 0.1


def test_bucket_quantile_at_the_ends_of_its_range_answers_as_prometheus() -> None:
    # q = 0 is inside [0, 1]: the lowest bucket's lower bound, 0; -Inf is for q below 0.
    assert bucket_quantile(0.0, BUCKETS) == 0.0
    assert bucket_quantile(-1e-12, BUCKETS) == -INF
    # A lowest bucket ending at 0 is its own answer, even empty.
    assert bucket_quantile(0.0, [(0.0, 0.0), (1.0, 4.0), (INF, 4.0)]) == 0.0
    # q = 0 over an empty lowest bucket above 0: PromQL computes 0/0 (NaN), never a crash.
    assert bucket_quantile(0.0, [(0.5, 0.0), (1.0, 4.0), (INF, 4.0)]) is None
    # One observation is a histogram: the median is halfway into its bucket.
    assert bucket_quantile(0.5, [(0.1, 0.0), (0.5, 1.0), (INF, 1.0)]) == pytest.approx(0.3)


def test_latency_p95_matches_numpy_within_a_bucket() -> None:
    m, h = _fresh()
    rng = np.random.default_rng(7)
    # Values 10 % away from every bound, so each falls clearly inside its bucket.
    # The nine buckets up to 250 ms, so "within a bucket's width" is a tight bound.
    lows, highs = np.array((0.0, *LATENCY_BUCKETS[:8])), np.array(LATENCY_BUCKETS[:9])
    weights = np.linspace(1.0, 3.0, len(lows))
    pick = rng.choice(len(lows), size=4000, p=weights / weights.sum())
    width = highs[pick] - lows[pick]
    values = lows[pick] + width * rng.uniform(0.1, 0.9, size=pick.size)
    latency = m.model_prediction_duration_seconds.labels(M)
    latency.observe(60.0)  # before the window: must not count
    _snap(h, m, T0)
    for v in values:
        latency.observe(float(v))
    _snap(h, m, T0 + 60)
    p95 = h.measurements([M], T0 + 60).latency_p95[M]
    expected = float(np.percentile(values, 95))
    bucket = next(i for i, b in enumerate(LATENCY_BUCKETS) if expected <= b)
    bucket_width = LATENCY_BUCKETS[bucket] - (LATENCY_BUCKETS[bucket - 1] if bucket else 0.0)
    assert bucket_width <= 0.15 + 1e-12
    assert abs(p95 - expected) <= bucket_width
    # And exactly Prometheus's interpolation on the window's bucket counts.
    counts = [(b, float(np.sum(values <= b))) for b in LATENCY_BUCKETS] + [(INF, len(values))]
    assert p95 == pytest.approx(bucket_quantile(0.95, counts))


def test_median_confidence_uses_15_minutes_and_none_without_observations() -> None:
    m, h = _fresh()
    conf = m.model_confidence_score.labels(M)
    conf.observe(0.32)  # created, but nothing observed in any window yet
    m.model_prediction_duration_seconds.labels(M)
    _snap(h, m, T0)
    _snap(h, m, T0 + 15)
    assert h.measurements([M], T0 + 15).median_confidence == {}  # no observations: None
    assert h.measurements([M], T0 + 15).latency_p95 == {}
    for _ in range(10):
        conf.observe(0.62)  # (0.6, 0.65]
    _snap(h, m, T0 + 600)  # 10 minutes later: out of 5m, inside 15m
    _snap(h, m, T0 + 700)
    got = h.measurements([M], T0 + 700).median_confidence[M]
    assert got == pytest.approx(0.6 + 0.05 * 0.5)  # rank 5 of 10 in (0.6, 0.65]


def test_median_confidence_window_is_exactly_15_minutes_left_open() -> None:
    m, h = _fresh()
    conf = m.model_confidence_score.labels(M)
    _snap(h, m, T0)
    for _ in range(10):
        conf.observe(0.32)  # (0.3, 0.35]: between T0 and T0 + 1
    _snap(h, m, T0 + 1)
    for _ in range(10):
        conf.observe(0.62)  # (0.6, 0.65]
    _snap(h, m, T0 + 899)
    _snap(h, m, T0 + 900)
    # (T0 - 1, T0 + 899]: T0 is in, all twenty count; rank 10 is the last 0.32's bucket's top.
    assert h.measurements([M], T0 + 899).median_confidence[M] == pytest.approx(0.35)
    # (T0, T0 + 900]: T0 is out, so only the ten 0.62 are in the window.
    assert h.measurements([M], T0 + 900).median_confidence[M] == pytest.approx(0.625)


# -- rates, ratios, resets -----------------------------------------------------------------


def test_request_error_rates_and_ratio_over_5_minutes() -> None:
    m, h = _fresh()
    _requests(m, "200", 1000)  # before the history: never counted
    _snap(h, m, T0)
    _requests(m, "200", 80)
    _requests(m, "404", 10)  # counts as a request, not as an error
    _requests(m, "500", 6)
    _requests(m, "503", 4, endpoint="/train")
    _snap(h, m, T0 + 60)
    got = h.measurements([M], T0 + 60)
    assert got.request_rate == pytest.approx(100 / 60)
    assert got.error_rate == pytest.approx(10 / 60)
    assert got.error_ratio == pytest.approx(0.1)


def test_window_is_left_open_and_uses_the_oldest_snapshot_inside() -> None:
    m, h = _fresh()
    for t, n in ((0, 0), (100, 50), (150, 30), (400, 60)):
        _requests(m, "200", n)
        _snap(h, m, T0 + t)
    # (100, 400]: the snapshot at 100 is out, the one at 150 is the start.
    assert h.measurements([], T0 + 400).request_rate == pytest.approx(60 / 250)
    # Only the snapshot at 400 inside (150, 450]: not measured.
    assert h.measurements([], T0 + 450).request_rate is None


def test_history_shorter_than_the_window_uses_what_is_there() -> None:
    m, h = _fresh()
    _snap(h, m, T0)
    _requests(m, "200", 30)
    _snap(h, m, T0 + 30)
    assert h.measurements([], T0 + 30).request_rate == pytest.approx(1.0)  # not 30/300


def test_counter_reset_adds_the_post_reset_value() -> None:
    h = MetricHistory()
    before, after = build_metrics(CollectorRegistry()), build_metrics(CollectorRegistry())
    _requests(before, "500", 100)
    h.record(before.registry.collect(), T0)
    _requests(before, "500", 20)
    h.record(before.registry.collect(), T0 + 15)
    _requests(after, "500", 5)  # the process restarted: 120 -> 5
    h.record(after.registry.collect(), T0 + 30)
    _requests(after, "500", 10)
    h.record(after.registry.collect(), T0 + 45)
    got = h.measurements([], T0 + 45)
    # Prometheus: last - first + value before each reset = 15 - 100 + 120 = 35.
    assert got.error_rate == pytest.approx(35 / 45)
    assert got.error_ratio == pytest.approx(1.0)


def test_series_born_inside_the_window_counts_from_zero() -> None:
    m, h = _fresh()
    _requests(m, "200", 10)
    _snap(h, m, T0)  # no 5xx series yet: proof that it did not exist
    _requests(m, "500", 3)
    _snap(h, m, T0 + 30)
    got = h.measurements([], T0 + 30)
    assert got.error_rate == pytest.approx(3 / 30)
    assert got.error_ratio == pytest.approx(1.0)


def test_vanished_series_adds_nothing_and_its_return_is_judged_like_prometheus() -> None:
    m, h = _fresh()
    _requests(m, "500", 10)
    _snap(h, m, T0)
    m.api_requests_total.remove("POST", "/predict", "500")
    _snap(h, m, T0 + 15)
    assert h.measurements([], T0 + 15).error_rate == 0.0
    _requests(m, "500", 4)  # back at 4 < 10: a reset, so all 4 count
    _snap(h, m, T0 + 30)
    assert h.measurements([], T0 + 30).error_rate == pytest.approx(4 / 30)


def test_a_query_at_an_earlier_instant_sees_only_the_series_of_that_instant() -> None:
    m, h = _fresh()
    _requests(m, "200", 10)
    _snap(h, m, T0)
    _requests(m, "200", 20)
    _snap(h, m, T0 + 30)
    m.model_accuracy.labels(M).set(0.8)  # the first series born after T0 + 30: a gauge
    _snap(h, m, T0 + 60)
    _requests(m, "500", 5)  # the first series born after T0 + 60: a counter
    _snap(h, m, T0 + 90)
    earlier = h.measurements([], T0 + 30)
    assert earlier.request_rate == pytest.approx(20 / 30)
    assert earlier.error_ratio == 0.0 and earlier.accuracy == {}
    middle = h.measurements([], T0 + 60)
    assert middle.request_rate == pytest.approx(20 / 60)
    assert middle.error_ratio == 0.0 and middle.accuracy == {M: 0.8}
    assert h.measurements([], T0 + 90).error_ratio == pytest.approx(5 / 25)


def _family(name: str, kind: str, samples: list[tuple[str, dict[str, str], float]]) -> Metric:
    family = Metric(name, "written by the test", kind)
    for sample, labels, value in samples:
        family.add_sample(sample, labels, value)
    return family


def test_a_missing_label_reads_as_empty_as_in_promql() -> None:
    """A series without a label has it empty in PromQL: `status=~"5.."` does not match it, and
    `sum by (model)` groups it under `model=""` (a collector other than ours may omit one)."""
    h = MetricHistory()
    for t, n in ((0, 0.0), (60, 6.0)):
        requests = [
            ("ml_api_requests_total", {"method": "POST"}, 4 * n),
            ("ml_api_requests_total", {"method": "POST", "status": "500"}, n),
        ]
        runs = [("ml_model_training_runs_total", {"outcome": "failure"}, n)]
        h.record(
            [
                _family("ml_api_requests", "counter", requests),
                _family("ml_model_training_runs", "counter", runs),
            ],
            T0 + t,
        )
    got = h.measurements([], T0 + 60)
    assert got.request_rate == pytest.approx(30 / 60)
    assert got.error_rate == pytest.approx(6 / 60)
    assert got.training_failures == {"": 6.0}


def test_only_ml_families_are_kept_wherever_they_come_in_the_collection() -> None:
    h = MetricHistory()
    for t, n in ((0, 0.0), (60, 6.0)):
        other = _family("process_cpu_seconds", "counter", [("process_cpu_seconds_total", {}, n)])
        mine = [("ml_api_requests_total", {"status": "500"}, n)]
        h.record([other, _family("ml_api_requests", "counter", mine)], T0 + t)
    assert h.measurements([], T0 + 60).error_rate == pytest.approx(6 / 60)


def test_one_series_whose_labels_two_collectors_list_in_different_orders_is_one_series() -> None:
    h = MetricHistory()
    for t, n, labels in (
        (0, 0.0, {"method": "POST", "status": "500"}),
        (60, 6.0, {"status": "500", "method": "POST"}),  # e.g. a MultiProcessCollector's order
        (120, 9.0, {"method": "POST", "status": "500"}),
    ):
        h.record(
            [_family("ml_api_requests", "counter", [("ml_api_requests_total", labels, n)])], T0 + t
        )
    assert h.measurements([], T0 + 60).error_rate == pytest.approx(6 / 60)
    assert h.measurements([], T0 + 120).error_rate == pytest.approx(9 / 120)


def test_a_second_snapshot_at_the_same_instant_replaces_the_first() -> None:
    m, h = _fresh()
    _requests(m, "200", 5)
    _snap(h, m, T0)
    _requests(m, "200", 5)
    _snap(h, m, T0)  # one sample per instant, never a window without time in it
    got = h.measurements([M], T0)
    assert got.request_rate is None and got.prediction_rate is None
    _requests(m, "200", 30)
    _snap(h, m, T0 + 30)
    assert h.measurements([M], T0 + 30).request_rate == pytest.approx(1.0)  # from the 10


def test_nothing_measured_until_two_snapshots() -> None:
    m, h = _fresh()
    empty = h.measurements([M], T0)
    assert empty.cpu_percent is None and empty.request_rate is None
    _requests(m, "500", 5)
    m.model_training_runs_total.labels(M, "failure").inc()
    m.model_prediction_duration_seconds.labels(M).observe(0.1)
    m.system_cpu_usage_percent.set(12.0)
    _snap(h, m, T0)
    got = h.measurements([M], T0)
    assert got.cpu_percent == 12.0  # a gauge needs only one snapshot
    assert (got.request_rate, got.error_rate, got.error_ratio, got.prediction_rate) == (
        None,
        None,
        None,
        None,
    )
    assert got.latency_p95 == {} and got.training_failures == {}
    assert got.prediction_rate_by_model == {} and got.db_connection_errors == 0.0
    assert got.now == T0


def test_no_requests_means_ratio_not_measured_but_rates_zero() -> None:
    m, h = _fresh()
    _snap(h, m, T0)
    _snap(h, m, T0 + 15)
    got = h.measurements([M], T0 + 15)
    assert got.request_rate == 0.0 and got.error_rate == 0.0
    assert got.error_ratio is None  # 0/0 is NaN in PromQL: no alert either way
    assert got.prediction_rate == 0.0 and got.prediction_rate_by_model == {M: 0.0}


def test_training_failures_db_errors_and_prediction_rates() -> None:
    m, h = _fresh()
    for model in (M, "other"):
        m.model_training_runs_total.labels(model, "failure")
        m.model_training_runs_total.labels(model, "success")
    m.db_operation_errors_total.labels("insert_predictions", "connection")
    _snap(h, m, T0)
    m.model_training_runs_total.labels(M, "failure").inc(2)
    m.model_training_runs_total.labels(M, "success").inc(5)  # not a failure
    m.db_operation_errors_total.labels("insert_predictions", "connection").inc(2)
    m.db_operation_errors_total.labels("query", "connection").inc()  # summed over operations
    m.db_operation_errors_total.labels("query", "other").inc(7)  # not a connection error
    m.model_predictions_total.labels(M, "1", "a").inc(900)
    m.model_predictions_total.labels(M, "1", "b").inc(900)
    m.model_predictions_total.labels("retired", "3", "a").inc(360)  # not loaded any more
    _snap(h, m, T0 + 60)
    _snap(h, m, T0 + 1800)
    _snap(h, m, T0 + 3599)  # the 1h window (T0 - 1, T0 + 3599] still holds T0
    got = h.measurements([M, "idle"], T0 + 3599)
    assert got.training_failures == {M: 2.0, "other": 0.0}
    assert got.db_connection_errors == 0.0  # the errors are > 5 minutes old
    assert got.prediction_rate == pytest.approx(2160 / 3599)  # every model, like sum(rate)
    assert got.prediction_rate_by_model == {M: pytest.approx(1800 / 3599), "idle": 0.0}
    assert h.measurements([M], T0 + 60).db_connection_errors == 3.0
    # An hour and a bit later T0 has left the window: the failures no longer count.
    assert h.measurements([M], T0 + 3600).training_failures == {M: 0.0, "other": 0.0}


def test_rejected_records_per_model_and_refused_bundles_per_model_and_reason() -> None:
    # PredictionRecordsRejected reads increase(...[1h]) summed by model over the reasons;
    # ModelBundleRefused the gauge by model and reason.
    m, h = _fresh()
    m.db_records_rejected_total.labels(M, "integrity")
    m.db_records_rejected_total.labels(M, "data")
    m.db_records_rejected_total.labels("other", "data")
    _snap(h, m, T0)
    m.db_records_rejected_total.labels(M, "integrity").inc(2)
    m.db_records_rejected_total.labels(M, "data").inc(3)
    m.model_bundle_refused.labels(M, "integrity").set(1)
    m.model_bundle_refused.labels("other", "signature").set(0)
    _snap(h, m, T0 + 60)
    got = h.measurements([M, "other"], T0 + 60)
    assert got.records_rejected == {M: 5.0, "other": 0.0}
    assert got.bundles_refused == {(M, "integrity"): 1.0, ("other", "signature"): 0.0}


def test_db_connection_errors_use_the_threshold_window() -> None:
    # The same range as the rule: `db_connection_errors_window`, not a fixed 5m.
    m, h = _fresh()
    errors = m.db_operation_errors_total.labels("insert_predictions", "connection")
    for t in range(0, 61, 5):
        if t == 10:
            errors.inc(4)
        _snap(h, m, T0 + t)
    short = Thresholds(db_connection_errors_window="20s")
    assert h.measurements([], T0 + 15, thresholds=short).db_connection_errors == 4.0
    assert h.measurements([], T0 + 24, thresholds=short).db_connection_errors == 4.0
    # (T0 + 5, T0 + 25]: the last snapshot before the errors has left the window.
    assert h.measurements([], T0 + 25, thresholds=short).db_connection_errors == 0.0
    assert h.measurements([], T0 + 60).db_connection_errors == 4.0  # default 5m window
    ev = AlertEvaluator(short, clock=lambda: 0.0)
    alerts = ev.evaluate(h.measurements([], T0 + 60, thresholds=short))
    assert "DatabaseConnectionErrors" not in {a.name for a in alerts}
    alerts = ev.evaluate(h.measurements([], T0 + 24, thresholds=short))
    (db,) = [a for a in alerts if a.name == "DatabaseConnectionErrors"]
    assert "in the last 20s" in db.description


def test_gauges_max_lookback_and_drift() -> None:
    m, h = _fresh()
    m.system_cpu_usage_percent.set(42.0)
    m.system_memory_usage_ratio.set(0.5)
    m.system_memory_usage_bytes.set(4e9)
    m.system_disk_usage_ratio.set(0.7)
    m.model_accuracy.labels(M).set(0.8)
    m.model_accuracy_samples.labels(M).set(250)
    m.model_last_training_timestamp_seconds.labels(M).set(T0 - 86400)
    m.data_drift_score.labels(M, "age", "decision").set(0.3)
    m.data_drift_score.labels(M, "age", "ks").set(0.9)  # another method: ignored
    m.data_drift_score.labels(M, "age", "psi").set(0.05)  # so is PSI: the decision's own score
    m.data_drift_detected.labels(M, "age").set(1)
    m.data_drift_score.labels(M, "bmi", "decision").set(0.05)
    _snap(h, m, T0)
    got = h.measurements([M], T0 + 10)
    assert (got.cpu_percent, got.memory_ratio, got.memory_bytes, got.disk_ratio) == (
        42.0,
        0.5,
        4e9,
        0.7,
    )
    assert got.accuracy == {M: 0.8} and got.accuracy_samples == {M: 250}
    assert got.last_training == {M: T0 - 86400}
    assert got.drift == {
        (M, "age"): DriftReading(score=0.3, detected=True),
        (M, "bmi"): DriftReading(score=0.05, detected=False),
    }
    # The lookback is closed, as in Prometheus 2: a sample exactly 5 minutes old is read.
    at_limit = h.measurements([M], T0 + LOOKBACK_SECONDS)
    assert at_limit.cpu_percent == 42.0 and at_limit.accuracy == {M: 0.8}
    stale = h.measurements([M], T0 + LOOKBACK_SECONDS + 1e-6)
    assert stale.cpu_percent is None and stale.accuracy == {}


def test_a_gauge_is_the_max_over_its_children_in_any_order() -> None:
    m, h = _fresh()
    m.model_holdout_accuracy.labels(M, "2").set(0.9)  # collected first
    m.model_holdout_accuracy.labels(M, "3").set(0.7)
    m.model_holdout_accuracy.labels("other", "1").set(0.6)
    _snap(h, m, T0)
    assert h.measurements([M], T0).holdout_accuracy == {M: 0.9, "other": 0.6}


def _clinical_registry() -> tuple[CollectorRegistry, dict[str, Gauge]]:
    """The service's clinical gauges (and the holdout accuracy), by metric name."""
    m = build_metrics(CollectorRegistry())
    gauges = {name: getattr(m, field) for field, (name, _, _) in CLINICAL_GAUGES.items()}
    return m.registry, {**gauges, "ml_model_holdout_accuracy": m.model_holdout_accuracy}


def test_clinical_gauges_nan_is_absent_and_bounds_join_their_value() -> None:
    r, g = _clinical_registry()
    g["ml_model_recall"].labels(M, "malignant", "all").set(0.9)
    g["ml_model_recall_lower"].labels(M, "malignant", "all").set(0.85)
    g["ml_model_recall_upper"].labels(M, "malignant", "all").set(0.94)
    # A segment withdrawn below the minimum count: NaN, as a multiprocess gauge cannot forget.
    for suffix in ("", "_lower", "_upper"):
        g["ml_model_recall" + suffix].labels(M, "malignant", "sex=2").set(math.nan)
    g["ml_model_precision"].labels(M, "benign", "age=40-65").set(0.7)  # no bounds exported
    g["ml_model_calibration_error"].labels(M, "all").set(0.04)
    g["ml_model_calibration_error"].labels(M, "sex=2").set(math.nan)
    g["ml_model_labelled_samples"].labels(M, "all").set(500)
    g["ml_model_baseline"].labels(M, "recall", "malignant").set(0.92)
    g["ml_model_baseline"].labels(M, "accuracy", "").set(0.96)
    g["ml_model_baseline"].labels(M, "roc_auc", "").set(math.nan)
    g["ml_model_positive_class"].labels(M, "malignant").set(1)
    g["ml_model_positive_class"].labels(M, "benign").set(0)  # not `== 1`
    g["ml_model_holdout_accuracy"].labels(M, "v1").set(0.95)
    g["ml_model_holdout_accuracy"].labels(M, "v2").set(0.97)  # max over versions
    h = MetricHistory()
    h.record(r.collect(), T0)
    got = h.measurements([M], T0 + 10)
    assert got.recall == {(M, "malignant", "all"): Bounded(0.9, 0.85, 0.94)}
    assert got.precision == {(M, "benign", "age=40-65"): Bounded(0.7, None, None)}
    assert got.calibration_error == {(M, "all"): 0.04}
    assert got.labelled_samples == {(M, "all"): 500}
    assert got.baseline == {(M, "recall", "malignant"): 0.92, (M, "accuracy", ""): 0.96}
    assert got.positive_classes == frozenset({(M, "malignant")})
    assert got.holdout_accuracy == {M: 0.97}
    stale = h.measurements([M], T0 + LOOKBACK_SECONDS + 1)
    assert stale.recall == {} and stale.baseline == {} and stale.positive_classes == frozenset()


def test_a_withdrawn_segment_raises_no_alert_in_process() -> None:
    # The segment's recall was far below the whole's, then fell under the minimum count:
    # the job sets NaN and the gap alert must clear, not stay on the last number.
    r, g = _clinical_registry()
    recall = [g["ml_model_recall" + s] for s in ("", "_lower", "_upper")]
    for gauge, v in zip(recall, (0.9, 0.85, 0.94), strict=True):
        gauge.labels(M, "malignant", "all").set(v)
    for gauge, v in zip(recall, (0.5, 0.4, 0.6), strict=True):
        gauge.labels(M, "malignant", "sex=2").set(v)
    g["ml_model_labelled_samples"].labels(M, "all").set(1000)
    g["ml_model_labelled_samples"].labels(M, "sex=2").set(300)
    t = Thresholds(subgroup_gap_for=0)
    ev = AlertEvaluator(t, clock=lambda: 0.0, wall_clock=lambda: T0)
    h = MetricHistory()
    h.record(r.collect(), T0)

    def gaps(now: float) -> list[tuple[str, str, float]]:
        alerts = ev.evaluate(h.measurements([M], now, thresholds=t))
        return [
            (a.labels["segment"], a.state, a.value)
            for a in alerts
            if a.name == "SubgroupPerformanceGap"
        ]

    assert gaps(T0) == [("sex=2", "firing", 0.5)]
    for gauge in recall:
        gauge.labels(M, "malignant", "sex=2").set(math.nan)
    h.record(r.collect(), T0 + 15)
    assert gaps(T0 + 15) == []


def test_old_snapshots_are_dropped_and_a_clock_step_back_is_survived() -> None:
    m = build_metrics(CollectorRegistry())
    h = MetricHistory(max_age_seconds=60)
    for t in (0, 30, 100):
        _requests(m, "200", 10)
        _snap(h, m, T0 + t)
    # 0 and 30 are older than 60 s at t=100: only one snapshot is left.
    assert h.measurements([], T0 + 100).request_rate is None
    _requests(m, "200", 10)
    _snap(h, m, T0 + 90)  # the wall clock stepped back: the snapshot at 100 goes
    _requests(m, "200", 5)
    _snap(h, m, T0 + 120)
    assert h.measurements([], T0 + 120).request_rate == pytest.approx(5 / 30)


def test_a_clock_step_back_drops_only_the_snapshots_from_the_future() -> None:
    m, h = _fresh()
    for t in (0, 30, 60):
        _requests(m, "200", 10)
        _snap(h, m, T0 + t)
    _snap(h, m, T0 + 45)  # the snapshot at 60 goes; those at 0 and 30 stay
    assert h.measurements([], T0 + 45).request_rate == pytest.approx(20 / 45)


def test_multiprocess_collector_snapshots(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from prometheus_client import CollectorRegistry, Gauge, Metric
        from nexus_ml.monitoring.metrics import build_metrics
        m = build_metrics(CollectorRegistry())
        n = int(sys.argv[1])
        m.api_requests_total.labels("POST", "/predict", "200").inc(9 * n)
        m.api_requests_total.labels("POST", "/predict", "500").inc(n)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    h = MetricHistory()

    def worker_then_snap(n: int, t: float) -> None:
        subprocess.run([sys.executable, "-c", code, str(n)], env=env, check=True, timeout=60)
        reg = CollectorRegistry()
        MultiProcessCollector(reg, path=str(tmp_path))
        h.record(reg.collect(), t)

    worker_then_snap(1, T0)
    worker_then_snap(3, T0 + 15)  # a second worker: the collector adds its file
    got = h.measurements([], T0 + 15)
    assert got.request_rate == pytest.approx(30 / 15)
    assert got.error_ratio == pytest.approx(0.1)


# -- end to end with the evaluator -----------------------------------------------------------


def _run(error_share: float) -> list[tuple[float, str | None]]:
    """Tick every 15 s with 100 requests per tick; HighErrorRate's state after each tick."""
    m, h = _fresh()
    clock = [0.0]
    ev = AlertEvaluator(Thresholds(), clock=lambda: clock[0], wall_clock=lambda: T0 + clock[0])
    states: list[tuple[float, str | None]] = []
    for tick in range(30):
        t = tick * 15.0
        errors = round(100 * error_share)
        _requests(m, "200", 100 - errors)
        _requests(m, "500", errors)
        clock[0] = t
        _snap(h, m, T0 + t)
        alerts = ev.evaluate(h.measurements([M], T0 + t))
        state = next((a.state for a in alerts if a.name == "HighErrorRate"), None)
        states.append((t, state))
    return states


def test_high_error_ratio_fires_after_its_for_duration() -> None:
    hold = Thresholds().error_rate_high_for
    states = dict(_run(0.2))
    assert states[0.0] is None  # one snapshot: not measured, nothing pending
    assert states[15.0] == "pending"  # 20 % of 100 requests per 15 s = 1.33 errors/s
    assert states[15.0 + hold - 15] == "pending"
    assert states[15.0 + hold] == "firing"
    assert all(s is None for _, s in _run(0.02))  # below the 5 % limit: never
