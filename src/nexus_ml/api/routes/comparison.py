"""``GET /models/{name}/comparison``: champion vs shadow challenger (scope monitor)."""

from __future__ import annotations

from fastapi import APIRouter

from nexus_ml.api.auth import MonitorKey
from nexus_ml.api.deps import ComparisonViewsDep, SettingsDep
from nexus_ml.api.errors import ErrorResponse
from nexus_ml.api.params import WindowDep
from nexus_ml.service.views.comparison import ModelComparison

router = APIRouter(tags=["models"])


@router.get(
    "/models/{name}/comparison",
    response_model=ModelComparison,
    summary="Champion vs shadow challenger per metric and segment (default: accuracy window)",
    responses={
        404: {"model": ErrorResponse, "description": "Unknown model"},
        409: {"model": ErrorResponse, "description": "The model has no challenger in shadow"},
        503: {"model": ErrorResponse, "description": "Database unreachable"},
    },
)
async def comparison(
    name: str,
    views: ComparisonViewsDep,
    settings: SettingsDep,
    _key: MonitorKey,
    window: WindowDep,
) -> ModelComparison:
    """Realised clinical metrics with 95 % intervals of both versions on the labelled requests
    both scored (window ``since``/``until``/``hours`` as in the monitoring API)."""
    return await views.compare(name, window.resolve(settings.accuracy_window_seconds))
