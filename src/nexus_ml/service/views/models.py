"""Model-facing monitoring answers, computed from the stored predictions, labels and runs.

Percentiles and histograms are computed here with numpy on the rows the store returns, so
they are exact for the window (unlike ``histogram_quantile`` on Prometheus buckets).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import numpy as np

from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.monitoring.alerts.model import accuracy_limit_of
from nexus_ml.service.database import Database
from nexus_ml.service.families import Families
from nexus_ml.service.threshold_state import ThresholdState
from nexus_ml.service.views.query import check_model, finite, gauge_max, percentiles
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
from nexus_ml.stats.performance import realised_accuracy
from nexus_ml.storage.records import DriftResultRecord, ModelStats

CONFIDENCE_BINS = 20


def confidence_histogram(values: list[float]) -> Histogram:
    """Counts of ``values`` over twenty equal bins on [0, 1] (numpy's histogram)."""
    counts, edges = np.histogram(
        np.asarray(values, dtype=np.float64), bins=CONFIDENCE_BINS, range=(0.0, 1.0)
    )
    return Histogram(edges=[round(float(e), 10) for e in edges], counts=[int(c) for c in counts])


def model_prediction_stats(name: str, stats: ModelStats | None) -> ModelPredictionStats:
    """Counts, latency percentiles, confidence distribution and classes of one model."""
    stats = stats or ModelStats()
    conf = np.asarray(stats.confidences, dtype=np.float64)
    return ModelPredictionStats(
        model=name,
        count=stats.count,
        latency_seconds=percentiles(stats.latencies),
        confidence=ConfidenceStats(
            mean=float(conf.mean()) if conf.size else None,
            p50=float(np.percentile(conf, 50, method="linear")) if conf.size else None,
            histogram=confidence_histogram(stats.confidences),
        ),
        class_counts=dict(sorted(stats.class_counts.items())),
    )


async def model_accuracy(db: Database, name: str, window: TimeWindow) -> Accuracy:
    """Realised accuracy from the labels of predictions made in the window."""
    labelled = await db.run(db.store.labelled_predictions, name, window.since, window.until)
    result = realised_accuracy([p.predicted_class for p in labelled], [p.actual for p in labelled])
    return Accuracy(value=result.accuracy, n=result.n)


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
        """Per model: stored predictions in the window, with numpy percentiles."""
        names = check_model(self._models, model)
        db = self._db
        stats = await db.run(db.store.prediction_stats, model, window.since, window.until)
        # Loaded models appear even without predictions; stored ones of unloaded models too.
        every = sorted(set(names) | (set(stats) if model is None else set()))
        rows = [model_prediction_stats(n, stats.get(n)) for n in every]
        return PredictionMetrics(window=window, total=sum(r.count for r in rows), models=rows)

    async def models_performance(self, window: TimeWindow, model: str | None) -> ModelsPerformance:
        """Accuracy from feedback, estimated accuracy, holdout accuracy and latency per model."""
        names = check_model(self._models, model)
        db = self._db
        stats = await db.run(db.store.prediction_stats, model, window.since, window.until)
        t = self._thresholds.current
        out = []
        for name in names:
            loaded = self._models.get(name)
            latest = await db.run(db.store.latest_drift_result, name)
            s = stats.get(name) or ModelStats()
            out.append(
                ModelPerformance(
                    model=name,
                    version=loaded.version,
                    holdout_accuracy=holdout_accuracy(loaded),
                    accuracy_limit=accuracy_limit_of(t, baseline_accuracy(loaded)),
                    accuracy=await model_accuracy(db, name, window),
                    estimated_accuracy=estimated_accuracy(latest),
                    predictions=s.count,
                    latency_seconds=percentiles(s.latencies),
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
