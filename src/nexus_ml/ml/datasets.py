"""The bundled datasets: two shipped inside scikit-learn, one seeded EHR-like generator.

``diagnostic`` and ``diabetes_risk`` are number arrays from scikit-learn (no download);
``diabetes_risk`` in its original units (age in years, sex 1 or 2), so its segments read
``age=40-65`` and ``sex=2``.
``readmission_risk`` is a table with categories and missing values, made by
:func:`readmission_frame`: no package on the registries this project uses ships such clinical
data under terms a proprietary service can take (docs/datasets.md says what was checked), so it
is generated, seeded, and documented column by column.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from nexus_ml.ml.operating import Declarations

if TYPE_CHECKING:
    import pandas as pd

# Number arrays, trained as StandardScaler + LogisticRegression (the first two models).
BUNDLED_DATASETS = ("diagnostic", "diabetes_risk")
# Tables with categories and missing values, trained through the CSV path like a user's file.
READMISSION = "readmission_risk"
READMISSION_TARGET = "readmitted_30d"
TABLE_DATASETS = (READMISSION,)
BUNDLED_MODELS = BUNDLED_DATASETS + TABLE_DATASETS
# Age bands shared by the bundled models that have an age: under 40, 40-64, 65 and over.
AGE_BANDS = "age:0-40-65-120"
# What each bundled model declares: the condition it screens for, and its segments.
BUNDLED_DECLARATIONS = {
    "diagnostic": Declarations(positive_class="malignant"),
    "diabetes_risk": Declarations(positive_class="high", segments=f"sex,{AGE_BANDS}"),
    READMISSION: Declarations(positive_class="yes", segments=f"site,{AGE_BANDS}"),
}

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

        # Unscaled: the scaled copy centres and scales each column (sex becomes +-0.05), which
        # StandardScaler in the pipeline does anyway, but segments need years and 1/2.
        bunch = load_diabetes(scaled=False)
        classes = ["low", "high"]
        # Disease progression strictly above the median counts as high risk.
        y = np.where(bunch.target > np.median(bunch.target), "high", "low")
    else:
        raise ValueError(f"unknown bundled dataset {name!r}; expected one of {BUNDLED_DATASETS}")
    X = np.ascontiguousarray(bunch.data, dtype=np.float64)
    feature_names = [sanitize_feature_name(str(f)) for f in bunch.feature_names]
    return Dataset(X=X, y=y, feature_names=feature_names, classes=classes)


# --- readmission_risk: a seeded table that looks like an EHR extract ---------------------------

READMISSION_ROWS = 3000
READMISSION_SEED = 13
_SITES = ("north", "south", "east", "west")
# Sites differ in case mix and in their own readmission rates (a site effect the model learns).
_SITE_SHARE = (0.35, 0.30, 0.20, 0.15)
_SITE_EFFECT = {"north": 0.0, "south": 0.4, "east": -0.3, "west": 0.7}
_ADMISSION = ("emergency", "urgent", "elective")
_ADMISSION_SHARE = (0.6, 0.15, 0.25)
_DISCHARGE = ("home", "home_care", "facility")


def readmission_frame(n_rows: int = READMISSION_ROWS, seed: int = READMISSION_SEED) -> pd.DataFrame:
    """One row per discharge: demographics, admission, labs (some missing), 30-day readmission.

    Columns: ``age`` (integer, years), ``sex`` (``female``/``male``), ``admission_type``
    (emergency, urgent, elective), ``site`` (north, south, east, west), ``length_of_stay``
    (integer, days), ``prior_admissions`` (integer, last 12 months), ``n_medications``
    (integer), ``hba1c`` (%), ``creatinine`` (mg/dL), ``albumin`` (g/dL), ``hemoglobin``
    (g/dL), ``discharge_to`` (home, home_care, facility; missing when not recorded) and the
    target ``readmitted_30d`` (``yes``/``no``, about 22 %).

    Labs are missing *not at random*, as in real extracts: HbA1c is ordered mostly when
    diabetes is suspected, so it is present far more often when high; albumin is ordered for
    sicker, longer stays; creatinine is skipped for some elective admissions; a few discharges
    have no recorded destination. The outcome rises with age, prior admissions, emergency
    admission, length of stay, low albumin, high creatinine, low hemoglobin, high HbA1c,
    discharge to a facility, and with the site.
    """
    import pandas as pd  # lazy: every CLI command imports this module's names

    rng = np.random.default_rng(seed)
    n = int(n_rows)
    age = np.clip(rng.normal(64, 16, n), 18, 98).round().astype(np.int64)
    sex = rng.choice(["female", "male"], n)
    admission = rng.choice(_ADMISSION, n, p=_ADMISSION_SHARE)
    site = rng.choice(_SITES, n, p=_SITE_SHARE)
    emergency = admission == "emergency"
    elective = admission == "elective"
    stay = np.maximum(1, rng.lognormal(np.where(emergency, 1.6, 1.1), 0.6, n).round())
    stay = stay.astype(np.int64)
    prior = rng.poisson(0.4 + 0.015 * np.maximum(age - 40, 0), n).astype(np.int64)
    meds = rng.poisson(4 + 0.06 * age + 0.8 * prior, n).astype(np.int64)
    hba1c = np.clip(rng.lognormal(np.log(5.9), 0.16, n), 4.0, 14.0).round(1)
    creatinine = np.clip(rng.lognormal(np.log(0.95) + 0.004 * (age - 60), 0.35, n), 0.3, 9.0)
    albumin = np.clip(rng.normal(3.9 - 0.08 * np.log(stay), 0.45, n), 1.5, 5.5).round(1)
    hemoglobin = np.clip(rng.normal(np.where(sex == "male", 14.0, 12.6), 1.6, n), 6.0, 19.0)
    discharge = np.where(
        age + 4 * np.log(stay) + rng.normal(0, 10, n) > 88,
        "facility",
        np.where(rng.random(n) < 0.2 + 0.004 * (age - 50), "home_care", "home"),
    )
    logit = (
        -3.7
        + 0.04 * (age - 64)
        + 0.8 * prior
        + 0.6 * emergency
        + 0.5 * np.log(stay)
        - 1.1 * (albumin - 3.8)
        + 1.0 * np.log(creatinine)
        - 0.2 * (hemoglobin - 13)
        + 0.45 * (hba1c - 6.0)
        + 0.9 * (discharge == "facility")
        + np.vectorize(_SITE_EFFECT.__getitem__)(site)
    )
    readmitted = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    # Missingness after the outcome is drawn: what is missing depends on the (unseen) values.
    frame = pd.DataFrame(
        {
            "age": age,
            "sex": sex,
            "admission_type": admission,
            "site": site,
            "length_of_stay": stay,
            "prior_admissions": prior,
            "n_medications": meds,
            "hba1c": _missing_where(hba1c, rng.random(n) > 1 / (1 + np.exp(-3 * (hba1c - 6.3)))),
            "creatinine": _missing_where(creatinine.round(2), elective & (rng.random(n) < 0.4)),
            "albumin": _missing_where(albumin, rng.random(n) < np.where(stay >= 5, 0.15, 0.6)),
            "hemoglobin": _missing_where(hemoglobin.round(1), rng.random(n) < 0.04),
            "discharge_to": pd.Series(discharge, dtype=object).where(rng.random(n) >= 0.03, None),
        }
    )
    frame[READMISSION_TARGET] = readmitted
    return frame


def _missing_where(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    return np.where(missing, np.nan, values.astype(np.float64))


def write_dataset_csv(name: str, path: str | os.PathLike[str]) -> Path:
    """Write a table dataset as the CSV a user would bring (empty cell = missing); return it."""
    if name != READMISSION:
        raise ValueError(f"unknown table dataset {name!r}; expected one of {TABLE_DATASETS}")
    out = Path(path)
    readmission_frame().to_csv(out, index=False)
    return out
