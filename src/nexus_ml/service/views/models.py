"""Model-facing monitoring answers, read from the stored aggregates, results and runs.

Counts, class counts, means, maxima, label counts and the 20-bin confidence histogram are
exact for the (minute-aligned) window; percentiles come from the aggregates' fixed bins within
the bound each answer states (storage/bins.py). No prediction row is read: an answer costs the
same whatever the table holds.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.monitoring.alerts.model import accuracy_limit_of
from nexus_ml.service.database import Database
from nexus_ml.service.families import Families
from nexus_ml.service.threshold_state import ThresholdState
from nexus_ml.service.views.query import binned_percentiles, check_model, finite, gauge_max
from nexus_ml.service.views.results import (
    Accuracy,
    ConfidenceStats,
    DataQualityOverview,
    EstimatedAccuracy,
    FeatureDrift,
    Histogram,
    ModelDataQuality,
    ModelPerformance,
    ModelPredictionStats,
    ModelsPerformance,
    PredictionMetrics,
    TimeWindow,
    WindowQuality,
)
from nexus_ml.storage import bins
from nexus_ml.storage.aggregates import WindowAggregate, align
from nexus_ml.storage.records import DriftResultRecord


def confidence_histogram(agg: WindowAggregate) -> Histogram:
    """Counts over twenty equal bins on [0, 1], as numpy's histogram gives them (exact)."""
    return Histogram(
        edges=bins.coarse_confidence_edges(), counts=bins.coarse_confidence(agg.confidence_bins)
    )


def model_prediction_stats(name: str, agg: WindowAggregate | None) -> ModelPredictionStats:
    """Counts, latency percentiles, confidence distribution and classes of one model."""
    agg = agg or WindowAggregate()
    p50 = bins.quantiles(agg.confidence_bins, (0.5,), bins.confidence_value)[0]
    return ModelPredictionStats(
        model=name,
        count=agg.count,
        latency_seconds=binned_percentiles(agg),
        confidence=ConfidenceStats(
            mean=agg.confidence_sum / agg.count if agg.count else None,
            p50=p50,
            p50_absolute_error=bins.CONFIDENCE_ERROR,
            histogram=confidence_histogram(agg),
        ),
        class_counts=dict(sorted(agg.class_counts.items())),
    )


def aggregate_accuracy(agg: WindowAggregate | None) -> Accuracy:
    """Realised accuracy from the label counts of predictions made in the window."""
    if agg is None or agg.feedback == 0:
        return Accuracy(value=None, n=0)
    return Accuracy(value=agg.correct / agg.feedback, n=agg.feedback)


def aligned(window: TimeWindow) -> TimeWindow:
    """``window`` widened to whole minutes: the windows the aggregates answer for exactly."""
    since, until = align(window.since, window.until)
    return TimeWindow(since=since, until=until, seconds=(until - since).total_seconds())


def baseline_accuracy(loaded: LoadedModel) -> float | None:
    """The accuracy the model was validated at: its baseline's, else its holdout accuracy."""
    baseline = loaded.info.baseline
    value = None if baseline is None else baseline.accuracy.value
    return finite(value) if value is not None else holdout_accuracy(loaded)


def holdout_accuracy(loaded: LoadedModel) -> float | None:
    """The holdout accuracy recorded in the bundle when the model was trained."""
    return finite(loaded.metadata.get("training_metrics", {}).get("holdout_accuracy"))


def trained_at(loaded: LoadedModel) -> datetime | None:
    """When the active version was trained (bundle metadata)."""
    created = loaded.metadata.get("created_at")
    return datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None


def estimated_accuracy(result: DriftResultRecord | None) -> EstimatedAccuracy:
    """The CBPE estimate stored by the last model-quality job, if any."""
    if result is None:
        return EstimatedAccuracy()
    est = result.results.get("estimated_accuracy") or {}
    return EstimatedAccuracy(
        value=finite(est.get("accuracy")),
        stderr=finite(est.get("stderr")),
        n=int(est.get("n") or 0),
        computed_at=result.computed_at,
    )


def feature_drift(name: str, data: dict[str, Any], window_decided: bool) -> FeatureDrift:
    """One feature of a stored drift result: scores and decision only (no values)."""
    scores = data.get("scores") or {}
    return FeatureDrift(
        feature=name,
        scores={str(k): finite(v) for k, v in scores.items()},
        adjusted_pvalue=finite(data.get("adjusted_pvalue")),
        n=int(data.get("n") or 0),
        drifted=bool(data.get("drifted")),
        # Results stored before features carried their own flag: the window's.
        decided=window_decided and bool(data.get("decided", True)),
    )


def data_quality(
    name: str, result: DriftResultRecord | None, live: float | None
) -> ModelDataQuality:
    """The latest drift/quality result of a model, whitelisted field by field."""
    if result is None:
        return ModelDataQuality(model=name, request_quality_score=live)
    drift = result.results.get("drift") or {}
    quality = result.results.get("quality") or {}
    by_feature = quality.get("by_feature") or {}
    decided = bool(drift.get("decided"))
    return ModelDataQuality(
        model=name,
        computed_at=result.computed_at,
        version=result.version,
        window_size=result.window_size,
        decided=decided,
        reason=drift.get("reason") or None,
        drift_share=finite(result.drift_share),
        drifted_features=[str(f) for f in drift.get("drifted_features") or []],
        features=[
            feature_drift(f, d, decided) for f, d in sorted((drift.get("features") or {}).items())
        ],
        quality=WindowQuality(
            score=finite(quality.get("score")),
            n_rows=int(quality.get("n_rows") or 0),
            n_issues=int(quality.get("n_issues") or 0),
            by_feature={
                str(f): {str(k): int(v) for k, v in kinds.items()}
                for f, kinds in by_feature.items()
            },
        ),
        request_quality_score=live,
    )


class ModelViews:
    """Predictions, performance and data quality per model, from the store and the metrics."""

    def __init__(
        self,
        *,
        db: Database,
        models: ModelRegistry,
        thresholds: ThresholdState,
        families: Families,
    ) -> None:
        self._db = db
        self._models = models
        self._thresholds = thresholds
        self._families = families

    async def prediction_metrics(self, window: TimeWindow, model: str | None) -> PredictionMetrics:
        """Per model: stored predictions in the (minute-aligned) window, from the aggregates."""
        names = check_model(self._models, model)
        db = self._db
        window = aligned(window)
        stats = await db.run(db.store.window_aggregates, model, window.since, window.until)
        # Loaded models appear even without predictions; stored ones of unloaded models too.
        every = sorted(set(names) | (set(stats) if model is None else set()))
        rows = [model_prediction_stats(n, stats.get(n)) for n in every]
        return PredictionMetrics(window=window, total=sum(r.count for r in rows), models=rows)

    async def models_performance(self, window: TimeWindow, model: str | None) -> ModelsPerformance:
        """Accuracy from feedback, estimated accuracy, holdout accuracy and latency per model."""
        names = check_model(self._models, model)
        db = self._db
        window = aligned(window)
        stats = await db.run(db.store.window_aggregates, model, window.since, window.until)
        t = self._thresholds.current
        out = []
        for name in names:
            loaded = self._models.get(name)
            latest = await db.run(db.store.latest_drift_result, name)
            s = stats.get(name) or WindowAggregate()
            out.append(
                ModelPerformance(
                    model=name,
                    version=loaded.version,
                    holdout_accuracy=holdout_accuracy(loaded),
                    accuracy_limit=accuracy_limit_of(t, baseline_accuracy(loaded)),
                    accuracy=aggregate_accuracy(s),
                    estimated_accuracy=estimated_accuracy(latest),
                    predictions=s.count,
                    latency_seconds=binned_percentiles(s),
                )
            )
        return ModelsPerformance(
            window=window,
            accuracy_threshold=t.training_accuracy_low,
            accuracy_min_samples=t.accuracy_min_samples,
            models=out,
        )

    async def data_quality_overview(self, model: str | None) -> DataQualityOverview:
        """Drift and quality per model and feature from the latest stored result, plus the gauge."""
        names = check_model(self._models, model)
        families = await asyncio.to_thread(self._families.collect)
        live = gauge_max(families, "ml_data_quality_score", "model")
        rows = []
        for name in names:
            latest = await self._db.run(self._db.store.latest_drift_result, name)
            rows.append(data_quality(name, latest, finite(live.get(name))))
        return DataQualityOverview(
            drift_threshold=self._thresholds.current.data_drift_high, models=rows
        )
