"""Fast ``predict_proba`` for fitted scikit-learn tree ensembles, equal to scikit-learn's own.

``compile_trees(estimator)`` flattens every tree of a fitted DecisionTree, RandomForest,
ExtraTrees, GradientBoosting or HistGradientBoosting classifier into one set of node arrays.
``TreeEvaluator.predict_proba`` skips scikit-learn's per-call validation and joblib dispatch
and finds the leaves by one of two walks: for a few rows, numpy walks all trees at once, one
step per tree level (its cost grows with depth, not with the number of trees); from
``NATIVE_FROM_ROWS`` rows on, for a single tree, and always for GradientBoosting (whose
``predict_stages`` walks every stage in one compiled call), scikit-learn's own compiled walk is
called directly (``Tree.apply``, ``predict_stages``, ``TreePredictor.predict``). Anything not
supported gives ``None``, and the caller keeps scikit-learn; so does an evaluator that fails
its self-check against ``predict_proba`` when compiled. docs/benchmarks.md ("Tree ensembles")
has the figures and the candidates not chosen (treelite, ONNX Runtime, numba).

Why the answers are bit-for-bit scikit-learn's (``tests/ml/test_trees.py`` asserts equality,
not closeness):

- Splits. DecisionTree, forests and GradientBoosting cast X to float32 before walking and go
  left on ``float32(x) <= threshold`` (float64 threshold); the evaluator does the same cast, so
  a float64 value just above a threshold that rounds onto it goes left, as in scikit-learn.
  HistGradientBoosting compares the float64 value itself with ``num_threshold``. NaN follows
  each node's learned ``missing_go_to_left``. A HistGradientBoosting categorical feature is
  ordinal-encoded as its own ``_preprocessor`` does (a value seen in training becomes its
  code; anything else is missing) and goes left when its code is in the node's bitset.
- Sums. Every sum is taken in scikit-learn's order: a forest adds the trees' leaf
  probabilities one tree after the other from 0 and divides by the number of trees; gradient
  boosting adds ``learning_rate * leaf`` (``leaf`` for histogram boosting, whose leaves hold
  the shrunk value) stage by stage to the initial prediction. ``np.cumsum`` is a strictly
  sequential sum, unlike ``np.sum`` (pairwise), so the float64 results are identical.
- The link (expit, softmax) is the estimator's own loss object, called on raw scores laid out
  as scikit-learn lays them out. With 8 classes or more numpy sums a contiguous row pairwise
  and a strided one sequentially, so scikit-learn's own multiclass boosting answers for a row
  can differ in the last bit between a one-row call and a batch (HistGradientBoosting lays
  its scores out in Fortran order): for the same call the evaluator gives the same bits.

A forest built with ``n_jobs`` > 1 adds its trees in whatever order its threads finish, so
scikit-learn itself is not reproducible to the last bit there. The bound then: any order of
recursive summation of T probabilities (each in [0, 1], so the sum of magnitudes is <= T) is
within ``gamma(T-1) * T`` of the exact sum, ``gamma(n) = n*u / (1 - n*u)``, ``u = 2**-53``;
two orders differ by at most twice that, and the division by T adds one rounding to each, so
``|difference| <= 2 * gamma(T-1) + 2*u``, about ``T * 2**-52`` (2.2e-14 for 100 trees).

Inputs scikit-learn refuses are refused: NaN for an estimator without missing-value support,
and any value infinite after the float32 cast (1e39 is) raise ``NotEvaluable`` naming the row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from scipy import sparse
from scipy.special import expit
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier

from nexus_ml.ml.errors import NotEvaluable
from nexus_ml.ml.tree_nodes import (
    Nodes,
    TreeArrays,
    bitset_table,
    flatten,
    probe_rows,
    walk_leaves,
)

try:  # private to scikit-learn: without it GradientBoosting keeps scikit-learn's own path
    from sklearn.ensemble._gradient_boosting import predict_stages as _predict_stages
except ImportError:  # pragma: no cover
    _predict_stages = None

_FOREST_TYPES = (RandomForestClassifier, ExtraTreesClassifier)
Walk = Literal["auto", "numpy", "sklearn"]
# From this many rows on, scikit-learn's compiled walk, one call per tree, beats the numpy walk
# over all trees at once (benchmarks/trees.py: 100 trees, crossover between 16 and 64 rows).
NATIVE_FROM_ROWS = 64


class TreeEvaluator:
    """``predict_proba`` of the compiled estimator, in the order of ``classes_``.

    Leaves come from one of two walks that find the same ones: the numpy walk over all trees at
    once (few rows: its cost is per level, not per tree) or scikit-learn's own compiled walk
    without its validation (many rows, fewer trees than levels, or GradientBoosting).
    """

    def __init__(
        self,
        *,
        nodes: Nodes,
        n_features: int,
        classes: np.ndarray,
        prepare: Callable[[np.ndarray], np.ndarray],
        leaf_values: np.ndarray,
        native: Callable[[np.ndarray], np.ndarray],
        reduce: Callable[[np.ndarray], np.ndarray],
        native_from_rows: int = -1,
    ) -> None:
        self.nodes = nodes
        self.n_features = n_features
        self.classes_ = classes
        self._prepare = prepare  # X as the estimator's trees read it
        self._leaf_values = leaf_values  # per node: its value, or its class probabilities
        self._native = native  # prepared X -> probabilities, by scikit-learn's compiled walk
        self._reduce = reduce  # per-tree values -> probabilities, in scikit-learn's order
        n_trees = nodes.roots.shape[0]
        if native_from_rows < 0:  # one compiled call per tree: worth it for many rows
            native_from_rows = 0 if n_trees <= nodes.depth else NATIVE_FROM_ROWS
        self._native_from_rows = native_from_rows

    def predict_proba(self, X: Any, *, walk: Walk = "auto") -> np.ndarray:
        """Probabilities (n_rows, n_classes) for the matrix the estimator itself receives.

        In a Pipeline: ``compile_trees(pipe[-1]).predict_proba(pipe[:-1].transform(frame))``
        (a DataFrame or a sparse matrix from the preceding steps is accepted as it is).

        ``walk`` forces one of the two walks (tests and benchmarks); both give the same leaves.
        """
        if sparse.issparse(X):  # a ColumnTransformer with one-hot columns may hand over CSR
            X = X.toarray()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features or X.shape[0] == 0:
            raise ValueError(f"expected shape (n >= 1, {self.n_features}), got {X.shape}")
        prepared = self._prepare(X)
        if walk == "sklearn" or (walk == "auto" and X.shape[0] >= self._native_from_rows):
            return self._native(prepared)
        return self._reduce(self._leaf_values[walk_leaves(self.nodes, prepared) >> 1])


def compile_trees(estimator: Any) -> TreeEvaluator | None:
    """The fast evaluator of a fitted tree classifier, or None where it is not supported.

    The evaluator reads scikit-learn's fitted internals, so before it is returned it must give
    scikit-learn's exact bits, on both walks, on probe rows placed on and just above every
    split: a scikit-learn whose internals changed meaning gives None, not wrong answers.
    """
    evaluator: TreeEvaluator | None = None
    try:
        if type(estimator) is DecisionTreeClassifier or type(estimator) in _FOREST_TYPES:
            evaluator = _compile_forest(estimator)
        elif type(estimator) is GradientBoostingClassifier:
            evaluator = _compile_gradient_boosting(estimator)
        elif type(estimator) is HistGradientBoostingClassifier:
            evaluator = _compile_hist_gradient_boosting(estimator)
        if evaluator is None or not _agrees(evaluator, estimator):
            return None
    except AttributeError:  # unfitted, or scikit-learn's internals moved
        return None
    return evaluator


def _agrees(evaluator: TreeEvaluator, estimator: Any) -> bool:
    X = probe_rows(evaluator.nodes, evaluator.n_features)
    with np.errstate(over="ignore"):
        try:
            expected = estimator.predict_proba(X)
        except ValueError:  # a threshold whose float32 neighbour overflows: probe without it
            X = np.where(np.abs(X) < 3e38, X, 0.0)
            expected = estimator.predict_proba(X)
    return all(
        np.array_equal(evaluator.predict_proba(X, walk=walk), expected)
        for walk in ("numpy", "sklearn")
    )


def _sklearn_tree(tree: Any) -> TreeArrays:
    return TreeArrays(
        left=np.asarray(tree.children_left, dtype=np.intp),
        right=np.asarray(tree.children_right, dtype=np.intp),
        feature=np.asarray(tree.feature, dtype=np.intp),
        threshold=np.asarray(tree.threshold, dtype=np.float64),
        nan_left=np.asarray(tree.missing_go_to_left, dtype=bool),
    )


def _float32_input(*, allow_nan: bool) -> Callable[[np.ndarray], np.ndarray]:
    """X as scikit-learn's trees see it: cast to float32, refused where sklearn refuses it."""

    def prepare(X: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # overflow to inf is refused just below
            X32 = X.astype(np.float32, order="C")  # predict_stages reads C order
        bad = np.isinf(X32) if allow_nan else ~np.isfinite(X32)
        if bad.any():
            raise NotEvaluable(int(np.argmax(bad.any(axis=1))))
        # numpy compares float32 with the float64 threshold in float64, exactly as Cython does.
        return X32

    return prepare


def _sklearnwalk_leaves(
    trees: Sequence[Any], leaf_values: np.ndarray, reduce: Callable[[np.ndarray], np.ndarray]
) -> Callable[..., np.ndarray]:
    """Probabilities from each ``Tree.apply`` (scikit-learn's Cython walk) on float32 rows."""
    offsets = np.cumsum([0] + [t.node_count for t in trees[:-1]])

    def native(X32: np.ndarray) -> np.ndarray:
        leaves = np.column_stack([t.apply(X32) for t in trees]) + offsets
        return reduce(leaf_values[leaves])

    return native


def _compile_forest(estimator: Any) -> TreeEvaluator | None:
    if getattr(estimator, "n_outputs_", 1) != 1:
        return None
    members = [estimator] if type(estimator) is DecisionTreeClassifier else estimator.estimators_
    n_classes, n_features = int(estimator.n_classes_), int(estimator.n_features_in_)
    trees = [m.tree_ for m in members]
    values = np.concatenate([t.value[:, 0, :n_classes] for t in trees]).astype(np.float64)
    n_trees = len(members)

    def reduce(per_tree: np.ndarray) -> np.ndarray:  # (n_rows, n_trees, n_classes)
        if n_trees == 1:
            return np.ascontiguousarray(per_tree[:, 0, :])
        return np.cumsum(per_tree, axis=1)[:, -1, :] / n_trees

    allow_nan = bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    return TreeEvaluator(
        nodes=flatten([_sklearn_tree(t) for t in trees], n_features),
        n_features=n_features,
        classes=estimator.classes_,
        prepare=_float32_input(allow_nan=allow_nan),
        leaf_values=values,
        native=_sklearnwalk_leaves(trees, values, reduce),
        reduce=reduce,
    )


def _compile_gradient_boosting(estimator: Any) -> TreeEvaluator | None:
    init = estimator.init_
    if not (isinstance(init, str) and init == "zero") and type(init) is not DummyClassifier:
        return None  # a user's init estimator may depend on X
    n_features = int(estimator.n_features_in_)
    # The initial raw prediction of the prior (or zero) does not depend on X.
    baseline = estimator._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))[0]
    stages = estimator.estimators_  # (n_stages, K) regression trees
    trees = [t.tree_ for stage in stages for t in stage]
    # scikit-learn adds learning_rate * value; the product is the same float64 here.
    values = np.concatenate([float(estimator.learning_rate) * t.value[:, 0, 0] for t in trees])
    loss, k = estimator._loss, stages.shape[1]
    initial = np.asarray(baseline, dtype=np.float64).reshape(1, k)

    if _predict_stages is None:
        return None

    def native(X32: np.ndarray) -> np.ndarray:
        # What GradientBoostingClassifier.predict_proba runs once X is validated: one Cython
        # loop over every stage, adding in place to the initial raw prediction.
        raw = np.repeat(initial, X32.shape[0], axis=0)
        _predict_stages(stages, X32, float(estimator.learning_rate), raw)
        return np.asarray(loss.predict_proba(raw.ravel() if k == 1 else raw), dtype=np.float64)

    return TreeEvaluator(
        nodes=flatten([_sklearn_tree(t) for t in trees], n_features),
        n_features=n_features,
        classes=estimator.classes_,
        prepare=_float32_input(allow_nan=False),
        leaf_values=values,
        native=native,
        reduce=_boosting_sum(baseline, k, loss, order="C"),
        native_from_rows=0,  # one compiled call for all stages, whatever the row count
    )


def _boosting_sum(
    baseline: np.ndarray, k: int, loss: Any, *, order: Literal["C", "F"]
) -> Callable[[np.ndarray], np.ndarray]:
    """Raw score = baseline + each stage's leaf value in turn, then the loss's link.

    ``order`` is the memory layout scikit-learn gives the raw scores (C for GradientBoosting,
    F for HistGradientBoosting): with 8 classes or more the softmax's sum depends on it.
    """
    baseline = np.asarray(baseline, dtype=np.float64).reshape(1, k)
    link = _link(loss)

    def reduce(per_tree: np.ndarray) -> np.ndarray:  # (n_rows, n_stages * k), stage-major
        n_rows = per_tree.shape[0]
        terms = np.empty((n_rows, per_tree.shape[1] // k + 1, k))
        terms[:, 0, :] = baseline
        terms[:, 1:, :] = per_tree.reshape(n_rows, -1, k)
        raw = np.asarray(np.cumsum(terms, axis=1)[:, -1, :], order=order)
        return np.asarray(link(raw), dtype=np.float64)

    return reduce


def _link(loss: Any) -> Callable[[np.ndarray], np.ndarray]:
    return _binomial_link if type(loss).__name__ == "HalfBinomialLoss" else loss.predict_proba


def _binomial_link(raw: np.ndarray) -> np.ndarray:
    """HalfBinomialLoss.predict_proba without its array-API dispatch (a third of one row's
    cost): scikit-learn's ``_expit`` is ``scipy.special.expit`` for numpy arrays."""
    proba = np.empty((raw.shape[0], 2))
    proba[:, 1] = expit(raw[:, 0])
    proba[:, 0] = 1 - proba[:, 1]
    return proba


def _compile_hist_gradient_boosting(estimator: Any) -> TreeEvaluator | None:
    predictors = [p for iteration in estimator._predictors for p in iteration]
    prepare: Callable[[np.ndarray], np.ndarray] = _identity
    cat_bitsets = None
    if estimator._preprocessor is not None:
        encode = _hgb_category_encoder(estimator)
        if encode is None:
            return None
        prepare = encode
        cat_bitsets = np.concatenate([p.raw_left_cat_bitsets for p in predictors])
    trees = []
    first_bitset = 0
    for p in predictors:
        nd = p.nodes
        leaf = nd["is_leaf"].astype(bool)
        categorical = nd["is_categorical"].astype(bool) & ~leaf
        bitset = np.where(categorical, nd["bitset_idx"].astype(np.intp) + first_bitset, -1)
        first_bitset += p.raw_left_cat_bitsets.shape[0]
        trees.append(
            TreeArrays(
                left=np.where(leaf, -1, nd["left"].astype(np.intp)),
                right=np.where(leaf, -1, nd["right"].astype(np.intp)),
                feature=nd["feature_idx"].astype(np.intp),
                threshold=nd["num_threshold"].astype(np.float64),
                nan_left=nd["missing_go_to_left"].astype(bool),
                bitset=bitset,
            )
        )
    known, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()

    k = int(estimator.n_trees_per_iteration_)
    reduce = _boosting_sum(estimator._baseline_prediction, k, estimator._loss, order="F")

    baseline, link = estimator._baseline_prediction, _link(estimator._loss)

    def native(X: np.ndarray) -> np.ndarray:
        # HistGradientBoostingClassifier._raw_predict without validation, on one thread (its
        # default starts OpenMP threads per tree per call): the same additions in its order.
        raw = np.zeros((X.shape[0], k), order="F")
        raw += baseline
        for i, p in enumerate(predictors):
            raw[:, i % k] += p.predict(X, known, f_idx_map, 1)
        return np.asarray(link(raw), dtype=np.float64)

    return TreeEvaluator(
        nodes=flatten(trees, int(estimator.n_features_in_), cat_bitsets),
        n_features=int(estimator.n_features_in_),
        classes=estimator.classes_,
        prepare=prepare,
        leaf_values=np.concatenate([p.nodes["value"].astype(np.float64) for p in predictors]),
        native=native,
        reduce=reduce,
    )


def _identity(X: np.ndarray) -> np.ndarray:
    return X


def _hgb_category_encoder(estimator: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """X -> the matrix histogram boosting's own ``_preprocessor`` would give, categories coded.

    The preprocessor puts the categorical columns first, each value replaced by its index among
    the categories seen in training (NaN when unseen or missing). A code outside the bin
    mapper's known categories is made missing too, as scikit-learn's predictor treats it (in
    scikit-learn 1.9 the binner is given every category the encoder knows, so it is a guard).
    """
    is_cat = np.asarray(estimator.is_categorical_, dtype=bool)
    encoder = estimator._preprocessor.named_transformers_["encoder"]
    known, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
    known_table = bitset_table(known)
    columns = np.flatnonzero(is_cat)
    categories = []
    for position, cats in enumerate(encoder.categories_):
        if cats.dtype.kind not in "fiu":
            return None  # string categories: the estimator is not fed a float matrix
        cats = np.asarray(cats, dtype=np.float64)
        cats = cats[~np.isnan(cats)]
        codes = np.arange(cats.shape[0])
        seen = known_table[f_idx_map[position], codes]
        categories.append((cats, np.where(seen, codes, np.nan)))
    order = np.concatenate([columns, np.flatnonzero(~is_cat)])

    def prepare(X: np.ndarray) -> np.ndarray:
        out = X[:, order]
        for position, (cats, code_of) in enumerate(categories):
            x = out[:, position]
            at = np.minimum(np.searchsorted(cats, x), cats.shape[0] - 1)
            out[:, position] = np.where(cats[at] == x, code_of[at], np.nan)
        return out

    return prepare
