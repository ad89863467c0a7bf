"""A binary model's operating point: which class is "positive", and its decision threshold.

The positive class is the one whose recall is the sensitivity clinicians ask about; a model with
more than two classes has none (its metrics are per class). When training is not told which it
is, :func:`default_positive_class` decides:

1. classes ``0``/``1`` -> ``1``;
2. ``false``/``true``, ``no``/``yes``, ``negative``/``positive`` (any case) -> the affirmative;
3. otherwise the class rarer in the training data: the condition a screening model looks for
   is the rarer one (malignant against benign, readmitted against not);
4. a tie -> the second class in the model's order, the one scikit-learn's own binary decision
   (``decision_function > 0``) calls positive.

The threshold (``None``: the argmax rule) makes the model serve the positive class iff
P(positive) >= threshold; ``decide`` applies it to probabilities the way every predictor does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nexus_ml.ml.segments import MAX_SEGMENT_GROUPS

_AFFIRMATIVE = {
    frozenset({"0", "1"}): "1",
    frozenset({"false", "true"}): "true",
    frozenset({"no", "yes"}): "yes",
    frozenset({"negative", "positive"}): "positive",
}


def default_positive_class(classes: Sequence[str], counts: Sequence[int]) -> str | None:
    """The positive class of a binary model by the rule above; None for more than two classes."""
    if len(classes) != 2:
        return None
    lowered = [c.lower() for c in classes]
    affirmative = _AFFIRMATIVE.get(frozenset(lowered))
    if affirmative is not None:
        return classes[lowered.index(affirmative)]
    if len(counts) == 2 and counts[0] < counts[1]:
        return classes[0]
    return classes[1]


def decide(proba: np.ndarray, positive: int, threshold: float) -> np.ndarray:
    """Served class indices of a binary (n, 2) probability array at ``threshold``."""
    hit = proba[:, positive] >= threshold
    return np.where(hit, positive, 1 - positive).astype(np.intp)


@dataclass(frozen=True, kw_only=True)
class Declarations:
    """What a model declares beyond its data (``nexus-ml train --segments --positive-class
    --threshold``): segments (``sex,age:0-40-65-120``), the positive class (None: the default
    rule of ``ml.operating``) and the decision threshold (None: argmax)."""

    segments: str | None = None
    positive_class: str | None = None
    threshold: float | None = None
    max_segment_groups: int = MAX_SEGMENT_GROUPS


# The default of every "declared" parameter: nothing declared beyond the data.
NOTHING_DECLARED = Declarations()
