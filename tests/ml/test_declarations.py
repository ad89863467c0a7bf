"""What a model declares (segments, positive class, threshold) reaches its bundle, its holdout
scoring and its baseline; bad declarations are refused naming what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from tests.helpers import single_openmp_thread
from tests.ml.notebook import PIPELINES, dump, read_notebook_frame, write_reference

from nexus_ml.ml.bundle import load_bundle
from nexus_ml.ml.datasets import BUNDLED_DATASETS, READMISSION, READMISSION_TARGET, Dataset
from nexus_ml.ml.importing import import_pipeline
from nexus_ml.ml.operating import Declarations
from nexus_ml.ml.predictor import ThresholdPredictor
from nexus_ml.ml.sources import ensure_bundled_models, retrain_model, train_from_csv
from nexus_ml.ml.training import HOLDOUT_FRACTION, TrainingDataError, train_pipeline

pytestmark = pytest.mark.usefixtures("one_openmp_thread")


def _holdout(d: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    _, X_hold, _, y_hold = train_test_split(
        d.X, d.y, test_size=HOLDOUT_FRACTION, stratify=d.y, random_state=seed
    )
    return X_hold, y_hold


def test_the_threshold_scores_the_holdout_and_the_baseline_equals_sklearn(
    datasets: dict[str, Dataset],
) -> None:
    d = datasets["diagnostic"]
    declared = Declarations(positive_class="malignant", threshold=0.2)
    result = train_pipeline(d.X, d.y, d.feature_names, seed=42, declared=declared)
    X_hold, y_hold = _holdout(d, 42)
    p = result.pipeline.predict_proba(X_hold)[:, list(result.classes).index("malignant")]
    served = np.where(p >= 0.2, "malignant", "benign")
    argmax = result.pipeline.predict(X_hold)
    assert (served != argmax).any()  # the threshold changes some answers
    assert result.metrics["holdout_accuracy"] == np.mean(served == y_hold)
    np.testing.assert_array_equal(
        result.holdout_confidence, np.where(served == "malignant", p, 1 - p)
    )
    base = result.baseline
    assert base["n"] == len(y_hold)
    mal = base["classes"]["malignant"]
    assert mal["recall"]["value"] == pytest.approx(
        recall_score(y_hold, served, pos_label="malignant"), abs=1e-12
    )
    assert mal["precision"]["value"] == pytest.approx(
        precision_score(y_hold, served, pos_label="malignant"), abs=1e-12
    )
    assert base["roc_auc"]["value"] == pytest.approx(roc_auc_score(y_hold == "malignant", p))
    assert base["brier_score"] == pytest.approx(brier_score_loss(y_hold == "malignant", p))
    assert result.operating_point.to_dict() == {"positive_class": "malignant", "threshold": 0.2}


@pytest.mark.parametrize(
    ("declared", "words"),
    [
        (Declarations(positive_class="purple"), "positive class is not one of"),
        (Declarations(threshold=1.5), "strictly between 0 and 1"),
        (Declarations(segments="weight"), "'weight': not a feature"),
        (Declarations(segments="age:65-40"), "strictly increasing"),
        (Declarations(segments="sex,age:0-40-65-120", max_segment_groups=6), "maximum of 6"),
    ],
)
def test_bad_declarations_are_refused(
    datasets: dict[str, Dataset], declared: Declarations, words: str
) -> None:
    d = datasets["diabetes_risk"]
    with pytest.raises(TrainingDataError, match=words):
        train_pipeline(d.X, d.y, d.feature_names, declared=declared)


def test_a_multiclass_model_takes_no_positive_class_or_threshold(
    datasets: dict[str, Dataset],
) -> None:
    d = datasets["diabetes_risk"]
    y = np.array(["a", "b", "c"])[np.arange(len(d.y)) % 3]
    for declared in (Declarations(positive_class="a"), Declarations(threshold=0.5)):
        with pytest.raises(TrainingDataError, match="binary models only; the target has 3"):
            train_pipeline(d.X, y, d.feature_names, declared=declared)
    result = train_pipeline(d.X, y, d.feature_names)
    assert result.operating_point.positive_class is None
    assert list(result.baseline["classes"]) == ["a", "b", "c"]


def test_bundled_models_declare_their_positive_class_and_segments(tmp_path: Path) -> None:
    with single_openmp_thread():
        ensure_bundled_models(tmp_path)
    infos = {name: load_bundle(tmp_path, name).info for name in (*BUNDLED_DATASETS, READMISSION)}
    assert {n: i.positive_class for n, i in infos.items()} == {
        "diagnostic": "malignant",
        "diabetes_risk": "high",
        READMISSION: "yes",
    }
    assert all(i.threshold is None and i.baseline is not None for i in infos.values())
    labels = {n: [lab for s in i.segment_list() for lab in s.labels()] for n, i in infos.items()}
    assert labels["diagnostic"] == []
    assert labels["diabetes_risk"] == [
        "sex=1",
        "sex=2",
        "sex=other",
        "age=0-40",
        "age=40-65",
        "age=65-120",
        "age=other",
    ]
    assert labels[READMISSION] == [
        "site=east",
        "site=north",
        "site=south",
        "site=west",
        "site=other",
        "age=0-40",
        "age=40-65",
        "age=65-120",
        "age=other",
    ]
    base = infos["diabetes_risk"].baseline
    assert base is not None
    assert base.accuracy.value == infos["diabetes_risk"].training_metrics.holdout_accuracy


def _csv(tmp_path: Path, datasets: dict[str, Dataset]) -> Path:
    d = datasets["diabetes_risk"]
    path = tmp_path / "d.csv"
    rows = ["age,sex,bmi,outcome"] + [
        f"{x[0]:g},{x[1]:g},{x[2]:g},{label}" for x, label in zip(d.X, d.y, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_retrain_declares_again_what_the_bundle_declared(
    tmp_path: Path, datasets: dict[str, Dataset]
) -> None:
    path, models = _csv(tmp_path, datasets), tmp_path / "models"
    declared = Declarations(segments="sex,age:0-40-65-120", positive_class="low", threshold=0.6)
    first, _ = train_from_csv(path, "outcome", "mine", models, declared=declared)
    second, _ = retrain_model(models, "mine", seed=1)
    a, b = load_bundle(models, "mine", first).info, load_bundle(models, "mine", second).info
    assert second != first
    assert b.operating_point == a.operating_point
    assert b.positive_class == "low" and b.threshold == 0.6
    assert b.segment_list() == a.segment_list()
    assert isinstance(load_bundle(models, "mine", second).predictor, ThresholdPredictor)


def test_an_import_declares_and_is_scored_at_its_threshold(tmp_path: Path) -> None:
    reference = write_reference(tmp_path / "extract.csv")
    X, y = read_notebook_frame(reference)
    with single_openmp_thread():
        pipeline = PIPELINES["hgb"]().fit(X, y)
    artifact = dump(pipeline, tmp_path / "hgb.skops")
    declared = Declarations(segments="site,sex", threshold=0.3)
    _, metrics = import_pipeline(
        artifact, reference, READMISSION_TARGET, "ward", tmp_path / "m", declared=declared
    )
    info = load_bundle(tmp_path / "m", "ward").info
    assert info.positive_class == "yes" and info.threshold == 0.3  # yes/no: the affirmative
    served = np.where(pipeline.predict_proba(X)[:, 1] >= 0.3, "yes", "no")
    assert metrics["holdout_accuracy"] == np.mean(served == y.to_numpy())
    assert [s.feature for s in info.segment_list()] == ["site", "sex"]
    baseline: Any = info.baseline
    assert baseline.n == len(y)
    assert baseline.classes["yes"].recall.value == pytest.approx(
        recall_score(y, served, pos_label="yes"), abs=1e-12
    )
