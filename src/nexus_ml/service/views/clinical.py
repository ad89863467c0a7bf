"""``GET /performance/clinical``: clinical metrics per segment, computed on demand for a window.

The realised metrics cover the labelled predictions made in ``[since, until)``; the estimates
and the positive rate cover the predictions made in it. Both come from one read of the newest
``MAX_WINDOW`` predictions of the window (with their labels): beyond that many, the labelled
ones are those among the newest predictions.
The computation (service/clinical.py) is the model-quality job's, on another window.
"""

from __future__ import annotations

import asyncio

from nexus_ml.config import Settings
from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.service.clinical import ClinicalEvaluator
from nexus_ml.service.database import Database
from nexus_ml.service.errors import NotFound
from nexus_ml.service.views.results import ClinicalPerformance, TimeWindow


class ClinicalViews:
    """The clinical metrics of one model over a window, from the stored rows."""

    def __init__(self, *, db: Database, models: ModelRegistry, settings: Settings) -> None:
        self._db = db
        self._models = models
        self._min_count = settings.clinical_min_count
        self._max_groups = settings.segment_max_groups

    async def clinical(self, model: str, window: TimeWindow) -> ClinicalPerformance:
        """Realised, estimated and positive rate per segment of ``model`` in ``window``."""
        loaded = self._models.get_or_none(model)
        if loaded is None:
            raise NotFound("model: not a loaded model (see GET /models)", "model")
        # One read: the window's predictions with their labels (the labelled ones are a
        # subset of the window, so their feature maps need not be read twice).
        rows = await self._db.run(self._db.store.scored_rows, model, window.since, window.until)
        labelled = [r for r in rows if r.actual is not None]
        evaluator = ClinicalEvaluator.for_model(
            loaded, min_count=self._min_count, max_groups=self._max_groups
        )
        # Interval arithmetic over up to MAX_WINDOW rows: off the event loop.
        result = await asyncio.to_thread(evaluator.evaluate, labelled, rows)
        return ClinicalPerformance.model_validate(
            {
                "model": model,
                "version": loaded.version,
                "since": window.since,
                "until": window.until,
                "hours": window.seconds / 3600.0,
                "baseline": loaded.metadata.get("baseline"),
                **result,
            }
        )
