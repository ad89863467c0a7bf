"""Training: the bundled models and user models from CSV, saved as bundles.

Besides the data, a model declares (``Declarations``) its segments, its positive class and its
decision threshold. The holdout is scored at that operating point: ``holdout_accuracy``, the
profile's confidence (the served class's probability) and the baseline (the holdout's
``stats.clinical.realised``, stored in the metadata) all describe what the model will serve.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from nexus_ml.ml.estimators import (
    HGB_MAX_CATEGORIES,
    Estimator,
    make_pipeline,
    pipeline_for,
)
from nexus_ml.ml.labels import LabelError, check_class_labels
from nexus_ml.ml.operating import (
    NOTHING_DECLARED,
    Declarations,
    decide,
    default_positive_class,
)
from nexus_ml.ml.profile import build_profile
from nexus_ml.ml.schema import FeatureSchema
from nexus_ml.ml.segments import SegmentError, parse_segments
from nexus_ml.ml.tables import MIN_ROWS, Table, TrainingDataError
from nexus_ml.stats.clinical import realised

HOLDOUT_FRACTION = 0.2
MIN_ROWS_PER_CLASS = 2  # a stratified split needs each class on both sides


@dataclass(frozen=True)
class OperatingPoint:
    """The resolved positive class (None: multiclass) and threshold (None: argmax)."""

    positive_class: str | None
    threshold: float | None

    def to_dict(self) -> dict[str, Any]:
        """The metadata form."""
        return {"positive_class": self.positive_class, "threshold": self.threshold}


@dataclass(frozen=True)
class Holdout:
    """The rows a model was scored on (in memory only: never saved, never logged)."""

    X: Any
    y: np.ndarray


@dataclass(frozen=True)
class TrainResult:
    """A fitted pipeline with what its bundle needs."""

    pipeline: Pipeline
    schema: FeatureSchema
    classes: tuple[str, ...]
    metrics: dict[str, Any]
    holdout_confidence: np.ndarray
    profile: dict[str, Any]
    operating_point: OperatingPoint
    segments: list[dict[str, Any]]
    baseline: dict[str, Any]
    # The holdout, so a promotion policy can score the champion on the very same rows.
    holdout: Holdout | None = None

    def schema_view(self) -> dict[str, Any]:
        """The metadata fields a compatibility check reads (``ml.compat``)."""
        return {"features": self.schema.to_list(), "classes": list(self.classes)}


def train_pipeline(
    X: np.ndarray,
    y: np.ndarray,
    feature_names: Sequence[str],
    *,
    seed: int = 42,
    declared: Declarations = NOTHING_DECLARED,
) -> TrainResult:
    """Fit StandardScaler + LogisticRegression on a number array (the bundled models)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(str)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise TrainingDataError("X must be 2-D with one column per feature name")
    if not np.isfinite(X).all():
        raise TrainingDataError("features must be finite numbers")
    _check_labels(y, X.shape[0])
    schema = FeatureSchema.from_training(X, feature_names)
    columns = {name: X[:, j] for j, name in enumerate(feature_names)}
    segments = declared_segments(declared, schema, columns)
    point = resolve_operating_point(y, declared)
    fit = _fit(make_pipeline(), X, y, seed, point)
    profile = build_profile(
        X,
        list(feature_names),
        y=y,
        classes=list(fit.classes),
        confidence=fit.confidence,
        correct=fit.correct,
    )
    return fit.result(schema, profile, segments)


def train_table(
    table: Table,
    *,
    estimator: Estimator = "logistic",
    seed: int = 42,
    declared: Declarations = NOTHING_DECLARED,
) -> TrainResult:
    """Fit ``estimator``'s pipeline on a typed table, score the holdout, profile the data."""
    schema = table.schema
    _check_labels(table.y, len(table.frame))
    segments = declared_segments(declared, schema, table.frame)
    point = resolve_operating_point(table.y, declared)
    if estimator == "hist_gradient_boosting":
        for spec in schema.features:
            if spec.is_category and len(spec.categories) > HGB_MAX_CATEGORIES:
                raise TrainingDataError(
                    f"column {spec.name!r} has more than {HGB_MAX_CATEGORIES} categories, "
                    "more than hist_gradient_boosting can take"
                )
    fit = _fit(pipeline_for(schema, estimator, seed=seed), table.frame, table.y, seed, point)
    profile = table_profile(
        table, classes=fit.classes, confidence=fit.confidence, correct=fit.correct
    )
    return fit.result(schema, profile, segments)


def declared_segments(
    declared: Declarations, schema: FeatureSchema, frame: Any
) -> list[dict[str, Any]]:
    """The declared segments over ``schema`` (metadata form), or TrainingDataError."""
    try:
        found = parse_segments(
            declared.segments, schema, frame, max_groups=declared.max_segment_groups
        )
    except SegmentError as exc:
        raise TrainingDataError(str(exc)) from None
    return [segment.to_dict() for segment in found]


def resolve_operating_point(y: np.ndarray, declared: Declarations) -> OperatingPoint:
    """The positive class and threshold for labels ``y``: as declared, else the default rule."""
    labels, counts = np.unique(np.asarray(y).astype(str), return_counts=True)
    classes = [str(c) for c in labels]  # scikit-learn's classes_ order
    if len(classes) != 2:
        if declared.positive_class is not None or declared.threshold is not None:
            raise TrainingDataError(
                f"a positive class and a threshold apply to binary models only; the target has "
                f"{len(classes)} classes"
            )
        return OperatingPoint(None, None)
    positive = declared.positive_class
    if positive is None:
        positive = default_positive_class(classes, counts.tolist())
    elif positive not in classes:
        raise TrainingDataError("the positive class is not one of the target's classes")
    threshold = declared.threshold
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise TrainingDataError("the threshold must lie strictly between 0 and 1")
    return OperatingPoint(positive, threshold)


@dataclass(frozen=True)
class Scored:
    """Rows scored at an operating point: what the model serves on them, and how it fares."""

    predicted: np.ndarray  # served class names
    confidence: np.ndarray  # the served class's probability
    correct: np.ndarray
    baseline: dict[str, Any]

    @property
    def accuracy(self) -> float:
        """Share of rows served their actual class."""
        return float(np.mean(self.correct))


def score_rows(
    pipeline: Any, X: Any, y: np.ndarray, point: OperatingPoint, *, proba: np.ndarray | None = None
) -> Scored:
    """Score labelled rows as the service would serve them (at ``point``)."""
    classes = np.asarray([str(c) for c in pipeline.classes_])
    if proba is None:
        proba = np.asarray(pipeline.predict_proba(X), dtype=np.float64)
    if point.threshold is not None and point.positive_class is not None:
        index = decide(
            proba, int(np.flatnonzero(classes == point.positive_class)[0]), point.threshold
        )
    else:
        # scikit-learn's own rule (what the argmax predictor serves, ties included).
        position = {c: i for i, c in enumerate(classes.tolist())}
        index = np.asarray([position[str(c)] for c in pipeline.predict(X)], dtype=np.intp)
    predicted = classes[index]
    actual = np.asarray(y).astype(str)
    baseline = realised(
        actual, predicted, proba, classes.tolist(), positive_class=point.positive_class
    )
    return Scored(
        predicted=predicted,
        confidence=proba[np.arange(len(index)), index],
        correct=predicted == actual,
        baseline=baseline.to_dict(),
    )


@dataclass(frozen=True)
class _Fitted:
    pipeline: Pipeline
    classes: tuple[str, ...]
    metrics: dict[str, Any]
    scored: Scored
    point: OperatingPoint
    holdout: Holdout

    @property
    def confidence(self) -> np.ndarray:
        return self.scored.confidence

    @property
    def correct(self) -> np.ndarray:
        return self.scored.correct

    def result(
        self, schema: FeatureSchema, profile: dict[str, Any], segments: list[dict[str, Any]]
    ) -> TrainResult:
        return TrainResult(
            pipeline=self.pipeline,
            schema=schema,
            classes=self.classes,
            metrics=self.metrics,
            holdout_confidence=self.confidence,
            profile=profile,
            operating_point=self.point,
            segments=segments,
            baseline=self.scored.baseline,
            holdout=self.holdout,
        )


def _fit(pipeline: Pipeline, X: Any, y: np.ndarray, seed: int, point: OperatingPoint) -> _Fitted:
    """Fit on a stratified 80 % and score on the 20 % holdout at the operating point."""
    X_train, X_hold, y_train, y_hold = train_test_split(
        X, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=seed
    )
    started = time.perf_counter()
    pipeline.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    scored = score_rows(pipeline, X_hold, y_hold, point)
    metrics = {
        "holdout_accuracy": scored.accuracy,
        "n_samples": int(X.shape[0]),
        "n_train": int(X_train.shape[0]),
        "n_holdout": int(X_hold.shape[0]),
        "n_features": int(X.shape[1]),
        "training_seconds": seconds,
    }
    return _Fitted(
        pipeline=pipeline,
        classes=tuple(str(c) for c in pipeline.classes_),
        metrics=metrics,
        scored=scored,
        point=point,
        holdout=Holdout(X_hold, np.asarray(y_hold)),
    )


def table_profile(
    table: Table,
    *,
    classes: Sequence[str],
    confidence: np.ndarray | None = None,
    correct: np.ndarray | None = None,
) -> dict[str, Any]:
    """The reference profile of a typed table: numbers and categories profiled apart, then
    put in schema order. ``confidence``/``correct`` are the holdout's (see build_profile)."""
    schema, frame = table.schema, table.frame
    numbers = [f.name for f in schema.features if not f.is_category]
    categories = [f.name for f in schema.features if f.is_category]
    profile = build_profile(
        frame[numbers].to_numpy(dtype=np.float64) if numbers else np.zeros((len(frame), 0)),
        numbers,
        y=table.y,
        classes=list(classes),
        confidence=confidence,
        correct=correct,
    )
    if categories:
        cats = build_profile(
            frame[categories].to_numpy(dtype=object), categories, categorical=categories
        )
        profile["features"].update(cats["features"])
    profile["feature_names"] = list(schema.names)
    profile["features"] = {name: profile["features"][name] for name in schema.names}
    return profile


def _check_labels(y: np.ndarray, n_rows: int) -> None:
    if y.shape != (n_rows,):
        raise TrainingDataError("y must have one label per row of X")
    if n_rows < MIN_ROWS:
        raise TrainingDataError(f"need at least {MIN_ROWS} rows, got {n_rows}")
    labels, counts = np.unique(y, return_counts=True)
    try:
        # Every answered prediction must be storable in both stores and able to get feedback.
        check_class_labels(labels.tolist())
    except LabelError as exc:
        raise TrainingDataError(f"target: {exc}") from None
    if len(labels) < 2:
        raise TrainingDataError("the target needs at least 2 classes")
    if counts.min() < MIN_ROWS_PER_CLASS:
        raise TrainingDataError(f"every class needs at least {MIN_ROWS_PER_CLASS} rows")
    if math.ceil(HOLDOUT_FRACTION * n_rows) < len(labels):
        raise TrainingDataError("too few rows for a holdout holding every class")
