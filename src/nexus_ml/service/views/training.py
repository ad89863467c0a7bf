"""Training-run statistics for ``GET /metrics/training`` (from the stored runs)."""

from __future__ import annotations

from datetime import UTC, timedelta

import numpy as np

from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.service.database import Database
from nexus_ml.service.views.models import trained_at
from nexus_ml.service.views.query import check_model, finite
from nexus_ml.service.views.results import (
    DurationStats,
    ModelTraining,
    TimeWindow,
    TrainingDay,
    TrainingMetrics,
    TrainingRunSummary,
)
from nexus_ml.storage.records import TRAINING_STATUSES, TrainingRunRecord

# Runs are listed newest first and filtered by window here; this bounds the read.
RUN_LIMIT = 2000
LAST_RUNS = 10
MAX_DAYS = 400


def run_summary(run: TrainingRunRecord) -> TrainingRunSummary:
    """A run without its error text: only the exception type before the first colon."""
    duration = None
    if run.started_at is not None and run.finished_at is not None:
        duration = (run.finished_at - run.started_at).total_seconds()
    metrics = run.metrics or {}
    return TrainingRunSummary(
        id=run.id,
        model=run.model,
        status=run.status,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_seconds=duration,
        version=run.version,
        holdout_accuracy=finite(metrics.get("holdout_accuracy")),
        error_type=run.error.split(":", 1)[0][:80] if run.error else None,
    )


def durations(runs: list[TrainingRunSummary]) -> DurationStats:
    """Mean, median and longest duration of the finished runs."""
    values = np.asarray(
        [r.duration_seconds for r in runs if r.duration_seconds is not None], dtype=np.float64
    )
    if values.size == 0:
        return DurationStats(count=0)
    return DurationStats(
        count=int(values.size),
        mean=float(values.mean()),
        p50=float(np.percentile(values, 50, method="linear")),
        max=float(values.max()),
    )


def per_day(runs: list[TrainingRunSummary], window: TimeWindow) -> list[TrainingDay]:
    """Runs by UTC creation day and status, every day of the window (zeros included)."""
    first = window.since.astimezone(UTC).date()
    last = (window.until - timedelta(microseconds=1)).astimezone(UTC).date()
    if (last - first).days >= MAX_DAYS:  # only then: near year 1 the subtraction would overflow
        first = last - timedelta(days=MAX_DAYS - 1)
    days: dict[str, dict[str, int]] = {}
    day = first
    while day <= last:
        days[day.isoformat()] = dict.fromkeys(TRAINING_STATUSES, 0)
        day += timedelta(days=1)
    for r in runs:
        key = r.created_at.astimezone(UTC).date().isoformat()
        if key in days:
            days[key][r.status] = days[key].get(r.status, 0) + 1
    return [TrainingDay(date=d, counts=c) for d, c in days.items()]


class TrainingViews:
    """Training-run statistics, from the stored runs."""

    def __init__(self, *, db: Database, models: ModelRegistry) -> None:
        self._db = db
        self._models = models

    async def training_metrics(self, window: TimeWindow, model: str | None) -> TrainingMetrics:
        """Runs in the window by status and day, durations, and the last runs."""
        names = check_model(self._models, model)
        db = self._db
        records = await db.run(db.store.list_training_runs, model, limit=RUN_LIMIT)
        runs = [run_summary(r) for r in records if window.since <= r.created_at < window.until]
        by_status = dict.fromkeys(TRAINING_STATUSES, 0)
        last_by_model: dict[str, TrainingRunSummary] = {}
        for r in runs:
            by_status[r.status] = by_status.get(r.status, 0) + 1
            last_by_model.setdefault(r.model, r)  # newest first
        models = [
            ModelTraining(model=n, version=m.version, trained_at=trained_at(m))
            for n in names
            if (m := self._models.get_or_none(n)) is not None
        ]
        return TrainingMetrics(
            window=window,
            total=len(runs),
            by_status=by_status,
            durations=durations(runs),
            per_day=per_day(runs, window),
            last_runs=runs[:LAST_RUNS],
            last_by_model=dict(sorted(last_by_model.items())),
            models=models,
            truncated=len(records) >= RUN_LIMIT,
        )
