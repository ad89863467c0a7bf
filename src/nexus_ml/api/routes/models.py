"""Model listing and details."""

from __future__ import annotations

from fastapi import APIRouter

from nexus_ml.api.auth import PredictKey
from nexus_ml.api.deps import ModelsDep
from nexus_ml.api.schemas import FeatureInfo, ModelDetail, ModelSummary
from nexus_ml.ml.registry import LoadedModel
from nexus_ml.ml.segments import SegmentIndex
from nexus_ml.service.serving import find_model

router = APIRouter(tags=["models"])


def _summary(loaded: LoadedModel) -> dict:
    tm = loaded.metadata.get("training_metrics", {})
    return {
        "name": loaded.name,
        "version": loaded.version,
        "classes": list(loaded.classes),
        "n_features": len(loaded.schema.names),
        "holdout_accuracy": tm.get("holdout_accuracy"),
        "created_at": loaded.metadata.get("created_at"),
    }


@router.get("/models", response_model=list[ModelSummary], summary="Loaded models")
async def list_models(models: ModelsDep, _key: PredictKey) -> list[ModelSummary]:
    """Every loaded model with its active version."""
    return [ModelSummary(**_summary(m)) for m in models.all()]


@router.get(
    "/models/{name}",
    response_model=ModelDetail,
    summary="One model: schema, training metrics, versions on disk",
    responses={404: {"description": "Unknown model"}},
)
async def get_model(name: str, models: ModelsDep, _key: PredictKey) -> ModelDetail:
    """A model's feature schema (names, types, training ranges) and metrics."""
    loaded = find_model(models, name)
    features = [
        FeatureInfo(
            name=spec.name,
            type=spec.type,  # type: ignore[arg-type]  # the schema allows these three only
            nullable=spec.nullable,
            min=spec.min if abs(spec.min) != float("inf") else None,
            max=spec.max if abs(spec.max) != float("inf") else None,
            categories=list(spec.categories) if spec.is_category else None,
        )
        for spec in loaded.schema.features
    ]
    return ModelDetail(
        **_summary(loaded),
        features=features,
        training_metrics=loaded.metadata.get("training_metrics", {}),
        versions=models.versions(name),
        positive_class=loaded.info.positive_class,
        threshold=loaded.info.threshold,
        segments=SegmentIndex.from_metadata(loaded.info).labels,
    )
