"""``import_pipeline``: a pipeline fitted in a notebook, checked against its reference CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from tests.helpers import single_openmp_thread
from tests.ml.notebook import (
    PIPELINES,
    dump,
    forest_pipeline,
    json_rows,
    read_notebook_frame,
    write_reference,
)

from nexus_ml.ml.bundle import BundleError, load_bundle
from nexus_ml.ml.datasets import READMISSION_TARGET
from nexus_ml.ml.importing import ImportRefused, import_pipeline
from nexus_ml.ml.registry import load_model
from nexus_ml.ml.schema import check_batch, check_instance
from nexus_ml.ml.sources import retrain_model
from nexus_ml.ml.training import TrainingDataError

pytestmark = pytest.mark.usefixtures("one_openmp_thread")
TARGET = READMISSION_TARGET


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A reference CSV and each pipeline fitted on it in a notebook, saved with skops."""
    folder = tmp_path_factory.mktemp("notebook")
    reference = write_reference(folder / "extract.csv")
    X, y = read_notebook_frame(reference)
    fitted = {}
    with single_openmp_thread():
        for kind, build in PIPELINES.items():
            pipeline = build().fit(X, y)
            fitted[kind] = (pipeline, dump(pipeline, folder / f"{kind}.skops"))
    return {"reference": reference, "X": X, "y": y, "fitted": fitted, "folder": folder}


@pytest.mark.parametrize("kind", sorted(PIPELINES))
def test_answers_equal_the_pipelines_own_predict_proba(
    notebook: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    pipeline, artifact = notebook["fitted"][kind]
    version, metrics = import_pipeline(artifact, notebook["reference"], TARGET, "ward", tmp_path)
    loaded = load_model(tmp_path, "ward")
    assert loaded.version == version
    X = notebook["X"]
    expected = pipeline.predict_proba(X)
    # Every reference row as a client sends it (null for a missing lab or category).
    rows = json_rows(X)
    assert any(v is None for row in rows for v in row.values())
    checked, _ = check_batch(loaded.schema, rows, max_instances=len(rows))
    indices, proba = loaded.predictor.predict_batch_indices(checked)
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(loaded.classes)[indices], pipeline.predict(X))
    for i in (0, 7, 31):
        one = loaded.predictor.predict_one(check_instance(loaded.schema, rows[i]).row)[1]
        np.testing.assert_allclose(one, expected[i], rtol=0, atol=1e-9)
    # Metrics and the reference profile come from the reference rows.
    assert metrics["n_samples"] == metrics["n_holdout"] == len(X) and metrics["n_train"] == 0
    accuracy = np.mean(pipeline.predict(X) == notebook["y"])
    assert metrics["holdout_accuracy"] == pytest.approx(accuracy)
    meta = load_bundle(tmp_path, "ward").metadata
    assert meta["source"]["kind"] == "import" and meta["source"]["target"] == TARGET
    assert meta["profile"]["features"]["site"]["type"] == "categorical"
    assert meta["profile"]["features"]["albumin"]["n_missing"] == int(X["albumin"].isna().sum())
    features = {f["name"]: f for f in meta["features"]}
    assert features["discharge_to"]["nullable"] and not features["sex"]["nullable"]


def test_the_schema_follows_the_pipelines_column_order(
    notebook: dict[str, Any], tmp_path: Path
) -> None:
    pipeline, artifact = notebook["fitted"]["forest"]
    shuffled = pd.read_csv(notebook["reference"])
    columns = list(shuffled.columns)[::-1]
    path = tmp_path / "reordered.csv"
    shuffled[columns].to_csv(path, index=False)
    import_pipeline(artifact, path, TARGET, "ward", tmp_path / "models")
    names = [f["name"] for f in load_bundle(tmp_path / "models", "ward").metadata["features"]]
    assert names == list(pipeline.feature_names_in_)


def _csv_without(reference: Path, path: Path, drop: str, add: str | None = None) -> Path:
    frame = pd.read_csv(reference).drop(columns=[drop])
    if add is not None:
        frame[add] = 1.0
    frame.to_csv(path, index=False)
    return path


def test_columns_that_differ_are_refused_by_name(notebook: dict[str, Any], tmp_path: Path) -> None:
    _, artifact = notebook["fitted"]["forest"]
    path = _csv_without(notebook["reference"], tmp_path / "x.csv", "albumin", add="bed [a/b]")
    with pytest.raises(ImportRefused) as error:
        import_pipeline(artifact, path, TARGET, "ward", tmp_path / "models")
    message = str(error.value)
    assert "the pipeline needs columns the CSV lacks: 'albumin'" in message
    assert "not fitted on: 'bed [a/b]'" in message
    assert not (tmp_path / "models").exists()


def test_classes_that_differ_are_refused_by_name(notebook: dict[str, Any], tmp_path: Path) -> None:
    _, artifact = notebook["fitted"]["hgb"]
    frame = pd.read_csv(notebook["reference"])
    frame[TARGET] = frame[TARGET].replace({"yes": "readmitted"})
    path = tmp_path / "relabelled.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ImportRefused) as error:
        import_pipeline(artifact, path, TARGET, "ward", tmp_path / "models")
    message = str(error.value)
    assert "classes the target column never holds: 'yes'" in message
    assert "target labels the pipeline cannot predict: 'readmitted'" in message


def test_a_pipeline_fitted_on_an_array_is_refused(notebook: dict[str, Any], tmp_path: Path) -> None:
    X, y = notebook["X"], notebook["y"]
    numbers = X[["age", "length_of_stay"]].to_numpy()
    artifact = dump(LogisticRegression().fit(numbers, y), tmp_path / "a.skops")
    with pytest.raises(BundleError, match="expected a Pipeline"):
        import_pipeline(artifact, notebook["reference"], TARGET, "ward", tmp_path / "m")
    pipeline = Pipeline([("clf", LogisticRegression())]).fit(numbers, y)
    with pytest.raises(ImportRefused, match=r"no column names .* fitted on an array"):
        import_pipeline(
            dump(pipeline, tmp_path / "p.skops"), notebook["reference"], TARGET, "w", tmp_path
        )


def test_code_in_the_artifact_is_refused_before_anything_is_built(
    notebook: dict[str, Any], tmp_path: Path
) -> None:
    X, y = notebook["X"], notebook["y"]
    pre, clf = forest_pipeline().steps
    pipeline = Pipeline([pre, ("abs", FunctionTransformer(np.abs)), clf]).fit(X, y)
    artifact = dump(pipeline, tmp_path / "code.skops")
    with pytest.raises(BundleError, match=r"numpy.absolute \(a function: can run code\)") as error:
        import_pipeline(artifact, notebook["reference"], TARGET, "ward", tmp_path / "m")
    assert error.value.reason == "untrusted"


def test_a_pipeline_fitted_with_none_as_missing_is_refused(
    notebook: dict[str, Any], tmp_path: Path
) -> None:
    X, y = notebook["X"], notebook["y"]
    # Records, SQL or Parquet give None for a missing text value; the service sends NaN.
    with_none = X.astype({"discharge_to": object}).where(X.notna(), None)
    artifact = dump(forest_pipeline().fit(with_none, y), tmp_path / "none.skops")
    with pytest.raises(ImportRefused, match=r"fitted with None .* df.fillna\(value=np.nan\)"):
        import_pipeline(artifact, notebook["reference"], TARGET, "ward", tmp_path / "m")


def test_a_bad_reference_csv_is_refused(notebook: dict[str, Any], tmp_path: Path) -> None:
    _, artifact = notebook["fitted"]["forest"]
    path = tmp_path / "short.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerow(["age", TARGET])
    with pytest.raises(TrainingDataError):
        import_pipeline(artifact, path, TARGET, "ward", tmp_path / "m")
    with pytest.raises(ImportRefused, match="cannot read the model file"):
        import_pipeline(tmp_path / "nope.skops", notebook["reference"], TARGET, "ward", tmp_path)
    with pytest.raises(ImportRefused, match="'diagnostic' is a bundled model's name"):
        import_pipeline(artifact, notebook["reference"], TARGET, "diagnostic", tmp_path)


def test_an_imported_model_is_not_retrained_here(notebook: dict[str, Any], tmp_path: Path) -> None:
    _, artifact = notebook["fitted"]["forest"]
    import_pipeline(artifact, notebook["reference"], TARGET, "ward", tmp_path)
    with pytest.raises(TrainingDataError, match=r"was imported .* import a new version"):
        retrain_model(tmp_path, "ward")
