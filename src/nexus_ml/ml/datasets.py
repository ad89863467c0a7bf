"""The two bundled datasets, built from data shipped inside scikit-learn (no download)."""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

BUNDLED_DATASETS = ("diagnostic", "diabetes_risk")

_NON_IDENTIFIER = re.compile(r"[^0-9a-z]+")


class Dataset(NamedTuple):
    """Features, string labels, sanitised feature names and the class names."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    classes: list[str]


def sanitize_feature_name(raw: str) -> str:
    """Turn a column name into a snake_case identifier (``mean radius`` -> ``mean_radius``)."""
    name = _NON_IDENTIFIER.sub("_", raw.strip().lower()).strip("_")
    if not name:
        raise ValueError("a feature name is empty after sanitising")
    # Identifiers cannot start with a digit; a prefix keeps them usable as JSON keys and labels.
    return f"f_{name}" if name[0].isdigit() else name


def load_dataset(name: str) -> Dataset:
    """Load a bundled dataset by name: ``diagnostic`` or ``diabetes_risk``."""
    if name == "diagnostic":
        from sklearn.datasets import load_breast_cancer  # lazy: keeps the CLI start fast

        bunch = load_breast_cancer()
        classes = [str(c) for c in bunch.target_names]
        y = np.asarray(bunch.target_names)[bunch.target].astype(str)
    elif name == "diabetes_risk":
        from sklearn.datasets import load_diabetes

        bunch = load_diabetes()
        classes = ["low", "high"]
        # Disease progression strictly above the median counts as high risk.
        y = np.where(bunch.target > np.median(bunch.target), "high", "low")
    else:
        raise ValueError(f"unknown bundled dataset {name!r}; expected one of {BUNDLED_DATASETS}")
    X = np.ascontiguousarray(bunch.data, dtype=np.float64)
    feature_names = [sanitize_feature_name(str(f)) for f in bunch.feature_names]
    return Dataset(X=X, y=y, feature_names=feature_names, classes=classes)
