"""The compiled tree evaluator answers exactly as scikit-learn does, on both of its walks.

Equality is asserted bit for bit (the module sums in scikit-learn's order); the one place where
scikit-learn itself is not reproducible (a forest with n_jobs > 1) is held to the documented
bound instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from nexus_ml.ml import trees
from nexus_ml.ml.predictor import NotEvaluable
from nexus_ml.ml.trees import TreeEvaluator, compile_trees

N_FEATURES = 6


@pytest.fixture(autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    # HistGradientBoosting's predict starts OpenMP threads per tree; on a busy 2-core host
    # that costs ~100 ms a call. One thread changes no answer (rows are independent).
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _data(n_classes: int, *, seed: int = 0, rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    return make_classification(
        n_samples=rows,
        n_features=N_FEATURES,
        n_informative=4,
        n_redundant=0,
        n_classes=n_classes,
        random_state=seed,
    )


def _with_nan(X: np.ndarray, share: float, seed: int = 1) -> np.ndarray:
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < share] = np.nan
    return X


ESTIMATORS: dict[str, Any] = {
    "decision_tree": lambda: DecisionTreeClassifier(random_state=0),
    "random_forest": lambda: RandomForestClassifier(n_estimators=15, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=15, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=15, random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(
        max_iter=15, early_stopping=False, random_state=0
    ),
}
STUMPS: dict[str, Any] = {
    "decision_tree": lambda: DecisionTreeClassifier(max_depth=1, random_state=0),
    "random_forest": lambda: RandomForestClassifier(n_estimators=5, max_depth=1, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=5, max_depth=1, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(
        n_estimators=5, max_depth=1, random_state=0
    ),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(
        max_iter=5, max_depth=2, max_leaf_nodes=2, early_stopping=False, random_state=0
    ),
}


def _both_walks(evaluator: TreeEvaluator, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return evaluator.predict_proba(X, walk="numpy"), evaluator.predict_proba(X, walk="sklearn")


def assert_same_as_sklearn(estimator: Any, X: np.ndarray) -> None:
    evaluator = compile_trees(estimator)
    assert evaluator is not None
    expected = estimator.predict_proba(X)
    walked, native = _both_walks(evaluator, X)
    assert_array_equal(walked, expected)
    assert_array_equal(native, expected)
    assert_array_equal(evaluator.predict_proba(X), expected)  # the walk chosen by row count
    assert_array_equal(evaluator.classes_[walked.argmax(axis=1)], estimator.predict(X))
    for i in range(0, X.shape[0], 7):  # one row alone: the service's case
        assert_array_equal(
            evaluator.predict_proba(X[i : i + 1]), estimator.predict_proba(X[i : i + 1])
        )


def _splits(estimator: Any) -> list[tuple[int, float]]:
    """(feature, threshold) of every numeric split of every tree."""
    if isinstance(estimator, HistGradientBoostingClassifier):
        return [
            (int(f), float(t))
            for it in estimator._predictors
            for p in it
            for f, t, leaf, cat in zip(
                p.nodes["feature_idx"],
                p.nodes["num_threshold"],
                p.nodes["is_leaf"],
                p.nodes["is_categorical"],
                strict=True,
            )
            if not leaf and not cat and np.isfinite(t)
        ]
    if isinstance(estimator, DecisionTreeClassifier):
        members = [estimator]
    elif isinstance(estimator, GradientBoostingClassifier):
        members = list(estimator.estimators_.ravel())
    else:
        members = list(estimator.estimators_)
    return [
        (int(f), float(t))
        for m in members
        for f, t in zip(m.tree_.feature, m.tree_.threshold, strict=True)
        if f >= 0 and np.isfinite(t)  # inf: the split of missing values from the rest
    ]


def _on_thresholds(estimator: Any, X: np.ndarray, rows: int, seed: int = 3) -> np.ndarray:
    """Rows with one feature exactly on a split, one float64 step either side, or the float32
    neighbours of the threshold (where the cast of the trees can move a value across)."""
    rng = np.random.default_rng(seed)
    splits = _splits(estimator)
    out = X[rng.integers(0, X.shape[0], rows)].copy()
    for i in range(rows):
        f, t = splits[int(rng.integers(0, len(splits)))]
        t32 = np.float32(t)
        out[i, f] = (
            t,
            np.nextafter(t, np.inf),
            np.nextafter(t, -np.inf),
            float(t32),
            float(np.nextafter(t32, np.float32(np.inf))),
            float(np.nextafter(t32, np.float32(-np.inf))),
        )[i % 6]
    return out


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("n_classes", [2, 3])
def test_random_rows_equal_sklearn(name: str, n_classes: int) -> None:
    X, y = _data(n_classes)
    estimator = ESTIMATORS[name]().fit(X, y)
    rng = np.random.default_rng(5)
    fresh = rng.normal(size=(40, N_FEATURES)) * X.std(axis=0) * 1.5 + X.mean(axis=0)
    assert_same_as_sklearn(estimator, np.vstack([X[:40], fresh]))


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("n_classes", [2, 4])
def test_values_on_split_thresholds_equal_sklearn(name: str, n_classes: int) -> None:
    X, y = _data(n_classes)
    estimator = ESTIMATORS[name]().fit(X, y)
    assert_same_as_sklearn(estimator, _on_thresholds(estimator, X, 120))


def test_a_float64_value_above_a_threshold_can_go_left_as_in_sklearn() -> None:
    """DecisionTree casts X to float32: a value above the threshold that rounds onto or below
    it goes left. A float64 evaluator would send it right; this one must not."""
    X, y = _data(2)
    estimator = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y)
    f, t = int(estimator.tree_.feature[0]), float(estimator.tree_.threshold[0])
    above = np.nextafter(t, np.inf)
    assert float(np.float32(above)) <= t or float(np.float32(t)) > t  # the cast moves one of them
    rows = np.repeat(X[:1], 2, axis=0)
    rows[0, f], rows[1, f] = t, above
    assert_same_as_sklearn(estimator, rows)
    evaluator = compile_trees(estimator)
    assert evaluator is not None
    left = estimator.tree_.value[estimator.tree_.children_left[0], 0]
    right = estimator.tree_.value[estimator.tree_.children_right[0], 0]
    side = {float(np.float32(v)) <= t for v in (t, above)}
    got = {tuple(p) for p in evaluator.predict_proba(rows)}
    assert got == {tuple(left if s else right) for s in side}


@pytest.mark.parametrize("name", list(STUMPS))
def test_depth_one_trees_equal_sklearn(name: str) -> None:
    X, y = _data(3)
    estimator = STUMPS[name]().fit(X, y)
    assert compile_trees(estimator).nodes.depth == 1  # type: ignore[union-attr]
    assert_same_as_sklearn(estimator, np.vstack([X[:30], _on_thresholds(estimator, X, 30)]))


def test_a_tree_that_is_one_leaf() -> None:
    X = np.ones((20, 3))
    y = np.array([0, 1] * 10)
    estimator = DecisionTreeClassifier().fit(X, y)
    evaluator = compile_trees(estimator)
    assert evaluator is not None and evaluator.nodes.depth == 0
    assert_same_as_sklearn(estimator, np.random.default_rng(0).normal(size=(5, 3)))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_hist_gradient_boosting_missing_values_go_the_learned_side(n_classes: int) -> None:
    X, y = _data(n_classes)
    X = _with_nan(X, 0.15)
    estimator = ESTIMATORS["hist_gradient_boosting"]().fit(X, y)
    assert any(
        p.nodes["missing_go_to_left"][~p.nodes["is_leaf"].astype(bool)].any()
        for it in estimator._predictors
        for p in it
    )
    test = _with_nan(np.vstack([X[:40], _on_thresholds(estimator, X, 60)]), 0.3, seed=7)
    test[:5] = np.nan  # every feature missing
    assert_same_as_sklearn(estimator, test)


def test_hist_gradient_boosting_missing_only_at_prediction_and_infinities() -> None:
    X, y = _data(2)
    estimator = ESTIMATORS["hist_gradient_boosting"]().fit(X, y)
    test = _with_nan(X[:60], 0.3)
    test[:4, 0] = np.inf
    test[4:8, 1] = -np.inf
    assert_same_as_sklearn(estimator, test)


@pytest.mark.parametrize("name", ["decision_tree", "random_forest", "extra_trees"])
def test_sklearn_trees_with_missing_values(name: str) -> None:
    X, y = _data(3)
    estimator = ESTIMATORS[name]().fit(_with_nan(X, 0.1), y)
    assert_same_as_sklearn(estimator, _with_nan(X[:80], 0.3, seed=9))


def _categorical_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X, y = _data(3, seed=seed, rows=600)
    X[:, 0] = rng.integers(0, 12, X.shape[0])  # a category coded as numbers, as a pipeline's
    X[:, 3] = rng.choice([2.0, 5.0, 7.5, 40.0], X.shape[0])  # codes need not be 0..k-1
    y = np.where(np.isin(X[:, 0], [1, 4, 5, 9]), (y + 1) % 3, y)  # make the category matter
    return X, y


def test_hist_gradient_boosting_categorical_splits_equal_sklearn() -> None:
    X, y = _categorical_data()
    X = _with_nan(X, 0.05)
    estimator = HistGradientBoostingClassifier(
        max_iter=20, categorical_features=[0, 3], early_stopping=False, random_state=0
    ).fit(X, y)
    assert any(p.nodes["is_categorical"].any() for it in estimator._predictors for p in it)
    test = _with_nan(X[:80], 0.2, seed=4)
    test[80 - 10 :, 0] = [12, 13, -1, 0.5, 1e9, -0.0, 3.0, np.nan, 255, 256]  # unseen and odd
    test[80 - 5 :, 3] = [2.0, 3.0, 7.5, 40.000001, np.nan]
    assert_same_as_sklearn(estimator, test)


def test_hist_gradient_boosting_category_only_in_the_early_stopping_split() -> None:
    """Early stopping holds rows out before binning; a category found only there is still
    known to the trees (scikit-learn hands the encoder's categories to the binner), and a
    row carrying it is answered as scikit-learn answers it."""
    X, y = _categorical_data(seed=2)
    X[0, 0] = 99
    estimator = HistGradientBoostingClassifier(
        max_iter=10,
        categorical_features=[0],
        early_stopping=True,
        validation_fraction=0.5,
        n_iter_no_change=50,
        random_state=0,
    ).fit(X, y)
    test = X[:64].copy()
    test[:, 0] = 99
    assert_same_as_sklearn(estimator, test)


def test_many_classes_softmax_layout() -> None:
    """Nine classes: numpy sums 8+ contiguous values pairwise, so the raw scores' layout
    matters; one row and a batch each give scikit-learn's bits for the same call."""
    X, y = make_classification(
        n_samples=900, n_features=8, n_informative=6, n_classes=9, random_state=0
    )
    for estimator in (
        HistGradientBoostingClassifier(max_iter=10, early_stopping=False, random_state=0),
        GradientBoostingClassifier(n_estimators=5, random_state=0),
        GradientBoostingClassifier(n_estimators=5, init="zero", random_state=0),
    ):
        estimator.fit(X, y)
        assert_same_as_sklearn(estimator, X[:100])


@pytest.mark.parametrize("seed", range(8))
def test_property_argmax_equal_and_difference_within_bound(seed: int) -> None:
    """Random models, random rows drawn from training values, thresholds, NaN and far values."""
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 5))
    X, y = _data(n_classes, seed=seed, rows=300)
    name = list(ESTIMATORS)[seed % len(ESTIMATORS)]
    nan_ok = name != "gradient_boosting"
    train = _with_nan(X, 0.1, seed=seed) if nan_ok else X
    estimator = ESTIMATORS[name]().fit(train, y)
    rows = np.vstack(
        [
            rng.normal(size=(100, N_FEATURES)) * rng.choice([1.0, 10.0, 1e6], (100, 1)),
            _on_thresholds(estimator, X, 100, seed=seed),
        ]
    )
    if nan_ok:
        rows = _with_nan(rows, 0.2, seed=seed)
    evaluator = compile_trees(estimator)
    assert evaluator is not None
    expected = estimator.predict_proba(rows)
    for got in _both_walks(evaluator, rows):
        assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
        assert np.abs(got - expected).max() <= 0.0  # the bound proven for sequential sums


def test_forest_with_threads_within_the_any_order_bound() -> None:
    X, y = _data(3)
    n_trees = 40
    estimator = RandomForestClassifier(n_estimators=n_trees, n_jobs=2, random_state=0).fit(X, y)
    evaluator = compile_trees(estimator)
    assert evaluator is not None
    expected = estimator.predict_proba(X[:100])
    got = evaluator.predict_proba(X[:100])
    u = 2.0**-53
    gamma = (n_trees - 1) * u / (1 - (n_trees - 1) * u)
    assert np.abs(got - expected).max() <= 2 * gamma + 2 * u  # the bound in the module doc
    assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def test_values_sklearn_refuses_are_refused_with_the_row() -> None:
    X, y = _data(2)
    boosting = ESTIMATORS["gradient_boosting"]().fit(X, y)
    forest = ESTIMATORS["random_forest"]().fit(X, y)
    rows = X[:3].copy()
    rows[1, 2] = 1e39  # finite in float64, infinite in the trees' float32
    for estimator in (boosting, forest):
        with pytest.raises(ValueError, match="infinity"), np.errstate(over="ignore"):
            estimator.predict_proba(rows)
        with pytest.raises(NotEvaluable) as caught:
            compile_trees(estimator).predict_proba(rows)  # type: ignore[union-attr]
        assert caught.value.row == 1
    rows = X[:3].copy()
    rows[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        boosting.predict_proba(rows)
    with pytest.raises(NotEvaluable) as caught:
        compile_trees(boosting).predict_proba(rows)  # type: ignore[union-attr]
    assert caught.value.row == 2


def test_wrong_shape_is_refused() -> None:
    X, y = _data(2)
    evaluator = compile_trees(ESTIMATORS["random_forest"]().fit(X, y))
    assert evaluator is not None
    with pytest.raises(ValueError, match="expected shape"):
        evaluator.predict_proba(X[:2, :3])
    with pytest.raises(ValueError, match="expected shape"):
        evaluator.predict_proba(X[0])
    with pytest.raises(ValueError, match="expected shape"):
        evaluator.predict_proba(X[:0])


def test_unsupported_estimators_give_none() -> None:
    X, y = _data(2)
    multi_output = RandomForestClassifier(n_estimators=3, random_state=0).fit(
        X, np.column_stack([y, 1 - y])
    )
    custom_init = GradientBoostingClassifier(
        n_estimators=3, init=LogisticRegression(), random_state=0
    ).fit(X, y)
    with_strings = np.empty((X.shape[0], 2), dtype=object)
    with_strings[:, 0], with_strings[:, 1] = X[:, 0], np.where(y == 1, "x", "y")
    string_categories = HistGradientBoostingClassifier(max_iter=3, categorical_features=[1])
    string_categories.fit(with_strings, y)
    for estimator in (
        LogisticRegression().fit(X, y),
        RandomForestClassifier(),  # not fitted
        multi_output,
        custom_init,
        string_categories,
        DummyClassifier().fit(X, y),
    ):
        assert compile_trees(estimator) is None, type(estimator).__name__


def test_gradient_boosting_with_zero_init() -> None:
    X, y = _data(3)
    estimator = GradientBoostingClassifier(n_estimators=10, init="zero", random_state=0).fit(X, y)
    assert_same_as_sklearn(estimator, X[:50])


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_any_memory_layout_of_the_input(name: str) -> None:
    X, y = _data(3)
    estimator = ESTIMATORS[name]().fit(X, y)
    assert_same_as_sklearn(estimator, np.asfortranarray(X[:80]))
    assert_same_as_sklearn(estimator, X[:160:2])  # a strided view


def test_an_evaluator_that_disagrees_is_not_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Internals read wrongly (here: each threshold one float step lower, as if scikit-learn
    had changed the meaning of its arrays) make compile_trees give None."""
    X, y = _data(2)
    estimator = ESTIMATORS["random_forest"]().fit(X, y)
    assert compile_trees(estimator) is not None
    read = trees._sklearn_tree

    def misread(tree: Any) -> Any:
        got = read(tree)
        return dataclasses.replace(got, threshold=np.nextafter(got.threshold, -np.inf))

    monkeypatch.setattr(trees, "_sklearn_tree", misread)
    assert compile_trees(estimator) is None


def test_as_the_final_step_of_a_pipeline_with_sparse_one_hot_columns() -> None:
    """The lead's wiring: the preceding steps transform, the evaluator answers for the last."""
    rng = np.random.default_rng(0)
    X, y = _data(3)
    site = rng.integers(0, 40, X.shape[0]).astype(float)  # many categories: sparse output
    full = np.column_stack([site, X])
    pipe = make_pipeline(
        ColumnTransformer(
            [("site", OneHotEncoder(handle_unknown="ignore"), [0])], remainder="passthrough"
        ),
        RandomForestClassifier(n_estimators=10, random_state=0),
    ).fit(full, y)
    transformed = pipe[:-1].transform(full[:80])
    assert sparse.issparse(transformed)
    evaluator = compile_trees(pipe[-1])
    assert evaluator is not None
    assert_array_equal(evaluator.predict_proba(transformed), pipe.predict_proba(full[:80]))
