"""Finite inputs whose arithmetic overflows: every path refuses them or answers finite numbers.

The predictor either raises NotEvaluable (naming the first bad row of a batch) or returns
probabilities that are finite, within [0, 1] and sum to 1 — never NaN or infinity, and never
a refusal where no overflow can happen. Warnings are errors in this suite, so a numpy overflow
warning escaping from the predictor fails these tests too.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from nexus_ml.ml.datasets import Dataset
from nexus_ml.ml.predictor import NotEvaluable, Predictor, compile_predictor, fold_scaler
from nexus_ml.ml.training import TrainResult

BIG = 1.7e308  # finite, accepted by validation; twice it is not
MAX = sys.float_info.max


def diag_row(d: Dataset, **values: float) -> np.ndarray:
    """The issue's row: every feature 0.01 except those given."""
    row = np.full(len(d.feature_names), 0.01)
    for name, value in values.items():
        row[d.feature_names.index(name)] = value
    return row


def assert_finite_answer(predictor: Predictor, X: np.ndarray) -> None:
    """Every path answers every row with finite probabilities that sum to 1."""
    indices, proba = predictor.predict_batch_indices(X)
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    for i, row in enumerate(X):
        index, p = predictor.predict_one(row)
        assert index == indices[i]
        assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0, abs=1e-12)


def assert_refused(predictor: Predictor, X: np.ndarray, bad_row: int | None) -> None:
    with pytest.raises(NotEvaluable) as batch:
        predictor.predict_batch_indices(X)
    assert batch.value.row == bad_row
    with pytest.raises(NotEvaluable):
        predictor.predict_batch(X)
    if bad_row is not None:
        with pytest.raises(NotEvaluable) as one:
            predictor.predict_one(X[bad_row])
        assert one.value.row == 0  # the one row there is
    # The message names no value.
    assert "e+308" not in str(batch.value) and "inf" not in str(batch.value).lower()


@pytest.fixture(scope="module")
def iris_multinomial() -> Pipeline:
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    return Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=5000))]).fit(
        X, labels
    )


# -- the compiled binary path -------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        # The issue: two finite values whose weighted sum overflows.
        {"mean_smoothness": BIG, "mean_compactness": BIG},
        {"mean_smoothness": BIG},  # one huge positive
        {"mean_smoothness": -BIG},  # one huge negative
        {"mean_smoothness": BIG, "mean_compactness": -BIG},  # opposite signs: inf - inf
        {"mean_concavity": MAX, "worst_smoothness": MAX, "mean_fractal_dimension": MAX},
        # Each product finite (0.9 * max), their sum is not.
        {"mean_smoothness": 0.9 * MAX / 24.6, "worst_smoothness": 0.9 * MAX / 18.0},
    ],
    ids=["issue", "huge-positive", "huge-negative", "mixed-signs", "near-max", "sum-overflows"],
)
def test_binary_overflow_is_refused(
    trained: dict[str, TrainResult], datasets: dict[str, Dataset], values: dict[str, float]
) -> None:
    predictor = compile_predictor(trained["diagnostic"].pipeline)
    assert predictor.kind == "binary"
    d = datasets["diagnostic"]
    bad = diag_row(d, **values)
    assert_refused(predictor, bad[np.newaxis, :], 0)
    # One poisoned row in a batch: the batch is refused, and the row is named.
    batch = np.vstack([d.X[:3], bad, d.X[3:6]])
    assert_refused(predictor, batch, 3)


def test_every_feature_near_max_is_refused(
    trained: dict[str, TrainResult], datasets: dict[str, Dataset]
) -> None:
    predictor = compile_predictor(trained["diabetes_risk"].pipeline)
    n = len(datasets["diabetes_risk"].feature_names)
    for sign in (1.0, -1.0):
        assert_refused(predictor, np.full((1, n), sign * MAX), 0)


def test_binary_answers_whenever_overflow_is_impossible(
    trained: dict[str, TrainResult], datasets: dict[str, Dataset]
) -> None:
    """No over-refusal: where every term is below max/n, the answer is finite and exact in sign."""
    pipeline = trained["diagnostic"].pipeline
    predictor = compile_predictor(pipeline)
    folded = fold_scaler(pipeline)
    assert folded is not None
    w, b = folded[0][0], float(folded[1][0])
    n = len(w)
    rng = np.random.default_rng(7)
    answered = refused = 0
    for _ in range(400):
        # Magnitudes on both sides of the overflow boundary, random signs, on a few features.
        row = np.full(n, 0.01)
        picks = rng.choice(n, size=rng.integers(1, 4), replace=False)
        exponents = rng.uniform(300, 308.2, len(picks))
        row[picks] = rng.choice([-1.0, 1.0], len(picks)) * 10.0**exponents
        terms = [Fraction(float(x)) * Fraction(float(wi)) for x, wi in zip(row, w, strict=True)]
        exact = sum(terms, Fraction(b))
        try:
            index, p = predictor.predict_one(row)
        except NotEvaluable:
            refused += 1
            # Refused only when the decision itself is beyond the float range.
            assert abs(exact) > Fraction(MAX) * Fraction(999_999, 1_000_000)
            continue
        answered += 1
        assert np.isfinite(p).all() and 0.0 <= p[1] <= 1.0
        # The class is the sign of the exact decision, as far as float can tell (0 is a tie).
        if exact != 0:
            assert index == (1 if exact > 0 else 0)
    assert answered > 50 and refused > 50  # both sides of the boundary were exercised


def test_huge_terms_that_cancel_are_answered_exactly(
    trained: dict[str, TrainResult], datasets: dict[str, Dataset]
) -> None:
    """Products beyond the float range that nearly cancel: the decision is small, and answered.

    Nearly, by one part in 10**12: a pair that cancels exactly leaves only the rounding of the
    row's own values, whose sign no float computation can promise (the test once relied on it
    and flipped with another scikit-learn's fitted weights). 10**-12 of the terms is still 300
    times the worst rounding of a 30-term dot product (30 · 2**-52), so the side is decided.
    """
    pipeline = trained["diagnostic"].pipeline
    folded = fold_scaler(pipeline)
    assert folded is not None
    d = datasets["diagnostic"]
    w = dict(zip(d.feature_names, folded[0][0].tolist(), strict=True))
    a, b = "mean_smoothness", "fractal_dimension_error"  # weights of opposite signs
    assert w[a] * w[b] < 0 and abs(w[a] * BIG) > MAX
    row = diag_row(d, **{a: BIG, b: -BIG * (w[a] / w[b]) * (1 - 1e-12)})
    weights = folded[0][0]
    terms = [Fraction(float(x)) * Fraction(float(wi)) for x, wi in zip(row, weights, strict=True)]
    exact = sum(terms, Fraction(float(folded[1][0])))
    # Two terms beyond the float range, the decision far inside it.
    assert max(abs(t) for t in terms) > MAX and abs(exact) < MAX / 1e10
    index, p = compile_predictor(pipeline).predict_one(row)
    assert np.isfinite(p).all() and index == (1 if exact > 0 else 0)
    assert p[index] == 1.0  # saturated, on the side the exact arithmetic takes


def test_huge_but_finite_decisions_saturate_without_warnings(
    trained: dict[str, TrainResult], datasets: dict[str, Dataset]
) -> None:
    predictor = compile_predictor(trained["diagnostic"].pipeline)
    d = datasets["diagnostic"]
    rows = np.vstack([diag_row(d, mean_smoothness=s * 1e300) for s in (1.0, -1.0)])
    assert_finite_answer(predictor, rows)
    _, proba = predictor.predict_batch_indices(rows)
    assert set(proba.ravel().tolist()) == {0.0, 1.0}


# -- the compiled multinomial path ---------------------------------------------------------------


def test_multinomial_overflow_is_refused(iris_multinomial: Pipeline) -> None:
    predictor = compile_predictor(iris_multinomial)
    assert predictor.kind == "multinomial"
    X = load_iris().data
    for bad in ([BIG, BIG, BIG, BIG], [BIG, -BIG, BIG, -BIG], [MAX, 0.0, 0.0, -MAX]):
        assert_refused(predictor, np.array([bad]), 0)
        assert_refused(predictor, np.vstack([X[:5], bad, X[5:7]]), 5)


def test_multinomial_scores_whose_difference_overflows_give_exact_zeros(
    iris_multinomial: Pipeline,
) -> None:
    """Finite scores near +max and -max: score - max overflows to -inf, and exp(-inf) is 0."""
    predictor = compile_predictor(iris_multinomial)
    folded = fold_scaler(iris_multinomial)
    assert folded is not None
    W, bias = folded[0].T, folded[1]  # (features, classes)
    # One feature whose weights have both signs, scaled so the largest score is ~ 0.9 * max.
    j = int(np.argmax(W.max(axis=1) * -W.min(axis=1)))
    row = np.zeros(W.shape[0])
    row[j] = 0.9 * MAX / np.abs(W[j]).max()
    scores = [float(row[j] * W[j, c] + bias[c]) for c in range(W.shape[1])]
    # (Python floats: their difference overflows to inf quietly.)
    assert all(map(math.isfinite, scores)) and max(scores) - min(scores) > MAX / 2
    for x in (row, -row):
        assert_finite_answer(predictor, x[np.newaxis, :])
        index, p = predictor.predict_one(x)
        assert p[index] == 1.0 and sorted(p.tolist())[:2] == [0.0, 0.0]


# -- the scikit-learn fallback path --------------------------------------------------------------


@pytest.mark.parametrize(
    "pipeline",
    [
        Pipeline([("s", MinMaxScaler()), ("c", LogisticRegression(max_iter=5000))]),
        Pipeline(
            [("s", StandardScaler()), ("c", OneVsRestClassifier(LogisticRegression(max_iter=500)))]
        ),
    ],
    ids=["minmax-logistic", "standard-one-vs-rest"],
)
@pytest.mark.parametrize("dataset", ["diagnostic", "iris"])
def test_fallback_overflow_is_refused(
    pipeline: Pipeline, dataset: str, datasets: dict[str, Dataset]
) -> None:
    if dataset == "iris":
        X, y = load_iris(return_X_y=True)
    else:
        X, y = datasets[dataset].X, datasets[dataset].y
    pipeline.fit(X, y)
    predictor = compile_predictor(pipeline)
    assert predictor.kind == "fallback"
    n = X.shape[1]
    for bad in (np.full(n, BIG), np.full(n, -BIG), np.resize([BIG, -BIG], n), np.full(n, MAX)):
        with pytest.raises(NotEvaluable):
            predictor.predict_one(bad)
        with pytest.raises(NotEvaluable) as info:
            predictor.predict_batch_indices(np.vstack([X[:4], bad, X[4:6]]))
        # The row is named when the scores say which; scikit-learn's own refusal does not.
        assert info.value.row in (4, None)
    # Ordinary rows still get the pipeline's own answer.
    np.testing.assert_allclose(
        predictor.predict_batch(X[:20]), pipeline.predict_proba(X[:20]), rtol=0, atol=1e-12
    )


def test_fallback_without_arithmetic_answers_what_it_can_represent(
    datasets: dict[str, Dataset],
) -> None:
    """A forest only compares: huge inputs within its float32 range are answered finite."""
    d = datasets["diagnostic"]
    pipeline = Pipeline([("c", RandomForestClassifier(5, random_state=0))]).fit(d.X, d.y)
    predictor = compile_predictor(pipeline)
    assert predictor.kind == "trees"  # the exact tree walk (ml/trees.py)
    n = d.X.shape[1]
    assert_finite_answer(predictor, np.vstack([np.full(n, 3e38), np.full(n, -3e38), d.X[:3]]))
    # Beyond float32, scikit-learn itself refuses the input: so does the walk, naming the row.
    for bad in (np.full(n, BIG), np.full(n, -MAX)):
        assert_refused(predictor, np.vstack([d.X[:2], bad]), 2)
