"""The application factory: ``create_app(settings, *, registry=None)``.

Nothing is built at import time. Everything the service holds (database engine,
models, record writer, collectors, background jobs) is created here and started
and stopped by the lifespan, so tests build as many independent apps as they like.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import REGISTRY, CollectorRegistry

from nexus_ml import __version__
from nexus_ml.api.auth import KeyStore
from nexus_ml.api.errors import ErrorResponse, install_error_handlers
from nexus_ml.api.hot_path import HotApp, hot_routes
from nexus_ml.api.limits import RefusalApp, RequestLimits
from nexus_ml.api.middleware import RequestMiddleware
from nexus_ml.api.request_id import HEADER as REQUEST_ID_HEADER
from nexus_ml.api.routes import (
    comparison,
    dashboard,
    docs,
    governance,
    health,
    models,
    monitoring,
    predictions,
    training,
)
from nexus_ml.config import Settings
from nexus_ml.service.wiring import Service

log = logging.getLogger("nexus_ml.api")


def create_app(
    settings: Settings, *, registry: CollectorRegistry | None = None, hot_path: bool = True
) -> FastAPI:
    """Build the service. ``registry=None`` uses prometheus_client's default registry.

    ``hot_path=False`` leaves predictions to the FastAPI route alone (api/hot_path.py): the
    tests that compare both answers and the request benchmark build such an app.
    """
    service = Service(settings, registry if registry is not None else REGISTRY)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = HotApp(
        title="Nexus ML",
        version=__version__,
        summary="Diagnostic predictions with Prometheus-native monitoring.",
        lifespan=lifespan,
        # The body size limit is RequestMiddleware's (api/limits.py), not FastAPI's
        # max_body_size: that one signals with exceptions the metrics would count as 500s.
        responses={
            400: {"model": ErrorResponse, "description": "Malformed request body"},
            401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
            403: {"model": ErrorResponse, "description": "API key lacks the scope"},
            408: {"model": ErrorResponse, "description": "Request body not received in time"},
            413: {"model": ErrorResponse, "description": "Request body too large"},
            414: {"model": ErrorResponse, "description": "Request URL too long"},
            422: {"model": ErrorResponse, "description": "Invalid request"},
            431: {"model": ErrorResponse, "description": "Too many or too large headers"},
        },
        # Swagger UI is served from this origin by routes/docs.py (pinned, under the
        # dashboard's CSP); FastAPI's own pages load it from a CDN. No ReDoc, no OAuth2.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        # The service's telemetry is Prometheus (monitoring/metrics.py). FastAPI's native
        # OpenTelemetry, on by default, asks the global providers on every request whether
        # one is configured (≈ 5 µs per request, issue 16); off, it never runs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # The routes reach the parts they use through api/deps.py; auth reads the keys.
    app.state.service = service
    app.state.keys = keys = KeyStore(settings.parsed_api_keys())
    metrics = service.metrics

    def count_error(component: str, error_type: str) -> None:
        metrics.errors_total.labels(component, error_type).inc()

    install_error_handlers(app, count_error)

    api_prefix = "/api/v1"
    if hot_path:
        # Before the routers they answer for, so they are matched first; and answered through
        # the app's shorter stack for them (api/hot_path.py, HotApp).
        app.hot = tuple(hot_routes(api_prefix, service.serving, keys))
        app.router.routes.extend(app.hot)
    app.include_router(models.router, prefix=api_prefix)
    app.include_router(comparison.router, prefix=api_prefix)
    app.include_router(predictions.router, prefix=api_prefix)
    app.include_router(training.router, prefix=api_prefix)
    app.include_router(governance.router, prefix=api_prefix)
    app.include_router(monitoring.router, prefix=api_prefix)
    app.include_router(health.router)
    app.include_router(dashboard.router)
    app.include_router(docs.router)

    # One middleware of ours (api/middleware.py): the request id, the request metrics and the
    # limits, outside CORS, so preflights and refusals are counted and carry the id. A refusal
    # is answered through CORS, as when the limits sat inside it.
    refusals: Any = RefusalApp()
    if settings.cors_origins:
        cors: dict[str, Any] = {
            "allow_origins": settings.cors_origins,
            "allow_methods": ["GET", "POST", "PUT"],
            "allow_headers": ["Authorization", "X-API-Key", "Content-Type", REQUEST_ID_HEADER],
            # A browser client can read the id it is told to quote in a support request.
            "expose_headers": [REQUEST_ID_HEADER],
        }
        app.add_middleware(CORSMiddleware, **cors)
        refusals = CORSMiddleware(refusals, **cors)
    app.add_middleware(
        RequestMiddleware,
        metrics=metrics,
        limits=RequestLimits.from_settings(settings),
        refusals=refusals,
        tally=service.request_counts.tally,
    )
    return app
