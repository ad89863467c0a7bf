"""Request and response bodies of the public API (documented in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nexus_ml.ml.labels import MAX_LABEL_CHARS

# A number for number and integer features, a string for category ones, null if nullable.
FeatureMap = dict[str, float | str | None]


class PredictRequest(BaseModel):
    """One instance (``features``) or a batch (``instances``), not both."""

    model_config = ConfigDict(extra="forbid")
    features: FeatureMap | None = Field(
        default=None,
        description=(
            "Feature name → value, exactly the model's features: a finite number (a whole one "
            "for an integer feature), a string for a category, null only where the feature "
            "is nullable."
        ),
    )
    instances: list[FeatureMap] | None = Field(
        default=None, description="A batch of feature maps (at most ML_MAX_BATCH)."
    )


class AnswerWarning(BaseModel):
    """Why an answer deserves a second look: the feature and the kind, never the value."""

    feature: str
    kind: Literal["unseen_category", "out_of_range"] = Field(
        description=(
            "unseen_category: a category not seen in training; out_of_range: a number outside "
            "the training range (the answer is an extrapolation)."
        )
    )


class Prediction(BaseModel):
    """One prediction."""

    id: str = Field(description="Prediction id: send feedback to /predictions/{id}/feedback.")
    predicted_class: str
    confidence: float = Field(ge=0, le=1, description="Probability of the predicted class.")
    probabilities: dict[str, float]
    warnings: list[AnswerWarning] = Field(
        default_factory=list, description="Features whose values lie outside what training saw."
    )


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
    type: Literal["number", "integer", "category"]
    nullable: bool = Field(default=False, description="Whether null (missing) is answered.")
    min: float | None = Field(default=None, description="Training minimum (number, integer).")
    max: float | None = Field(default=None, description="Training maximum (number, integer).")
    categories: list[str] | None = Field(
        default=None, description="Categories seen in training (category features)."
    )


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
    positive_class: str | None = Field(
        default=None,
        description="Binary models: the class whose recall is the sensitivity (null: multiclass).",
    )
    threshold: float | None = Field(
        default=None,
        description="Served as the positive class when its probability is at least this "
        "(null: the most probable class).",
    )
    segments: list[str] = Field(
        default_factory=list,
        description="The closed set of segment labels its clinical metrics are reported for "
        "(`all`, then `<feature>=<group>`).",
    )


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


class PromoteRequest(BaseModel):
    """Options of a promote."""

    model_config = ConfigDict(extra="forbid")

    replace_incompatible: bool = Field(
        default=False,
        description="Promote a version whose features, types or classes differ from the "
        "champion's (clients of the old schema will fail); audited as breaking_replace.",
    )


class ModelChange(BaseModel):
    """What a promote, rollback or shadow change did."""

    model: str
    before: str | None
    after: str | None
    changed: bool = Field(description="False when the state asked for was already in force.")
    action: str
    differences: list[str] = Field(default_factory=list)


class VersionEntry(BaseModel):
    """One version: role, provenance, holdout evidence and fingerprints."""

    model_config = ConfigDict(extra="allow")

    version: str
    role: Literal["champion", "challenger", "retired"]


class ModelVersions(BaseModel):
    """Every version of a model on disk, newest first."""

    model: str
    champion: str | None
    challenger: str | None
    versions: list[VersionEntry]


class PromotionReportEntry(BaseModel):
    """One stored evaluation of a candidate against the champion."""

    id: int
    model: str
    candidate_version: str
    champion_version: str | None
    created_at: datetime
    actor: str
    policy: str
    decision: Literal["promoted", "rejected", "held"]
    report: dict[str, Any]
