"""Training: the bundled models and user models from CSV, saved as bundles."""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from nexus_ml.ml.bundle import current_version, load_metadata, save_bundle, validate_name
from nexus_ml.ml.datasets import BUNDLED_DATASETS, load_dataset, sanitize_feature_name
from nexus_ml.ml.labels import RULE, LabelError, check_class_labels, label_problem
from nexus_ml.ml.profile import build_profile
from nexus_ml.ml.schema import FeatureSchema

HOLDOUT_FRACTION = 0.2
MIN_ROWS = 10
MIN_ROWS_PER_CLASS = 2  # a stratified split needs each class on both sides

# progress(model_name, models_done, models_total): enough for a Rich progress bar in the CLI.
ProgressCallback = Callable[[str, int, int], None]


class TrainingDataError(ValueError):
    """Training data that cannot produce a model; the message says why (never a value)."""


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


def make_pipeline() -> Pipeline:
    """The estimator every model uses: standardise, then logistic regression."""
    return Pipeline(
        [("scaler", StandardScaler()), ("classifier", LogisticRegression(max_iter=5000))]
    )


def train_pipeline(
    X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *, seed: int = 42
) -> TrainResult:
    """Fit on a stratified 80 % and score on the 20 % holdout; profile the data."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(str)
    _check_shape(X, y, feature_names)
    X_train, X_hold, y_train, y_hold = train_test_split(
        X, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=seed
    )
    pipeline = make_pipeline()
    started = time.perf_counter()
    pipeline.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    proba = pipeline.predict_proba(X_hold)
    predicted = pipeline.classes_[proba.argmax(axis=1)]
    confidence = proba.max(axis=1)
    classes = tuple(str(c) for c in pipeline.classes_)
    metrics = {
        "holdout_accuracy": float(np.mean(pipeline.predict(X_hold) == y_hold)),
        "n_samples": int(X.shape[0]),
        "n_train": int(X_train.shape[0]),
        "n_holdout": int(X_hold.shape[0]),
        "n_features": int(X.shape[1]),
        "training_seconds": seconds,
    }
    profile = build_profile(
        X,
        list(feature_names),
        y=y,
        classes=list(classes),
        confidence=confidence,
        correct=predicted == y_hold,
    )
    return TrainResult(
        pipeline=pipeline,
        schema=FeatureSchema.from_training(X, feature_names),
        classes=classes,
        metrics=metrics,
        holdout_confidence=confidence,
        profile=profile,
    )


def _check_shape(X: np.ndarray, y: np.ndarray, feature_names: Sequence[str]) -> None:
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise TrainingDataError("X must be 2-D with one column per feature name")
    if y.shape != (X.shape[0],):
        raise TrainingDataError("y must have one label per row of X")
    if X.shape[0] < MIN_ROWS:
        raise TrainingDataError(f"need at least {MIN_ROWS} rows, got {X.shape[0]}")
    if not np.isfinite(X).all():
        raise TrainingDataError("features must be finite numbers")
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
    if math.ceil(HOLDOUT_FRACTION * X.shape[0]) < len(labels):
        raise TrainingDataError("too few rows for a holdout holding every class")


def read_csv(path: str | os.PathLike[str], target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Numeric features, string labels and sanitised feature names from a CSV with a header."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as fh:
            return _parse_csv(csv.reader(fh), target)
    except OSError as exc:
        raise TrainingDataError(f"cannot read the CSV file ({type(exc).__name__})") from exc
    except UnicodeDecodeError:
        raise TrainingDataError("the CSV file is not UTF-8 text") from None
    except csv.Error:
        raise TrainingDataError("the file is not valid CSV") from None


def _parse_csv(
    reader: Iterator[list[str]], target: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    header = next(reader, None)
    if not header:
        raise TrainingDataError("the CSV file is empty; expected a header row")
    header = [h.strip() for h in header]
    if target not in header:
        raise TrainingDataError(f"target column {target!r} is not in the CSV header")
    t = header.index(target)
    feature_cols = [i for i in range(len(header)) if i != t]
    if not feature_cols:
        raise TrainingDataError("the CSV has no feature columns besides the target")
    try:
        names = [sanitize_feature_name(header[i]) for i in feature_cols]
    except ValueError:
        raise TrainingDataError("every feature column needs a name") from None
    if len(set(names)) != len(names):
        raise TrainingDataError("feature column names collide after sanitising")
    rows: list[list[float]] = []
    labels: list[str] = []
    for line_no, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue  # blank lines are not data
        if len(record) != len(header):
            raise TrainingDataError(
                f"line {line_no} has {len(record)} fields, the header has {len(header)}"
            )
        label = record[t].strip()
        if not label:
            raise TrainingDataError(f"line {line_no}: target column {target!r} is empty")
        problem = label_problem(label)
        if problem is not None:  # the line, never the value: a label may be patient data
            raise TrainingDataError(f"line {line_no}: the target value {problem}; {RULE}")
        rows.append([_number(record[i], header[i], line_no) for i in feature_cols])
        labels.append(label)
    if len(rows) < MIN_ROWS:
        raise TrainingDataError(f"need at least {MIN_ROWS} data rows, got {len(rows)}")
    return np.array(rows, dtype=np.float64), np.array(labels, dtype=str), names


def _number(cell: str, column: str, line_no: int) -> float:
    # The message names the column and line only: a cell may hold patient data.
    try:
        value = float(cell)
    except ValueError:
        raise TrainingDataError(
            f"line {line_no}: column {column!r} must be numeric (empty or non-numeric value)"
        ) from None
    if not math.isfinite(value):
        raise TrainingDataError(f"line {line_no}: column {column!r} must be a finite number")
    return value


def train_from_csv(
    path: str | os.PathLike[str],
    target: str,
    name: str,
    model_path: str | os.PathLike[str],
    *,
    seed: int = 42,
) -> TrainedModel:
    """Train a user model from a CSV file and save it as the CURRENT version of ``name``."""
    validate_name(name)  # fail before reading or training anything
    X, y, names = read_csv(path, target)
    result = train_pipeline(X, y, names, seed=seed)
    # The path (never the data) is kept so a retrain can read the same file again.
    source = {"kind": "csv", "path": str(Path(path).resolve()), "target": target}
    return _save(model_path, name, result, source)


def train_bundled(name: str, model_path: str | os.PathLike[str], *, seed: int = 42) -> TrainedModel:
    """Train one bundled dataset's model and save it as its CURRENT version."""
    data = load_dataset(name)
    result = train_pipeline(data.X, data.y, data.feature_names, seed=seed)
    return _save(model_path, name, result, {"kind": "bundled", "dataset": name})


def retrain_model(model_path: str | os.PathLike[str], name: str, *, seed: int = 42) -> TrainedModel:
    """Train a new version of ``name`` from the source its CURRENT version was trained on."""
    if name in BUNDLED_DATASETS:
        return train_bundled(name, model_path, seed=seed)
    source = load_metadata(model_path, name).get("source") or {}
    if source.get("kind") != "csv":
        raise TrainingDataError(f"model {name!r} records no training source to retrain from")
    return train_from_csv(source["path"], source["target"], name, model_path, seed=seed)


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
    model_path: str | os.PathLike[str], progress: ProgressCallback | None = None
) -> list[str]:
    """Train each bundled model that has no CURRENT version yet; return the names trained."""
    missing = [n for n in BUNDLED_DATASETS if current_version(model_path, n) is None]
    for done, name in enumerate(missing):
        if progress is not None:
            progress(name, done, len(missing))
        train_bundled(name, model_path)
        if progress is not None:
            progress(name, done + 1, len(missing))
    return missing
