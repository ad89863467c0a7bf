"""Training: the bundled models and user models from CSV, saved as bundles."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from nexus_ml.ml.bundle import current_version, load_metadata, save_bundle, validate_name
from nexus_ml.ml.datasets import (
    BUNDLED_MODELS,
    READMISSION_TARGET,
    TABLE_DATASETS,
    load_dataset,
    write_dataset_csv,
)
from nexus_ml.ml.estimators import (
    ESTIMATORS,
    HGB_MAX_CATEGORIES,
    Estimator,
    make_pipeline,
    pipeline_for,
)
from nexus_ml.ml.labels import LabelError, check_class_labels
from nexus_ml.ml.profile import build_profile
from nexus_ml.ml.schema import FeatureSchema
from nexus_ml.ml.tables import MIN_ROWS, Table, TrainingDataError, read_table

HOLDOUT_FRACTION = 0.2
MIN_ROWS_PER_CLASS = 2  # a stratified split needs each class on both sides

# progress(model_name, models_done, models_total): enough for a Rich progress bar in the CLI.
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainResult:
    """A fitted pipeline with what its bundle needs."""

    pipeline: Pipeline
    schema: FeatureSchema
    classes: tuple[str, ...]
    metrics: dict[str, Any]
    holdout_confidence: np.ndarray
    profile: dict[str, Any]


class TrainedModel(NamedTuple):
    """A trained model saved as a bundle: its new version and training metrics."""

    version: str
    metrics: dict[str, Any]


def train_pipeline(
    X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *, seed: int = 42
) -> TrainResult:
    """Fit StandardScaler + LogisticRegression on a number array (the bundled models)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(str)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise TrainingDataError("X must be 2-D with one column per feature name")
    if not np.isfinite(X).all():
        raise TrainingDataError("features must be finite numbers")
    _check_labels(y, X.shape[0])
    fit = _fit(make_pipeline(), X, y, seed)
    profile = build_profile(
        X,
        list(feature_names),
        y=y,
        classes=list(fit.classes),
        confidence=fit.confidence,
        correct=fit.correct,
    )
    return fit.result(FeatureSchema.from_training(X, feature_names), profile)


def train_table(table: Table, *, estimator: Estimator = "logistic", seed: int = 42) -> TrainResult:
    """Fit ``estimator``'s pipeline on a typed table, score the holdout, profile the data."""
    schema = table.schema
    _check_labels(table.y, len(table.frame))
    if estimator == "hist_gradient_boosting":
        for spec in schema.features:
            if spec.is_category and len(spec.categories) > HGB_MAX_CATEGORIES:
                raise TrainingDataError(
                    f"column {spec.name!r} has more than {HGB_MAX_CATEGORIES} categories, "
                    "more than hist_gradient_boosting can take"
                )
    fit = _fit(pipeline_for(schema, estimator, seed=seed), table.frame, table.y, seed)
    profile = table_profile(
        table, classes=fit.classes, confidence=fit.confidence, correct=fit.correct
    )
    return fit.result(schema, profile)


@dataclass(frozen=True)
class _Fitted:
    pipeline: Pipeline
    classes: tuple[str, ...]
    metrics: dict[str, Any]
    confidence: np.ndarray
    correct: np.ndarray

    def result(self, schema: FeatureSchema, profile: dict[str, Any]) -> TrainResult:
        return TrainResult(
            pipeline=self.pipeline,
            schema=schema,
            classes=self.classes,
            metrics=self.metrics,
            holdout_confidence=self.confidence,
            profile=profile,
        )


def _fit(pipeline: Pipeline, X: Any, y: np.ndarray, seed: int) -> _Fitted:
    """Fit on a stratified 80 % and score on the 20 % holdout."""
    X_train, X_hold, y_train, y_hold = train_test_split(
        X, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=seed
    )
    started = time.perf_counter()
    pipeline.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    proba = pipeline.predict_proba(X_hold)
    predicted = pipeline.classes_[proba.argmax(axis=1)]
    metrics = {
        "holdout_accuracy": float(np.mean(pipeline.predict(X_hold) == y_hold)),
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
        confidence=proba.max(axis=1),
        correct=predicted == y_hold,
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


def train_from_csv(
    path: str | os.PathLike[str],
    target: str,
    name: str,
    model_path: str | os.PathLike[str],
    *,
    seed: int = 42,
    estimator: Estimator = "logistic",
    categorical: Sequence[str] = (),
    nullable: Sequence[str] = (),
) -> TrainedModel:
    """Train a user model from a CSV file and save it as the CURRENT version of ``name``."""
    validate_name(name)  # fail before reading or training anything
    if estimator not in ESTIMATORS:
        raise TrainingDataError(f"estimator must be one of {', '.join(ESTIMATORS)}")
    table = read_table(path, target, categorical=categorical, nullable=nullable)
    result = train_table(table, estimator=estimator, seed=seed)
    # The path and the options (never the data) are kept so a retrain reads the same file
    # the same way.
    source: dict[str, Any] = {
        "kind": "csv",
        "path": str(Path(path).resolve()),
        "target": target,
        "estimator": estimator,
    }
    if categorical:
        source["categorical"] = sorted(categorical)
    if nullable:
        source["nullable"] = sorted(nullable)
    return _save(model_path, name, result, source)


def train_bundled(name: str, model_path: str | os.PathLike[str], *, seed: int = 42) -> TrainedModel:
    """Train one bundled dataset's model and save it as its CURRENT version."""
    if name in TABLE_DATASETS:
        # Through the CSV path a user's file takes: same inference, same frame, same checks.
        with tempfile.TemporaryDirectory() as folder:
            path = write_dataset_csv(name, Path(folder) / f"{name}.csv")
            table = read_table(path, READMISSION_TARGET)
        # One OpenMP thread: on 3,000 rows the thread team costs more than it saves, and on a
        # busy host it spins against the service (0.8 s against 5.2 s at a first start).
        with threadpool_limits(limits=1, user_api="openmp"):
            result = train_table(table, estimator="hist_gradient_boosting", seed=seed)
    else:
        data = load_dataset(name)
        result = train_pipeline(data.X, data.y, data.feature_names, seed=seed)
    return _save(model_path, name, result, {"kind": "bundled", "dataset": name})


def retrain_model(model_path: str | os.PathLike[str], name: str, *, seed: int = 42) -> TrainedModel:
    """Train a new version of ``name`` from the source its CURRENT version was trained on."""
    if name in BUNDLED_MODELS:
        return train_bundled(name, model_path, seed=seed)
    source = load_metadata(model_path, name).get("source") or {}
    if source.get("kind") == "import":
        raise TrainingDataError(
            f"model {name!r} was imported (fitted elsewhere): import a new version instead"
        )
    if source.get("kind") != "csv":
        raise TrainingDataError(f"model {name!r} records no training source to retrain from")
    return train_from_csv(
        source["path"],
        source["target"],
        name,
        model_path,
        seed=seed,
        estimator=source.get("estimator", "logistic"),
        categorical=source.get("categorical", ()),
        nullable=source.get("nullable", ()),
    )


def _save(
    model_path: str | os.PathLike[str],
    name: str,
    result: TrainResult,
    source: dict[str, Any],
) -> TrainedModel:
    version = save_bundle(
        model_path,
        name,
        result.pipeline,
        schema=result.schema,
        classes=result.classes,
        metrics=result.metrics,
        profile=result.profile,
        source=source,
    )
    return TrainedModel(version, result.metrics)


def ensure_bundled_models(
    model_path: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    *,
    names: Sequence[str] = BUNDLED_MODELS,
) -> list[str]:
    """Train each bundled model (of ``names``) that has no CURRENT version yet; return them."""
    missing = [n for n in names if current_version(model_path, n) is None]
    for done, name in enumerate(missing):
        if progress is not None:
            progress(name, done, len(missing))
        train_bundled(name, model_path)
        if progress is not None:
            progress(name, done + 1, len(missing))
    return missing
