"""The on-call dashboard: SLOs, error budgets and burn, firing alerts, latency, errors."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

from nexus_ml.monitoring.alerts.slo import FAST_BURNS, SLOW_BURNS
from nexus_ml.render.dashboards.anomaly import anomaly_row
from nexus_ml.render.dashboards.common import (
    CRITICAL,
    JOB,
    NO_ALERT_FIRING,
    OK,
    add_rows,
    dashboard,
    high_is_bad,
    low_is_bad,
    q,
    steps_above,
    table_q,
)
from nexus_ml.render.dashboards.panels import (
    right_axis,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from nexus_ml.render.rules import le_matcher
from nexus_ml.thresholds import Thresholds

UID = "nexus-ml-oncall"
SLO_PERIOD = "30d"
# Burn panels plot the very recording rules the burn-rate alerts read, over their long windows.
BURNS = (*FAST_BURNS, *SLOW_BURNS)
FAST_FACTOR = min(rate for _, _, rate in FAST_BURNS)
SLOW_FACTOR = min(rate for _, _, rate in SLOW_BURNS)


def availability_good_ratio(window: str) -> str:
    """Share of requests not answered 5xx over ``window`` (30 days exceeds the recorded windows)."""
    return (
        # No 5xx series at all is no error: 0, not an empty answer.
        f'1 - (sum(rate(ml_api_requests_total{{status=~"5.."}}[{window}])) or vector(0)) '
        f"/ sum(rate(ml_api_requests_total[{window}]))"
    )


def latency_good_ratio(window: str, bound: float) -> str:
    """Share of predictions within ``bound`` seconds over ``window``."""
    return (
        f"sum(rate(ml_model_prediction_duration_seconds_bucket{{{le_matcher(bound)}}}[{window}])) "
        f"/ sum(rate(ml_model_prediction_duration_seconds_count[{window}]))"
    )


def _budget(slo: float) -> str:
    # 0.001, not 0.0010000000000000009: 1 - 0.999 in binary floating point.
    return f"{1 - slo:.6g}"


def _budget_left(good: str, slo: float) -> str:
    return f"1 - (1 - ({good})) / {_budget(slo)}"


def _burn_panel(title: str, recorded: str, slo: float, what: str) -> Builder[dm.Panel]:
    return timeseries_panel(
        title,
        [
            q(
                f'job:{recorded}:ratio_rate{long}{{job="{JOB}"}} / {_budget(slo)}',
                f"{long} window (alert at {rate:g}x)",
                chr(ord("A") + i),
            )
            for i, (long, _, rate) in enumerate(BURNS)
        ],
        unit="x",
        min_val=0,
        thresholds=high_is_bad(SLOW_FACTOR, FAST_FACTOR),
        description=(
            f"How fast {what} spend the {slo:.3%} SLO's error budget (1x empties it in "
            f"{SLO_PERIOD}). Each burn alert pairs a long and a short window; pages from "
            f"{FAST_FACTOR:g}x, tickets from {SLOW_FACTOR:g}x."
        ),
        span=12,
    )


def _slo_row(t: Thresholds) -> list[Builder[dm.Panel]]:
    bound = t.latency_slo_threshold
    availability = availability_good_ratio(SLO_PERIOD)
    latency = latency_good_ratio(SLO_PERIOD, bound)
    # Budget below zero means the SLO is already missed for the period.
    budget_colours = steps_above(CRITICAL, (0, OK))
    return [
        stat_panel(
            f"Availability ({SLO_PERIOD})",
            [q(availability, "availability", instant=True)],
            unit="percentunit",
            decimals=3,
            thresholds=low_is_bad(t.availability_slo),
            description=f"Share of requests not answered 5xx; SLO {t.availability_slo:.3%}.",
            span=6,
        ),
        stat_panel(
            "Availability error budget left",
            [q(_budget_left(availability, t.availability_slo), "budget", instant=True)],
            unit="percentunit",
            decimals=1,
            thresholds=budget_colours,
            description=f"Share of the {SLO_PERIOD} availability error budget still unspent.",
            span=6,
        ),
        stat_panel(
            f"Predictions within {bound:g}s ({SLO_PERIOD})",
            [q(latency, "fast share", instant=True)],
            unit="percentunit",
            decimals=3,
            thresholds=low_is_bad(t.latency_slo),
            description=f"Share of predictions within {bound:g}s; SLO {t.latency_slo:.2%}.",
            span=6,
        ),
        stat_panel(
            "Latency error budget left",
            [q(_budget_left(latency, t.latency_slo), "budget", instant=True)],
            unit="percentunit",
            decimals=1,
            thresholds=budget_colours,
            description=f"Share of the {SLO_PERIOD} latency error budget still unspent.",
            span=6,
        ),
        _burn_panel(
            "Availability error-budget burn rate",
            "ml_api_request_errors",
            t.availability_slo,
            "5xx responses",
        ),
        _burn_panel(
            "Latency error-budget burn rate",
            "ml_model_predictions_slow",
            t.latency_slo,
            "slow predictions",
        ),
    ]


def _alerts_row() -> list[Builder[dm.Panel]]:
    return [
        stat_panel(
            "Firing alerts",
            [
                q(
                    'count(ALERTS{alertstate="firing", severity="critical"}) or vector(0)',
                    "critical",
                    "A",
                    instant=True,
                ),
                q(
                    'count(ALERTS{alertstate="firing", severity="warning"}) or vector(0)',
                    "warning",
                    "B",
                    instant=True,
                ),
            ],
            unit="none",
            thresholds=steps_above(OK, (1, CRITICAL)),
            description="Critical alerts page; warnings open a ticket.",
            span=6,
        ),
        table_panel(
            "Active alerts",
            [table_q('ALERTS{alertstate="firing"}')],
            no_value=NO_ALERT_FIRING,
            description="Every alert Prometheus holds firing, with its labels.",
            span=12,
        ),
        stat_panel(
            "Targets up",
            [q(f'sum(up{{job="{JOB}"}}) or vector(0)', "up", "A", instant=True)],
            unit="none",
            thresholds=steps_above(CRITICAL, (1, OK)),
            description="Service instances Prometheus scrapes successfully.",
            span=6,
        ),
    ]


def _latency_errors_row(t: Thresholds) -> list[Builder[dm.Panel]]:
    api = "sum by (le) (rate(ml_api_request_duration_seconds_bucket[5m]))"
    traffic = timeseries_panel(
        "Requests by status",
        [q("sum by (status) (rate(ml_api_requests_total[5m]))", "{{status}}")],
        unit="reqps",
        min_val=0,
        description="HTTP requests per second by status code.",
        span=12,
    )
    errors = timeseries_panel(
        "Errors by type",
        [
            q(
                "sum by (component, error_type) (rate(ml_errors_total[5m]))",
                "{{component}} {{error_type}}",
                "A",
            ),
            q(
                'sum by (endpoint, status) (rate(ml_api_requests_total{status=~"5.."}[5m]))',
                "5xx {{endpoint}} {{status}}",
                "B",
            ),
            q(
                "sum by (operation, error_type) (rate(ml_db_operation_errors_total[5m]))",
                "db {{operation}} {{error_type}}",
                "C",
            ),
        ],
        unit="reqps",
        min_val=0,
        description="Errors per second by component and type, 5xx by route, database errors.",
        span=12,
    )
    return [
        timeseries_panel(
            "Request latency percentiles",
            [
                q(f"histogram_quantile({p}, {api})", f"p{label}", ref)
                for p, label, ref in ((0.5, "50", "A"), (0.9, "90", "B"), (0.99, "99", "C"))
            ],
            unit="s",
            min_val=0,
            thresholds=high_is_bad(t.latency_slo_threshold),
            description="HTTP request duration, all routes; dashed line at the latency SLO bound.",
            span=12,
        ),
        timeseries_panel(
            "Prediction latency P95 by model",
            [
                q(
                    "histogram_quantile(0.95, sum by (le, model) "
                    "(rate(ml_model_prediction_duration_seconds_bucket[5m])))",
                    "{{model}}",
                )
            ],
            unit="s",
            min_val=0,
            thresholds=high_is_bad(t.prediction_latency_high),
            description="Dashed line at HighPredictionLatency.",
            span=12,
        ),
        traffic,
        errors,
        right_axis(
            timeseries_panel(
                "Prediction records pending",
                [
                    q("sum(ml_db_records_pending)", "pending", "A"),
                    q("sum(ml_db_records_spilled)", "spilled to disk", "B"),
                    q("sum(rate(ml_db_records_written_total[5m]))", "written/s", "C"),
                ],
                unit="short",
                min_val=0,
                description="Records waiting for the database; spilled ones survived an outage.",
                span=24,
            ),
            "^written/s$",
            "ops",
        ),
    ]


def oncall_dashboard(thresholds: Thresholds) -> db.Dashboard:
    """What the person paged needs first: SLOs, burn, firing alerts, latency and errors."""
    builder = dashboard(
        UID,
        "Nexus ML — On-call",
        ["oncall", "slo"],
        f"Availability and latency SLOs over {SLO_PERIOD}, burn rates, alerts, latency, errors",
    )
    return add_rows(
        builder,
        (
            ("SLOs and error budgets", _slo_row(thresholds)),
            ("Alerts", _alerts_row()),
            ("Latency and errors", _latency_errors_row(thresholds)),
            ("Anomaly bands", anomaly_row(thresholds)),
        ),
    )
