"""Every tree of an ensemble flattened into one set of node arrays, and the numpy walk that
finds each row's leaf in all trees at once, one step per level (``ml.trees`` compiles the
estimators into these arrays and explains why the answers are scikit-learn's bits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Nodes:
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
class TreeArrays:
    """One tree in scikit-learn's arrays: children -1 at leaves."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    nan_left: np.ndarray
    bitset: np.ndarray | None = None  # -1 for numeric nodes


def tree_depth(left: np.ndarray, right: np.ndarray) -> int:
    """Edges on the longest root-to-leaf path: one numpy step per level."""
    depth, level = 0, np.array([0])
    while True:
        level = np.concatenate([left[level], right[level]])
        level = level[level >= 0]
        if level.shape[0] == 0:
            return depth
        depth += 1


def flatten(
    trees: Sequence[TreeArrays], n_features: int, cat_bitsets: np.ndarray | None = None
) -> Nodes:
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
        cat_left = np.vstack([np.zeros((1, 256), dtype=bool), bitset_table(cat_bitsets)])
    return Nodes(
        feature=np.repeat(feature, 2),
        column=np.repeat(column, 2),
        threshold=np.repeat(threshold, 2),
        children=children,
        nan_left=np.repeat(nan_left, 2),
        roots=2 * offsets[:-1].astype(np.intp),
        depth=max(tree_depth(t.left, t.right) for t in trees),
        cat_row=cat_row,
        cat_left=cat_left,
    )


def bitset_table(bitsets: np.ndarray) -> np.ndarray:
    """(rows, 8) uint32 bitsets of 256 bits -> (rows, 256) bool: is code c in the set."""
    codes = np.arange(256)
    return ((bitsets[:, codes // 32] >> (codes % 32).astype(np.uint32)) & 1).astype(bool)


def walk_leaves(nodes: Nodes, X: np.ndarray) -> np.ndarray:
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


def probe_rows(nodes: Nodes, n_features: int, n_rows: int = 64) -> np.ndarray:
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
