"""What one answer costs on the general (DataFrame) path, per estimator of `nexus-ml train`.

Usage: python benchmarks/bench_general_path.py [--rounds 7] [--iterations 50]

Trains each estimator on the same seeded typed CSV (an integer, a partly missing number, two
categories; three classes), then times, interleaved: the schema check of one request, the
predictor's one-row answer (DataFrame built from the checked row, transforms once, final
estimator), the same pipeline's own ``predict_proba`` on a ready DataFrame (what a notebook
calls), and a batch of 1,000 rows. OpenMP is held to one thread, as on a shared host the
default team spins against other processes. Figures are milliseconds, median and range.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from threadpoolctl import threadpool_limits

# The typed CSV generator is a test helper.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import WINE, write_mixed_csv

from nexus_ml.ml.estimators import ESTIMATORS
from nexus_ml.ml.frame import to_frame
from nexus_ml.ml.registry import load_model
from nexus_ml.ml.schema import check_batch, check_instance
from nexus_ml.ml.sources import train_from_csv

ROW = {"age": 50, WINE: 2.0, "sex": "F", "site": "north"}


def candidates(folder: Path, estimator: str) -> dict[str, Callable[[], object]]:
    """The calls to time for one estimator."""
    train_from_csv(
        folder / "ward.csv", "outcome", estimator, folder / "models", estimator=estimator
    )  # type: ignore[arg-type]
    loaded = load_model(folder / "models", estimator)
    predictor, schema = loaded.predictor, loaded.schema
    row = check_instance(schema, ROW).row
    frame = to_frame(row.reshape(1, -1), schema)
    X = check_batch(schema, [ROW] * 1000).X
    return {
        "check_instance": lambda: check_instance(schema, ROW),
        "predict_one (general path)": lambda: predictor.predict_one(row),
        "pipeline.predict_proba (ready frame)": lambda: predictor.pipeline.predict_proba(frame),
        "predict_batch, 1,000 rows": lambda: predictor.predict_batch(X),
    }


def main() -> None:
    """Print one table over the three estimators."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    print(f"{'estimator':24} {'candidate':38} {'median ms':>10} {'range ms':>16}")
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1, user_api="openmp"):
        folder = Path(tmp)
        write_mixed_csv(folder / "ward.csv")
        for estimator in ESTIMATORS:
            calls = candidates(folder, estimator)
            times: dict[str, list[float]] = {name: [] for name in calls}
            for r in range(args.rounds):
                names = list(calls)
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    n = max(1, args.iterations // 10) if "1,000" in name else args.iterations
                    start = time.perf_counter()
                    for _ in range(n):
                        calls[name]()
                    times[name].append((time.perf_counter() - start) / n * 1e3)
            for name, t in times.items():
                spread = f"{min(t):.3f}–{max(t):.3f}"
                print(f"{estimator:24} {name:38} {statistics.median(t):10.3f} {spread:>16}")


if __name__ == "__main__":
    main()
