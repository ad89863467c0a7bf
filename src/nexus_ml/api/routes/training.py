"""Training runs: start one in the background, read its status."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from nexus_ml.api.auth import AdminKey
from nexus_ml.api.deps import JSON_BODY_RESPONSES, JsonBody, ModelsDep, TrainerDep
from nexus_ml.api.schemas import TrainingRun, TrainRequest
from nexus_ml.service.serving import find_model
from nexus_ml.storage.records import TrainingRunRecord

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
    models: ModelsDep,
    trainer: TrainerDep,
    principal: AdminKey,
    _json: JsonBody,
    body: TrainRequest | None = None,
) -> TrainingRun:
    """Queue a run; poll ``GET /training/runs/{id}``. The new version is hot-swapped in."""
    loaded = find_model(models, name)
    seed = (body or TrainRequest()).seed
    run = await trainer.start(loaded, principal.fingerprint, seed=seed)
    # Just queued: only what the run has so far (no timing, version or metrics yet).
    return TrainingRun(id=run.id, model=run.model, status=_status(run), created_at=run.created_at)


@router.get(
    "/training/runs/{run_id}",
    response_model=TrainingRun,
    summary="A training run's status and metrics",
    responses={404: {"description": "Unknown run"}},
)
async def get_run(run_id: str, trainer: TrainerDep, _key: AdminKey) -> TrainingRun:
    """Status (queued/running/succeeded/failed), timing, version and metrics."""
    record = await trainer.get_run(run_id)
    return TrainingRun(
        id=record.id,
        model=record.model,
        status=_status(record),
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        version=record.version,
        metrics=record.metrics,
        error=record.error,
    )


def _status(run: TrainingRunRecord) -> Literal["queued", "running", "succeeded", "failed"]:
    return run.status  # type: ignore[return-value]  # the table's CHECK holds it to these
