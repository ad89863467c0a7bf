"""Cost of segment masks over stored predictions (``SegmentIndex.masks``), per row.

The quality job masks every labelled prediction of its window by segment label once per run.
Rows are the feature dicts a client sent (as stored): the bundled ``diabetes_risk`` model's
segments (``sex`` by value, ``age`` in three bins: 7 groups) and ``readmission_risk``'s
(``site``, a category, and ``age`` bins: 9 groups). Median and range over rounds::

    .venv/bin/python benchmarks/bench_segment_masks.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from nexus_ml.ml.datasets import BUNDLED_DECLARATIONS, READMISSION, load_dataset, readmission_frame
from nexus_ml.ml.schema import FeatureSchema
from nexus_ml.ml.segments import SegmentIndex, parse_segments


def _diabetes(n: int, rng: np.random.Generator) -> tuple[SegmentIndex, list[dict[str, Any]]]:
    d = load_dataset("diabetes_risk")
    schema = FeatureSchema.from_training(d.X, d.feature_names)
    columns = {name: d.X[:, j] for j, name in enumerate(d.feature_names)}
    segments = parse_segments(BUNDLED_DECLARATIONS["diabetes_risk"].segments, schema, columns)
    X = d.X[rng.integers(0, len(d.X), n)]
    return SegmentIndex(segments, schema), [
        dict(zip(d.feature_names, map(float, r), strict=True)) for r in X
    ]


def _readmission(n: int, rng: np.random.Generator) -> tuple[SegmentIndex, list[dict[str, Any]]]:
    frame = readmission_frame(n_rows=n, seed=int(rng.integers(1000)))
    schema = FeatureSchema.from_list(
        [
            {"name": "age", "type": "integer", "min": 18, "max": 98},
            {"name": "site", "type": "category", "categories": ["east", "north", "south", "west"]},
        ]
    )
    segments = parse_segments(BUNDLED_DECLARATIONS[READMISSION].segments, schema, frame)
    rows = [{"age": int(a), "site": s} for a, s in zip(frame["age"], frame["site"], strict=True)]
    return SegmentIndex(segments, schema), rows


def main() -> None:
    """Print the per-row cost of masks at 1,000, 10,000 and 100,000 rows."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'model':18s} {'rows':>8s} {'median µs/row':>14s} {'range':>14s}")
    for name, make in (("diabetes_risk", _diabetes), (READMISSION, _readmission)):
        for n in (1_000, 10_000, 100_000):
            index, rows = make(n, rng)
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                index.masks(rows)
                times.append((time.perf_counter() - started) / n * 1e6)
            print(
                f"{name:18s} {n:>8,d} {statistics.median(times):>14.2f} "
                f"{min(times):>6.2f}–{max(times):.2f}"
            )


if __name__ == "__main__":
    main()
