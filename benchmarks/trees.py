"""Tree ensembles: scikit-learn's predict_proba against the candidates for a fast exact path.

Usage: python benchmarks/trees.py [--repeats 7] [--rows 3000] [--only random_forest,extra_trees]

For each fitted estimator (seeded data, binary target, 20 features; 10 % missing values for
histogram boosting) and each path, the median over ``--repeats`` of the time of one call on
one row and on a batch of 1,000 rows, and the ratio to scikit-learn. Before timing, each path
is checked on 2,000 rows (half of them put exactly on split thresholds, and the float64 values
just above them): the largest probability difference to scikit-learn and the number of rows
whose class differs are printed beside the figures. The optional candidates (treelite,
onnxruntime + skl2onnx, numba) are measured when installed and skipped otherwise; none is a
dependency of the project.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from nexus_ml.ml.trees import TreeEvaluator, compile_trees

Predict = Callable[[np.ndarray], np.ndarray]
SKLEARN = "scikit-learn predict_proba"
ONE_THREAD = "scikit-learn, 1 OpenMP thread"  # timed inside threadpool_limits, entered once
BUDGET_SECONDS = 1.0  # per timed cell at most: a slow path gets fewer calls, not a longer run


def estimators() -> dict[str, tuple[Any, bool]]:
    """name -> (unfitted estimator, whether it is fed missing values)."""
    return {
        "decision_tree": (DecisionTreeClassifier(random_state=0), False),
        "random_forest": (RandomForestClassifier(n_estimators=100, random_state=0), False),
        "extra_trees": (ExtraTreesClassifier(n_estimators=100, random_state=0), False),
        "gradient_boosting": (GradientBoostingClassifier(n_estimators=100, random_state=0), False),
        "hist_gradient_boosting": (
            HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0),
            True,
        ),
    }


def data(rows: int, with_nan: bool) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=rows, n_features=20, n_informative=8, random_state=0, flip_y=0.05
    )
    if with_nan:
        X[np.random.default_rng(1).random(X.shape) < 0.1] = np.nan
    return X, y


def check_rows(estimator: Any, X: np.ndarray) -> np.ndarray:
    """1,000 rows of X, then 1,000 with one feature put on a split threshold or just above it."""
    rng = np.random.default_rng(2)
    splits = [
        (f, t)
        for tree in _trees_of(estimator)
        for f, t in zip(tree[0], tree[1], strict=True)
        if f >= 0 and np.isfinite(t)
    ]
    base = X[rng.integers(0, X.shape[0], 1000)]
    edge = X[rng.integers(0, X.shape[0], 1000)].copy()
    for i, (f, t) in enumerate(splits[j] for j in rng.integers(0, len(splits), 1000)):
        edge[i, f] = t if i % 2 == 0 else np.nextafter(t, np.inf)
    return np.vstack([base, edge])


def _trees_of(estimator: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    if isinstance(estimator, HistGradientBoostingClassifier):
        return [
            (np.where(p.nodes["is_leaf"], -1, p.nodes["feature_idx"]), p.nodes["num_threshold"])
            for it in estimator._predictors
            for p in it
        ]
    if isinstance(estimator, DecisionTreeClassifier):
        members = [estimator]
    elif isinstance(estimator, GradientBoostingClassifier):
        members = list(estimator.estimators_.ravel())
    else:
        members = estimator.estimators_
    return [(m.tree_.feature, m.tree_.threshold) for m in members]


def numba_walk() -> Callable[[TreeEvaluator, np.ndarray], np.ndarray] | None:
    """The same flat node arrays walked by a numba-compiled loop (one candidate)."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False, nogil=True)  # type: ignore[misc]
    def walk(feature, threshold, children, nan_left, roots, X):  # type: ignore[no-untyped-def]
        # children[2i] is 2 * the right child, children[2i + 1] 2 * the left one
        out = np.empty((X.shape[0], roots.shape[0]), dtype=np.intp)
        for i in range(X.shape[0]):
            for t in range(roots.shape[0]):
                s = roots[t]
                while children[s] != s:
                    x = X[i, feature[s]]
                    left = nan_left[s] if np.isnan(x) else x <= threshold[s]
                    s = children[s + left]
                out[i, t] = s
        return out

    def run(ev: TreeEvaluator, X: np.ndarray) -> np.ndarray:
        n = ev.nodes
        X = ev._prepare(np.asarray(X, dtype=np.float64))
        leaves = walk(n.feature, n.threshold, n.children, n.nan_left, n.roots, X)
        return ev._reduce(ev._leaf_values[leaves >> 1])

    return run


def treelite_path(estimator: Any, float32_cast: bool) -> Predict | None:
    try:
        import treelite
        import treelite.gtil
    except ImportError:
        return None
    try:
        model = treelite.sklearn.import_model(estimator)
    except Exception as exc:
        print(f"  treelite cannot import {type(estimator).__name__}: {exc}".splitlines()[0])
        return None

    def predict(X: np.ndarray) -> np.ndarray:
        if float32_cast:  # scikit-learn's trees compare float32(x) with the threshold
            X = X.astype(np.float32).astype(np.float64)
        out = treelite.gtil.predict(model, X, nthread=1)
        out = np.asarray(out, dtype=np.float64).reshape(X.shape[0], -1)
        return np.column_stack([1 - out[:, 0], out[:, 0]]) if out.shape[1] == 1 else out

    return predict


def onnx_path(estimator: Any, n_features: int) -> tuple[str, Predict] | None:
    """ONNX Runtime on skl2onnx's graph: float64 input where the runtime accepts it."""
    try:
        import onnxruntime
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    for label, tensor, dtype in (
        ("onnxruntime, float64 input", DoubleTensorType, np.float64),
        ("onnxruntime, float32 input", FloatTensorType, np.float32),
    ):
        try:
            onx = convert_sklearn(
                estimator,
                initial_types=[("X", tensor([None, n_features]))],
                options={id(estimator): {"zipmap": False}},
            )
            session = onnxruntime.InferenceSession(
                onx.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            print(f"  {label} refuses {type(estimator).__name__}: {exc}"[:160])
            continue
        output = session.get_outputs()[1].name

        def predict(X: np.ndarray, s: Any = session, o: str = output, d: Any = dtype) -> np.ndarray:
            return np.asarray(s.run([o], {"X": X.astype(d)})[0], dtype=np.float64)

        return label, predict
    return None


def agreement(expected: np.ndarray, got: np.ndarray) -> tuple[float, int]:
    return float(np.abs(expected - got).max()), int(
        (expected.argmax(axis=1) != got.argmax(axis=1)).sum()
    )


def _limit(path: str) -> Any:
    return threadpool_limits(1, "openmp") if path == ONE_THREAD else nullcontext()


def measure(calls: dict[tuple[str, int], Callable[[], object]], repeats: int) -> dict[Any, float]:
    """Median seconds per call of each (path, rows), over interleaved rounds.

    Each round times every call once, in a rotating order, so that load from other work on the
    host hits all paths alike; a call repeats as often as fits its share of the time budget.
    """
    counts = {}
    for key, fn in calls.items():
        with _limit(key[0]):
            fn()
            start = time.perf_counter()
            fn()
            once = max(time.perf_counter() - start, 1e-7)
        counts[key] = max(1, min(200, int(BUDGET_SECONDS / repeats / once)))
    figures: dict[Any, list[float]] = {key: [] for key in calls}
    keys = list(calls)
    for r in range(repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            fn, n = calls[key], counts[key]
            with _limit(key[0]):
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                figures[key].append((time.perf_counter() - start) / n)
    return {key: statistics.median(f) for key, f in figures.items()}


def paths_for(estimator: Any, n_features: int) -> dict[str, Predict]:
    evaluator = compile_trees(estimator)
    assert evaluator is not None
    float32_cast = not isinstance(estimator, HistGradientBoostingClassifier)

    paths: dict[str, Predict] = {
        SKLEARN: estimator.predict_proba,
        ONE_THREAD: estimator.predict_proba,
        "nexus_ml.ml.trees (chosen)": evaluator.predict_proba,
        "  its numpy walk, forced": lambda X: evaluator.predict_proba(X, walk="numpy"),
        "  its sklearn walk, forced": lambda X: evaluator.predict_proba(X, walk="sklearn"),
    }
    walk = numba_walk()
    if walk is not None:
        paths["same arrays, numba loop"] = lambda X: walk(evaluator, X)
    treelite = treelite_path(estimator, float32_cast)
    if treelite is not None:
        paths["treelite GTIL"] = treelite
    onnx = onnx_path(estimator, n_features)
    if onnx is not None:
        paths[onnx[0]] = onnx[1]
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rows", type=int, default=3000, help="training rows")
    parser.add_argument("--only", default="", help="comma-separated estimator names")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # converters' deprecation chatter
    print(f"cpus={os.cpu_count()} repeats={args.repeats} training rows={args.rows}")
    header = (
        f"{'estimator':<23} {'path':<30} {'1 row µs':>10} {'×sk':>7} "
        f"{'1000 rows ms':>12} {'×sk':>7} {'max |Δp|':>9} {'class≠':>6}"
    )
    print(header)
    print("-" * len(header))
    wanted = set(filter(None, args.only.split(",")))
    inexact: list[str] = []
    for name, (estimator, with_nan) in estimators().items():
        if wanted and name not in wanted:
            continue
        X, y = data(args.rows, with_nan)
        estimator.fit(X, y)
        rows = check_rows(estimator, X)
        expected = estimator.predict_proba(rows)
        batch, one = rows[:1000], rows[:1]
        paths = paths_for(estimator, X.shape[1])
        checks = {}
        for path, predict in paths.items():
            got = predict(rows)
            d, w = agreement(expected, got)
            checks[path] = (f"{d:.1e}", str(w))
            if d > 1e-9:
                worst = int(np.abs(expected - got).max(axis=1).argmax())
                inexact.append(f"{name}, {path}: row {worst} {expected[worst]} -> {got[worst]}")
        calls = {
            (path, x.shape[0]): (lambda p=predict, x=x: p(x))
            for path, predict in paths.items()
            for x in (one, batch)
        }
        times = measure(calls, args.repeats)
        base_one, base_batch = times[(SKLEARN, 1)], times[(SKLEARN, 1000)]
        for path in paths:
            t_one, t_batch = times[(path, 1)], times[(path, 1000)]
            diff, wrong = checks[path]
            print(
                f"{name:<23} {path:<30} {t_one * 1e6:>10.1f} {base_one / t_one:>7.1f} "
                f"{t_batch * 1e3:>12.2f} {base_batch / t_batch:>7.1f} {diff:>9} {wrong:>6}"
            )
    for line in inexact:  # the counterexamples, scikit-learn's probabilities first
        print("worst row of an inexact path:", line)


if __name__ == "__main__":
    main()
