"""The pipeline each estimator is trained in, with preprocessing suited to it.

Every pipeline is fitted on the DataFrame ``ml.frame.to_frame`` builds (numbers as float64 with
NaN, categories as object with None), so serving gives it exactly what training gave it.

- ``logistic``: numbers imputed with the median and standardised, categories one-hot encoded
  (an unseen category is all zeros, so it is answered). Over numbers that are never missing it
  is plain StandardScaler + LogisticRegression, which the predictor compiles.
- ``hist_gradient_boosting``: native missing values and native categorical splits, the
  categories ordinal-encoded just before it (an unseen or missing category is NaN, so it goes
  where missing values go), so that the exact tree walk of ``ml/trees.py`` serves it.
- ``random_forest``: numbers imputed with the median, categories ordinal-encoded (unseen -1,
  missing -2).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from nexus_ml.ml.schema import FeatureSchema

Estimator = Literal["logistic", "hist_gradient_boosting", "random_forest"]
ESTIMATORS: tuple[Estimator, ...] = get_args(Estimator)
# HistGradientBoosting bins a category feature into at most max_bins (255) categories.
HGB_MAX_CATEGORIES = 255
FOREST_TREES = 100


def make_pipeline() -> Pipeline:
    """Standardise, then logistic regression: the bundled models' estimator."""
    return Pipeline(
        [("scaler", StandardScaler()), ("classifier", LogisticRegression(max_iter=5000))]
    )


def pipeline_for(schema: FeatureSchema, estimator: Estimator, *, seed: int) -> Pipeline:
    """An unfitted pipeline for ``estimator`` over ``schema``'s features."""
    numbers = [f.name for f in schema.features if not f.is_category]
    categories = [f.name for f in schema.features if f.is_category]
    if estimator == "logistic":
        if not categories and not any(f.nullable for f in schema.features):
            return make_pipeline()
        number_steps = Pipeline(
            [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        )
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        return Pipeline(
            [
                ("preprocess", _columns(numbers, number_steps, categories, encoder)),
                ("classifier", LogisticRegression(max_iter=5000)),
            ]
        )
    if estimator == "hist_gradient_boosting":
        if not categories:
            return Pipeline([("classifier", HistGradientBoostingClassifier(random_state=seed))])
        # Categories are ordinal-encoded before the estimator rather than by its own internal
        # encoder: the same native categorical splits (codes 0..k-1, sorted as scikit-learn
        # sorts them; an unseen or missing category is NaN, which goes where missing values
        # go, as with the internal encoder), but numeric input is what the exact tree walk
        # (ml/trees.py) compiles: one row 13-17x faster than scikit-learn's predict_proba.
        encoder_hgb = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
        )
        is_category = [False] * len(numbers) + [True] * len(categories)
        return Pipeline(
            [
                ("preprocess", _columns(numbers, "passthrough", categories, encoder_hgb)),
                (
                    "classifier",
                    HistGradientBoostingClassifier(
                        categorical_features=is_category, random_state=seed
                    ),
                ),
            ]
        )
    if estimator == "random_forest":
        encoder_ = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2
        )
        return Pipeline(
            [
                (
                    "preprocess",
                    _columns(numbers, SimpleImputer(strategy="median"), categories, encoder_),
                ),
                (
                    "classifier",
                    RandomForestClassifier(n_estimators=FOREST_TREES, random_state=seed, n_jobs=1),
                ),
            ]
        )
    raise ValueError(f"unknown estimator; expected one of {', '.join(ESTIMATORS)}")


def _columns(
    numbers: list[str], number_steps: object, categories: list[str], encoder: object
) -> ColumnTransformer:
    parts = []
    if numbers:
        parts.append(("number", number_steps, numbers))
    if categories:
        parts.append(("category", encoder, categories))
    # Dense output: the classifier sees the same array whatever the share of zeros.
    return ColumnTransformer(parts, sparse_threshold=0.0)
