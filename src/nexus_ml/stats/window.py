"""A window of stored predictions' features as the array drift and quality take."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


def feature_window(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> NDArray[np.float64] | NDArray[np.object_]:
    """Rows of ``{feature: value}`` as an n × d array in ``names`` order.

    All numbers (or missing): float64 with NaN for missing, the fast path of drift and quality.
    Any other value (a category's string): an object array holding the values as sent, None
    for missing, so a category is never turned into NaN and a missing one stays missing.
    """
    values = [[row.get(f) for f in names] for row in rows]
    if all(_number_or_none(v) for row in values for v in row):
        return np.array(
            [[math.nan if v is None else float(v) for v in row] for row in values],
            dtype=np.float64,
        ).reshape(len(rows), len(names))
    out = np.empty((len(rows), len(names)), dtype=object)
    for i, row in enumerate(values):
        out[i, :] = row
    return out


def _number_or_none(value: Any) -> bool:
    return value is None or (type(value) in (int, float))
