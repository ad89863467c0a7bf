"""Entry point for ASGI servers: ``uvicorn --factory nexus_ml.api.asgi:app_from_env``
(add ``--http nexus_ml.api.edge:BoundedHttpToolsProtocol`` for the request-head bounds).

Each worker process builds its own app from the environment (the launcher puts
everything a worker needs, including ``PROMETHEUS_MULTIPROC_DIR``, there).
"""

from __future__ import annotations

from fastapi import FastAPI

from nexus_ml.api.app import create_app
from nexus_ml.api.logs import configure_logging
from nexus_ml.config import Settings


def app_from_env() -> FastAPI:
    """Build the service from environment settings (one per worker)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
