"""The monitoring guide's twelve-panel overview dashboard, titles exactly as the guide has them."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

from nexus_ml.render.dashboards.common import (
    CRITICAL,
    DRIFT_METHOD,
    JOB,
    MODEL,
    NO_FEEDBACK,
    NOT_YET_RUN,
    OK,
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
    colour_series,
    heatmap_panel,
    right_axis,
    stat_panel,
    timeseries_panel,
)
from nexus_ml.thresholds import Thresholds

UID = "nexus-ml-overview"

_UP_MAPPING = dm.ValueMap(
    options={
        "0": dm.ValueMappingResult(text="DOWN", color=CRITICAL, index=0),
        "1": dm.ValueMappingResult(text="UP", color=OK, index=1),
    }
)


def _service_row(t: Thresholds) -> list[Builder[dm.Panel]]:
    return [
        stat_panel(
            "Service Health Status",
            [q(f'up{{job="{JOB}"}}', "{{instance}}", instant=True)],
            unit="none",
            thresholds=steps_above(CRITICAL, (1, OK)),
            mappings=[_UP_MAPPING],
            description="1 per scraped service instance: UP if Prometheus reached /metrics.",
            span=4,
        ),
        timeseries_panel(
            "CPU Usage",
            [q("ml_system_cpu_usage_percent", "{{instance}}")],
            unit="percent",
            min_val=0,
            max_val=100,
            thresholds=high_is_bad(t.cpu_usage_high, t.cpu_usage_critical),
            description="Host CPU; dashed lines at HighCPUUsage and CriticalCPUUsage.",
            span=8,
        ),
        timeseries_panel(
            "Memory Usage",
            [q("ml_system_memory_usage_ratio", "{{instance}}")],
            unit="percentunit",
            min_val=0,
            max_val=1,
            # The threshold is a percentage; the gauge is a 0-1 ratio.
            thresholds=high_is_bad(t.memory_usage_high / 100),
            description="Host memory in use as a share of total; dashed line at HighMemoryUsage.",
            span=8,
        ),
        stat_panel(
            "Active Alerts",
            # `or vector(0)`: no firing alert is an answer (0), not "No data".
            [q('count(ALERTS{alertstate="firing"}) or vector(0)', "firing", instant=True)],
            unit="none",
            thresholds=steps_above(OK, (1, CRITICAL)),
            description="Alerts Prometheus currently holds firing.",
            span=4,
        ),
    ]


def _model_row(t: Thresholds) -> list[Builder[dm.Panel]]:
    predictions = f"rate(ml_model_predictions_total{{{MODEL}}}[5m])"
    latency = f"rate(ml_model_prediction_duration_seconds_bucket{{{MODEL}}}[5m])"
    return [
        timeseries_panel(
            "Prediction Requests/min",
            [
                q(f"sum by (model) ({predictions}) * 60", "{{model}}", "A"),
                q(f"sum({predictions}) * 60", "total", "B"),
            ],
            unit="short",
            # LowPredictionVolume is per second over the total; shown per minute.
            thresholds=low_is_bad(t.prediction_volume_low * 60),
            description="Predictions per minute by model; dashed line at LowPredictionVolume.",
            span=12,
        ),
        timeseries_panel(
            "Model Prediction Latency",
            [
                q(
                    f"histogram_quantile({p}, sum by (le, model) ({latency}))",
                    f"p{label} {{{{model}}}}",
                    ref,
                )
                for p, label, ref in ((0.5, "50", "A"), (0.95, "95", "B"), (0.99, "99", "C"))
            ],
            unit="s",
            thresholds=high_is_bad(t.prediction_latency_high),
            description="P50/P95/P99 per prediction call; dashed line at HighPredictionLatency.",
            span=12,
        ),
        timeseries_panel(
            "Model Accuracy",
            [q(f"ml_model_accuracy{{{MODEL}}}", "{{model}}")],
            unit="percentunit",
            min_val=0,
            max_val=1,
            thresholds=low_is_bad(t.training_accuracy_low),
            no_value=NO_FEEDBACK,
            description="Realised accuracy from feedback labels; dashed line at LowModelAccuracy.",
            span=8,
        ),
        heatmap_panel(
            "Confidence Score Distribution",
            [heatmap_q(f"sum by (le) (increase(ml_model_confidence_score_bucket{{{MODEL}}}[5m]))")],
            y_unit="percentunit",
            description="Predictions per confidence bucket (highest class probability) over time.",
            span=8,
        ),
        colour_series(
            timeseries_panel(
                "Training Jobs/day",
                [
                    q(
                        "sum by (model, outcome) "
                        f"(increase(ml_model_training_runs_total{{{MODEL}}}[1d]))",
                        "{{model}} {{outcome}}",
                    )
                ],
                unit="short",
                min_val=0,
                description="Training runs finished in the preceding day, by outcome.",
                span=8,
                bars=False,
            ),
            ".* failure$",
            CRITICAL,
        ),
    ]


def _errors_row(t: Thresholds) -> list[Builder[dm.Panel]]:
    requests = "rate(ml_api_requests_total[5m])"
    errors = 'rate(ml_api_requests_total{status=~"5.."}[5m])'
    error_rate = timeseries_panel(
        "Error Rate",
        [
            # No 5xx series at all is a 0 share, not an empty answer.
            q(f"(sum({errors}) or vector(0)) / sum({requests})", "5xx share", "A"),
            q("sum by (component) (rate(ml_errors_total[5m]))", "errors/s {{component}}", "B"),
        ],
        unit="percentunit",
        min_val=0,
        thresholds=high_is_bad(t.error_rate_high),
        description=(
            "Share of requests answered 5xx (dashed line at HighErrorRate) and errors/s by "
            "component (right axis)."
        ),
        span=8,
    )
    db_ops = timeseries_panel(
        "Database Operations",
        [
            q(
                "histogram_quantile(0.95, sum by (le, operation) "
                "(rate(ml_db_operation_duration_seconds_bucket[5m])))",
                "p95 {{operation}}",
                "A",
            ),
            q(
                "sum by (operation) (rate(ml_db_operation_duration_seconds_count[5m]))",
                "ops/s {{operation}}",
                "B",
            ),
            q(
                "sum by (operation) (rate(ml_db_operation_errors_total[5m]))",
                "errors/s {{operation}}",
                "C",
            ),
        ],
        unit="s",
        min_val=0,
        description="P95 duration (left), operations/s and errors/s (right) per operation.",
        span=8,
    )
    drift = timeseries_panel(
        "Data Drift Scores",
        [
            q(
                f'ml_data_drift_score{{{MODEL}, method="{DRIFT_METHOD}"}}',
                "{{model}} {{feature}}",
            )
        ],
        unit="none",
        min_val=0,
        thresholds=high_is_bad(t.data_drift_high),
        no_value=NOT_YET_RUN,
        description=(
            "Each feature's recent window against the training reference, in the statistic "
            "DataDriftDetected compares (PSI for a number, share change for a category, or "
            "the missing-rate change); dashed line at its limit."
        ),
        span=8,
    )
    return [
        right_axis(error_rate, "^errors/s .*", "reqps"),
        right_axis(db_ops, "^(ops|errors)/s .*", "ops"),
        drift,
    ]


def overview_dashboard(thresholds: Thresholds) -> db.Dashboard:
    """The guide's twelve panels: service, model and data health at a glance."""
    builder = dashboard(
        UID,
        "Nexus ML — Overview",
        ["overview"],
        "The monitoring guide's twelve panels",
    ).with_variable(model_variable())
    return add_rows(
        builder,
        (
            ("Service", _service_row(thresholds)),
            ("Model", _model_row(thresholds)),
            ("Errors, database and data", _errors_row(thresholds)),
        ),
    )
