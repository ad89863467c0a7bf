"""Where a model version comes from, trained and saved as a bundle: a bundled dataset, a
user's CSV, or a retrain from the source the current version records (``ml.training`` fits;
``ml.importing`` takes a pipeline fitted elsewhere).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from threadpoolctl import threadpool_limits

from nexus_ml.ml.bundle import load_metadata, save_bundle
from nexus_ml.ml.bundle_paths import validate_name
from nexus_ml.ml.compat import check_replacement
from nexus_ml.ml.datasets import (
    BUNDLED_DECLARATIONS,
    BUNDLED_MODELS,
    READMISSION_TARGET,
    TABLE_DATASETS,
    load_dataset,
    write_dataset_csv,
)
from nexus_ml.ml.estimators import ESTIMATORS, Estimator
from nexus_ml.ml.operating import NOTHING_DECLARED, Declarations
from nexus_ml.ml.pointers import current_version
from nexus_ml.ml.segments import MAX_SEGMENT_GROUPS, declaration_text
from nexus_ml.ml.tables import TrainingDataError, read_table
from nexus_ml.ml.training import TrainResult, train_pipeline, train_table

# progress(model_name, models_done, models_total): enough for a Rich progress bar in the CLI.
ProgressCallback = Callable[[str, int, int], None]


class TrainedModel(NamedTuple):
    """A trained model saved as a bundle: its new version and training metrics."""

    version: str
    metrics: dict[str, Any]


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
    declared: Declarations = NOTHING_DECLARED,
    replace_incompatible: bool = False,
    created_by: str | None = None,
) -> TrainedModel:
    """Train a user model from a CSV file and save it as the CURRENT version of ``name``.

    Refused (IncompatibleVersion, nothing saved) if its schema differs from the champion's,
    unless ``replace_incompatible``.
    """
    validate_name(name)  # fail before reading or training anything
    result, source = csv_candidate(
        path,
        target,
        seed=seed,
        estimator=estimator,
        categorical=categorical,
        nullable=nullable,
        declared=declared,
    )
    return save_result(
        model_path,
        name,
        result,
        source,
        replace_incompatible=replace_incompatible,
        created_by=created_by,
    )


def csv_candidate(
    path: str | os.PathLike[str],
    target: str,
    *,
    seed: int = 42,
    estimator: Estimator = "logistic",
    categorical: Sequence[str] = (),
    nullable: Sequence[str] = (),
    declared: Declarations = NOTHING_DECLARED,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train from a CSV without saving: the result and the source its bundle records."""
    if estimator not in ESTIMATORS:
        raise TrainingDataError(f"estimator must be one of {', '.join(ESTIMATORS)}")
    table = read_table(path, target, categorical=categorical, nullable=nullable)
    result = train_table(table, estimator=estimator, seed=seed, declared=declared)
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
    return result, source


def train_bundled(name: str, model_path: str | os.PathLike[str], *, seed: int = 42) -> TrainedModel:
    """Train one bundled dataset's model and save it as its CURRENT version."""
    return save_result(model_path, name, *bundled_candidate(name, seed=seed))


def bundled_candidate(name: str, *, seed: int = 42) -> tuple[TrainResult, dict[str, Any]]:
    """Train a bundled dataset's model without saving: the result and its source."""
    declared = BUNDLED_DECLARATIONS.get(name, NOTHING_DECLARED)
    if name in TABLE_DATASETS:
        # Through the CSV path a user's file takes: same inference, same frame, same checks.
        with tempfile.TemporaryDirectory() as folder:
            path = write_dataset_csv(name, Path(folder) / f"{name}.csv")
            table = read_table(path, READMISSION_TARGET)
        # One OpenMP thread: on 3,000 rows the thread team costs more than it saves, and on a
        # busy host it spins against the service (0.8 s against 5.2 s at a first start).
        with threadpool_limits(limits=1, user_api="openmp"):
            result = train_table(
                table, estimator="hist_gradient_boosting", seed=seed, declared=declared
            )
    else:
        data = load_dataset(name)
        result = train_pipeline(data.X, data.y, data.feature_names, seed=seed, declared=declared)
    return result, {"kind": "bundled", "dataset": name}


def retrain_model(model_path: str | os.PathLike[str], name: str, *, seed: int = 42) -> TrainedModel:
    """Train a new version of ``name`` from its CURRENT version's source and make it CURRENT."""
    return save_result(model_path, name, *retrain_candidate(model_path, name, seed=seed))


def retrain_candidate(
    model_path: str | os.PathLike[str], name: str, *, seed: int = 42
) -> tuple[TrainResult, dict[str, Any]]:
    """Train (without saving) from the source the CURRENT version of ``name`` records.

    The recorded source decides, never the name: a CSV-trained model that took a bundled
    model's name retrains from its CSV, not from the bundled dataset.
    """
    metadata = load_metadata(model_path, name)
    source = metadata.get("source") or {}
    kind = source.get("kind")
    if kind == "bundled" and source.get("dataset") in BUNDLED_MODELS:
        return bundled_candidate(source["dataset"], seed=seed)
    if kind == "import":
        raise TrainingDataError(
            f"model {name!r} was imported (fitted elsewhere): import a new version instead"
        )
    if kind != "csv":
        raise TrainingDataError(f"model {name!r} records no training source to retrain from")
    return csv_candidate(
        source["path"],
        source["target"],
        seed=seed,
        estimator=source.get("estimator", "logistic"),
        categorical=source.get("categorical", ()),
        nullable=source.get("nullable", ()),
        declared=declared_by(metadata),
    )


def declared_by(metadata: dict[str, Any]) -> Declarations:
    """What a bundle declared, so a retrain declares it again (segments re-read from the data)."""
    point = metadata.get("operating_point") or {}
    return Declarations(
        segments=declaration_text(metadata.get("segments") or []) or None,
        positive_class=point.get("positive_class"),
        threshold=point.get("threshold"),
        # What it holds was accepted once: a retrain keeps it even if the default cap is lower.
        max_segment_groups=max(
            MAX_SEGMENT_GROUPS, sum(len(s["groups"]) for s in metadata.get("segments") or [])
        ),
    )


def save_result(
    model_path: str | os.PathLike[str],
    name: str,
    result: TrainResult,
    source: dict[str, Any],
    *,
    replace_incompatible: bool = False,
    activate: bool = True,
    created_by: str | None = None,
) -> TrainedModel:
    """Save a trained result as a new version of ``name`` (CURRENT unless ``activate`` is false).

    An active save whose schema differs from the champion's raises IncompatibleVersion unless
    ``replace_incompatible``; an inactive one (a candidate) is saved as it is.
    """
    if activate:
        check_replacement(model_path, name, result.schema_view(), allow=replace_incompatible)
    version = save_bundle(
        model_path,
        name,
        result.pipeline,
        schema=result.schema,
        classes=result.classes,
        metrics=result.metrics,
        profile=result.profile,
        source=source,
        operating_point=result.operating_point.to_dict(),
        segments=result.segments,
        baseline=result.baseline,
        activate=activate,
        created_by=created_by,
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
