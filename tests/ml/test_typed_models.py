"""Typed features end to end in the ml layer: CSV → schema → estimator → bundle → predictor."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.helpers import WINE, write_mixed_csv
from tests.ml.forge import new_version

from nexus_ml.ml.bundle import BundleError, load_bundle, save_bundle
from nexus_ml.ml.estimators import ESTIMATORS
from nexus_ml.ml.frame import to_frame
from nexus_ml.ml.pipeline_checks import probe_rows
from nexus_ml.ml.registry import load_model
from nexus_ml.ml.schema import ValidationProblem, check_batch, check_instance
from nexus_ml.ml.sources import retrain_model, train_from_csv
from nexus_ml.ml.tables import read_table
from nexus_ml.ml.training import TrainingDataError, train_table

pytestmark = pytest.mark.usefixtures("one_openmp_thread")


@pytest.fixture
def mixed_csv(tmp_path: Path) -> Path:
    return write_mixed_csv(tmp_path / "mixed.csv")


GOOD: dict[str, Any] = {"age": 50, WINE: 2.0, "sex": "F", "site": "north"}


def test_types_and_nullability_are_inferred_with_the_files_own_names(mixed_csv: Path) -> None:
    schema = read_table(mixed_csv, "outcome").schema
    got = [(f.name, f.type, f.nullable) for f in schema.features]
    assert got == [
        ("age", "integer", False),
        (WINE, "number", True),
        ("sex", "category", False),
        ("site", "category", True),
    ]
    assert schema.features[2].categories == ("F", "M")
    assert schema.features[3].categories == ("east", "north", "south")


def test_declared_types_override_inference(mixed_csv: Path) -> None:
    schema = read_table(mixed_csv, "outcome", categorical=["age"], nullable=["sex"]).schema
    age, _, sex, _ = schema.features
    assert age.type == "category" and all(c.isdigit() for c in age.categories)
    assert sex.nullable


@pytest.mark.parametrize("option", ["categorical", "nullable"])
def test_declaring_an_unknown_column_is_refused(mixed_csv: Path, option: str) -> None:
    with pytest.raises(TrainingDataError, match="'nope' is not a feature column"):
        read_table(mixed_csv, "outcome", **{option: ["nope"]})


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_serves_types_nulls_and_unseen_categories(
    mixed_csv: Path, tmp_path: Path, estimator: Any
) -> None:
    models = tmp_path / "models"
    _, metrics = train_from_csv(mixed_csv, "outcome", "mixed", models, estimator=estimator)
    assert metrics["holdout_accuracy"] > 0.5  # three classes: chance is 1/3
    loaded = load_model(models, "mixed")
    assert loaded.classes == ("a", "b", "c")  # multiclass
    # Trees after their encoders take the exact tree walk; logistic after one-hot, sklearn.
    assert loaded.predictor.kind == ("fallback" if estimator == "logistic" else "trees")
    assert loaded.schema.unseen_refused == frozenset()  # every estimator answers unseen ones
    rows = [
        GOOD,
        {**GOOD, WINE: None, "site": None},  # nullable features missing: answered
        {**GOOD, "site": "west", "age": 120},  # unseen category, beyond the training range
    ]
    X, warnings = check_batch(loaded.schema, rows)
    assert warnings == [[], [], [("age", "out_of_range"), ("site", "unseen_category")]]
    _, proba = loaded.predictor.predict_batch_indices(X)
    # The pipeline's own answer on the DataFrame a notebook would build (pandas.read_csv's
    # conventions: NaN for a missing value, in a text column too).
    frame = pd.DataFrame(
        {k: [r[k] for r in rows] for k in GOOD}, columns=list(loaded.schema.names)
    ).astype({"age": "float64", WINE: "float64"})
    frame = frame.fillna(value=np.nan)
    np.testing.assert_allclose(proba, loaded.predictor.pipeline.predict_proba(frame), atol=1e-12)
    one = loaded.predictor.predict_one(check_instance(loaded.schema, rows[2]).row)[1]
    np.testing.assert_allclose(one, proba[2], atol=1e-12)
    assert load_bundle(models, "mixed").metadata["source"]["estimator"] == estimator


def test_a_binary_number_only_csv_keeps_the_compiled_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "numbers.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Heart Rate (bpm)", "lactate", "y"])
        for i in range(100):
            writer.writerow([float(rng.normal(i % 2)), float(rng.normal()), ("no", "yes")[i % 2]])
    train_from_csv(path, "y", "numbers", tmp_path / "m")
    loaded = load_model(tmp_path / "m", "numbers")
    assert loaded.predictor.kind == "binary"
    assert loaded.schema.names == ("Heart Rate (bpm)", "lactate")


def test_the_bundled_models_keep_the_compiled_path(model_dir: Path) -> None:
    for name, kind in (("diagnostic", "binary"), ("diabetes_risk", "binary")):
        loaded = load_model(model_dir, name)
        assert loaded.predictor.kind == kind
        assert {f.type for f in loaded.schema.features} == {"number"}
        assert not any(f.nullable for f in loaded.schema.features)


def test_unseen_category_is_refused_by_name_when_the_pipeline_raises(
    mixed_csv: Path, tmp_path: Path
) -> None:
    table = read_table(mixed_csv, "outcome")
    result = train_table(table)
    encode = ColumnTransformer(
        [
            ("sex", OneHotEncoder(handle_unknown="error"), ["sex"]),
            ("site", OneHotEncoder(handle_unknown="ignore"), ["site"]),
        ],
        sparse_threshold=0.0,
        remainder="drop",
    )
    strict = Pipeline([("preprocess", encode), ("classifier", LogisticRegression())])
    strict.fit(table.frame, table.y)
    models = tmp_path / "models"
    save_bundle(
        models,
        "strict",
        strict,
        schema=result.schema,
        classes=result.classes,
        metrics=result.metrics,
        profile=result.profile,
    )
    loaded = load_model(models, "strict")
    assert loaded.schema.unseen_refused == frozenset({"sex"})
    with pytest.raises(ValidationProblem) as info:
        check_instance(loaded.schema, {**GOOD, "sex": "X-secret", "site": "west"})
    assert [(p.field, p.kind) for p in info.value.problems] == [("sex", "unseen_category")]
    assert "X-secret" not in str(info.value)
    # An unseen site is answered (its encoder ignores it), with a warning.
    assert check_instance(loaded.schema, {**GOOD, "site": "west"}).warnings == [
        ("site", "unseen_category")
    ]


def test_probe_rows_hold_categories_and_missing_values(mixed_csv: Path) -> None:
    table = read_table(mixed_csv, "outcome")
    result = train_table(table, estimator="hist_gradient_boosting")
    from nexus_ml.ml.metadata import Profile

    rows = probe_rows(Profile.model_validate(result.profile), table.schema)
    assert rows.dtype == object
    assert {"F", "M"} <= set(rows[:, 2])
    assert {"east", "north", "south"} <= set(rows[:, 3])
    assert any(v is None for v in rows[:, 3])  # site is nullable
    assert any(v != v for v in rows[:, 1])  # NaN: the wine ratio is nullable
    assert not any(v is None or v != v for v in rows[:, 0])  # age is not
    frame = to_frame(rows, table.schema)
    assert list(frame.columns) == list(table.schema.names)
    assert [str(t) for t in frame.dtypes] == ["float64", "float64", "object", "object"]


def _legacy(meta: dict[str, Any]) -> None:
    for feature in meta["features"]:
        feature["type"] = "numeric"
        del feature["nullable"]


def test_a_bundle_written_before_typed_features_still_loads(model_dir: Path) -> None:
    new_version(model_dir, "diagnostic", edit=_legacy)
    loaded = load_model(model_dir, "diagnostic")
    assert {f.type for f in loaded.schema.features} == {"number"}
    assert not any(f.nullable for f in loaded.schema.features)
    assert loaded.predictor.kind == "binary"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["features"][0].update(type="category"), "categor"),
        (lambda m: m["features"][0].update(categories=["a"]), "only a category feature"),
        (lambda m: m["features"][0].update(name="mean\nradius"), "printable"),
        (lambda m: m["features"][0].update(type="text"), "type"),
        (lambda m: m["profile"]["features"]["mean_radius"].update(n_missing=1), "n_missing"),
    ],
    ids=["category-with-range", "categories-on-a-number", "control-char", "bad-type", "missing"],
)
def test_inconsistent_typed_metadata_is_refused(model_dir: Path, edit: Any, message: str) -> None:
    new_version(model_dir, "diagnostic", edit=edit)
    with pytest.raises(BundleError, match=message) as info:
        load_model(model_dir, "diagnostic")
    assert info.value.reason == "metadata"


def test_training_refuses_what_hgb_cannot_take(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ward", "y"])
        for i in range(600):
            writer.writerow([f"w{i % 300}", ("a", "b")[i % 2]])
    with pytest.raises(TrainingDataError, match="column 'ward' has more than 255 categories"):
        train_from_csv(path, "y", "wide", tmp_path / "m", estimator="hist_gradient_boosting")
    with pytest.raises(TrainingDataError, match="estimator must be one of"):
        train_from_csv(path, "y", "wide", tmp_path / "m", estimator="svm")  # type: ignore[arg-type]


def test_a_retrain_repeats_the_estimator_and_declared_types(
    mixed_csv: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    first, _ = train_from_csv(
        mixed_csv,
        "outcome",
        "ward",
        models,
        estimator="random_forest",
        categorical=["age"],
        nullable=["sex"],
    )
    second, _ = retrain_model(models, "ward", seed=5)
    assert second > first
    bundle = load_bundle(models, "ward")
    assert bundle.metadata["source"]["estimator"] == "random_forest"
    features = {f["name"]: f for f in bundle.metadata["features"]}
    assert features["age"]["type"] == "category" and features["sex"]["nullable"]
    assert type(bundle.pipeline.steps[-1][1]).__name__ == "RandomForestClassifier"
