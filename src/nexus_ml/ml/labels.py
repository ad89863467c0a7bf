"""The one rule for class labels, shared by training, bundle loading and the feedback API.

A label is stored in ``predictions.predicted_class`` and ``feedback.actual`` (both
``VARCHAR(200)``), as a key of ``predictions.probabilities`` (JSON), as the ``class`` label of
``ml_model_predictions_total``, and it is what a client sends back as feedback (at most
``MAX_LABEL_CHARS``). PostgreSQL refuses NUL in text and JSON and text longer than the column;
SQLite takes both. One rule that both stores accept, checked where a label enters (training
data, a bundle on disk), keeps the two stores equal and every answered prediction storable.

Messages never echo a label: a class label may be patient data (a diagnosis code, a name).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

MAX_LABEL_CHARS = 64
# Cc: C0/C1 controls (NUL, newline, escape...); Cf: invisible format characters (bidi
# overrides that make one label look like another); Cs: lone surrogates (not encodable as
# UTF-8, so not storable); Zl/Zp: line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
RULE = (
    f"class labels must be text of 1 to {MAX_LABEL_CHARS} characters "
    "without control or invisible format characters"
)


class LabelError(ValueError):
    """A class label breaks the rule; the message says which rule, never the label."""


def label_problem(label: object) -> str | None:
    """Why ``label`` cannot be a class label, or None if it can."""
    if not isinstance(label, str):
        return "is not text"
    if not label:
        return "is empty"
    if len(label) > MAX_LABEL_CHARS:
        return f"is longer than {MAX_LABEL_CHARS} characters"
    # Plain ASCII without controls is the common case: no per-character lookup needed.
    if label.isascii() and label.isprintable():
        return None
    if any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in label):
        return "contains a control or invisible format character"
    return None


def check_class_labels(labels: Iterable[object]) -> None:
    """Raise LabelError naming the first label (by position) that breaks the rule."""
    for position, label in enumerate(labels, start=1):
        problem = label_problem(label)
        if problem is not None:
            raise LabelError(f"class label {position} {problem}; {RULE}")
