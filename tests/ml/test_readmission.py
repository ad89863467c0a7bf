"""The third bundled model: a seeded EHR-like table with categories and missing values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.helpers import single_openmp_thread

from nexus_ml.ml.bundle import Bundle, load_bundle
from nexus_ml.ml.datasets import (
    BUNDLED_MODELS,
    READMISSION,
    READMISSION_TARGET,
    readmission_frame,
    write_dataset_csv,
)
from nexus_ml.ml.sources import ensure_bundled_models

CATEGORIES = {"sex", "admission_type", "site", "discharge_to"}
LABS = {"hba1c", "creatinine", "albumin", "hemoglobin"}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return readmission_frame()


def test_the_generator_is_seeded(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(readmission_frame(), frame)
    assert not readmission_frame(seed=14).equals(frame)
    assert len(readmission_frame(n_rows=50)) == 50


def test_it_looks_like_an_ehr_extract(frame: pd.DataFrame) -> None:
    assert len(frame) == 3000
    assert set(frame.columns) == {
        "age",
        "sex",
        "admission_type",
        "site",
        "length_of_stay",
        "prior_admissions",
        "n_medications",
        *LABS,
        "discharge_to",
        READMISSION_TARGET,
    }
    assert set(frame["site"]) == {"north", "south", "east", "west"}
    assert set(frame["admission_type"]) == {"emergency", "urgent", "elective"}
    missing = frame.isna().mean()
    # Demographics and the admission are always recorded; labs and the destination are not.
    assert set(missing[missing > 0].index) == LABS | {"discharge_to"}
    assert 0.5 < missing["hba1c"] < 0.75 and 0.3 < missing["albumin"] < 0.5
    assert 0.15 < (frame[READMISSION_TARGET] == "yes").mean() < 0.3


def test_labs_are_missing_not_at_random(frame: pd.DataFrame) -> None:
    # HbA1c is ordered when diabetes is suspected: the values present are high ones.
    assert frame["hba1c"].mean() > 6.3
    # Albumin is ordered for the longer, sicker stays.
    short = frame["length_of_stay"] < 5
    missing = frame["albumin"].isna()
    assert missing[short].mean() > 2 * missing[~short].mean()


def test_the_outcome_carries_a_signal(frame: pd.DataFrame) -> None:
    readmitted = frame[READMISSION_TARGET] == "yes"
    by_prior = readmitted.groupby(frame["prior_admissions"].clip(upper=3)).mean()
    assert by_prior.is_monotonic_increasing
    by_site = readmitted.groupby(frame["site"]).mean()
    assert by_site["west"] > by_site["north"] > by_site["east"]


def test_the_csv_reads_back_as_written(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = write_dataset_csv(READMISSION, tmp_path / "r.csv")
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert list(back.columns) == list(frame.columns)
    np.testing.assert_array_equal(back["hba1c"].to_numpy(), frame["hba1c"].to_numpy())
    assert back["discharge_to"].isna().sum() == frame["discharge_to"].isna().sum()
    with pytest.raises(ValueError, match="unknown table dataset"):
        write_dataset_csv("diagnostic", tmp_path / "d.csv")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    model_path = tmp_path_factory.mktemp("readmission")
    assert READMISSION in BUNDLED_MODELS
    with single_openmp_thread():
        trained = ensure_bundled_models(model_path, names=(READMISSION,))
    assert trained == [READMISSION]
    return load_bundle(model_path, READMISSION)


def test_the_bundled_model_is_gradient_boosting_on_typed_features(bundle: Bundle) -> None:
    features = {f["name"]: f for f in bundle.metadata["features"]}
    assert {n for n, f in features.items() if f["type"] == "category"} == CATEGORIES
    assert {n for n, f in features.items() if f["nullable"]} == LABS | {"discharge_to"}
    assert features["age"]["type"] == "integer"
    assert features["site"]["categories"] == ["east", "north", "south", "west"]
    assert type(bundle.pipeline.steps[-1][1]).__name__ == "HistGradientBoostingClassifier"
    # Its categories are encoded before the estimator, so the exact tree walk serves it.
    assert bundle.predictor.kind == "trees"
    assert bundle.metadata["source"] == {"kind": "bundled", "dataset": READMISSION}
    assert bundle.metadata["classes"] == ["no", "yes"]


def test_the_bundled_model_beats_always_no(bundle: Bundle, frame: pd.DataFrame) -> None:
    base = (frame[READMISSION_TARGET] == "no").mean()
    assert bundle.metadata["training_metrics"]["holdout_accuracy"] > base
