from __future__ import annotations

import numpy as np
import pytest

from nexus_ml.ml.datasets import Dataset, load_dataset, sanitize_feature_name


def test_diagnostic_is_breast_cancer(datasets: dict[str, Dataset]) -> None:
    d = datasets["diagnostic"]
    assert d.X.shape == (569, 30)
    assert d.X.dtype == np.float64
    assert d.classes == ["malignant", "benign"]
    assert set(np.unique(d.y)) == {"malignant", "benign"}
    assert (d.y == "malignant").sum() == 212
    assert d.feature_names[0] == "mean_radius"
    assert "worst_concave_points" in d.feature_names


def test_diabetes_risk_splits_at_the_median(datasets: dict[str, Dataset]) -> None:
    d = datasets["diabetes_risk"]
    assert d.X.shape == (442, 10)
    assert d.classes == ["low", "high"]
    assert d.feature_names == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    # Strictly above the median is "high": the two classes are (nearly) balanced.
    assert (d.y == "high").sum() == 221


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mean radius", "mean_radius"),
        ("  Worst Concave-Points ", "worst_concave_points"),
        ("BMI (kg/m2)", "bmi_kg_m2"),
        ("1st value", "f_1st_value"),
    ],
)
def test_sanitize_feature_name(raw: str, expected: str) -> None:
    assert sanitize_feature_name(raw) == expected
    assert sanitize_feature_name(raw).isidentifier()


def test_sanitize_refuses_a_name_with_no_letters_or_digits() -> None:
    with pytest.raises(ValueError, match="empty"):
        sanitize_feature_name(" -- ")


def test_unknown_dataset_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown bundled dataset"):
        load_dataset("iris")
