"""Response models of the monitoring API: what OpenAPI documents for each endpoint.

Every number that may be missing (no data in the window, a NaN score) is ``None``, never
NaN: JSON has no NaN and a dashboard must tell "not measured" from zero. No model here has
a field that could carry a feature value; drift and quality are scores and counts only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class TimeWindow(BaseModel):
    """The half-open period ``[since, until)`` a windowed answer covers."""

    since: datetime
    until: datetime
    seconds: float


PercentileMethod = Literal["exact", "bins", "histogram_quantile"]


class Percentiles(BaseModel):
    """Percentiles of numpy's ``method="linear"`` definition; ``method`` says how they were had."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    max: float | None = None
    method: PercentileMethod = Field(
        default="exact",
        description=(
            "exact: numpy on every value; bins: estimated from the stored aggregates' fixed "
            "logarithmic bins, each percentile within relative_error of the exact one (mean "
            "and max exact); histogram_quantile: Prometheus buckets, linear within a bucket "
            "(only as fine as the buckets, no stated bound)."
        ),
    )
    relative_error: float | None = Field(
        default=None,
        description="method=bins: bound on |estimate - exact| / exact of p50, p95 and p99.",
    )


class Histogram(BaseModel):
    """Counts over ``len(edges) - 1`` equal bins; the last bin includes its right edge."""

    edges: list[float]
    counts: list[int]


class ConfidenceStats(BaseModel):
    """Confidence (highest class probability) of the stored predictions."""

    mean: float | None = None
    p50: float | None = None
    p50_absolute_error: float | None = Field(
        default=None,
        description="Bound on |p50 - exact median|: half a bin of the stored aggregates (0.005).",
    )
    histogram: Histogram


class ModelPredictionStats(BaseModel):
    """One model's stored predictions in the window."""

    model: str
    count: int
    latency_seconds: Percentiles
    confidence: ConfidenceStats
    class_counts: dict[str, int]


class PredictionMetrics(BaseModel):
    """``GET /metrics/predictions``."""

    window: TimeWindow
    total: int
    models: list[ModelPredictionStats]


class PredictionTimeline(BaseModel):
    """``GET /metrics/predictions/timeline``: stored predictions per time bucket and model."""

    window: TimeWindow
    step_seconds: int
    buckets: list[datetime] = Field(description="Start of each bucket (UTC).")
    series: dict[str, list[int]] = Field(description="Model -> count per bucket.")


class TrainingRunSummary(BaseModel):
    """One training run, without its free-text error (only the error's type)."""

    id: str
    model: str
    status: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    version: str | None = None
    holdout_accuracy: float | None = None
    error_type: str | None = None


class DurationStats(BaseModel):
    """Durations of the finished runs in the window (seconds)."""

    count: int
    mean: float | None = None
    p50: float | None = None
    max: float | None = None


class TrainingDay(BaseModel):
    """Runs created on one UTC day, by status."""

    date: str
    counts: dict[str, int]


class ModelTraining(BaseModel):
    """The active version of a model and when it was trained."""

    model: str
    version: str
    trained_at: datetime | None = None


class TrainingMetrics(BaseModel):
    """``GET /metrics/training``."""

    window: TimeWindow
    total: int
    by_status: dict[str, int]
    durations: DurationStats
    per_day: list[TrainingDay]
    last_runs: list[TrainingRunSummary]
    last_by_model: dict[str, TrainingRunSummary]
    models: list[ModelTraining]
    truncated: bool = Field(description="True if the run listing limit was reached.")


class Usage(BaseModel):
    """Used and total bytes, and their ratio (0-1)."""

    used_bytes: int
    total_bytes: int
    ratio: float


class ProcessInfo(BaseModel):
    """This worker process."""

    pid: int
    rss_bytes: int
    threads: int


class SystemPerformance(BaseModel):
    """``GET /performance/system``: the host now, with the alert limits for reference."""

    measured_at: datetime
    source: Literal["collector", "sample"] = Field(
        description="collector: the gauges the system collector last published (CPU over its "
        "interval); sample: read now (before the collector's first publication)."
    )
    cpu_percent: float
    memory: Usage
    disk: Usage
    load_average: list[float]
    process: ProcessInfo
    thresholds: dict[str, float]


class Accuracy(BaseModel):
    """Realised accuracy from feedback labels, and how many labels it rests on."""

    value: float | None = None
    n: int = 0


class EstimatedAccuracy(BaseModel):
    """Accuracy estimated without labels (CBPE) by the last model-quality job."""

    value: float | None = None
    stderr: float | None = None
    n: int = 0
    computed_at: datetime | None = None


class ModelPerformance(BaseModel):
    """One model's accuracy (three ways) and latency."""

    model: str
    version: str
    holdout_accuracy: float | None = None
    # LowModelAccuracy's limit for this model: the floor, or its baseline minus the tolerance.
    accuracy_limit: float
    accuracy: Accuracy
    estimated_accuracy: EstimatedAccuracy
    predictions: int
    latency_seconds: Percentiles


class ModelsPerformance(BaseModel):
    """``GET /performance/models``."""

    window: TimeWindow
    accuracy_threshold: float
    accuracy_min_samples: float
    models: list[ModelPerformance]


class FeatureDrift(BaseModel):
    """Drift of one feature in the last stored window: scores by method, the decision."""

    feature: str
    scores: dict[str, float | None]
    adjusted_pvalue: float | None = None
    n: int
    drifted: bool
    decided: bool = Field(
        True,
        description="The distribution was tested: the window is decided and holds at least "
        "the minimum window of this feature's values. A score not decided rests on too few "
        "values to compare with the threshold.",
    )


class WindowQuality(BaseModel):
    """Data quality of the last stored window: share of clean values and issue counts."""

    score: float | None = None
    n_rows: int = 0
    n_issues: int = 0
    by_feature: dict[str, dict[str, int]] = Field(default_factory=dict)


class ModelDataQuality(BaseModel):
    """One model's latest drift result plus the live per-request quality gauge."""

    model: str
    computed_at: datetime | None = None
    version: str | None = None
    window_size: int = 0
    decided: bool = False
    reason: str | None = None
    drift_share: float | None = None
    drifted_features: list[str] = Field(default_factory=list)
    features: list[FeatureDrift] = Field(default_factory=list)
    quality: WindowQuality = Field(default_factory=WindowQuality)
    request_quality_score: float | None = Field(
        None, description="ml_data_quality_score: clean share over this worker's recent requests."
    )


class DataQualityOverview(BaseModel):
    """``GET /data-quality/overview``."""

    drift_threshold: float
    models: list[ModelDataQuality]


class ClinicalInterval(BaseModel):
    """A realised metric, its 95 % interval and its denominator ``n``.

    ``value`` (and the bounds) are null when ``n`` is below ``min_count`` or the metric is
    not defined (an AUC with one class absent); ``n`` is always given.
    """

    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    n: int = 0


class ClinicalEstimate(BaseModel):
    """A label-free estimate (CBPE) and its standard error; null below ``min_count``."""

    value: float | None = None
    stderr: float | None = None
    n: int = 0


class ClinicalClass(BaseModel):
    """One class at the operating point (one-vs-rest)."""

    recall: ClinicalInterval = Field(
        description="Sensitivity (the other class's recall is the specificity); n = actual."
    )
    precision: ClinicalInterval = Field(
        description="PPV (the other class's precision is the NPV); n = predicted as the class."
    )
    f1: float | None = None
    prevalence: ClinicalInterval = Field(description="Share of labelled rows of this class.")
    positive_rate: ClinicalInterval = Field(
        description="Share of ALL predictions in the window answered with this class (the "
        "alert burden), labelled or not; n = predictions."
    )
    recall_estimated: ClinicalEstimate
    precision_estimated: ClinicalEstimate


class ClinicalReliabilityBin(BaseModel):
    """One bin of the reliability curve (binary: P(positive); multiclass: top label)."""

    lower: float
    upper: float
    mean_predicted: float | None = None
    observed: float | None = None
    count: int


class ClinicalSegment(BaseModel):
    """Every clinical metric of one segment: ``all`` or ``<feature>=<group>``."""

    segment: str
    labelled: int = Field(description="Labelled predictions (realised metrics).")
    predictions: int = Field(description="Predictions (estimates and positive rate).")
    accuracy: ClinicalInterval
    classes: dict[str, ClinicalClass]
    roc_auc: ClinicalInterval
    roc_auc_estimated: ClinicalEstimate
    brier_score: float | None = None
    calibration_error: float | None = None
    reliability: list[ClinicalReliabilityBin]


class ClinicalExcluded(BaseModel):
    """Stored rows left out because their classes or probabilities do not fit the model."""

    labelled: int = 0
    predictions: int = 0


class ClinicalPerformance(BaseModel):
    """``GET /performance/clinical``: one model's clinical metrics per segment."""

    model: str
    version: str
    since: datetime
    until: datetime
    hours: float
    source: Literal["quality_job", "on_demand"] = Field(
        default="on_demand",
        description=(
            "quality_job: the model-quality job's stored result (no window given: its window "
            "ends at computed_at); on_demand: computed now from at most rows_limit predictions."
        ),
    )
    computed_at: datetime | None = Field(
        default=None, description="When the answer was computed (the job's run, or now)."
    )
    rows_read: int | None = Field(
        default=None, description="on_demand: predictions read (the newest of the window)."
    )
    rows_limit: int | None = Field(
        default=None,
        description="on_demand: the most predictions read; a fuller window is truncated.",
    )
    positive_class: str | None = Field(
        description="Binary models: the class whose recall is the sensitivity; null otherwise."
    )
    threshold: float | None = Field(
        description="P(positive) threshold the model serves with; null = the argmax rule."
    )
    classes: list[str]
    min_count: int = Field(description="ML_CLINICAL_MIN_COUNT: smallest denominator reported.")
    baseline: dict[str, Any] | None = Field(
        description="The bundle's holdout metrics at its operating point (null before issue 14)."
    )
    excluded: ClinicalExcluded
    segments: list[ClinicalSegment]
