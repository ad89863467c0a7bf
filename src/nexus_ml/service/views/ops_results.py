"""Response models of the operational monitoring endpoints: health, alerts, status, summary,
thresholds and the period report."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from nexus_ml.service.views.results import Accuracy, Percentiles, TimeWindow


class DatabaseCheck(BaseModel):
    """Result of a ``SELECT 1`` round trip."""

    status: Literal["ok", "unreachable"]
    latency_seconds: float | None = None


class SystemCheck(BaseModel):
    """Host resources (percent 0-100, ratios 0-1)."""

    cpu_percent: float
    memory_ratio: float
    disk_ratio: float


class AlertAnnotations(BaseModel):
    """Texts of an alert, as the Prometheus rule annotates it."""

    summary: str
    description: str
    runbook_url: str


class Alert(BaseModel):
    """One alert the in-process evaluator holds (pending or firing)."""

    name: str
    severity: str
    state: Literal["pending", "firing"]
    labels: dict[str, str]
    value: float | None = None
    annotations: AlertAnnotations
    started_at: datetime


class MonitoringHealth(BaseModel):
    """``GET /health``: always 200; the verdict is in ``status``."""

    status: Literal["ok", "degraded", "not_ready"]
    ready: bool
    uptime_seconds: float
    database: DatabaseCheck
    models: list[str]
    records_pending: int
    shutting_down: bool
    system: SystemCheck
    alerts_firing: int
    alerts: list[Alert]


class AlertmanagerAlert(BaseModel):
    """An alert as Alertmanager's ``/api/v2/alerts`` holds it (labels and texts only)."""

    fingerprint: str | None = None
    state: str | None = None
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class AlertmanagerView(BaseModel):
    """What Alertmanager holds; ``unreachable`` when it did not answer in time."""

    status: Literal["ok", "unreachable", "not_configured"]
    error: str | None = None
    alerts: list[AlertmanagerAlert] = Field(default_factory=list)


class AlertsResponse(BaseModel):
    """``GET /alerts``."""

    firing: int
    pending: int
    by_severity: dict[str, int]
    alerts: list[Alert]
    alertmanager: AlertmanagerView


class ModelStatus(BaseModel):
    """A loaded model: active version, versions on disk, classes, holdout accuracy."""

    name: str
    version: str
    versions: list[str]
    classes: list[str]
    n_features: int
    holdout_accuracy: float | None = None
    trained_at: datetime | None = None


class WorkersStatus(BaseModel):
    """Process model: one process, or prometheus_client multiprocess mode."""

    multiprocess: bool
    pid: int
    live_workers: int | None = Field(None, description="Workers with live gauge files.")


class DatabaseStatus(DatabaseCheck):
    """Database check plus its dialect (never the URL: it may hold a password)."""

    dialect: str


class WriterStatus(BaseModel):
    """Prediction records accepted but not yet in the database."""

    pending: int
    spilled: int


class ServiceStatus(BaseModel):
    """``GET /status``."""

    service: str
    version: str
    started_at: datetime
    uptime_seconds: float
    draining: bool
    models: list[ModelStatus]
    workers: WorkersStatus
    database: DatabaseStatus
    writer: WriterStatus


class RequestTotals(BaseModel):
    """HTTP responses counted by ``ml_api_requests_total``, by status class."""

    total: int
    by_class: dict[str, int]
    availability: float | None = None


class DatabaseOperations(BaseModel):
    """Database work since start: operations by name, errors, records written/pending."""

    records_written: int
    records_pending: int
    records_spilled: int
    operations: dict[str, int] = Field(description="Operation -> count (duration histogram).")
    mean_seconds: dict[str, float | None]
    errors: dict[str, int] = Field(description="'operation/error_type' -> count.")


class MetricsSummary(BaseModel):
    """``GET /metrics/summary``: counters since the service (all its workers) started."""

    uptime_seconds: float
    requests: RequestTotals
    predictions: dict[str, int] = Field(description="Model -> predictions served.")
    predictions_total: int
    feedback: dict[str, int] = Field(description="'correct'/'incorrect' -> labels received.")
    errors: dict[str, int] = Field(description="Component -> errors (ml_errors_total).")
    training_runs: dict[str, int] = Field(description="Outcome -> finished runs.")
    database: DatabaseOperations
    alerts_firing: int
    request_latency_seconds: dict[str, Percentiles] = Field(
        default_factory=dict,
        description="'METHOD /route/template' -> end-to-end duration of its HTTP requests "
        "(ml_api_request_duration_seconds: from the request's arrival until the response is "
        "sent), P50/P95/P99 interpolated within the histogram buckets as histogram_quantile "
        "does, exact mean. The model's compute time alone is latency_seconds of "
        "GET /metrics/predictions.",
    )


class AlertRef(BaseModel):
    """An alert that uses a threshold."""

    name: str
    severity: str


class ThresholdInfo(BaseModel):
    """One threshold: value, unit, the alerts using it and whether it is overridden."""

    key: str
    value: float | None = None
    unit: str
    description: str | None = None
    severity: str | None = Field(None, description="Most severe alert using this key.")
    alerts: list[AlertRef]
    overridden: bool = False
    updated_at: datetime | None = None
    updated_by: str | None = None


class ThresholdsResponse(BaseModel):
    """``GET/PUT /config/thresholds``."""

    thresholds: list[ThresholdInfo]
    changed: list[str] = Field(default_factory=list)


class Availability(BaseModel):
    """Share of non-5xx responses since start, against the availability target."""

    definition: str
    since: datetime
    requests: int
    errors_5xx: int
    value: float | None = None
    target: float
    met: bool | None = None
    error_budget_remaining: float | None = Field(
        None, description="1 - (5xx share / allowed share); below 0 the budget is spent."
    )


class ReportModel(BaseModel):
    """One model in the period report."""

    model: str
    predictions: int
    latency_seconds: Percentiles
    accuracy: Accuracy
    drift_share: float | None = None
    drifted_features: list[str] = Field(default_factory=list)
    drift_computed_at: datetime | None = None


class ReportSummary(BaseModel):
    """``GET /reports/summary``."""

    window: TimeWindow
    generated_at: datetime
    predictions_total: int
    latency_seconds: Percentiles
    errors: dict[str, int]
    models: list[ReportModel]
    alerts: dict[str, int]
    alert_names: list[str]
    availability: Availability
