"""Training runs: start one in the background, read its status."""

from __future__ import annotations

from fastapi import APIRouter

from nexus_ml.api import serving
from nexus_ml.api.auth import AdminKey
from nexus_ml.api.deps import JSON_BODY_RESPONSES, JsonBody, NexusDep
from nexus_ml.api.errors import ApiError
from nexus_ml.api.schemas import TrainingRun, TrainRequest
from nexus_ml.storage.errors import NotFound

router = APIRouter(tags=["training"])


@router.post(
    "/models/{name}/train",
    response_model=TrainingRun,
    status_code=202,
    summary="Start a training run in the background",
    responses={
        404: {"description": "Unknown model"},
        409: {"description": "Already training"},
        **JSON_BODY_RESPONSES,
    },
)
async def train(
    name: str,
    nexus: NexusDep,
    principal: AdminKey,
    _json: JsonBody,
    body: TrainRequest | None = None,
) -> TrainingRun:
    """Queue a run; poll ``GET /training/runs/{id}``. The new version is hot-swapped in."""
    loaded = serving.model_or_404(nexus, name)
    run = await nexus.trainer.start(loaded, principal, seed=(body or TrainRequest()).seed)
    return TrainingRun(**run)


@router.get(
    "/training/runs/{run_id}",
    response_model=TrainingRun,
    summary="A training run's status and metrics",
    responses={404: {"description": "Unknown run"}},
)
async def get_run(run_id: str, nexus: NexusDep, _key: AdminKey) -> TrainingRun:
    """Status (queued/running/succeeded/failed), timing, version and metrics."""
    serving.stored_id_or_404(run_id, "run_id", "training run")
    try:
        record = await nexus.db(nexus.store.get_training_run, run_id)
    except NotFound:
        raise ApiError(404, "unknown training run", "run_id") from None
    return TrainingRun(
        id=record.id,
        model=record.model,
        status=record.status,  # type: ignore[arg-type]
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        version=record.version,
        metrics=record.metrics,
        error=record.error,
    )
