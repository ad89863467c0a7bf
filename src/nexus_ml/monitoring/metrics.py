"""Every metric the service exports, defined once, built into a registry passed in.

Names are the monitoring guide's, exactly. Labels are bounded: model names and
versions (from the bundle folder, not from requests), route templates, methods,
status codes, feature names (from the model's schema), and small enums. Nothing
here ever carries a feature value, an identifier or free text.

Multiprocess: when ``PROMETHEUS_MULTIPROC_DIR`` is set before Python starts,
prometheus_client stores values in per-process files; each gauge below names
its ``multiprocess_mode`` deliberately:

* ``mostrecent`` for values computed by one elected process (system collector,
  drift job, accuracy job): the newest write wins, whichever worker made it,
  and a dead worker's value is superseded by the next one elected.
* ``livesum`` for per-process quantities that add up (records pending).
* ``livemax``/``livemostrecent`` where a dead worker's last value must vanish
  with it (loaded model versions, alerts held firing by the elected evaluator):
  prometheus_client cannot remove a label set in multiprocess mode, so a value
  that outlived its writer would otherwise stay forever.
* ``max`` for timestamps (last training time must not go backwards).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nexus_ml.thresholds import LATENCY_BUCKETS

# Latency: 0.5 ms to 10 s (a one-row prediction takes tens of microseconds to a few ms; the
# guide's alert sits at 1 s). Defined in thresholds/units.py: the latency limits must fit them.
# Confidence is max class probability: 1/n_classes..1. Twenty equal bins give
# the dashboard's distribution and a median good to 0.05 for LowModelConfidence.
CONFIDENCE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
# Training runs: seconds to an hour.
TRAINING_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Response bodies: 100 B to 1 MiB (the request limit bounds batch answers too).
SIZE_BUCKETS = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 250_000, 1_048_576)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# Gauges labelled by model version that describe that version. A version stops being exported
# once no live worker serves it (ml_model_info{model, version} is 0 or gone everywhere): one
# process removes the label sets, and in multiprocess mode, where prometheus_client cannot,
# /metrics leaves them out (nexus_ml.monitoring.exposition.drop_unserved).
SERVING_GAUGE = "ml_model_info"
VERSIONED_GAUGES = (
    "ml_model_info",
    "ml_model_holdout_accuracy",
    "ml_feature_reference_share",
    "ml_feature_bin_width",
)
# Per-version counters dropped the same way: a retired version's bins would otherwise stay
# (their cardinality is features x bins, see docs/metrics.md). Family names (no _total).
VERSIONED_COUNTERS = ("ml_feature_bin",)
_BIN = ("model", "version", "feature", "bin")


@dataclass(frozen=True, slots=True)
class Metrics:
    """Handles to every metric; build with :func:`build_metrics`."""

    registry: CollectorRegistry
    # System (one collector per host)
    system_cpu_usage_percent: Gauge
    system_memory_usage_bytes: Gauge
    system_memory_total_bytes: Gauge
    system_memory_usage_ratio: Gauge
    system_disk_usage_bytes: Gauge
    system_disk_total_bytes: Gauge
    system_disk_usage_ratio: Gauge
    # API
    api_requests_total: Counter
    api_request_duration_seconds: Histogram
    response_size_bytes: Histogram
    # Model
    model_info: Gauge
    model_predictions_total: Counter
    model_prediction_duration_seconds: Histogram
    model_confidence_score: Histogram
    model_accuracy: Gauge
    model_accuracy_samples: Gauge
    model_holdout_accuracy: Gauge
    model_estimated_accuracy: Gauge
    model_estimated_accuracy_stderr: Gauge
    model_feedback_total: Counter
    model_load_failures_total: Counter
    model_bundle_refused: Gauge
    # Clinical performance at the operating point (the model-quality job; per segment)
    model_recall: Gauge
    model_recall_lower: Gauge
    model_recall_upper: Gauge
    model_precision: Gauge
    model_precision_lower: Gauge
    model_precision_upper: Gauge
    model_roc_auc: Gauge
    model_brier_score: Gauge
    model_calibration_error: Gauge
    model_prevalence: Gauge
    model_positive_rate: Gauge
    model_labelled_samples: Gauge
    model_recall_estimated: Gauge
    model_precision_estimated: Gauge
    model_roc_auc_estimated: Gauge
    model_reliability_predicted: Gauge
    model_reliability_observed: Gauge
    model_baseline: Gauge
    model_positive_class: Gauge
    # Training
    model_training_duration_seconds: Histogram
    model_training_samples: Gauge
    model_features_count: Gauge
    model_training_runs_total: Counter
    model_last_training_timestamp_seconds: Gauge
    # Data
    data_quality_score: Gauge
    data_quality_issues_total: Counter
    data_drift_score: Gauge
    data_drift_detected: Gauge
    data_drift_share: Gauge
    data_drift_window_size: Gauge
    # Inputs per reference bin (PromQL drift: render/drift_rules.py)
    feature_bin_total: Counter
    feature_reference_share: Gauge
    feature_bin_width: Gauge
    # Errors
    errors_total: Counter
    # Database
    db_operation_duration_seconds: Histogram
    db_operation_errors_total: Counter
    db_records_pending: Gauge
    db_records_spilled: Gauge
    db_records_written_total: Counter
    db_records_rejected_total: Counter
    # Alerts evaluated in-process (same names as the Prometheus rules)
    alerts_active: Gauge
    # Shadow challengers (service/shadow.py): scored off the answer path, by version
    shadow_predictions_total: Counter
    shadow_prediction_duration_seconds: Histogram
    shadow_dropped_total: Counter
    shadow_refused_total: Counter


_CLASS = ("model", "class", "segment")
_SEGMENT = ("model", "segment")
# The clinical gauges: field -> (name, help, labels). All ``mostrecent`` (one elected job
# writes them). A value below ML_CLINICAL_MIN_COUNT is not exported; a label set exported
# before is set to NaN instead (multiprocess files cannot forget a child; NaN never fires).
CLINICAL_GAUGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "model_recall": (
        "ml_model_recall",
        "Realised recall (sensitivity) of a class at the operating point, 0-1.",
        _CLASS,
    ),
    "model_recall_lower": (
        "ml_model_recall_lower",
        "Lower bound of the 95% Wilson interval of ml_model_recall.",
        _CLASS,
    ),
    "model_recall_upper": (
        "ml_model_recall_upper",
        "Upper bound of the 95% Wilson interval of ml_model_recall.",
        _CLASS,
    ),
    "model_precision": (
        "ml_model_precision",
        "Realised precision (PPV; NPV for the negative class) at the operating point, 0-1.",
        _CLASS,
    ),
    "model_precision_lower": (
        "ml_model_precision_lower",
        "Lower bound of the 95% Wilson interval of ml_model_precision.",
        _CLASS,
    ),
    "model_precision_upper": (
        "ml_model_precision_upper",
        "Upper bound of the 95% Wilson interval of ml_model_precision.",
        _CLASS,
    ),
    "model_roc_auc": (
        "ml_model_roc_auc",
        "Realised ROC AUC (binary: positive class; multiclass: macro one-vs-rest), 0-1.",
        _SEGMENT,
    ),
    "model_brier_score": (
        "ml_model_brier_score",
        "Realised Brier score of P(positive class), 0-1 (lower is better).",
        _SEGMENT,
    ),
    "model_calibration_error": (
        "ml_model_calibration_error",
        "Expected calibration error over 10 equal-width probability bins, 0-1.",
        _SEGMENT,
    ),
    "model_prevalence": (
        "ml_model_prevalence",
        "Share of labelled predictions whose actual class is this one, 0-1.",
        _CLASS,
    ),
    "model_positive_rate": (
        "ml_model_positive_rate",
        "Share of predictions in the drift window predicted as this class (alert burden), 0-1.",
        _CLASS,
    ),
    "model_labelled_samples": (
        "ml_model_labelled_samples",
        "Labelled predictions in the accuracy window behind the realised clinical metrics.",
        _SEGMENT,
    ),
    "model_recall_estimated": (
        "ml_model_recall_estimated",
        "Recall estimated without labels (CBPE) over the drift window, 0-1.",
        _CLASS,
    ),
    "model_precision_estimated": (
        "ml_model_precision_estimated",
        "Precision estimated without labels (CBPE) over the drift window, 0-1.",
        _CLASS,
    ),
    "model_roc_auc_estimated": (
        "ml_model_roc_auc_estimated",
        "ROC AUC estimated without labels (CBPE) over the drift window, 0-1.",
        _SEGMENT,
    ),
    "model_reliability_predicted": (
        "ml_model_reliability_predicted",
        "Reliability curve of segment all: mean predicted probability in the bin ending at bin.",
        ("model", "bin"),
    ),
    "model_reliability_observed": (
        "ml_model_reliability_observed",
        "Reliability curve of segment all: observed share in the bin ending at bin.",
        ("model", "bin"),
    ),
    "model_baseline": (
        "ml_model_baseline",
        "The model's validated holdout metric at its operating point (class empty if model-wide).",
        ("model", "metric", "class"),
    ),
    "model_positive_class": (
        "ml_model_positive_class",
        "1 for the positive class of a binary model (the one whose recall is sensitivity), "
        "0 for its other class; multiclass models have none.",
        ("model", "class"),
    ),
}


def build_metrics(registry: CollectorRegistry) -> Metrics:
    """Create every metric in ``registry`` (tests pass a fresh one)."""
    r = registry
    made: dict[str, object] = {
        field: Gauge(name, doc, labels, registry=r, multiprocess_mode="mostrecent")
        for field, (name, doc, labels) in CLINICAL_GAUGES.items()
    }
    made |= {
        "registry": r,
        "system_cpu_usage_percent": Gauge(
            "ml_system_cpu_usage_percent",
            "Host CPU utilisation, 0-100.",
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "system_memory_usage_bytes": Gauge(
            "ml_system_memory_usage_bytes",
            "Host memory in use (total minus available).",
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "system_memory_total_bytes": Gauge(
            "ml_system_memory_total_bytes",
            "Host memory installed.",
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "system_memory_usage_ratio": Gauge(
            "ml_system_memory_usage_ratio",
            "Host memory in use as a share of total, 0-1.",
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "system_disk_usage_bytes": Gauge(
            "ml_system_disk_usage_bytes",
            "Bytes used on the filesystem holding the data folder.",
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "system_disk_total_bytes": Gauge(
            "ml_system_disk_total_bytes",
            "Size of the filesystem holding the data folder.",
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "system_disk_usage_ratio": Gauge(
            "ml_system_disk_usage_ratio",
            "Share of the data filesystem in use, 0-1.",
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "api_requests_total": Counter(
            "ml_api_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "endpoint", "status"],
            registry=r,
        ),
        "api_request_duration_seconds": Histogram(
            "ml_api_request_duration_seconds",
            "HTTP request duration until the response is sent.",
            ["method", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        ),
        "response_size_bytes": Histogram(
            "ml_response_size_bytes",
            "HTTP response body size.",
            ["method", "endpoint"],
            buckets=SIZE_BUCKETS,
            registry=r,
        ),
        "model_info": Gauge(
            "ml_model_info",
            "1 for each model version currently loaded.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livemax",
        ),
        "model_predictions_total": Counter(
            "ml_model_predictions",
            "Predictions served, by model and predicted class.",
            ["model", "version", "predicted_class"],
            registry=r,
        ),
        "model_prediction_duration_seconds": Histogram(
            "ml_model_prediction_duration_seconds",
            "Time spent computing one prediction call.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        ),
        "model_confidence_score": Histogram(
            "ml_model_confidence_score",
            "Confidence (highest class probability) of predictions.",
            ["model"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        ),
        "model_accuracy": Gauge(
            "ml_model_accuracy",
            "Realised accuracy from feedback over the accuracy window, 0-1.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "model_accuracy_samples": Gauge(
            "ml_model_accuracy_samples",
            "Labelled predictions behind ml_model_accuracy.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "model_holdout_accuracy": Gauge(
            "ml_model_holdout_accuracy",
            "Accuracy on the training holdout set, 0-1.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "model_estimated_accuracy": Gauge(
            "ml_model_estimated_accuracy",
            "Accuracy estimated from confidence without labels (CBPE), 0-1.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "model_estimated_accuracy_stderr": Gauge(
            "ml_model_estimated_accuracy_stderr",
            "Standard error of ml_model_estimated_accuracy.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "model_feedback_total": Counter(
            "ml_model_feedback",
            "Feedback labels received, by whether the prediction was right.",
            ["model", "correct"],
            registry=r,
        ),
        "model_load_failures_total": Counter(
            "ml_model_load_failures",
            "Model bundles refused at load, by model and reason (a bounded enum).",
            ["model", "reason"],
            registry=r,
        ),
        # A gauge, not the counter above: a refusal at start happens before the first scrape,
        # and increase() never sees a counter born at 1.
        "model_bundle_refused": Gauge(
            "ml_model_bundle_refused",
            "1 while the bundle CURRENT names for a model is refused, by reason.",
            ["model", "reason"],
            registry=r,
            multiprocess_mode="livemax",
        ),
        "model_training_duration_seconds": Histogram(
            "ml_model_training_duration_seconds",
            "Duration of training runs.",
            ["model"],
            buckets=TRAINING_BUCKETS,
            registry=r,
        ),
        "model_training_samples": Gauge(
            "ml_model_training_samples",
            "Samples used by the last successful training run.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "model_features_count": Gauge(
            "ml_model_features_count",
            "Features the model was trained on.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "model_training_runs_total": Counter(
            "ml_model_training_runs",
            "Training runs finished, by outcome (success|failure).",
            ["model", "outcome"],
            registry=r,
        ),
        "model_last_training_timestamp_seconds": Gauge(
            "ml_model_last_training_timestamp_seconds",
            "Unix time of the last successful training of the model.",
            ["model"],
            registry=r,
            multiprocess_mode="max",
        ),
        "data_quality_score": Gauge(
            "ml_data_quality_score",
            "Share of recent feature values without issues, 0-1.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "data_quality_issues_total": Counter(
            "ml_data_quality_issues",
            "Feature values with a quality issue, by feature and kind.",
            ["model", "feature", "kind"],
            registry=r,
        ),
        "data_drift_score": Gauge(
            "ml_data_drift_score",
            "Drift of a feature's recent window against the reference.",
            ["model", "feature", "method"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "data_drift_detected": Gauge(
            "ml_data_drift_detected",
            "1 if the feature is judged drifted in the last window.",
            ["model", "feature"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "data_drift_share": Gauge(
            "ml_data_drift_share",
            "Share of the model's features judged drifted, 0-1.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "data_drift_window_size": Gauge(
            "ml_data_drift_window_size",
            "Predictions in the last drift window.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "feature_bin_total": Counter(
            "ml_feature_bin",
            "Answered instances by feature and reference bin (index, missing, unseen).",
            _BIN,
            registry=r,
        ),
        "feature_reference_share": Gauge(
            "ml_feature_reference_share",
            "Share of the version's reference rows in each bin of ml_feature_bin_total, 0-1.",
            _BIN,
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "feature_bin_width": Gauge(
            "ml_feature_bin_width",
            "Distance from a numeric bin's upper edge to the next edge, in reference "
            "standard deviations (weights of the binned Wasserstein distance).",
            _BIN,
            registry=r,
            multiprocess_mode="mostrecent",
        ),
        "errors_total": Counter(
            "ml_errors",
            "Errors by component and error type.",
            ["component", "error_type"],
            registry=r,
        ),
        "db_operation_duration_seconds": Histogram(
            "ml_db_operation_duration_seconds",
            "Database operation duration.",
            ["operation"],
            buckets=DB_BUCKETS,
            registry=r,
        ),
        "db_operation_errors_total": Counter(
            "ml_db_operation_errors",
            "Database operation errors (error_type: connection|other).",
            ["operation", "error_type"],
            registry=r,
        ),
        "db_records_pending": Gauge(
            "ml_db_records_pending",
            "Prediction records accepted but not yet written.",
            registry=r,
            multiprocess_mode="livesum",
        ),
        "db_records_spilled": Gauge(
            "ml_db_records_spilled",
            "Prediction records held in the local spill buffer.",
            registry=r,
            multiprocess_mode="livesum",
        ),
        "db_records_written_total": Counter(
            "ml_db_records_written", "Prediction records written to the database.", registry=r
        ),
        "db_records_rejected_total": Counter(
            "ml_db_records_rejected",
            "Prediction records the database refused, kept in rejected-*.jsonl files "
            "(reason: integrity|data|other).",
            ["model", "reason"],
            registry=r,
        ),
        "alerts_active": Gauge(
            "ml_alerts_active",
            "1 for each alert the in-process evaluator holds firing.",
            ["alertname", "severity"],
            registry=r,
            multiprocess_mode="livemostrecent",
        ),
        "shadow_predictions_total": Counter(
            "ml_shadow_predictions",
            "Instances a shadow challenger scored (stored with role challenger).",
            ["model", "version"],
            registry=r,
        ),
        "shadow_prediction_duration_seconds": Histogram(
            "ml_shadow_prediction_duration_seconds",
            "Time a shadow challenger spent computing one prediction (off the answer path).",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        ),
        "shadow_dropped_total": Counter(
            "ml_shadow_dropped",
            "Instances not scored in shadow because its queue was full (the champion "
            "never waits for the challenger).",
            ["model", "version"],
            registry=r,
        ),
        "shadow_refused_total": Counter(
            "ml_shadow_refused",
            "Instances the champion answered that the challenger's schema refuses or that "
            "it cannot evaluate.",
            ["model", "version"],
            registry=r,
        ),
    }
    names = {f.name for f in fields(Metrics)}
    assert names == set(made), names ^ set(made)  # noqa: S101 - definition-time invariant
    return Metrics(**made)  # type: ignore[arg-type]
