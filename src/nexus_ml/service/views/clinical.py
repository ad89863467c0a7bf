"""``GET /performance/clinical``: clinical metrics per segment, stored or computed for a window.

Without a window, the answer is the model-quality job's stored result (``results["clinical"]``
of its latest drift_results row for the loaded version): the job already computed it, over the
accuracy window ending at its run, and a read costs one indexed row whatever the table holds.
With a window (or before the job's first result for this version), it is computed on demand
from the newest ``ON_DEMAND_ROWS`` predictions of the window with their labels: interval
arithmetic over every row costs about 0.1 ms per row (9.6 s for 100,000; docs/benchmarks.md), so
the read is capped and the answer says how many rows it read and what the cap was.
The computation (service/clinical.py) is the model-quality job's.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from nexus_ml.config import Settings
from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.service.clinical import ClinicalEvaluator
from nexus_ml.service.database import Database
from nexus_ml.service.errors import NotFound
from nexus_ml.service.views.results import ClinicalPerformance, TimeWindow
from nexus_ml.storage.records import utcnow

# The most predictions an on-demand answer reads: ~2 s of interval arithmetic on this host.
ON_DEMAND_ROWS = 20_000


class ClinicalViews:
    """The clinical metrics of one model: the job's stored result, or over a window."""

    def __init__(self, *, db: Database, models: ModelRegistry, settings: Settings) -> None:
        self._db = db
        self._models = models
        self._min_count = settings.clinical_min_count
        self._max_groups = settings.segment_max_groups
        self._accuracy_window = timedelta(seconds=settings.accuracy_window_seconds)

    async def stored(self, model: str) -> ClinicalPerformance | None:
        """The job's latest clinical result for the loaded version of ``model``, if any."""
        loaded = self._models.get_or_none(model)
        if loaded is None:
            raise NotFound("model: not a loaded model (see GET /models)", "model")
        latest = await self._db.run(self._db.store.latest_drift_result, model, loaded.version)
        clinical = None if latest is None else latest.results.get("clinical")
        if latest is None or not clinical:
            return None
        until = latest.computed_at
        since = until - self._accuracy_window
        return ClinicalPerformance.model_validate(
            {
                "model": model,
                "version": loaded.version,
                "since": since,
                "until": until,
                "hours": self._accuracy_window.total_seconds() / 3600.0,
                "baseline": loaded.metadata.get("baseline"),
                **clinical,
                "source": "quality_job",
                "computed_at": latest.computed_at,
            }
        )

    async def clinical(self, model: str, window: TimeWindow) -> ClinicalPerformance:
        """Realised, estimated and positive rate per segment of ``model`` in ``window``."""
        loaded = self._models.get_or_none(model)
        if loaded is None:
            raise NotFound("model: not a loaded model (see GET /models)", "model")
        # One read: the window's predictions with their labels (the labelled ones are a
        # subset of the window, so their feature maps need not be read twice).
        rows = await self._db.run(
            self._db.store.scored_rows, model, window.since, window.until, ON_DEMAND_ROWS
        )
        labelled = [r for r in rows if r.actual is not None]
        evaluator = ClinicalEvaluator.for_model(
            loaded, min_count=self._min_count, max_groups=self._max_groups
        )
        # Interval arithmetic over up to ON_DEMAND_ROWS rows: off the event loop.
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
                "source": "on_demand",
                "computed_at": utcnow(),
                "rows_read": len(rows),
                "rows_limit": ON_DEMAND_ROWS,
            }
        )
