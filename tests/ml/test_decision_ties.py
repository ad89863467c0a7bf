"""On a decision boundary the compiled predictor answers what scikit-learn's ``predict`` answers.

Random rows almost never land exactly on a boundary, so these pipelines are built with dyadic
weights: their decision value is exactly 0.0 both in scikit-learn's arithmetic (scale, then dot)
and in the folded one (one dot product). scikit-learn's binary rule is "positive iff the decision
is > 0", so a tie is the negative class; a multiclass tie goes to the first of the tied classes
(``argmax``). Rows a hair off the boundary check both sides of each rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from nexus_ml.ml.predictor import Predictor, compile_predictor


def pipeline_with(
    mean: list[float], scale: list[float], coef: list[list[float]], intercept: list[float]
) -> Pipeline:
    """A fitted StandardScaler + LogisticRegression whose parameters are then set exactly."""
    n_classes = max(2, len(coef))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30 * n_classes, len(mean)))
    y = np.repeat([f"c{i}" for i in range(n_classes)], 30)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    scaler, clf = pipe.steps[0][1], pipe.steps[1][1]
    scaler.mean_ = np.array(mean, dtype=np.float64)
    scaler.scale_ = np.array(scale, dtype=np.float64)
    scaler.var_ = scaler.scale_**2
    clf.coef_ = np.array(coef, dtype=np.float64)
    clf.intercept_ = np.array(intercept, dtype=np.float64)
    return pipe


def assert_same_answers(pipe: Pipeline, predictor: Predictor, rows: np.ndarray) -> np.ndarray:
    """Single and batch paths give sklearn's class; returns sklearn's decision values."""
    expected = pipe.predict(rows)
    classes = np.asarray(predictor.classes)
    for row, want in zip(rows, expected, strict=True):
        index, proba = predictor.predict_one(row)
        assert classes[index] == want, (row, want)
        assert proba.shape == (len(classes),)
    indices, _ = predictor.predict_batch_indices(rows)
    assert list(classes[indices]) == list(expected)
    return np.asarray(pipe.decision_function(rows))


BINARY = {
    # x1 - x2: every row (x, x) is on the boundary.
    "difference": (
        [0.0, 0.0],
        [1.0, 1.0],
        [[1.0, -1.0]],
        [0.0],
        [[0.0, 0.0], [3.5, 3.5], [-2.25, -2.25], [1e6, 1e6]],
    ),
    # A scaler that moves and stretches: ((x - m) / s) . c == x1 + x2 - 3.
    "scaled": (
        [1.0, 2.0],
        [2.0, 4.0],
        [[2.0, 4.0]],
        [0.0],
        [[1.5, 1.5], [0.0, 3.0], [2.5, 0.5], [-1.0, 4.0], [0.25, 2.75]],
    ),
    # An intercept: 2 x1 + x2 / 2 - 1.
    "intercept": (
        [0.0, 0.0],
        [1.0, 1.0],
        [[2.0, 0.5]],
        [-1.0],
        [[0.5, 0.0], [0.0, 2.0], [0.25, 1.0], [1.0, -2.0]],
    ),
}


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_tie_is_the_negative_class_as_in_sklearn(name: str) -> None:
    mean, scale, coef, intercept, on_boundary = BINARY[name]
    pipe = pipeline_with(mean, scale, coef, intercept)
    predictor = compile_predictor(pipe)
    assert predictor.kind == "binary"  # the folded path, not the predict_proba fallback
    rows = np.array(on_boundary, dtype=np.float64)
    decision = assert_same_answers(pipe, predictor, rows)
    assert (decision == 0.0).all()  # the rows really are ties for sklearn
    assert set(pipe.predict(rows)) == {"c0"}
    _, proba = predictor.predict_batch_indices(rows)
    np.testing.assert_array_equal(proba, 0.5)
    for row in rows:
        np.testing.assert_array_equal(predictor.predict_one(row)[1], [0.5, 0.5])


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_just_off_the_boundary_matches_sklearn(name: str) -> None:
    mean, scale, coef, intercept, on_boundary = BINARY[name]
    pipe = pipeline_with(mean, scale, coef, intercept)
    predictor = compile_predictor(pipe)
    rows = np.array(on_boundary, dtype=np.float64)
    # Nudge the first feature each way by 2**-20 (exact in binary, above every rounding here):
    # the sign of the decision follows coef[0] > 0.
    up, down = rows.copy(), rows.copy()
    up[:, 0] += 2.0**-20
    down[:, 0] -= 2.0**-20
    decision_up = assert_same_answers(pipe, predictor, up)
    decision_down = assert_same_answers(pipe, predictor, down)
    assert (decision_up > 0).all() and (decision_down < 0).all()
    assert set(pipe.predict(up)) == {"c1"} and set(pipe.predict(down)) == {"c0"}


def test_multiclass_tie_goes_to_the_first_tied_class_as_in_sklearn() -> None:
    # Classes c0 and c1 score x1, c2 scores x2.
    pipe = pipeline_with(
        [0.0, 0.0], [1.0, 1.0], [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [0.0, 0.0, 0.0]
    )
    predictor = compile_predictor(pipe)
    assert predictor.kind == "multinomial"
    rows = np.array([[1.0, 0.5], [1.0, 1.0], [0.0, 0.0], [-1.0, 2.0], [2.0, 2.0]])
    assert_same_answers(pipe, predictor, rows)
    assert list(pipe.predict(rows)) == ["c0", "c0", "c0", "c2", "c0"]
