"""Monitoring API under /api/v1/monitoring (scope ``monitor``; changes need ``admin``).

Windowed endpoints take ``since``/``until`` (ISO 8601) or ``hours``, and ``model``; the
window each one answers for is echoed in its ``window`` field. See docs/monitoring-api.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from nexus_ml.api.auth import AdminKey, MonitorKey
from nexus_ml.api.deps import (
    JSON_BODY_RESPONSES,
    AnomaliesDep,
    AuditViewsDep,
    ClinicalViewsDep,
    DatabaseDep,
    JsonBody,
    ModelViewsDep,
    OpsDep,
    QualityDep,
    ReportsDep,
    SettingsDep,
    ThresholdAdminDep,
    TrainingViewsDep,
)
from nexus_ml.api.errors import ErrorResponse
from nexus_ml.api.params import MODEL_PATTERN, ModelParam, WindowDep
from nexus_ml.service.views.anomalies import AnomalyReport
from nexus_ml.service.views.audit import MAX_AUDIT_PAGE, AuditPage
from nexus_ml.service.views.ops_results import (
    AlertsResponse,
    MetricsSummary,
    MonitoringHealth,
    ReportSummary,
    ServiceStatus,
    ThresholdsResponse,
)
from nexus_ml.service.views.results import (
    ClinicalPerformance,
    DataQualityOverview,
    ModelsPerformance,
    PredictionMetrics,
    PredictionTimeline,
    SystemPerformance,
    TrainingMetrics,
)

DAY = 86400.0
_DB: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "Database unreachable"}
}

router = APIRouter(prefix="/monitoring", tags=["monitoring"])

AUDIT_ID_MAX = 2**31 - 1
# Printable text without control characters (PostgreSQL refuses NUL in text: a 500 otherwise).
AUDIT_TEXT = r"^[^\x00-\x1f\x7f]+$"


@router.post(
    "/drift/run",
    summary="Compute drift, data quality and accuracy now",
    responses={503: {"model": ErrorResponse, "description": "Database unavailable"}},
)
async def run_drift(db: DatabaseDep, quality: QualityDep, principal: AdminKey) -> dict[str, Any]:
    """Run the model-quality job at once (skipped if another worker is running it); audited."""
    await db.run(db.store.audit, principal.fingerprint, "run_model_quality", "models", None)
    return await quality.run()


@router.get(
    "/audit",
    response_model=AuditPage,
    responses=_DB,
    summary="The audit log, newest first, paged (scope admin)",
)
async def audit(
    views: AuditViewsDep,
    _key: AdminKey,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
    before: Annotated[
        # The audit id is a 32-bit integer on PostgreSQL: a larger one is a 422, not a 500.
        int | None, Query(ge=1, le=AUDIT_ID_MAX, description="next_before of the last page")
    ] = None,
    action: Annotated[str | None, Query(pattern=AUDIT_TEXT, max_length=64)] = None,
    target: Annotated[str | None, Query(pattern=AUDIT_TEXT, max_length=200)] = None,
    actor: Annotated[str | None, Query(pattern=AUDIT_TEXT, max_length=64)] = None,
) -> AuditPage:
    """Who changed which model or setting, when, with the before/after versions."""
    return await views.page(limit=limit, before=before, action=action, target=target, actor=actor)


@router.get("/health", response_model=MonitoringHealth, summary="Health verdict (always 200)")
async def health(ops: OpsDep, _key: MonitorKey) -> MonitoringHealth:
    """Database, models, system resources and firing alerts; the verdict is ``status``."""
    return await ops.health()


@router.get("/alerts", response_model=AlertsResponse, summary="Active alerts")
async def alerts(ops: OpsDep, _key: MonitorKey) -> AlertsResponse:
    """Pending and firing in-process alerts, and Alertmanager's when ML_ALERTMANAGER_URL is set."""
    return await ops.alerts()


@router.get("/status", response_model=ServiceStatus, summary="Service status")
async def status(ops: OpsDep, _key: MonitorKey) -> ServiceStatus:
    """Version, uptime, models and versions, workers, database and writer backlog."""
    return await ops.status()


@router.get("/metrics/summary", response_model=MetricsSummary, summary="Counters since start")
async def metrics_summary(ops: OpsDep, _key: MonitorKey) -> MetricsSummary:
    """Requests by status class, predictions, feedback, errors, training runs, DB work."""
    return await ops.summary()


@router.get(
    "/metrics/predictions",
    response_model=PredictionMetrics,
    responses=_DB,
    summary="Prediction statistics per model (default: last 24 h)",
)
async def metrics_predictions(
    views: ModelViewsDep, _key: MonitorKey, window: WindowDep, model: ModelParam = None
) -> PredictionMetrics:
    """Counts, P50/P95/P99 latency, confidence histogram (20 bins) and class counts."""
    return await views.prediction_metrics(window.resolve(DAY), model)


@router.get(
    "/metrics/predictions/timeline",
    response_model=PredictionTimeline,
    responses=_DB,
    summary="Stored predictions per time bucket (default: last hour per minute)",
)
async def metrics_timeline(
    reports: ReportsDep,
    _key: MonitorKey,
    window: WindowDep,
    model: ModelParam = None,
    step_seconds: Annotated[int, Query(ge=10, le=86400)] = 60,
) -> PredictionTimeline:
    """Predictions per bucket and model, from the stored records (for requests/min charts)."""
    return await reports.timeline(window.resolve(3600.0), model, step_seconds)


@router.get(
    "/metrics/training",
    response_model=TrainingMetrics,
    responses=_DB,
    summary="Training runs (default: last 7 days)",
)
async def metrics_training(
    training: TrainingViewsDep, _key: MonitorKey, window: WindowDep, model: ModelParam = None
) -> TrainingMetrics:
    """Runs by status and day, durations, the last runs and each model's training time."""
    return await training.training_metrics(window.resolve(7 * DAY), model)


@router.get(
    "/performance/system", response_model=SystemPerformance, summary="CPU, memory, disk now"
)
async def performance_system(ops: OpsDep, _key: MonitorKey) -> SystemPerformance:
    """Host resources and this worker process, with the alert limits."""
    return await ops.system()


@router.get(
    "/performance/models",
    response_model=ModelsPerformance,
    responses=_DB,
    summary="Accuracy and latency per model (default: the accuracy window)",
)
async def performance_models(
    views: ModelViewsDep,
    settings: SettingsDep,
    _key: MonitorKey,
    window: WindowDep,
    model: ModelParam = None,
) -> ModelsPerformance:
    """Accuracy from feedback, estimated accuracy (CBPE) with stderr, holdout accuracy, latency."""
    default = settings.accuracy_window_seconds
    return await views.models_performance(window.resolve(default), model)


@router.get(
    "/performance/clinical",
    response_model=ClinicalPerformance,
    responses={**_DB, 404: {"model": ErrorResponse, "description": "Not a loaded model"}},
    summary="Clinical metrics per segment (default: the accuracy window)",
)
async def performance_clinical(
    views: ClinicalViewsDep,
    settings: SettingsDep,
    _key: MonitorKey,
    window: WindowDep,
    model: Annotated[str, Query(pattern=MODEL_PATTERN, description="A loaded model.")],
) -> ClinicalPerformance:
    """Recall, precision, AUC, calibration per segment and class: realised with 95 % intervals
    and counts, estimated without labels (CBPE), positive rate, reliability curve, baseline.

    Without since/until/hours: the model-quality job's stored result (``source``), else
    computed now over at most ``rows_limit`` predictions of the window."""
    if window.since is None and window.until is None and window.hours is None:
        stored = await views.stored(model)
        if stored is not None:
            return stored
    return await views.clinical(model, window.resolve(settings.accuracy_window_seconds))


@router.get(
    "/data-quality/overview",
    response_model=DataQualityOverview,
    responses=_DB,
    summary="Drift and data quality per model and feature",
)
async def data_quality_overview(
    views: ModelViewsDep, _key: MonitorKey, model: ModelParam = None
) -> DataQualityOverview:
    """The latest stored drift/quality result of each model, and the per-request quality gauge."""
    return await views.data_quality_overview(model)


@router.get(
    "/config/thresholds",
    response_model=ThresholdsResponse,
    responses=_DB,
    summary="Every alert threshold with unit and severity",
)
async def get_thresholds(admin: ThresholdAdminDep, _key: MonitorKey) -> ThresholdsResponse:
    """The limits in force in this process and the stored overrides."""
    return await admin.get()


@router.put(
    "/config/thresholds",
    response_model=ThresholdsResponse,
    responses={**_DB, **JSON_BODY_RESPONSES},
    summary="Change thresholds (scope admin; audited)",
)
async def put_thresholds(
    admin: ThresholdAdminDep,
    principal: AdminKey,
    _json: JsonBody,
    update: Annotated[
        dict[str, Any],
        Body(
            description="Partial update: threshold key -> number, duration ('5m') or null.",
            examples=[{"cpu_usage_high": 75, "cpu_usage_high_for": "10m"}],
        ),
    ],
) -> ThresholdsResponse:
    """Validate the update as a whole, store it as overrides, audit it, apply it."""
    return await admin.put(update, principal.fingerprint)


@router.get(
    "/reports/summary",
    response_model=ReportSummary,
    responses=_DB,
    summary="Period report (default: last 24 h)",
)
async def reports_summary(
    reports: ReportsDep, _key: MonitorKey, window: WindowDep, model: ModelParam = None
) -> ReportSummary:
    """Volume, latency, errors, accuracy, drift, alerts and availability vs the 99.9 % target."""
    return await reports.summary(window.resolve(DAY), model)


@router.get(
    "/anomalies",
    response_model=AnomalyReport,
    responses=_DB,
    summary="Anomaly bands over the stored per-minute aggregates (without Prometheus)",
)
async def anomalies(views: AnomaliesDep, _key: MonitorKey) -> AnomalyReport:
    """The request rate, 5xx share and P95 latency of the service, and each model's predictions,
    mean confidence and class shares, against their bands (the same hour 1, 2 and 3 weeks back;
    docs/anomaly-detection.md), at the last settled minute."""
    return await views.report()
