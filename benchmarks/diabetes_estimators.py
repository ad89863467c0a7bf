"""Which estimator should the bundled ``diabetes_risk`` use? Holdout and cross-validated accuracy.

The holdout is the one training uses (stratified 20 %, ``random_state=42``: 89 rows); the
cross-validation is stratified 5-fold, once with seed 0 (mean ± std) and as the mean over five
shuffles, on the same unscaled data the bundled model trains on. One OpenMP thread. The figures
and the decision are in docs/datasets.md::

    .venv/bin/python benchmarks/diabetes_estimators.py
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.training import HOLDOUT_FRACTION

ESTIMATORS: dict[str, Callable[[], Any]] = {
    "logistic, C=1 (bundled)": lambda: Pipeline(
        [("s", StandardScaler()), ("c", LogisticRegression())]
    ),
    "logistic, C=0.1": lambda: Pipeline(
        [("s", StandardScaler()), ("c", LogisticRegression(C=0.1))]
    ),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(random_state=42),
    "hist_gradient_boosting, 50 iter depth 3 rate 0.05": lambda: HistGradientBoostingClassifier(
        max_iter=50, max_depth=3, learning_rate=0.05, random_state=42
    ),
    "random_forest": lambda: RandomForestClassifier(random_state=42),
    "random_forest, min 5 per leaf": lambda: RandomForestClassifier(
        min_samples_leaf=5, random_state=42
    ),
}


def main() -> None:
    """Print each estimator's holdout and cross-validated accuracy."""
    data = load_dataset("diabetes_risk")
    X, y = data.X, data.y
    X_train, X_hold, y_train, y_hold = train_test_split(
        X, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=42
    )
    with threadpool_limits(limits=1):
        for name, make in ESTIMATORS.items():
            holdout = float(np.mean(make().fit(X_train, y_train).predict(X_hold) == y_hold))
            once = cross_val_score(
                make(), X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)
            )
            repeated = np.mean(
                [
                    cross_val_score(
                        make(), X, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed)
                    ).mean()
                    for seed in range(5)
                ]
            )
            print(
                f"{name:52s} holdout {holdout:.3f}  5-fold {once.mean():.3f} ± {once.std():.3f}"
                f"  5 x 5-fold {repeated:.3f}"
            )


if __name__ == "__main__":
    main()
