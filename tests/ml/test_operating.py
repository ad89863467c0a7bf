"""The default positive class of a binary model, and the threshold rule on probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_ml.ml.operating import decide, default_positive_class


@pytest.mark.parametrize(
    ("classes", "counts", "positive"),
    [
        (["0", "1"], [10, 90], "1"),  # the named rule wins over the minority
        (["False", "True"], [90, 10], "True"),
        (["NO", "yes"], [1, 99], "yes"),
        (["negative", "Positive"], [5, 5], "Positive"),
        (["benign", "malignant"], [357, 212], "malignant"),  # the rarer one
        (["malignant", "benign"], [212, 357], "malignant"),
        (["high", "low"], [100, 300], "high"),
        (["high", "low"], [221, 221], "low"),  # a tie: scikit-learn's positive, classes_[1]
        (["a", "b", "c"], [1, 2, 3], None),  # multiclass: none
    ],
)
def test_default_positive_class(
    classes: list[str], counts: list[int], positive: str | None
) -> None:
    assert default_positive_class(classes, counts) == positive


@pytest.mark.parametrize("positive", [0, 1])
def test_decide_serves_positive_at_exactly_the_threshold(positive: int) -> None:
    p = np.array([0.3, np.nextafter(0.3, 0.0), np.nextafter(0.3, 1.0), 0.0, 1.0])
    proba = np.empty((len(p), 2))
    proba[:, positive], proba[:, 1 - positive] = p, 1.0 - p
    got = decide(proba, positive, 0.3)
    other = 1 - positive
    assert got.tolist() == [positive, other, positive, other, positive]
