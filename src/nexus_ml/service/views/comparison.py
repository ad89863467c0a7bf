"""``GET /models/{name}/comparison``: the champion against its shadow challenger, per metric and
segment, with intervals, on the labelled requests both scored.

The challenger's side is its labelled scores (labelled when the champion's prediction of the
same instance got its label); the champion's side is its labelled answers of the current
champion version to the requests the challenger scored in the window, so both sides are the
same patients. Each side is evaluated by its own version's ``ClinicalEvaluator`` (classes,
operating point, segments), the same computation as ``GET /monitoring/performance/clinical``
(stats/clinical.py ``realised``: Wilson intervals for proportions, Hanley-McNeil for AUC).
Its label-free estimates are computed on the same labelled rows.

No challenger in shadow is a 409 (Conflict): the model exists, but in a state where there is
nothing to compare; an unknown model is a 404.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from nexus_ml.config import Settings
from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.service.clinical import ClinicalEvaluator
from nexus_ml.service.database import Database
from nexus_ml.service.errors import Conflict
from nexus_ml.service.serving import find_model
from nexus_ml.service.views.results import ClinicalExcluded, ClinicalSegment, TimeWindow
from nexus_ml.storage.records import CHALLENGER, CHAMPION, LabelledPrediction


class RoleResult(BaseModel):
    """One side of the comparison: a version's clinical metrics per segment."""

    role: Literal["champion", "challenger"]
    version: str
    positive_class: str | None
    threshold: float | None
    classes: list[str]
    excluded: ClinicalExcluded
    segments: list[ClinicalSegment] = Field(
        description="As in GET /monitoring/performance/clinical; 'predictions' = labelled rows."
    )


class ModelComparison(BaseModel):
    """Champion and challenger side by side over one window."""

    model: str
    since: datetime
    until: datetime
    hours: float
    min_count: int = Field(description="ML_CLINICAL_MIN_COUNT: smallest denominator reported.")
    champion: RoleResult
    challenger: RoleResult


class ComparisonViews:
    """Compares a model's champion with its shadow challenger on stored, labelled rows."""

    def __init__(self, *, db: Database, models: ModelRegistry, settings: Settings) -> None:
        self._db = db
        self._models = models
        self._min_count = settings.clinical_min_count
        self._max_groups = settings.segment_max_groups

    async def compare(self, name: str, window: TimeWindow) -> ModelComparison:
        """NotFound for an unknown model, Conflict when it has no challenger in shadow."""
        champion = find_model(self._models, name)
        challenger = self._models.shadow(name)
        if challenger is None:
            raise Conflict(
                "this model has no challenger in shadow: start one with "
                "POST /api/v1/models/{name}/versions/{version}/shadow",
                "name",
            )
        read = self._db.store.labelled_predictions
        # Bounded: each read is one window of at most MAX_WINDOW rows.
        window_args = (name, window.since, window.until)
        theirs = await self._db.run(
            read, *window_args, with_features=True, role=CHALLENGER, version=challenger.version
        )
        ours = await self._db.run(
            read,
            *window_args,
            with_features=True,
            role=CHAMPION,
            version=champion.version,
            scored_by=challenger.version,
        )
        # Interval arithmetic over up to MAX_WINDOW rows per side: off the event loop.
        champion_side = await asyncio.to_thread(self._side, champion, CHAMPION, ours)
        challenger_side = await asyncio.to_thread(self._side, challenger, CHALLENGER, theirs)
        return ModelComparison(
            model=name,
            since=window.since,
            until=window.until,
            hours=window.seconds / 3600.0,
            min_count=self._min_count,
            champion=champion_side,
            challenger=challenger_side,
        )

    def _side(self, loaded: LoadedModel, role: str, rows: list[LabelledPrediction]) -> RoleResult:
        evaluator = ClinicalEvaluator.for_model(
            loaded, min_count=self._min_count, max_groups=self._max_groups
        )
        result: dict[str, Any] = evaluator.evaluate(rows, rows)
        return RoleResult.model_validate(
            {
                "role": role,
                "version": loaded.version,
                "positive_class": result["positive_class"],
                "threshold": result["threshold"],
                "classes": result["classes"],
                "excluded": result["excluded"],
                "segments": result["segments"],
            }
        )
