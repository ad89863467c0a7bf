"""Clinical metrics: known answers against scikit-learn, interval coverage, CBPE under shift."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from nexus_ml.stats.clinical import (
    Interval,
    proportion,
    realised,
)
from nexus_ml.stats.intervals import auc_delong, wilson_interval

BINARY = ["benign", "malignant"]
THREE = ["a", "b", "c"]


def _traffic(
    n: int, classes: list[str], seed: int, *, skill: float = 1.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded labelled predictions: actual class, a softmax of noisy logits, argmax prediction,
    and a segment column (0-3) to slice by."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    act = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + skill * (act[:, None] == np.arange(k))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = np.asarray(classes)
    return names[act], names[proba.argmax(axis=1)], proba, rng.integers(0, 4, size=n)


@pytest.mark.parametrize("classes", [BINARY, THREE])
def test_realised_equals_scikit_learn_per_segment(classes: list[str]) -> None:
    actual, predicted, proba, segment = _traffic(600, classes, seed=len(classes))
    pos = "malignant" if len(classes) == 2 else None
    masks = {"all": np.ones(actual.size, dtype=bool)} | {
        f"site={g}": segment == g for g in range(4)
    }
    for mask in masks.values():
        a, p, pr = actual[mask], predicted[mask], proba[mask]
        r = realised(a, p, pr, classes, positive_class=pos)
        assert r.n == mask.sum()
        recall = recall_score(a, p, labels=classes, average=None)
        precision = precision_score(a, p, labels=classes, average=None)
        f1 = f1_score(a, p, labels=classes, average=None)
        for j, c in enumerate(classes):
            m = r.classes[c]
            assert m.recall.value == pytest.approx(recall[j], abs=1e-12)
            assert m.precision.value == pytest.approx(precision[j], abs=1e-12)
            assert m.f1 == pytest.approx(f1[j], abs=1e-12)
            assert m.recall.n == np.sum(a == c) and m.precision.n == np.sum(p == c)
            assert m.prevalence.value == pytest.approx(np.mean(a == c))
            assert m.positive_rate.value == pytest.approx(np.mean(p == c))
        assert r.accuracy.value == pytest.approx(accuracy_score(a, p))
        if len(classes) == 2:
            y = a == pos
            assert r.roc_auc.value == pytest.approx(roc_auc_score(y, pr[:, 1]), abs=1e-12)
            assert r.brier_score == pytest.approx(brier_score_loss(y, pr[:, 1]), abs=1e-12)
        else:
            auc = roc_auc_score(a, pr, multi_class="ovr", average="macro", labels=classes)
            assert r.roc_auc.value == pytest.approx(auc, abs=1e-12)
            brier = brier_score_loss(a, pr, labels=classes, scale_by_half=True)
            assert r.brier_score == pytest.approx(brier, abs=1e-12)


def test_positive_class_orients_the_reliability_curve_not_the_symmetric_metrics() -> None:
    actual, predicted, proba, _ = _traffic(400, BINARY, seed=7)
    one = realised(actual, predicted, proba, BINARY, positive_class="malignant")
    other = realised(actual, predicted, proba, BINARY, positive_class="benign")
    assert one.roc_auc == other.roc_auc and one.brier_score == pytest.approx(other.brier_score)
    assert one.calibration_error == pytest.approx(other.calibration_error)
    # Bin i for P(malignant) holds the rows of bin 9 - i for P(benign) (away from the edges).
    assert [b.count for b in one.reliability][1:-1] == [b.count for b in other.reliability][-2:0:-1]


def test_reliability_bins_and_calibration_error_by_hand() -> None:
    proba1 = np.array([0.05, 0.05, 0.15, 0.95, 0.95, 0.95, 0.95, 1.0])
    actual = np.array(["n", "y", "n", "y", "y", "y", "n", "y"])
    predicted = np.where(proba1 >= 0.5, "y", "n")
    proba = np.column_stack([1 - proba1, proba1])
    r = realised(actual, predicted, proba, ["n", "y"], positive_class="y")
    counts = [b.count for b in r.reliability]
    assert counts == [2, 1, 0, 0, 0, 0, 0, 0, 0, 5]  # 1.0 falls in the last, closed bin
    last = r.reliability[-1]
    assert last.mean_predicted == pytest.approx(0.96) and last.observed == pytest.approx(0.8)
    assert r.reliability[0].observed == pytest.approx(0.5)
    assert r.reliability[4].observed is None and r.reliability[4].mean_predicted is None
    ece = (2 * abs(0.05 - 0.5) + 1 * abs(0.15 - 0.0) + 5 * abs(0.96 - 0.8)) / 8
    assert r.calibration_error == pytest.approx(ece)
    assert (r.reliability[0].lower, r.reliability[0].upper) == (0.0, 0.1)


def test_wilson_equals_scipy() -> None:
    cases = [(0, 1), (1, 1), (0, 30), (30, 30), (7, 40), (93, 100), (500, 1000), (3, 7)]
    lo, hi = wilson_interval([k for k, _ in cases], [n for _, n in cases])
    for (k, n), a, b in zip(cases, lo, hi, strict=True):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert (a, b) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert proportion(7, 40) == Interval(7 / 40, lo[4], hi[4], 40)


def test_delong_auc_equals_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.uniform(size=300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # rounded: many tied scores
    auc, se = auc_delong(s, y)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert 0 < se < 0.1


def test_delong_variance_by_hand() -> None:
    """Positives 0.9, 0.6; negatives 0.7, 0.3, 0.6 (a tie): V10 = (1, 2/3 + 1/6 ... )."""
    s = np.array([0.9, 0.6, 0.7, 0.3, 0.6])
    y = np.array([True, True, False, False, False])
    v10 = np.array([1.0, (1 + 0.5) / 3])  # 0.6 beats 0.3, ties 0.6
    v01 = np.array([0.5, 1.0, 0.75])  # share of positives above each negative (tie 1/2)
    auc, se = auc_delong(s, y)
    assert auc == pytest.approx(v10.mean()) and auc == pytest.approx(v01.mean())
    assert se == pytest.approx(math.sqrt(v10.var(ddof=1) / 2 + v01.var(ddof=1) / 3))


def test_min_count_reports_the_count_and_no_value() -> None:
    actual, predicted, proba, _ = _traffic(50, BINARY, seed=1)
    r = realised(actual, predicted, proba, BINARY, positive_class="malignant", min_count=40)
    for m in r.classes.values():
        assert m.recall.value is None and m.recall.lower is None and m.recall.n < 40
        assert m.f1 is None
        assert m.prevalence.value is not None and m.prevalence.n == 50  # 50 >= 40
    assert r.accuracy.value is not None and r.roc_auc.value is not None
    assert all(b.observed is None for b in r.reliability if b.count < 40)
    small = realised(actual, predicted, proba, BINARY, positive_class="malignant", min_count=51)
    assert small.accuracy == Interval(None, None, None, 50)
    assert small.roc_auc.value is None and small.brier_score is None
    assert small.calibration_error is None


def test_no_rows() -> None:
    r = realised([], [], np.zeros((0, 2)), BINARY, positive_class="malignant")
    assert r.n == 0 and r.accuracy == Interval(None, None, None, 0)
    assert r.classes["malignant"].recall == Interval(None, None, None, 0)
    assert r.roc_auc.value is None and r.brier_score is None and r.calibration_error is None
    assert [b.count for b in r.reliability] == [0] * 10
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))["n"] == 0


def test_one_class_absent_and_one_predicted_class() -> None:
    proba = np.array([[0.8, 0.2], [0.6, 0.4], [0.7, 0.3]])
    actual = ["benign"] * 3  # no malignant case in the window
    predicted = ["benign"] * 3  # and the model flagged none
    r = realised(actual, predicted, proba, BINARY, positive_class="malignant")
    mal, ben = r.classes["malignant"], r.classes["benign"]
    assert mal.recall == Interval(None, None, None, 0)  # no actual positives: undefined
    assert mal.precision == Interval(None, None, None, 0)  # never predicted: undefined
    assert mal.f1 is None and mal.prevalence.value == 0.0 and mal.positive_rate.value == 0.0
    assert mal.prevalence.upper is not None and mal.prevalence.upper > 0  # Wilson is not empty
    assert ben.recall.value == 1.0 and ben.precision.value == 1.0 and ben.f1 == 1.0
    assert r.roc_auc == Interval(None, None, None, 3)  # AUC needs both classes
    assert r.brier_score == pytest.approx(brier_score_loss([0, 0, 0], proba[:, 1]))
    multi = realised(
        ["a", "a", "b"], ["a", "b", "b"], np.full((3, 3), 1 / 3), THREE, positive_class=None
    )
    assert multi.roc_auc.value is None  # class c never occurs
    assert multi.classes["c"].f1 is None and multi.classes["a"].f1 == pytest.approx(2 / 3)


def test_all_scores_tied() -> None:
    proba = np.full((6, 2), 0.5)
    actual = ["benign", "malignant"] * 3
    r = realised(actual, ["malignant"] * 6, proba, BINARY, positive_class="malignant")
    assert r.roc_auc.value == 0.5 and r.roc_auc.lower is not None
    assert r.classes["malignant"].recall.value == 1.0
    assert r.classes["benign"].recall.value == 0.0


def test_to_dict_is_json_without_nan() -> None:
    actual, predicted, proba, _ = _traffic(200, THREE, seed=5)
    d = realised(actual, predicted, proba, THREE, positive_class=None, min_count=30).to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))
    assert list(back["classes"]) == THREE and len(back["reliability"]) == 10
    assert set(back["classes"]["a"]) == {"recall", "precision", "f1", "prevalence", "positive_rate"}
    assert back["roc_auc"]["lower"] is None  # multiclass: no interval


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((["x"], ["benign"], [[0.5, 0.5]], BINARY, "malignant"), "not the model's"),
        ((["benign"], ["benign", "benign"], [[0.5, 0.5]], BINARY, "malignant"), "rows"),
        ((["benign"], ["benign"], [[1.0]], BINARY, "malignant"), "1 x 2"),
        ((["benign"], ["benign"], [[np.nan, 1.0]], BINARY, "malignant"), "finite"),
        ((["benign"], ["benign"], [[0.5, 0.5]], BINARY, "cancer"), "positive class"),
        ((["a"], ["a"], [[1 / 3] * 3], THREE, "a"), "binary models only"),
        ((["a"], ["a"], [[1.0]], ["a"], None), "at least 2 classes"),
    ],
)
def test_bad_input_is_refused(args: tuple, message: str) -> None:
    actual, predicted, proba, classes, pos = args
    with pytest.raises(ValueError, match=message):
        realised(actual, predicted, proba, classes, positive_class=pos)
    with pytest.raises(ValueError, match="min_count"):
        realised(["benign"], ["benign"], [[0.5, 0.5]], BINARY, positive_class=None, min_count=0)
