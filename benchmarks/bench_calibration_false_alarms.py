"""How often does CalibrationDrift's condition hold for a perfectly calibrated model?

Run: ``python benchmarks/bench_calibration_false_alarms.py [--windows 2000] [--seed 0]``.

The expected calibration error (ten equal-width bins, count-weighted |mean predicted -
observed|) of a finite window is biased upwards, more so for probabilities near 0.5. Labels
are drawn from the model's own probabilities (so the model is calibrated by construction);
probabilities come from cross-validated logistic models of the data behind the bundled
``diagnostic`` (breast cancer, holdout 114 rows) and ``diabetes_risk`` (diabetes, target above
its median, holdout 89 rows). For each live window size the script prints the share of
windows where live ECE - holdout ECE exceeds the tolerance: the false-alarm rate of
``calibration_error_tolerance`` at ``calibration_min_samples`` (docs/thresholds.md).
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

BINS = 10


def ece(p: np.ndarray, y: np.ndarray) -> float:
    """Expected calibration error over ten equal-width bins of P(positive)."""
    idx = np.minimum((p * BINS).astype(int), BINS - 1)
    counts = np.bincount(idx, minlength=BINS)
    mean_p = np.bincount(idx, weights=p, minlength=BINS)
    observed = np.bincount(idx, weights=y, minlength=BINS)
    used = counts > 0
    return float(np.sum(np.abs(mean_p[used] - observed[used])) / len(p))


def probabilities() -> dict[str, tuple[np.ndarray, int]]:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    x, y = load_breast_cancer(return_X_y=True)
    diag = cross_val_predict(model, x, 1 - y, cv=5, method="predict_proba")[:, 1]  # malignant
    xd, yd = load_diabetes(return_X_y=True)
    high = (yd > np.median(yd)).astype(int)
    diab = cross_val_predict(model, xd, high, cv=5, method="predict_proba")[:, 1]
    return {"diagnostic-like": (diag, 114), "diabetes-like": (diab, 89)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"P(live ECE - holdout ECE > {args.tolerance}) for a calibrated model")
    print(f"{'model':>16} " + " ".join(f"{'n=' + str(n):>8}" for n in (30, 100, 200, 500)))
    for name, (p, n_holdout) in probabilities().items():
        shares = []
        for n in (30, 100, 200, 500):
            over = 0
            for _ in range(args.windows):
                live, hold = rng.choice(p, n), rng.choice(p, n_holdout)
                gap = ece(live, rng.random(n) < live) - ece(hold, rng.random(n_holdout) < hold)
                over += gap > args.tolerance
            shares.append(over / args.windows)
        print(f"{name:>16} " + " ".join(f"{s:8.3f}" for s in shares))


if __name__ == "__main__":
    main()
