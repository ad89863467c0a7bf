"""The data-science dashboard: accuracy three ways, clinical performance by segment (recall,
precision, alert rate, calibration), confidence, drift and data quality."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

from nexus_ml.render.dashboards.clinical import (
    class_variable,
    clinical_rows,
    segment_variable,
)
from nexus_ml.render.dashboards.common import (
    DRIFT_METHOD,
    MODEL,
    NO_FEEDBACK,
    NO_ISSUES,
    NOT_YET_RUN,
    OK,
    WARNING,
    add_rows,
    dashboard,
    heatmap_q,
    high_is_bad,
    low_is_bad,
    model_variable,
    q,
    steps_above,
)
from nexus_ml.render.dashboards.panels import (
    bar_gauge_panel,
    stat_panel,
    timeseries_panel,
)
from nexus_ml.render.dashboards.promql_drift import promql_drift_row
from nexus_ml.thresholds import Thresholds

UID = "nexus-ml-data-science"
_NEUTRAL = steps_above("blue")


def _accuracy_row(t: Thresholds) -> list[Builder[dm.Panel]]:
    estimate = f"ml_model_estimated_accuracy{{{MODEL}}}"
    stderr = f"ml_model_estimated_accuracy_stderr{{{MODEL}}}"
    accuracy = low_is_bad(t.training_accuracy_low)
    return [
        timeseries_panel(
            "Realised accuracy",
            [q(f"ml_model_accuracy{{{MODEL}}}", "{{model}}")],
            unit="percentunit",
            max_val=1,
            thresholds=accuracy,
            no_value=NO_FEEDBACK,
            description="Accuracy from feedback labels; dashed line at LowModelAccuracy.",
            span=8,
        ),
        timeseries_panel(
            "Estimated accuracy (CBPE) ± stderr",
            [
                q(estimate, "{{model}} estimate", "A"),
                q(f"{estimate} + {stderr}", "{{model}} +1 s.e.", "B"),
                q(f"{estimate} - {stderr}", "{{model}} −1 s.e.", "C"),
            ],
            unit="percentunit",
            max_val=1,
            thresholds=accuracy,
            no_value=NOT_YET_RUN,
            description="Estimated from confidence without labels, one standard error either side.",
            span=8,
        ),
        bar_gauge_panel(
            "Holdout accuracy",
            [q(f"ml_model_holdout_accuracy{{{MODEL}}}", "{{model}} {{version}}", instant=True)],
            unit="percentunit",
            min_val=0,
            max_val=1,
            thresholds=accuracy,
            description="Accuracy on each loaded version's training holdout set.",
            span=8,
        ),
        timeseries_panel(
            "Labelled predictions behind realised accuracy",
            [q(f"ml_model_accuracy_samples{{{MODEL}}}", "{{model}}")],
            unit="short",
            min_val=0,
            # Below this LowModelAccuracy stays silent: too few labels to judge.
            thresholds=low_is_bad(t.accuracy_min_samples),
            no_value=NO_FEEDBACK,
            description="Feedback labels in the accuracy window; dashed line at the alert minimum.",
            span=12,
        ),
        stat_panel(
            "Time since last training",
            [
                q(
                    "time() - max by (model) "
                    f"(ml_model_last_training_timestamp_seconds{{{MODEL}}})",
                    "{{model}}",
                    instant=True,
                )
            ],
            unit="s",
            thresholds=high_is_bad(t.training_max_age),
            description="Orange from NoRecentTraining's age limit.",
            span=12,
        ),
    ]


def _confidence_row(t: Thresholds) -> list[Builder[dm.Panel]]:
    buckets = f"ml_model_confidence_score_bucket{{{MODEL}}}"
    return [
        bar_gauge_panel(
            "Confidence distribution (time range)",
            [heatmap_q(f"sum by (le) (increase({buckets}[$__range]))", instant=True)],
            unit="short",
            min_val=0,
            thresholds=_NEUTRAL,
            description="Predictions per confidence bucket over the selected time range.",
            span=8,
        ),
        timeseries_panel(
            "Median confidence",
            [q(f"histogram_quantile(0.5, sum by (le, model) (rate({buckets}[15m])))", "{{model}}")],
            unit="percentunit",
            max_val=1,
            thresholds=low_is_bad(t.model_confidence_low),
            description="Median top-class probability over 15m; dashed line at LowModelConfidence.",
            span=8,
        ),
        timeseries_panel(
            "Predicted class balance",
            [
                q(
                    "sum by (model, predicted_class) "
                    f"(rate(ml_model_predictions_total{{{MODEL}}}[15m]))"
                    " / ignoring (predicted_class) group_left "
                    f"sum by (model) (rate(ml_model_predictions_total{{{MODEL}}}[15m]))",
                    "{{model}} {{predicted_class}}",
                )
            ],
            unit="percentunit",
            min_val=0,
            max_val=1,
            description="Share of each predicted class over 15m: a moving mix hints at drift.",
            span=8,
        ),
    ]


def _drift_row(t: Thresholds) -> list[Builder[dm.Panel]]:
    return [
        timeseries_panel(
            "Drift score per feature and method",
            [q(f"ml_data_drift_score{{{MODEL}}}", "{{model}} {{feature}} {{method}}")],
            unit="none",
            min_val=0,
            no_value=NOT_YET_RUN,
            description="Every drift method's score per feature (scales differ between methods).",
            span=12,
        ),
        bar_gauge_panel(
            "Latest drift decision statistic by feature",
            [
                q(
                    f'ml_data_drift_score{{{MODEL}, method="{DRIFT_METHOD}"}}',
                    "{{model}} {{feature}}",
                    instant=True,
                )
            ],
            unit="none",
            min_val=0,
            thresholds=high_is_bad(t.data_drift_high),
            no_value=NOT_YET_RUN,
            description="The statistic DataDriftDetected compares with its limit (PSI for a "
            "number, share change for a category, or the missing-rate change); orange from "
            "that limit.",
            span=12,
        ),
        timeseries_panel(
            "Drift share",
            [q(f"ml_data_drift_share{{{MODEL}}}", "{{model}}")],
            unit="percentunit",
            min_val=0,
            max_val=1,
            no_value=NOT_YET_RUN,
            description="Share of each model's features judged drifted in the last window.",
            span=8,
        ),
        bar_gauge_panel(
            "Features judged drifted",
            [q(f"ml_data_drift_detected{{{MODEL}}}", "{{model}} {{feature}}", instant=True)],
            unit="bool_yes_no",
            min_val=0,
            max_val=1,
            thresholds=steps_above(OK, (1, WARNING)),
            no_value=NOT_YET_RUN,
            description="1 where the drift test flags the feature in the last window.",
            span=8,
        ),
        timeseries_panel(
            "Drift window size",
            [q(f"ml_data_drift_window_size{{{MODEL}}}", "{{model}}")],
            unit="short",
            min_val=0,
            no_value=NOT_YET_RUN,
            description="Predictions behind the last drift decision.",
            span=8,
        ),
    ]


def _quality_row() -> list[Builder[dm.Panel]]:
    return [
        timeseries_panel(
            "Data quality score",
            [q(f"ml_data_quality_score{{{MODEL}}}", "{{model}}")],
            unit="percentunit",
            min_val=0,
            max_val=1,
            description="Share of recent feature values without issues.",
            span=12,
        ),
        timeseries_panel(
            "Data quality issues by feature and kind",
            [
                q(
                    "sum by (model, feature, kind) "
                    f"(increase(ml_data_quality_issues_total{{{MODEL}}}[1h]))",
                    "{{model}} {{feature}} {{kind}}",
                )
            ],
            unit="short",
            min_val=0,
            bars=True,
            no_value=NO_ISSUES,
            description="Feature values with a quality issue in the preceding hour.",
            span=12,
        ),
    ]


def data_science_dashboard(thresholds: Thresholds) -> db.Dashboard:
    """How the models behave: accuracy three ways, clinical performance by segment, confidence,
    drift and data quality."""
    builder = dashboard(
        UID,
        "Nexus ML — Data science",
        ["models", "drift", "clinical"],
        "Accuracy (realised, estimated, holdout), recall/precision per segment with 95 % "
        "intervals, alert rate, calibration, confidence, drift and data quality per model",
    )
    for variable in (model_variable(), segment_variable(), class_variable()):
        builder = builder.with_variable(variable)
    return add_rows(
        builder,
        (
            ("Accuracy", _accuracy_row(thresholds)),
            *clinical_rows(thresholds),
            ("Confidence", _confidence_row(thresholds)),
            ("Drift", _drift_row(thresholds)),
            ("PromQL drift (all replicas)", promql_drift_row(thresholds)),
            ("Data quality", _quality_row()),
        ),
    )
