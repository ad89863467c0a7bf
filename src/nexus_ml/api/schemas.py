"""Request and response bodies of the public API (documented in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nexus_ml.ml.labels import MAX_LABEL_CHARS

FeatureMap = dict[str, float]


class PredictRequest(BaseModel):
    """One instance (``features``) or a batch (``instances``), not both."""

    model_config = ConfigDict(extra="forbid")
    features: FeatureMap | None = Field(
        default=None, description="Feature name → finite number, exactly the model's features."
    )
    instances: list[FeatureMap] | None = Field(
        default=None, description="A batch of feature maps (at most ML_MAX_BATCH)."
    )


class Prediction(BaseModel):
    """One prediction."""

    id: str = Field(description="Prediction id: send feedback to /predictions/{id}/feedback.")
    predicted_class: str
    confidence: float = Field(ge=0, le=1, description="Probability of the predicted class.")
    probabilities: dict[str, float]


class PredictResponse(Prediction):
    """Answer to a single-instance request."""

    model: str
    version: str


class BatchPredictResponse(BaseModel):
    """Answer to a batch request, in the order of ``instances``."""

    model: str
    version: str
    predictions: list[Prediction]


class FeatureInfo(BaseModel):
    """A feature of a model's schema."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None


class ModelSummary(BaseModel):
    """A loaded model."""

    name: str
    version: str
    classes: list[str]
    n_features: int
    holdout_accuracy: float | None = None
    created_at: str | None = None


class ModelDetail(ModelSummary):
    """A loaded model with its schema, metrics and versions on disk."""

    features: list[FeatureInfo]
    training_metrics: dict[str, Any]
    versions: list[str]


class FeedbackRequest(BaseModel):
    """The true class of a past prediction."""

    model_config = ConfigDict(extra="forbid")
    actual: str = Field(
        min_length=1, max_length=MAX_LABEL_CHARS, description="One of the model's classes."
    )


class FeedbackResponse(BaseModel):
    """Stored feedback."""

    prediction_id: str
    model: str
    actual: str
    correct: bool


class TrainRequest(BaseModel):
    """Optional training parameters."""

    model_config = ConfigDict(extra="forbid")
    # strict: a JSON integer only; "1", true and 1.0 are refused, not converted.
    seed: int = Field(default=42, ge=0, le=2**31 - 1, strict=True)


class TrainingRun(BaseModel):
    """A training run and, when finished, its metrics."""

    id: str
    model: str
    status: Literal["queued", "running", "succeeded", "failed"]
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    version: str | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None
