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
from dataclasses import dataclass
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

try:  # private to scikit-learn: without it GradientBoosting keeps scikit-learn's own path
    from sklearn.ensemble._gradient_boosting import predict_stages as _predict_stages
except ImportError:  # pragma: no cover
    _predict_stages = None

_FOREST_TYPES = (RandomForestClassifier, ExtraTreesClassifier)
Walk = Literal["auto", "numpy", "sklearn"]
# From this many rows on, scikit-learn's compiled walk, one call per tree, beats the numpy walk
# over all trees at once (benchmarks/trees.py: 100 trees, crossover between 16 and 64 rows).
NATIVE_FROM_ROWS = 64


@dataclass(frozen=True, kw_only=True)
class _Nodes:
    """All trees' nodes in flat arrays, indexed by ``2 * node`` (+1 when the row goes left).

    Missing values cost no extra step: the walk reads an extended row ``[x, x with NaN as
    -inf]``, and a node whose NaN goes left reads the second half, so NaN becomes
    ``-inf <= threshold`` (left) there and stays ``NaN <= threshold`` (False: right) elsewhere;
    every other value compares as itself.
    """

    feature: np.ndarray  # (2N,) intp, the feature tested (0 at a leaf)
    column: np.ndarray  # (2N,) intp, the column of the extended row read (feature + F*nan_left)
    threshold: np.ndarray  # (2N,) float64, left on x <= threshold (-inf at a categorical node)
    children: np.ndarray  # (2N,) intp, 2*right at 2i, 2*left at 2i+1; a leaf points to itself
    nan_left: np.ndarray  # (2N,) bool, where NaN (and an unknown category) goes
    roots: np.ndarray  # (T,) intp, 2 * the root of each tree
    depth: int  # the longest root-to-leaf path of any tree, in edges
    # Categorical splits (histogram boosting only): row 0 is all False for numeric nodes.
    cat_row: np.ndarray | None = None  # (2N,) intp, the node's row of ``cat_left``
    cat_left: np.ndarray | None = None  # (n_bitsets + 1, 256) bool, code -> goes left


@dataclass(frozen=True)
class _Tree:
    """One tree in scikit-learn's arrays: children -1 at leaves."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    nan_left: np.ndarray
    bitset: np.ndarray | None = None  # -1 for numeric nodes


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Edges on the longest root-to-leaf path: one numpy step per level."""
    depth, level = 0, np.array([0])
    while True:
        level = np.concatenate([left[level], right[level]])
        level = level[level >= 0]
        if level.shape[0] == 0:
            return depth
        depth += 1


def _flatten(
    trees: Sequence[_Tree], n_features: int, cat_bitsets: np.ndarray | None = None
) -> _Nodes:
    offsets = np.cumsum([0] + [t.left.shape[0] for t in trees])
    n = int(offsets[-1])
    leaf = np.concatenate([t.left < 0 for t in trees])
    own = np.arange(n, dtype=np.intp)
    starts = offsets[:-1]
    left = np.where(
        leaf, own, np.concatenate([t.left + o for t, o in zip(trees, starts, strict=True)])
    )
    right = np.where(
        leaf, own, np.concatenate([t.right + o for t, o in zip(trees, starts, strict=True)])
    )
    feature = np.where(leaf, 0, np.concatenate([t.feature for t in trees])).astype(np.intp)
    threshold = np.concatenate([t.threshold for t in trees]).astype(np.float64)
    children = np.empty(2 * n, dtype=np.intp)
    children[0::2], children[1::2] = 2 * right, 2 * left
    nan_left = np.concatenate([t.nan_left for t in trees]).astype(bool) & ~leaf
    column = feature + n_features * nan_left
    cat_row = cat_left = None
    if cat_bitsets is not None:
        bitset = np.where(leaf, -1, np.concatenate([t.bitset for t in trees]))
        threshold = np.where(bitset >= 0, -np.inf, threshold)
        column = np.where(bitset >= 0, feature, column)  # NaN kept: the walk tests it there
        cat_row = np.repeat(bitset + 1, 2)
        cat_left = np.vstack([np.zeros((1, 256), dtype=bool), _bitset_table(cat_bitsets)])
    return _Nodes(
        feature=np.repeat(feature, 2),
        column=np.repeat(column, 2),
        threshold=np.repeat(threshold, 2),
        children=children,
        nan_left=np.repeat(nan_left, 2),
        roots=2 * offsets[:-1].astype(np.intp),
        depth=max(_depth(t.left, t.right) for t in trees),
        cat_row=cat_row,
        cat_left=cat_left,
    )


def _bitset_table(bitsets: np.ndarray) -> np.ndarray:
    """(rows, 8) uint32 bitsets of 256 bits -> (rows, 256) bool: is code c in the set."""
    codes = np.arange(256)
    return ((bitsets[:, codes // 32] >> (codes % 32).astype(np.uint32)) & 1).astype(bool)


def _walk(nodes: _Nodes, X: np.ndarray) -> np.ndarray:
    """(n_rows, n_trees) of 2 * the leaf each row reaches in each tree, one step per level."""
    n_rows, n_features = X.shape
    # float32 rows become float64 exactly; the comparison is in float64 either way, and numpy
    # compares float64 with float64 faster than float32 with float64.
    x64 = np.asarray(X, dtype=np.float64)
    flat = np.concatenate([x64, np.where(np.isnan(x64), -np.inf, x64)], axis=1).ravel()
    column, threshold, children = nodes.column, nodes.threshold, nodes.children
    at = nodes.roots  # row-major (row, tree); np.tile and np.repeat cost ~20 µs for one row
    if n_rows > 1:
        at = (nodes.roots[None, :] + np.zeros((n_rows, 1), dtype=np.intp)).ravel()
        offset = np.arange(n_rows, dtype=np.intp).repeat(nodes.roots.shape[0]) * 2 * n_features
    for level in range(nodes.depth):
        # The deepest tree sets the number of steps; a row's own paths are often shorter
        # (35 % fewer steps for one HGB row in benchmarks/trees.py): stop once all are leaves.
        if level % 4 == 3 and (children.take(at) == at).all():
            break
        where = column.take(at)
        x = flat.take(where + offset if n_rows > 1 else where)
        go_left = x <= threshold.take(at)  # NaN: False; -inf where NaN goes left
        if nodes.cat_left is not None:  # histogram boosting's categorical splits
            row = nodes.cat_row.take(at)  # type: ignore[union-attr]
            code = np.where((row > 0) & ~np.isnan(x), x, 0).astype(np.intp)
            go_left |= nodes.cat_left[row, code]
            go_left = np.where(np.isnan(x), nodes.nan_left.take(at), go_left)
        at = children.take(at + go_left)
    return at.reshape(n_rows, -1)


class TreeEvaluator:
    """``predict_proba`` of the compiled estimator, in the order of ``classes_``.

    Leaves come from one of two walks that find the same ones: the numpy walk over all trees at
    once (few rows: its cost is per level, not per tree) or scikit-learn's own compiled walk
    without its validation (many rows, fewer trees than levels, or GradientBoosting).
    """

    def __init__(
        self,
        *,
        nodes: _Nodes,
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
        return self._reduce(self._leaf_values[_walk(self.nodes, prepared) >> 1])


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
    X = _probe_rows(evaluator.nodes, evaluator.n_features)
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


def _probe_rows(nodes: _Nodes, n_features: int, n_rows: int = 64) -> np.ndarray:
    """Rows whose values are split thresholds of their feature, or the next float above."""
    rng = np.random.default_rng(0)
    threshold, feature = nodes.threshold[0::2], nodes.feature[0::2]
    is_split = nodes.children[0::2] != np.arange(0, nodes.children.shape[0], 2)
    usable = is_split & np.isfinite(threshold)  # categorical splits hold -inf
    X = np.zeros((n_rows, n_features))
    for f in range(n_features):
        values = threshold[usable & (feature == f)]
        if values.shape[0]:
            picked = values[rng.integers(0, values.shape[0], n_rows)]
            X[:, f] = np.where(rng.random(n_rows) < 0.5, picked, np.nextafter(picked, np.inf))
    return X


def _sklearn_tree(tree: Any) -> _Tree:
    return _Tree(
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


def _sklearn_walk(
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
        nodes=_flatten([_sklearn_tree(t) for t in trees], n_features),
        n_features=n_features,
        classes=estimator.classes_,
        prepare=_float32_input(allow_nan=allow_nan),
        leaf_values=values,
        native=_sklearn_walk(trees, values, reduce),
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
        nodes=_flatten([_sklearn_tree(t) for t in trees], n_features),
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
            _Tree(
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
        nodes=_flatten(trees, int(estimator.n_features_in_), cat_bitsets),
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
    known_table = _bitset_table(known)
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
