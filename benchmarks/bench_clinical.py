"""How long the quality job's clinical metrics take: realised + estimated for `all` and 8 segments.

A window of n labelled predictions of a binary model (positive rate ~0.3, class names as
stored strings) split into 8 segments of ~n/8 rows (one segment feature with 8 groups); the job
computes realised() and estimated() for segment `all` and each group, 9 calls each. For
context, scikit-learn's point values alone (recall, precision, F1, AUC, Brier: no interval, no
estimate) on the same 9 slices.

Run: python benchmarks/bench_clinical.py [--rows 10000 100000] [--repeat 7]
Figures: medians of interleaved rounds.
Target: realised + estimated for all + 8 segments of 100,000 rows < 2 s (it runs once per
quality-job run, every few minutes, next to drift).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, f1_score, precision_score, recall_score, roc_auc_score

from nexus_ml.ml.profile import confidence_profile
from nexus_ml.stats.clinical import estimated, realised

CLASSES = ["negative", "positive"]
SEGMENTS = 8


def window(n: int, seed: int = 0) -> dict[str, Any]:
    """Seeded labelled predictions with a segment column and a calibration profile."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(size=n) < 0.3
    score = rng.normal(size=n) + 1.5 * y
    p1 = 1.0 / (1.0 + np.exp(-2.0 * (score - 0.8)))
    proba = np.column_stack([1.0 - p1, p1])
    names = np.asarray(CLASSES)
    predicted = names[(p1 >= 0.5).astype(int)]
    conf = proba.max(axis=1)
    profile = {"confidence": confidence_profile(conf, predicted == names[y.astype(int)])}
    group = rng.integers(0, SEGMENTS, size=n)
    masks = {"all": np.ones(n, dtype=bool)} | {f"g={g}": group == g for g in range(SEGMENTS)}
    return {
        "actual": names[y.astype(int)].tolist(),  # lists of str, as the store returns them
        "predicted": predicted.tolist(),
        "proba": proba,
        "profile": profile,
        "masks": masks,
    }


Slices = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def run_realised(slices: Slices, profile: dict[str, Any]) -> None:
    """realised() for every segment, as the quality job calls it."""
    for a, p, pr in slices:
        realised(a, p, pr, CLASSES, positive_class="positive", min_count=30)


def run_estimated(slices: Slices, profile: dict[str, Any]) -> None:
    """estimated() for every segment, with the profile's calibration map."""
    for _, p, pr in slices:
        estimated(p, pr, CLASSES, calibration=profile, positive_class="positive", min_count=30)


def run_sklearn(slices: Slices, profile: dict[str, Any]) -> None:
    """scikit-learn's point values for every segment (context: no intervals, no estimate)."""
    for a, p, pr in slices:
        recall_score(a, p, labels=CLASSES, average=None)
        precision_score(a, p, labels=CLASSES, average=None)
        f1_score(a, p, labels=CLASSES, average=None)
        roc_auc_score(a == "positive", pr[:, 1])
        brier_score_loss(a == "positive", pr[:, 1])


RUNS: dict[str, Callable[[Slices, dict[str, Any]], None]] = {
    "realised": run_realised,
    "estimated": run_estimated,
    "sklearn": run_sklearn,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print("| rows | realised (ms) | estimated (ms) | both (ms) | sklearn point values (ms) |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.rows:
        w = window(n)
        actual, predicted = np.asarray(w["actual"]), np.asarray(w["predicted"])
        slices = [(actual[m], predicted[m], w["proba"][m]) for m in w["masks"].values()]
        times: dict[str, list[float]] = {name: [] for name in RUNS}
        for _ in range(args.repeat):  # interleaved rounds: load on the host hits all alike
            for name, run in RUNS.items():
                started = time.perf_counter()
                run(slices, w["profile"])
                times[name].append(time.perf_counter() - started)
        r, e, s = (float(np.median(times[name])) * 1e3 for name in RUNS)
        print(f"| {n:,} | {r:.0f} | {e:.0f} | {r + e:.0f} | {s:.0f} |")


if __name__ == "__main__":
    main()
