"""Requests: the 5xx share of the API and the P95 latency of predictions."""

from __future__ import annotations

from nexus_ml.monitoring.alerts.cases import MODEL, Case, Series, histogram, ramp, sel, target
from nexus_ml.monitoring.alerts.definition import Alert, Found, num, per_model, when
from nexus_ml.monitoring.alerts.snapshot import Measurements
from nexus_ml.thresholds import JOB, LATENCY_BUCKETS, Thresholds

REQUESTS = "ml_api_requests_total"


def _error_rate_expr(t: Thresholds, j: str) -> str:
    err = f'{REQUESTS}{{{j},status=~"5.."}}'
    req = f"{REQUESTS}{{{j}}}"
    # Ratio *and* absolute rate: the ratio alone pages on one failure in two requests.
    return (
        f"(sum by (job) (rate({err}[5m])) / sum by (job) (rate({req}[5m]))) > "
        f"{num(t.error_rate_high)}\nand on (job)\nsum by (job) (rate({err}[5m])) > "
        f"{num(t.error_rate_min_per_second)}"
    )


def _error_rate_high(m: Measurements, t: Thresholds, instance: str) -> Found:
    ok = (
        m.error_ratio is not None
        and m.error_rate is not None
        and m.error_ratio > t.error_rate_high
        and m.error_rate > t.error_rate_min_per_second
    )
    return when(ok, {}, m.error_ratio)


def _requests(ratio: float, errors: float) -> list[Series]:
    """POST /predict counters: ``errors`` 5xx per minute, making ``ratio`` of all requests."""
    ok = errors / ratio - errors
    labels = target(method="POST", endpoint="/predict")
    return [
        (sel(REQUESTS, **labels, status="500"), ramp(errors)),
        (sel(REQUESTS, **labels, status="200"), ramp(ok)),
    ]


def _error_rate_cases(t: Thresholds, for_m: int) -> list[Case]:
    # Errors fast enough that even the first, partial 5m window clears the minimum rate.
    errs = max(60.0, 600 * t.error_rate_min_per_second)
    return [
        Case(
            series=_requests(t.error_rate_high * 1.05, errs),
            fires=True,
            active_from=1,
            labels={"job": JOB},
            value=t.error_rate_high * 1.05,
        ),
        Case(
            series=_requests(t.error_rate_high * 0.95, errs),
            fires=False,
            check_at=for_m + 10,
            note="ratio just below",
        ),
        Case(
            series=_requests(0.5, 30 * t.error_rate_min_per_second),
            fires=False,
            check_at=for_m + 10,
            note="one error in two requests, below the minimum rate",
        ),
        Case(
            # 5xx just below the ratio beside many refused requests: a 4xx is the client's
            # error, not the service's, so it only adds to the requests.
            series=[
                *_requests(t.error_rate_high * 0.95, errs),
                (
                    sel(REQUESTS, **target(method="POST", endpoint="/predict"), status="422"),
                    ramp(errs * 20),
                ),
            ],
            fires=False,
            check_at=for_m + 10,
            note="4xx answers are not errors of the service",
        ),
    ]


HIGH_ERROR_RATE = Alert(
    name="HighErrorRate",
    severity="critical",
    category="availability",
    threshold="error_rate_high",
    for_key="error_rate_high_for",
    summary="High 5xx error ratio on {job}",
    description="{value} of requests to {job} failed with 5xx over {window} "
    "(threshold {threshold}, with at least {min_rate} errors/s).",
    window="5m",
    expr=_error_rate_expr,
    condition=_error_rate_high,
    cases=_error_rate_cases,
)

LATENCY = "ml_model_prediction_duration_seconds_bucket"


def _latency_cases(t: Thresholds, for_m: int) -> list[Case]:
    high, low = t.prediction_latency_high * 1.05, t.prediction_latency_high * 0.95
    labels = target(model=MODEL)
    return [
        Case(
            series=histogram(LATENCY, LATENCY_BUCKETS, 0.95, high, labels),
            fires=True,
            active_from=1,
            labels={"job": JOB, "model": MODEL},
            value=high,
        ),
        Case(
            series=histogram(LATENCY, LATENCY_BUCKETS, 0.95, low, labels),
            fires=False,
            check_at=for_m + 6,
            note="P95 just below",
        ),
    ]


HIGH_LATENCY = Alert(
    name="HighPredictionLatency",
    severity="warning",
    category="model",
    threshold="prediction_latency_high",
    for_key="prediction_latency_high_for",
    summary="Predictions of model {model} are slow",
    description="P95 prediction latency of model {model} is {value}s over {window} "
    "(threshold {threshold}s).",
    labels=("model",),
    window="5m",
    expr=lambda t, j: (
        "histogram_quantile(0.95, sum by (job, model, le) "
        f"(rate({LATENCY}{{{j}}}[5m]))) > {num(t.prediction_latency_high)}"
    ),
    condition=lambda m, t, instance: per_model(
        m.latency_p95, lambda _, v: v > t.prediction_latency_high
    ),
    cases=_latency_cases,
)
