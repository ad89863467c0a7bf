"""Realised accuracy and the CBPE estimate, on the bundled breast-cancer data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from nexus_ml.ml.profile import confidence_profile
from nexus_ml.stats.performance import (
    AccuracyEstimate,
    AccuracyResult,
    ConfidenceEstimator,
    realised_accuracy,
)


def test_realised_accuracy_counts_pairs() -> None:
    res = realised_accuracy(["a", "b", "a", "a"], ["a", "b", "b", "a"])
    assert res.accuracy == 0.75 and res.n == 4
    # An empty window has no accuracy and counts no pair (the API and the gauges report n).
    assert realised_accuracy([], []) == AccuracyResult(None, 0)
    with pytest.raises(ValueError, match="differ in shape"):
        realised_accuracy([1, 2], [1])


def test_estimate_and_standard_error_follow_the_bernoulli_model() -> None:
    est = ConfidenceEstimator(calibrate=False).fit_profile({}).estimate([0.9, 0.8, 0.7, 0.6])
    assert est.accuracy == pytest.approx(0.75)
    assert est.stderr == pytest.approx(np.sqrt(0.09 + 0.16 + 0.21 + 0.24) / 4)
    assert est.n == 4
    assert ConfidenceEstimator().fit_profile({}).estimate([]) == AccuracyEstimate(None, None, 0)


@pytest.mark.parametrize(
    ("profile", "calibrate"),
    [
        ({}, True),
        ({"confidence": None}, True),
        ({"confidence": {"calibration": None}}, True),
        ({"confidence": {"calibration": {"x": [], "y": []}}}, True),
        ({"confidence": {"calibration": {"x": [0.5, 1.0], "y": [0.1, 0.2]}}}, False),
    ],
    ids=["no-confidence", "confidence-null", "no-map", "empty-map", "map-not-wanted"],
)
def test_without_a_map_to_apply_the_estimate_is_the_raw_confidence(
    profile: dict[str, object], calibrate: bool
) -> None:
    est = ConfidenceEstimator.from_profile(profile, calibrate=calibrate)
    assert est.calibrated_ is False
    assert est.calibrated([0.0, 0.25, 0.6, 1.0]).tolist() == [0.0, 0.25, 0.6, 1.0]
    assert est.estimate([0.5, 0.7]).accuracy == pytest.approx(0.6)


def test_calibration_map_from_the_profile_is_applied() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, size=20_000)
    correct = rng.uniform(size=conf.size) < 2 * conf - 1  # true accuracy at c is 2c - 1
    profile = {"confidence": confidence_profile(conf, correct)}
    est = ConfidenceEstimator.from_profile(profile)
    assert est.calibrated_
    window = rng.uniform(0.9, 1.0, size=5_000)
    assert est.estimate(window).accuracy == pytest.approx(0.9, abs=0.02)
    raw = ConfidenceEstimator.from_profile(profile, calibrate=False).estimate(window)
    assert raw.accuracy == pytest.approx(0.95, abs=0.01)  # overconfident without the map


def _model() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def test_cbpe_tracks_accuracy_under_covariate_shift() -> None:
    """Sub-population shift: keep test cases whose 'worst radius' lies in the training 50-75%
    quantile band, where benign and malignant overlap. P(y | x) is unchanged (a covariate
    shift, the case CBPE is built for) and accuracy drops by ~3-4 points.

    Calibration is fitted at training time on out-of-fold predictions of the training split
    (the raw rows exist then; the profile keeps only the isotonic map). One 80/20 split gives
    ~27 shifted test rows, too few to measure anything to 0.03, so the comparison pools 20
    seeded splits (~540 rows).
    """
    data = load_breast_cancer()
    x, y = data.data, data.target
    j = list(data.feature_names).index("worst radius")
    realised = estimated = plain = 0.0
    n_total = 0
    base = []
    for seed in range(20):
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=0.2, random_state=seed, stratify=y
        )
        model = _model().fit(x_tr, y_tr)
        oof = cross_val_predict(_model(), x_tr, y_tr, cv=5, method="predict_proba")
        profile = {"confidence": confidence_profile(oof.max(axis=1), oof.argmax(axis=1) == y_tr)}
        proba = model.predict_proba(x_te)
        pred, conf = model.classes_[proba.argmax(axis=1)], proba.max(axis=1)
        base.append(np.mean(pred == y_te))
        lo, hi = np.quantile(x_tr[:, j], [0.5, 0.75])
        sel = (x_te[:, j] >= lo) & (x_te[:, j] <= hi)
        r = realised_accuracy(pred[sel], y_te[sel])
        e = ConfidenceEstimator.from_profile(profile).estimate(conf[sel])
        p = ConfidenceEstimator.from_profile(profile, calibrate=False).estimate(conf[sel])
        assert r.accuracy is not None and e.accuracy is not None and p.accuracy is not None
        realised += r.accuracy * r.n
        estimated += e.accuracy * e.n
        plain += p.accuracy * p.n
        n_total += r.n
    realised, estimated, plain = realised / n_total, estimated / n_total, plain / n_total
    assert realised < np.mean(base) - 0.02  # the shift really costs accuracy
    assert abs(estimated - realised) < 0.03
    # Why calibrate: regularised logistic regression is under-confident here, and the plain
    # estimate misses by more than the calibrated one.
    assert abs(plain - realised) > abs(estimated - realised)
