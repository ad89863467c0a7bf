"""The stored and served forms of the clinical metrics, and their limits taken exactly.

Intervals and estimates are stored (quality results, a bundle's baseline) as their
``to_dict`` form and read back with ``from_dict``; the API serves the ``to_dict`` forms. Each
field must survive the round trip, a stored form that lacks a field must read as "no value",
and every count limit is checked exactly at the limit and one below.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nexus_ml.stats.clinical import (
    N_RELIABILITY_BINS,
    Estimate,
    Interval,
    estimated,
    proportion,
    realised,
)
from nexus_ml.stats.intervals import auc_delong, auc_interval, macro_auc_delong

BINARY = ["benign", "malignant"]
THREE = ["a", "b", "c"]


def _through_json(d: dict) -> dict:
    return json.loads(json.dumps(d, allow_nan=False))


@pytest.mark.parametrize(
    "interval",
    [Interval(0.25, 0.1, 0.5, 12), Interval(None, None, None, 3), Interval(1.0, 0.7, 1.0, 1)],
)
def test_an_interval_reads_back_as_it_was_stored(interval: Interval) -> None:
    d = _through_json(interval.to_dict())
    assert d == {
        "value": interval.value,
        "lower": interval.lower,
        "upper": interval.upper,
        "n": interval.n,
    }
    assert Interval.from_dict(d) == interval


@pytest.mark.parametrize(
    "estimate", [Estimate(0.8, 0.03, 40), Estimate(None, None, 2), Estimate(0.0, 0.0, 0)]
)
def test_an_estimate_reads_back_as_it_was_stored(estimate: Estimate) -> None:
    d = _through_json(estimate.to_dict())
    assert d == {"value": estimate.value, "stderr": estimate.stderr, "n": estimate.n}
    assert Estimate.from_dict(d) == estimate


def test_a_stored_form_without_a_field_reads_as_no_value() -> None:
    assert Interval.from_dict({}) == Interval(None, None, None, 0)
    assert Interval.from_dict({"value": 0.5, "n": "7"}) == Interval(0.5, None, None, 7)
    assert Estimate.from_dict({}) == Estimate(None, None, 0)
    assert Estimate.from_dict({"stderr": 0.1, "n": 3.0}) == Estimate(None, 0.1, 3)


def test_every_field_of_the_realised_form_is_the_metric_it_names() -> None:
    rng = np.random.default_rng(11)
    actual = rng.choice(BINARY, size=120)
    p1 = np.clip(np.where(actual == "malignant", 0.7, 0.3) + rng.normal(0, 0.2, 120), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    predicted = np.where(p1 >= 0.5, "malignant", "benign")
    r = realised(actual, predicted, proba, BINARY, positive_class="malignant", min_count=5)
    d = _through_json(r.to_dict())
    assert set(d) == {
        "n",
        "classes",
        "accuracy",
        "roc_auc",
        "brier_score",
        "calibration_error",
        "reliability",
    }
    assert d["n"] == r.n == 120
    assert d["brier_score"] == r.brier_score and d["calibration_error"] == r.calibration_error
    assert Interval.from_dict(d["accuracy"]) == r.accuracy
    assert Interval.from_dict(d["roc_auc"]) == r.roc_auc
    for c in BINARY:
        m, dm = r.classes[c], d["classes"][c]
        for field in ("recall", "precision", "prevalence", "positive_rate"):
            assert Interval.from_dict(dm[field]) == getattr(m, field), (c, field)
        assert dm["f1"] == m.f1
    assert len(d["reliability"]) == N_RELIABILITY_BINS
    for b, db in zip(r.reliability, d["reliability"], strict=True):
        assert db == {
            "lower": b.lower,
            "upper": b.upper,
            "mean_predicted": b.mean_predicted,
            "observed": b.observed,
            "count": b.count,
        }
    # Each count is the number of rows whose positive-class probability lies in the bin.
    assert sum(db["count"] for db in d["reliability"]) == 120


def test_every_field_of_the_estimated_form_is_the_estimate_it_names() -> None:
    proba = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6], [0.7, 0.3]] * 5)
    predicted = np.where(proba[:, 1] >= 0.5, "malignant", "benign")
    e = estimated(predicted, proba, BINARY, calibration=None, positive_class="malignant")
    d = _through_json(e.to_dict())
    assert set(d) == {"n", "recall", "precision", "roc_auc"} and d["n"] == 20
    for c in BINARY:
        assert Estimate.from_dict(d["recall"][c]) == e.recall[c]
        assert Estimate.from_dict(d["precision"][c]) == e.precision[c]
    assert Estimate.from_dict(d["roc_auc"]) == e.roc_auc
    # By hand: E[TP] of malignant = 5 x (0.8 + 0.6), E[actual malignant] = 5 x 1.8.
    assert e.recall["malignant"].value == pytest.approx(7.0 / 9.0)
    assert e.recall["malignant"].n == 9 and e.precision["malignant"].n == 10


def test_a_proportion_has_a_value_from_exactly_min_count_trials() -> None:
    assert proportion(3, 10, min_count=10) == proportion(3, 10)
    assert proportion(3, 10, min_count=10).value == pytest.approx(0.3)
    assert proportion(3, 9, min_count=10) == Interval(None, None, None, 9)
    at_zero = proportion(0, 5)
    assert at_zero.value == 0.0 and at_zero.lower == 0.0 and 0 < at_zero.upper < 1  # type: ignore[operator]
    at_all = proportion(5, 5)
    assert at_all.value == 1.0 and at_all.upper == 1.0 and 0 < at_all.lower < 1  # type: ignore[operator]


@pytest.mark.parametrize(("successes", "trials"), [(-1, 3), (4, 3), (1, -1)])
def test_a_proportion_out_of_its_range_is_refused(successes: int, trials: int) -> None:
    with pytest.raises(ValueError, match="0 <= successes <= trials"):
        proportion(successes, trials)


def test_a_score_exactly_on_a_bin_edge_belongs_to_the_bin_above() -> None:
    scores = np.array([0.0, 0.1, np.nextafter(0.1, 0.0), 0.5, 0.9, 1.0])
    actual = np.array(["malignant"] * 6)
    proba = np.column_stack([1 - scores, scores])
    r = realised(actual, np.array(BINARY)[(scores >= 0.5).astype(int)], proba, BINARY,
                 positive_class="malignant")  # fmt: skip
    counts = [b.count for b in r.reliability]
    # 0.0 and the float just below 0.1 in bin 0; 0.1 in bin 1; 0.5 in bin 5; 0.9 and 1.0 in 9.
    assert counts == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert r.reliability[1].mean_predicted == 0.1 and r.reliability[1].observed == 1.0


def test_a_reliability_bin_shows_its_means_from_exactly_min_count_rows() -> None:
    scores = np.array([0.05, 0.05, 0.05, 0.95, 0.95])
    actual = np.array(["benign", "malignant", "benign", "malignant", "malignant"])
    proba = np.column_stack([1 - scores, scores])
    predicted = np.where(scores >= 0.5, "malignant", "benign")
    r = realised(actual, predicted, proba, BINARY, positive_class="malignant", min_count=3)
    low, high = r.reliability[0], r.reliability[-1]
    assert low.count == 3 and low.mean_predicted == pytest.approx(0.05)
    assert low.observed == pytest.approx(1 / 3)
    assert high.count == 2 and high.mean_predicted is None and high.observed is None
    # The calibration error weighs every bin with rows, shown or not.
    ece = (3 * abs(0.05 - 1 / 3) + 2 * abs(0.95 - 1.0)) / 5
    assert r.calibration_error == pytest.approx(ece)


def test_the_binary_auc_interval_is_delong_of_the_positive_class() -> None:
    rng = np.random.default_rng(3)
    actual = rng.choice(BINARY, size=60)
    p1 = np.clip(np.where(actual == "malignant", 0.65, 0.35) + rng.normal(0, 0.25, 60), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    predicted = np.where(p1 >= 0.5, "malignant", "benign")
    r = realised(actual, predicted, proba, BINARY, positive_class="malignant")
    y = actual == "malignant"
    auc, se = auc_delong(p1, y)
    lo, hi = auc_interval(auc, se, int(y.sum()), int((~y).sum()))
    assert r.roc_auc == Interval(float(auc), float(lo), float(hi), 60)
    # Taking the other class as positive measures the mirror image: the same AUC (to rounding).
    other = realised(actual, predicted, proba, BINARY, positive_class="benign").roc_auc
    assert other.n == 60 and other.value == pytest.approx(auc, abs=1e-12)
    assert (other.lower, other.upper) == pytest.approx((float(lo), float(hi)), abs=1e-12)


def test_the_multiclass_auc_interval_counts_the_smallest_class() -> None:
    rng = np.random.default_rng(4)
    act = np.repeat([0, 1, 2], [30, 20, 7])
    logits = rng.normal(size=(57, 3)) + 1.2 * (act[:, None] == np.arange(3))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    actual = np.array(THREE)[act]
    predicted = np.array(THREE)[proba.argmax(axis=1)]
    r = realised(actual, predicted, proba, THREE, positive_class=None)
    macro, macro_se = macro_auc_delong(proba, act)
    lo, hi = auc_interval(macro, macro_se, 7, 7)
    assert r.roc_auc == Interval(float(macro), float(lo), float(hi), 57)
    assert realised(actual, predicted, proba, THREE, positive_class=None, min_count=58).roc_auc == (
        Interval(None, None, None, 57)
    )
    at_limit = realised(actual, predicted, proba, THREE, positive_class=None, min_count=57)
    assert at_limit.roc_auc == r.roc_auc


def test_a_perfectly_separated_multiclass_auc_takes_its_interval_from_the_smallest_class() -> None:
    act = np.repeat([0, 1, 2], [30, 20, 7])
    proba = np.full((57, 3), 0.1)
    proba[np.arange(57), act] = 0.8  # every class's own probability above every other's
    actual = np.array(THREE)[act]
    r = realised(actual, actual, proba, THREE, positive_class=None)
    macro, macro_se = macro_auc_delong(proba, act)
    assert macro == 1.0
    lo, hi = auc_interval(macro, macro_se, 7, 7)
    assert (r.roc_auc.lower, r.roc_auc.upper) == (float(lo), float(hi))
    # At perfect separation the count decides the width: 8 in the smallest class is narrower.
    assert auc_interval(macro, macro_se, 8, 8)[0] > lo
