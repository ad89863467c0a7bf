"""Annotated dependency aliases shared by the routers: each names the one part a route uses.

Every provider is ``async`` (a sync dependency costs a thread hop) and reads one attribute
of the service the app factory built; no route is handed the whole service.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from nexus_ml.api.errors import ApiError, ErrorResponse
from nexus_ml.config import Settings
from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.service.database import Database
from nexus_ml.service.families import Families
from nexus_ml.service.health import HealthCheck
from nexus_ml.service.model_admin import ModelAdmin
from nexus_ml.service.quality_job import QualityRunner
from nexus_ml.service.serving import Serving
from nexus_ml.service.trainer import Trainer
from nexus_ml.service.views.anomalies import Anomalies
from nexus_ml.service.views.audit import AuditViews
from nexus_ml.service.views.clinical import ClinicalViews
from nexus_ml.service.views.comparison import ComparisonViews
from nexus_ml.service.views.models import ModelViews
from nexus_ml.service.views.ops import OpsViews
from nexus_ml.service.views.reports import Reports
from nexus_ml.service.views.thresholds import ThresholdAdmin
from nexus_ml.service.views.training import TrainingViews
from nexus_ml.service.wiring import Service


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def get_settings(request: Request) -> Settings:
    """The service's settings."""
    return _service(request).settings


async def get_models(request: Request) -> ModelRegistry:
    """The models served."""
    return _service(request).models


async def get_serving(request: Request) -> Serving:
    """Predictions and feedback."""
    return _service(request).serving


async def get_database(request: Request) -> Database:
    """The store, called off the event loop."""
    return _service(request).db


async def get_trainer(request: Request) -> Trainer:
    """Training runs."""
    return _service(request).trainer


async def get_quality(request: Request) -> QualityRunner:
    """The model-quality job as the service runs it."""
    return _service(request).quality


async def get_health(request: Request) -> HealthCheck:
    """Readiness and health."""
    return _service(request).health


async def get_families(request: Request) -> Families:
    """The service's metric families (for /metrics)."""
    return _service(request).families


async def get_model_views(request: Request) -> ModelViews:
    """Per-model monitoring views."""
    return _service(request).model_views


async def get_clinical_views(request: Request) -> ClinicalViews:
    """Clinical metrics per segment."""
    return _service(request).clinical_views


async def get_training_views(request: Request) -> TrainingViews:
    """Training-run statistics."""
    return _service(request).training_views


async def get_ops(request: Request) -> OpsViews:
    """Operational monitoring views."""
    return _service(request).ops


async def get_reports(request: Request) -> Reports:
    """The period report and the timeline."""
    return _service(request).reports


async def get_anomalies(request: Request) -> Anomalies:
    """The in-process anomaly bands."""
    return _service(request).anomalies


async def get_threshold_admin(request: Request) -> ThresholdAdmin:
    """Reading and changing thresholds."""
    return _service(request).threshold_admin


async def get_model_admin(request: Request) -> ModelAdmin:
    """Versions, roles and their audited changes."""
    return _service(request).model_admin


async def get_audit_views(request: Request) -> AuditViews:
    """The audit log, paged."""
    return _service(request).audit_views


async def get_comparison_views(request: Request) -> ComparisonViews:
    """Champion vs shadow challenger."""
    return _service(request).comparison_views


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ModelRegistry, Depends(get_models)]
ServingDep = Annotated[Serving, Depends(get_serving)]
DatabaseDep = Annotated[Database, Depends(get_database)]
TrainerDep = Annotated[Trainer, Depends(get_trainer)]
QualityDep = Annotated[QualityRunner, Depends(get_quality)]
HealthDep = Annotated[HealthCheck, Depends(get_health)]
FamiliesDep = Annotated[Families, Depends(get_families)]
ModelViewsDep = Annotated[ModelViews, Depends(get_model_views)]
ClinicalViewsDep = Annotated[ClinicalViews, Depends(get_clinical_views)]
TrainingViewsDep = Annotated[TrainingViews, Depends(get_training_views)]
OpsDep = Annotated[OpsViews, Depends(get_ops)]
ReportsDep = Annotated[Reports, Depends(get_reports)]
AnomaliesDep = Annotated[Anomalies, Depends(get_anomalies)]
ThresholdAdminDep = Annotated[ThresholdAdmin, Depends(get_threshold_admin)]
ModelAdminDep = Annotated[ModelAdmin, Depends(get_model_admin)]
AuditViewsDep = Annotated[AuditViews, Depends(get_audit_views)]
ComparisonViewsDep = Annotated[ComparisonViews, Depends(get_comparison_views)]


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type such as ``application/merge-patch+json``."""
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def require_json_body(request: Request) -> None:
    """415 for a request whose body is not declared as JSON (a request without a body passes).

    Every route that takes a body takes JSON, and says so the same way: the hot path that
    parses its own body and the routes FastAPI parses alike.
    """
    headers = request.headers
    check_json_body(
        headers.get("content-type", ""),
        "transfer-encoding" in headers or headers.get("content-length", "0") != "0",
    )


def check_json_body(content_type: str, has_body: bool) -> None:
    """The 415 of :func:`require_json_body`, from the headers it reads (the hot path's too)."""
    if has_body and not is_json_media_type(content_type):
        raise ApiError(
            415, "Content-Type must be application/json for a request body", "content-type"
        )


# After the key in a route's parameters, so a caller without a key learns only that (401).
JsonBody = Annotated[None, Depends(require_json_body)]
JSON_BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    415: {"model": ErrorResponse, "description": "The body is not declared as application/json"},
}
