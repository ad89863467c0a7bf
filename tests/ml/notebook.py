"""The notebook side of ``nexus-ml import``: pipelines fitted on a pandas DataFrame, as a data
scientist fits them, and the rows a client would send for the same data.

Imported by tests/ml/test_importing.py, tests/api/test_import_api.py and tests/cli/test_import.py
(as tests/ml/forge.py is for forged bundles).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from nexus_ml.ml.datasets import READMISSION_TARGET, readmission_frame

CATEGORIES = ["sex", "admission_type", "site", "discharge_to"]
NUMBERS = [
    "age",
    "length_of_stay",
    "prior_admissions",
    "n_medications",
    "hba1c",
    "creatinine",
    "albumin",
    "hemoglobin",
]


def write_reference(path: Path, n_rows: int = 600, seed: int = 5) -> Path:
    """An EHR extract as a CSV (empty cell = missing), the reference `import` reads."""
    readmission_frame(n_rows=n_rows, seed=seed).to_csv(path, index=False)
    return path


def read_notebook_frame(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """What a notebook does: pandas.read_csv, split off the target."""
    frame = pd.read_csv(path)
    return frame.drop(columns=[READMISSION_TARGET]), frame[READMISSION_TARGET]


def hgb_pipeline() -> Pipeline:
    """Gradient boosting with native categories and missing values."""
    encode = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
    )
    return Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [("cat", encode, CATEGORIES)],
                    remainder="passthrough",
                    verbose_feature_names_out=False,
                ),
            ),
            (
                "clf",
                HistGradientBoostingClassifier(
                    categorical_features=list(range(len(CATEGORIES))), max_iter=40, random_state=0
                ),
            ),
        ]
    )


def forest_pipeline() -> Pipeline:
    """A random forest behind imputation and one-hot encoding."""
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    return Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("num", SimpleImputer(strategy="median"), NUMBERS),
                        ("cat", categorical, CATEGORIES),
                    ]
                ),
            ),
            ("clf", RandomForestClassifier(n_estimators=40, min_samples_leaf=3, random_state=0)),
        ]
    )


PIPELINES = {"hgb": hgb_pipeline, "forest": forest_pipeline}


def dump(pipeline: Any, path: Path) -> Path:
    """skops.io.dump, as the README tells a notebook to save."""
    buffer = io.BytesIO()
    sio.dump(pipeline, buffer)
    path.write_bytes(buffer.getvalue())
    return path


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as a client sends them: numbers, strings, and null for missing."""
    rows = []
    for record in frame.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for key, value in record.items():
            if isinstance(value, float) and math.isnan(value):
                row[key] = None
            elif isinstance(value, np.integer):
                row[key] = int(value)
            elif isinstance(value, np.floating):
                row[key] = float(value)
            else:
                row[key] = value
        rows.append(row)
    return rows
