"""Rows in schema order as the pandas DataFrame a pipeline fitted on the user's data expects.

One function for training and serving alike, so a pipeline sees the same dtypes both times:
number and integer features as float64 with NaN for missing, category features as object
columns of str with NaN for missing. NaN, not None: it is what ``pandas.read_csv`` gives for an
empty cell, so a pipeline fitted in a notebook (and imported with ``nexus-ml import``) sees
missing categories as it saw them in training — an encoder or imputer treats NaN and None as
different values, and a None it never saw would be an unknown category.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nexus_ml.ml.schema import FeatureSchema


def to_frame(X: np.ndarray, schema: FeatureSchema) -> pd.DataFrame:
    """A DataFrame of ``X`` (n × d in schema order) with the schema's names and dtypes."""
    columns: dict[str, Any] = {}
    for j, spec in enumerate(schema.features):
        column = X[:, j]
        if spec.is_category:
            values = [np.nan if _missing(v) else str(v) for v in column.tolist()]
            columns[spec.name] = pd.Series(values, dtype=object)
        else:
            columns[spec.name] = pd.Series(np.asarray(column, dtype=np.float64))
    return pd.DataFrame(columns, columns=list(schema.names))


def normalise_frame(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """A user's DataFrame (schema columns, any order) in the dtypes ``to_frame`` gives."""
    X = np.empty((len(frame), len(schema)), dtype=object)
    for j, name in enumerate(schema.names):
        X[:, j] = frame[name].to_numpy(dtype=object)
    return to_frame(X, schema)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
