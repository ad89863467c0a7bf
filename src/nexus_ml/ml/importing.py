"""Bring in a pipeline fitted elsewhere (a notebook, on a pandas DataFrame, saved with skops).

The artifact passes the same trusted-type check a bundle load does before anything of it is
built. The reference CSV (training or validation rows, with labels) is read exactly as
``nexus-ml train`` reads a file, and gives the feature schema, the metrics and the reference
profile: the pipeline is scored on every reference row, so ``holdout_accuracy`` is the accuracy
on those rows (optimistic when they are the rows it was fitted on). The pipeline must take
exactly the CSV's feature columns (its ``feature_names_in_``) and predict exactly the target's
labels; anything else is refused naming what differs. Messages name columns and classes, never
a cell's value.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from nexus_ml.ml.bundle import load_trusted, save_bundle
from nexus_ml.ml.bundle_paths import validate_name
from nexus_ml.ml.compat import check_replacement
from nexus_ml.ml.datasets import BUNDLED_MODELS
from nexus_ml.ml.operating import NOTHING_DECLARED, Declarations
from nexus_ml.ml.schema import FeatureSchema
from nexus_ml.ml.sources import TrainedModel
from nexus_ml.ml.tables import Table, read_table
from nexus_ml.ml.training import (
    declared_segments,
    resolve_operating_point,
    score_rows,
    table_profile,
)

MAX_ARTIFACT_BYTES = 512 * 1024 * 1024  # a 500-tree forest of depth 20 is far below this
_SHOWN = 5  # names listed in a refusal; the count says how many more


class ImportRefused(ValueError):
    """A pipeline that cannot be imported against its reference CSV; the message says why."""


def import_pipeline(
    model_file: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    target: str,
    name: str,
    model_path: str | os.PathLike[str],
    *,
    categorical: Sequence[str] = (),
    nullable: Sequence[str] = (),
    declared: Declarations = NOTHING_DECLARED,
    replace_incompatible: bool = False,
    created_by: str | None = None,
) -> TrainedModel:
    """Check ``model_file`` against ``reference`` and save it as the CURRENT version of ``name``.

    Refused (``IncompatibleVersion``) if its schema differs from the champion's, unless
    ``replace_incompatible``.

    ``declared`` gives its segments, positive class and threshold, as ``nexus-ml train`` takes
    them; the reference rows are scored at that operating point.

    Raises ``BundleError`` (untrusted types, a pipeline a load would refuse), ``ImportRefused``
    (columns or classes that differ, rows it cannot answer) or ``TrainingDataError`` (the CSV).
    """
    validate_name(name)  # before reading anything
    if name in BUNDLED_MODELS:
        # Bundled names stay the bundled datasets': `serve` trains them when they are missing.
        raise ImportRefused(f"{name!r} is a bundled model's name: choose another")
    pipeline = load_trusted(_read_artifact(model_file))
    table = read_table(reference, target, categorical=categorical, nullable=nullable)
    table = _aligned(pipeline, table)
    classes = _checked_classes(pipeline, table.y)
    _check_missing_marker(pipeline)
    segments = declared_segments(declared, table.schema, table.frame)
    point = resolve_operating_point(table.y, declared)
    started = time.perf_counter()
    proba = _answers(pipeline, table)
    seconds = time.perf_counter() - started
    scored = score_rows(pipeline, table.frame, table.y, point, proba=proba)
    n = len(table.frame)
    metrics: dict[str, Any] = {
        "holdout_accuracy": scored.accuracy,
        "n_samples": n,
        "n_train": 0,  # fitted elsewhere: the reference rows are all scored, none trained here
        "n_holdout": n,
        "n_features": len(table.schema),
        "training_seconds": 0.0,
        "reference_scoring_seconds": seconds,
    }
    profile = table_profile(
        table, classes=classes, confidence=scored.confidence, correct=scored.correct
    )
    # The reference path (never its rows) and how it was read, as `train` records its CSV.
    source: dict[str, Any] = {
        "kind": "import",
        "path": str(Path(reference).resolve()),
        "target": target,
    }
    if categorical:
        source["categorical"] = sorted(categorical)
    if nullable:
        source["nullable"] = sorted(nullable)
    check_replacement(
        model_path,
        name,
        {"features": table.schema.to_list(), "classes": list(classes)},
        allow=replace_incompatible,
    )
    version = save_bundle(
        model_path,
        name,
        pipeline,
        schema=table.schema,
        classes=classes,
        metrics=metrics,
        profile=profile,
        source=source,
        operating_point=point.to_dict(),
        segments=segments,
        baseline=scored.baseline,
        created_by=created_by,
    )
    return TrainedModel(version, metrics)


def _read_artifact(model_file: str | os.PathLike[str]) -> bytes:
    path = Path(model_file)
    try:
        if path.stat().st_size > MAX_ARTIFACT_BYTES:
            raise ImportRefused(f"the model file is larger than {MAX_ARTIFACT_BYTES // 2**20} MiB")
        return path.read_bytes()
    except OSError as exc:
        raise ImportRefused(f"cannot read the model file ({type(exc).__name__})") from None


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _aligned(pipeline: Pipeline, table: Table) -> Table:
    """The table with its columns in the pipeline's order; refused unless the names match."""
    fitted = getattr(pipeline, "feature_names_in_", None)
    if fitted is None:
        raise ImportRefused(
            "the pipeline records no column names (it was fitted on an array): fit it on a "
            "pandas DataFrame whose columns are the CSV's feature columns"
        )
    expected = [str(n) for n in fitted]
    columns = list(table.schema.names)
    missing = [n for n in expected if n not in columns]
    extra = [n for n in columns if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"the pipeline needs columns the CSV lacks: {_names(missing)}")
        if extra:
            parts.append(
                f"the CSV has feature columns the pipeline was not fitted on: {_names(extra)} "
                "(drop them from the CSV)"
            )
        raise ImportRefused("; ".join(parts))
    if expected == columns:
        return table
    # Same columns, another order: serve them in the pipeline's order (it selects by name).
    by_name = {spec.name: spec for spec in table.schema.features}
    schema = FeatureSchema(tuple(by_name[n] for n in expected))
    return Table(table.frame[expected], table.y, schema)


def _checked_classes(pipeline: Pipeline, y: np.ndarray) -> list[str]:
    fitted = getattr(pipeline, "classes_", None)
    if fitted is None:
        raise ImportRefused("the pipeline's last step is not a fitted classifier (no classes_)")
    classes = [str(c) for c in fitted]
    labels = sorted({str(v) for v in y})
    if sorted(classes) != labels:
        only_model = [c for c in classes if c not in labels]
        only_csv = [c for c in labels if c not in classes]
        parts = []
        if only_model:
            parts.append(f"classes the target column never holds: {_names(only_model)}")
        if only_csv:
            parts.append(f"target labels the pipeline cannot predict: {_names(only_csv)}")
        raise ImportRefused(
            "the pipeline's classes differ from the target's labels: " + "; ".join(parts)
        )
    return classes


def _fitted_steps(estimator: Any) -> list[Any]:
    """``estimator`` and every fitted estimator inside it (pipelines, column transformers)."""
    found, stack = [], [estimator]
    while stack:
        current = stack.pop()
        found.append(current)
        for step in getattr(current, "steps", None) or ():
            stack.append(step[1])
        for entry in getattr(current, "transformers_", None) or ():
            stack.append(entry[1])
    return found


def _check_missing_marker(pipeline: Pipeline) -> None:
    """Refuse a pipeline fitted with None as the missing category: the service sends NaN.

    pandas.read_csv gives NaN for an empty text cell, but DataFrames built from records, SQL or
    Parquet often hold None; encoders and imputers treat the two as different values, so such
    a pipeline would answer a missing category as an unknown one, silently.
    """
    for step in _fitted_steps(pipeline):
        if any(
            any(value is None for value in np.asarray(cats, dtype=object).ravel())
            for cats in getattr(step, "categories_", None) or ()
        ) or (hasattr(step, "statistics_") and getattr(step, "missing_values", np.nan) is None):
            raise ImportRefused(
                f"{type(step).__name__} was fitted with None as a missing text value, but the "
                "service sends missing categories as NaN (as pandas.read_csv does): refit on "
                "df.fillna(value=np.nan)"
            )


def _answers(pipeline: Pipeline, table: Table) -> np.ndarray:
    """predict_proba on the reference rows exactly as serving builds them."""
    try:
        proba = np.asarray(pipeline.predict_proba(table.frame), dtype=np.float64)
    except Exception as exc:  # the type only: a library's message may quote a cell
        raise ImportRefused(
            "the pipeline cannot answer the reference rows as the service sends them (numbers "
            "as float64 with NaN for missing, categories as text with None for missing): "
            f"{type(exc).__name__}"
        ) from None
    if proba.shape != (len(table.frame), len(pipeline.classes_)) or not np.isfinite(proba).all():
        raise ImportRefused("the pipeline's probabilities on the reference rows are not finite")
    return proba
