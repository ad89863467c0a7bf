"""Training: metrics, reproducibility, CSV user models and the bundled models."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nexus_ml.ml.bundle import BundleError, list_bundles, load_bundle
from nexus_ml.ml.datasets import BUNDLED_DATASETS, Dataset
from nexus_ml.ml.pointers import current_version
from nexus_ml.ml.sources import ensure_bundled_models, retrain_model, train_from_csv
from nexus_ml.ml.training import TrainingDataError, TrainResult, train_pipeline

SECRET = "424242.5"  # a distinctive cell that must never appear in an error message


def test_metrics_and_holdout(trained: dict[str, TrainResult]) -> None:
    result = trained["diagnostic"]
    m = result.metrics
    assert set(m) == {
        "holdout_accuracy",
        "n_samples",
        "n_train",
        "n_holdout",
        "n_features",
        "training_seconds",
    }
    assert (m["n_samples"], m["n_train"], m["n_holdout"], m["n_features"]) == (569, 455, 114, 30)
    assert m["holdout_accuracy"] > 0.93
    assert m["training_seconds"] > 0
    assert result.holdout_confidence.shape == (114,)
    assert ((result.holdout_confidence >= 0.5) & (result.holdout_confidence <= 1)).all()
    assert result.classes == ("benign", "malignant")
    assert result.schema.names[0] == "mean_radius"
    json.dumps(result.profile, allow_nan=False)  # the profile goes into metadata.json
    assert trained["diabetes_risk"].metrics["holdout_accuracy"] > 0.6


def test_training_is_reproducible(datasets: dict[str, Dataset]) -> None:
    d = datasets["diabetes_risk"]
    a = train_pipeline(d.X, d.y, d.feature_names, seed=7)
    b = train_pipeline(d.X, d.y, d.feature_names, seed=7)
    c = train_pipeline(d.X, d.y, d.feature_names, seed=8)
    np.testing.assert_array_equal(a.holdout_confidence, b.holdout_confidence)
    assert not np.array_equal(a.holdout_confidence, c.holdout_confidence)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def good_csv(tmp_path: Path, datasets: dict[str, Dataset]) -> Path:
    d = datasets["diabetes_risk"]
    header = ["Age", "Sex", "BMI (kg/m2)", "Blood Pressure", "outcome"]
    rows = [[*x[:4].tolist(), label] for x, label in zip(d.X[:200], d.y[:200], strict=True)]
    return write_csv(tmp_path / "data.csv", header, rows)


def test_train_from_csv_saves_a_loadable_model(good_csv: Path, model_path: Path) -> None:
    version, metrics = train_from_csv(good_csv, "outcome", "my_model", model_path)
    assert current_version(model_path, "my_model") == version
    assert metrics["n_samples"] == 200
    assert metrics["n_features"] == 4
    bundle = load_bundle(model_path, "my_model")
    names = [f["name"] for f in bundle.metadata["features"]]
    # The file's own names: a client sends what its CSV calls the columns.
    assert names == ["Age", "Sex", "BMI (kg/m2)", "Blood Pressure"]
    assert bundle.metadata["classes"] == ["high", "low"]
    assert bundle.metadata["source"] == {
        "kind": "csv",
        "path": str(good_csv.resolve()),
        "target": "outcome",
        "estimator": "logistic",
    }
    # Number features never missing: the compiled logistic path serves it.
    assert bundle.predictor.kind == "binary"
    row = pd.DataFrame(np.zeros((1, 4)), columns=names)
    assert bundle.pipeline.predict(row)[0] in ("high", "low")


def test_train_from_csv_multiclass_and_target_in_the_middle(
    tmp_path: Path, model_path: Path
) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(90):
        label = ("a", "b", "c")[i % 3]
        center = {"a": 0.0, "b": 3.0, "c": 6.0}[label]
        rows.append([rng.normal(center), label, rng.normal(-center)])
    path = write_csv(tmp_path / "three.csv", ["x", "kind", "y"], rows)
    _, metrics = train_from_csv(path, "kind", "three", model_path)
    assert metrics["holdout_accuracy"] > 0.8
    assert load_bundle(model_path, "three").metadata["classes"] == ["a", "b", "c"]


def csv_case(tmp_path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    return write_csv(tmp_path / "bad.csv", header, rows)


GOOD_ROWS = [[float(i), float(i % 3), "yes" if i % 2 else "no"] for i in range(20)]


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (["a", "b", "label"], GOOD_ROWS, "target column 'outcome' is not in the CSV header"),
        (
            ["a", "b", "outcome"],
            [*GOOD_ROWS[:5], ["nan", 1.0, "yes"], *GOOD_ROWS[5:]],
            "data row 6: column 'a' must be a finite number",
        ),
        (
            ["a", "b", "outcome"],
            [["", *r[1:]] for r in GOOD_ROWS],
            "column 'a' has no values",
        ),
        (
            ["a", "b", "outcome"],
            [[f"{SECRET}-{i}", *r[1:]] for i, r in enumerate(GOOD_ROWS * 60)],
            "column 'a' has more than 1000 distinct texts",
        ),
        (["a", "b", "outcome"], [[*r[:2], "yes"] for r in GOOD_ROWS], "at least 2 classes"),
        (["a", "b", "outcome"], GOOD_ROWS[:9], "at least 10 data rows"),
        (["a", "b", "outcome"], [*GOOD_ROWS, [1.0, 2.0, "maybe"]], "at least 2 rows"),
        (["a", "b", "outcome"], [*GOOD_ROWS, [1.0, "yes"]], "line 22 has 2 fields"),
        (["a", "b", "outcome"], [*GOOD_ROWS, ["inf", 1.0, "yes"]], "finite"),
        (["a", "b", "outcome"], [*GOOD_ROWS, [1.0, 1.0, " "]], "target column 'outcome' is empty"),
        (["outcome"], [["yes"], ["no"]] * 10, "no feature columns"),
        (["a", "a", "outcome"], GOOD_ROWS, "same name"),
        (["", "b", "outcome"], GOOD_ROWS, "column 1: a feature name must be non-empty"),
        (["a\tb", "b", "outcome"], GOOD_ROWS, "column 1: a feature name must hold printable"),
        (["x" * 129, "b", "outcome"], GOOD_ROWS, "column 1: a feature name must be at most 128"),
    ],
    ids=[
        "missing-target",
        "nan-text",
        "empty-column",
        "identifier-column",
        "one-class",
        "too-few-rows",
        "class-with-one-row",
        "ragged-row",
        "infinite",
        "empty-label",
        "no-features",
        "duplicate-name",
        "unnamed-column",
        "control-character",
        "name-too-long",
    ],
)
def test_train_from_csv_errors(
    tmp_path: Path,
    model_path: Path,
    header: list[str],
    rows: list[list[Any]],
    message: str,
) -> None:
    path = csv_case(tmp_path, header, rows)
    with pytest.raises(TrainingDataError, match=message) as info:
        train_from_csv(path, "outcome", "user_model", model_path)
    assert SECRET not in str(info.value)
    assert list(model_path.iterdir()) == []


def test_train_from_csv_file_problems(tmp_path: Path, model_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="cannot read"):
        train_from_csv(tmp_path / "absent.csv", "y", "m", model_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TrainingDataError, match="empty"):
        train_from_csv(tmp_path / "empty.csv", "y", "m", model_path)
    (tmp_path / "latin1.csv").write_bytes("a,y\n\xe9,1\n".encode("latin-1"))
    with pytest.raises(TrainingDataError, match="UTF-8"):
        train_from_csv(tmp_path / "latin1.csv", "y", "m", model_path)


def test_train_from_csv_checks_the_name_first(good_csv: Path, model_path: Path) -> None:
    with pytest.raises(BundleError, match="model name"):
        train_from_csv(good_csv, "outcome", "../escape", model_path)


def test_train_pipeline_refuses_non_finite_features(datasets: dict[str, Dataset]) -> None:
    d = datasets["diabetes_risk"]
    X = d.X.copy()
    X[3, 2] = np.nan
    with pytest.raises(TrainingDataError, match="finite"):
        train_pipeline(X, d.y, d.feature_names)


def test_ensure_bundled_models_is_idempotent(model_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    trained = ensure_bundled_models(
        model_path, progress=lambda *a: calls.append(a), names=BUNDLED_DATASETS
    )
    assert trained == ["diagnostic", "diabetes_risk"]
    assert calls == [
        ("diagnostic", 0, 2),
        ("diagnostic", 1, 2),
        ("diabetes_risk", 1, 2),
        ("diabetes_risk", 2, 2),
    ]
    before = {i.name: (i.versions, i.current) for i in list_bundles(model_path)}
    assert ensure_bundled_models(model_path, names=BUNDLED_DATASETS) == []
    assert {i.name: (i.versions, i.current) for i in list_bundles(model_path)} == before
    assert load_bundle(model_path, "diagnostic").metadata["source"] == {
        "kind": "bundled",
        "dataset": "diagnostic",
    }


def test_ensure_bundled_models_trains_only_what_is_missing(model_path: Path) -> None:
    ensure_bundled_models(model_path, names=BUNDLED_DATASETS)
    kept = current_version(model_path, "diagnostic")
    for child in (model_path / "diabetes_risk").iterdir():
        if child.is_file():
            child.unlink()  # versions stay but no CURRENT: counts as missing
    assert ensure_bundled_models(model_path, names=BUNDLED_DATASETS) == ["diabetes_risk"]
    assert current_version(model_path, "diagnostic") == kept


def test_retrain_model_adds_a_version(good_csv: Path, model_path: Path) -> None:
    first, _ = train_from_csv(good_csv, "outcome", "my_model", model_path)
    second, metrics = retrain_model(model_path, "my_model", seed=3)
    assert second > first
    assert current_version(model_path, "my_model") == second
    assert metrics["n_samples"] == 200
    ensure_bundled_models(model_path, names=BUNDLED_DATASETS)
    bundled, _ = retrain_model(model_path, "diagnostic", seed=1)
    assert current_version(model_path, "diagnostic") == bundled


def test_retrain_without_a_source_is_refused(good_csv: Path, model_path: Path) -> None:
    train_from_csv(good_csv, "outcome", "my_model", model_path)
    good_csv.unlink()
    with pytest.raises(TrainingDataError, match="cannot read"):
        retrain_model(model_path, "my_model")
