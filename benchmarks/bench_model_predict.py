"""Per-row cost of one prediction: scikit-learn, the compiled predictor's paths, validation.

Usage: python benchmarks/bench_model_predict.py [--rounds 15] [--iterations 20000]

The candidates run interleaved (each round times every candidate once, in a rotating order) so
that CPU frequency changes and noisy neighbours hit all of them alike; the table shows the
median and the range over rounds of the per-row cost in microseconds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np

from nexus_ml.ml.datasets import BUNDLED_DATASETS, load_dataset
from nexus_ml.ml.predictor import compile_predictor, fold_scaler
from nexus_ml.ml.schema import FeatureSchema, validate_instance
from nexus_ml.ml.training import train_pipeline

SLOW = "pipeline.predict_proba"  # ~100x slower: fewer iterations keep the run short


def pure_python_predict_one(pipeline: object) -> Callable[[np.ndarray], tuple[int, np.ndarray]]:
    """``Predictor.predict_one`` for a binary model with a plain Python loop instead of numpy.

    The alternative that was measured and not kept: same input (a 1-D array), same output.
    """
    folded = fold_scaler(pipeline)
    assert folded is not None and folded[0].shape[0] == 1
    weights, b = folded[0][0].tolist(), float(folded[1][0])
    exp = math.exp

    def predict_one(row: np.ndarray) -> tuple[int, np.ndarray]:
        z = b
        for w, x in zip(weights, row.tolist(), strict=True):
            z += w * x
        if z >= 0.0:
            p = 1.0 / (1.0 + exp(-z))
        else:
            e = exp(z)
            p = e / (1.0 + e)
        return (1 if z > 0.0 else 0), np.array((1.0 - p, p))

    return predict_one


def candidates_for(name: str) -> dict[str, Callable[[], object]]:
    """The calls to time for one bundled model, checked to give sklearn's answer first."""
    data = load_dataset(name)
    pipeline = train_pipeline(data.X, data.y, data.feature_names).pipeline
    predictor = compile_predictor(pipeline)
    python_predict_one = pure_python_predict_one(pipeline)
    schema = FeatureSchema.from_training(data.X, data.feature_names)
    row = data.X[0].copy()
    row_2d = row.reshape(1, -1)
    features = dict(zip(data.feature_names, row.tolist(), strict=True))

    # Same answers, or the timing means nothing.
    expected = pipeline.predict_proba(row_2d)[0]
    for predict_one in (predictor.predict_one, python_predict_one):
        assert np.abs(predict_one(row)[1] - expected).max() <= 1e-9

    return {
        SLOW: lambda: pipeline.predict_proba(row_2d),
        "Predictor.predict_one (numpy)": lambda: predictor.predict_one(row),
        "pure-Python predict_one (not kept)": lambda: python_predict_one(row),
        "validate_instance": lambda: validate_instance(schema, features),
        "validate_instance + predict_one": lambda: predictor.predict_one(
            validate_instance(schema, features)
        ),
    }


def measure(
    candidates: dict[str, Callable[[], object]], rounds: int, iterations: int
) -> dict[str, list[float]]:
    """Per-row microseconds for each candidate, one figure per round."""
    results: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for name in names:  # warm up caches and lazy imports
        for _ in range(200):
            candidates[name]()
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = candidates[name]
            n = max(iterations // 50, 100) if name == SLOW else iterations
            start = time.perf_counter_ns()
            for _ in range(n):
                fn()
            results[name].append((time.perf_counter_ns() - start) / n / 1000)
    return results


def main() -> None:
    """Print the table for both bundled models."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=20_000)
    args = parser.parse_args()

    header = f"{'model':<14} {'features':>8}  {'candidate':<40} {'median µs':>10} {'range µs':>14}"
    print(header)
    print("-" * len(header))
    for name in BUNDLED_DATASETS:
        n_features = len(load_dataset(name).feature_names)
        results = measure(candidates_for(name), args.rounds, args.iterations)
        for candidate, figures in results.items():
            spread = f"{min(figures):.2f}–{max(figures):.2f}"
            print(
                f"{name:<14} {n_features:>8}  {candidate:<40} "
                f"{statistics.median(figures):>10.2f} {spread:>14}"
            )


if __name__ == "__main__":
    main()
