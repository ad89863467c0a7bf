"""Liveness, readiness, the comprehensive health check, and ``/metrics``.

Readiness is about whether this instance can answer predictions: models loaded
and not shutting down. A database outage makes the instance *degraded*, not
unready: models are in memory and records wait in the durable spill buffer, so
taking every replica out of the load balancer because the database is down
would turn a storage incident into a full outage (see ``service/health.py``).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from nexus_ml.api.auth import bearer_token
from nexus_ml.api.deps import FamiliesDep, HealthDep, SettingsDep
from nexus_ml.api.errors import error_response
from nexus_ml.api.routes import answer_head_like_get
from nexus_ml.monitoring.exposition import render_metrics

router = APIRouter(tags=["health"])


@router.get("/health/live", summary="Liveness: the process answers")
async def live() -> dict[str, str]:
    """Always 200 while the event loop runs."""
    return {"status": "alive"}


@router.get(
    "/health/ready",
    summary="Readiness: 200 when predictions can be served, 503 otherwise",
    responses={503: {"description": "Not ready (starting, no models, or shutting down)"}},
)
async def ready(health: HealthDep) -> JSONResponse:
    """Ready when models are loaded and the service is not draining; reports DB degradation."""
    readiness = await health.readiness()
    return JSONResponse(readiness.to_dict(), status_code=200 if readiness.ready else 503)


@router.get(
    "/health",
    summary="Comprehensive health: database, models, system resources, active alerts",
    responses={503: {"description": "Not ready"}},
)
async def health(checks: HealthDep) -> JSONResponse:
    """Everything an operator checks first, in one answer."""
    report = await checks.report()
    return JSONResponse(report.to_dict(), status_code=200 if report.ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format, or OpenMetrics on request)",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            }
        },
        401: {"description": "ML_METRICS_TOKEN is set and the bearer token is missing or wrong"},
    },
)
def metrics(request: Request, settings: SettingsDep, families: FamiliesDep) -> Response:
    """Every metric; requires ``Authorization: Bearer <ML_METRICS_TOKEN>`` when that is set.

    A plain ``def``: FastAPI runs it in the thread pool, so rendering (a few ms)
    never blocks the event loop that serves predictions.
    """
    token = settings.metrics_token.get_secret_value()
    if token:
        given = bearer_token(request.headers.get("authorization")) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return error_response(
                401, "metrics token required", None, {"WWW-Authenticate": "Bearer"}
            )
    body, content_type = render_metrics(
        families.registry, request.headers.get("accept", ""), families.multiproc_dir
    )
    return Response(body, media_type=content_type)


answer_head_like_get(router)
