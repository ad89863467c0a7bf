"""Clinical metrics: known answers against scikit-learn, interval coverage, CBPE under shift."""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest
from scipy.stats import binomtest, norm, rankdata
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.profile import confidence_profile
from nexus_ml.ml.training import train_pipeline
from nexus_ml.stats.cbpe import calibrated_proba, expected_auc, standard_errors
from nexus_ml.stats.clinical import (
    Estimate,
    Interval,
    estimated,
    proportion,
    realised,
)
from nexus_ml.stats.intervals import auc_delong, auc_interval, macro_auc_delong, wilson_interval
from nexus_ml.stats.performance import ConfidenceEstimator

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
        # At no success (every success) the bound is exactly 0 (1), as scipy's.
        assert (a == 0.0) == (k == 0) and (b == 1.0) == (k == n)
    assert proportion(7, 40) == Interval(7 / 40, lo[4], hi[4], 40)
    assert proportion(3, 20, min_count=30) == Interval(None, None, None, 20)
    with pytest.raises(ValueError, match="successes"):
        proportion(5, 4)


def test_class_names_that_look_like_numbers() -> None:
    """Labels "0"/"1" may arrive as numbers; they are compared by their names."""
    r = realised(
        [0, 1, 1],
        ["1", "1", "0"],
        [[0.2, 0.8], [0.3, 0.7], [0.6, 0.4]],
        ["0", "1"],
        positive_class="1",
    )
    assert r.classes["1"].recall.value == 0.5 and r.classes["1"].precision.value == 0.5


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
    # An empty window read from the store has no probability rows either: a flat [] is it.
    assert realised([], [], [], BINARY, positive_class="malignant") == r


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
    assert back["roc_auc"]["lower"] < back["roc_auc"]["value"] < back["roc_auc"]["upper"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Each refusal says which argument is wrong, in full (the API and the job show it).
        (
            (["x"], ["benign"], [[0.5, 0.5]], BINARY, "malignant"),
            "^actual holds a class that is not the model's: 'x'$",
        ),
        (
            (["benign"], ["x"], [[0.5, 0.5]], BINARY, "malignant"),
            "^predicted holds a class that is not the model's: 'x'$",
        ),
        (
            ([["benign"]], ["benign"], [[0.5, 0.5]], BINARY, "malignant"),
            "^actual must be one-dimensional$",
        ),
        (
            (["benign"], [["benign"]], [[0.5, 0.5]], BINARY, "malignant"),
            "^predicted must be one-dimensional$",
        ),
        ((["benign"], ["benign", "benign"], [[0.5, 0.5]], BINARY, "malignant"), "rows"),
        ((["benign"], ["benign"], [[1.0]], BINARY, "malignant"), "1 x 2"),
        (
            (["benign"] * 3, ["benign"] * 3, [], BINARY, "malignant"),
            re.escape("proba must be 3 x 2 (rows x classes), got shape (0,)"),
        ),
        (
            (["benign"], ["benign"], [[np.nan, 1.0]], BINARY, "malignant"),
            "^proba holds a value that is not a finite number$",
        ),
        # A stored probability that is null is not a number either (a ValueError, not a
        # TypeError from deep inside NumPy).
        (
            (["benign"], ["benign"], [[None, 1.0]], BINARY, "malignant"),
            "^proba holds a value that is not a finite number$",
        ),
        ((["benign"], ["benign"], [[0.5, 0.5]], BINARY, "cancer"), "positive class"),
        (
            (["a"], ["a"], [[1 / 3] * 3], THREE, "a"),
            "^a positive class is defined for binary models only$",
        ),
        ((["a"], ["a"], [[1.0]], ["a"], None), "^a classifier has at least 2 classes$"),
        (
            (["a"], ["a"], [[0.5, 0.5]], ["a", "a"], None),
            re.escape("classes repeat a name: ['a', 'a']"),
        ),
    ],
)
def test_bad_input_is_refused(args: tuple, message: str) -> None:
    actual, predicted, proba, classes, pos = args
    with pytest.raises(ValueError, match=message):
        realised(actual, predicted, proba, classes, positive_class=pos)
    if not message.startswith("^actual"):  # estimated() has no actual classes
        with pytest.raises(ValueError, match=message):
            estimated(predicted, proba, classes, calibration=None, positive_class=pos)
    with pytest.raises(ValueError, match="min_count"):
        realised(["benign"], ["benign"], [[0.5, 0.5]], BINARY, positive_class=None, min_count=0)


def test_a_proportion_of_one_trial_has_a_value_by_default() -> None:
    lo, hi = wilson_interval(np.array([1]), np.array([1]))
    assert proportion(1, 1) == Interval(1.0, float(lo[0]), float(hi[0]), 1)


def test_min_count_is_the_smallest_count_that_shows_a_value() -> None:
    # Exactly min_count rows (or class support) shows the value; one fewer hides it.
    actual = ["malignant"] * 4 + ["benign"] * 6
    predicted = ["malignant"] * 3 + ["benign"] * 7
    p1 = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1, 0.2, 0.3, 0.1])
    proba = np.column_stack([1 - p1, p1])
    at = realised(actual, predicted, proba, BINARY, positive_class="malignant", min_count=10)
    assert at.accuracy.value == pytest.approx(0.9) and at.brier_score is not None
    assert at.calibration_error is not None and at.roc_auc.value is not None
    above = realised(actual, predicted, proba, BINARY, positive_class="malignant", min_count=11)
    assert above.brier_score is None and above.calibration_error is None
    # F1 is gated on the class's support (its actual rows): 4 malignant cases.
    four = realised(actual, predicted, proba, BINARY, positive_class="malignant", min_count=4)
    assert four.classes["malignant"].f1 == pytest.approx(2 * 3 / (4 + 3))
    five = realised(actual, predicted, proba, BINARY, positive_class="malignant", min_count=5)
    assert five.classes["malignant"].f1 is None and five.classes["benign"].f1 is not None


def test_multiclass_reliability_is_of_the_served_class_by_hand() -> None:
    # With no positive class the curve is the served class's confidence against whether it
    # was right.
    proba = np.array(
        [
            [0.95, 0.03, 0.02],  # a, right
            [0.05, 0.91, 0.04],  # b, right
            [0.02, 0.03, 0.95],  # c, wrong (a)
            [0.55, 0.40, 0.05],  # a, wrong (b)
            [0.30, 0.52, 0.18],  # b, right
        ]
    )
    r = realised(["a", "b", "a", "b", "b"], list("abcab"), proba, THREE, positive_class=None)
    top, middle = r.reliability[9], r.reliability[5]
    assert (top.count, middle.count) == (3, 2)
    assert top.mean_predicted == pytest.approx((0.95 + 0.91 + 0.95) / 3)
    assert top.observed == pytest.approx(2 / 3) and middle.observed == pytest.approx(1 / 2)
    ece = (3 * abs((0.95 + 0.91 + 0.95) / 3 - 2 / 3) + 2 * abs(0.535 - 0.5)) / 5
    assert r.calibration_error == pytest.approx(ece)


@pytest.mark.parametrize(("positives", "negatives"), [(10, 3), (3, 10)])
def test_a_perfectly_separated_auc_gets_the_wilson_bounds_of_the_smaller_class(
    positives: int, negatives: int
) -> None:
    # DeLong's variance is 0 there; the bounds are those of 1.0 seen in as many trials as the
    # smaller class has rows, whichever class that is.
    actual = ["malignant"] * positives + ["benign"] * negatives
    p1 = np.r_[np.linspace(0.6, 0.9, positives), np.linspace(0.1, 0.4, negatives)]
    r = realised(
        actual,
        np.where(p1 >= 0.5, "malignant", "benign"),
        np.column_stack([1 - p1, p1]),
        BINARY,
        positive_class="malignant",
    )
    lo, hi = wilson_interval(np.array([3]), np.array([3]))
    assert r.roc_auc == Interval(1.0, float(lo[0]), float(hi[0]), positives + negatives)


def test_a_binary_model_without_a_positive_class_takes_the_second() -> None:
    actual, predicted, proba, _ = _traffic(120, BINARY, seed=11)
    assert realised(actual, predicted, proba, BINARY, positive_class=None) == realised(
        actual, predicted, proba, BINARY, positive_class="malignant"
    )
    assert estimated(predicted, proba, BINARY, calibration=None, positive_class=None) == estimated(
        predicted, proba, BINARY, calibration=None, positive_class="malignant"
    )


def test_a_probability_rounded_a_hair_below_zero_counts_in_the_first_bin() -> None:
    # A model's probabilities can miss [0, 1] by a rounding error; that is not a refusal.
    r = realised(
        ["benign", "benign"],
        ["benign", "benign"],
        [[1.0, -1e-17], [0.95, 0.05]],
        BINARY,
        positive_class="malignant",
    )
    assert r.reliability[0].count == 2 and r.reliability[0].observed == 0.0


# --- interval coverage ----------------------------------------------------------------------


def _screening_traffic(
    rng: np.random.Generator, n: int, prevalence: float, separation: float, cut: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled traffic of a screening score: N(0, 1) for negatives, N(separation, 1) for
    positives, flagged at ``cut`` (P(pos) is a logistic of the score, 0.5 at the cut)."""
    y = rng.uniform(size=n) < prevalence
    score = rng.normal(size=n) + separation * y
    p1 = 1.0 / (1.0 + np.exp(-2.0 * (score - cut)))
    actual = np.where(y, "malignant", "benign")
    predicted = np.where(p1 >= 0.5, "malignant", "benign")
    return actual, predicted, np.column_stack([1.0 - p1, p1])


def test_realised_intervals_cover_the_truth_95_percent_of_the_time() -> None:
    """1,000 simulated windows of 400 labelled predictions (prevalence 0.2, a score separating
    the classes by 1.5 sd, flagged above 0.8): each 95 % interval must hold the true value in
    93-97 % of them. True values: sensitivity 1 - Phi(0.8 - 1.5), specificity Phi(0.8),
    AUC Phi(1.5 / sqrt 2) (binormal), PPV and accuracy from those and the prevalence."""
    prev, sep, cut = 0.2, 1.5, 0.8
    sens, spec = 1 - norm.cdf(cut - sep), norm.cdf(cut)
    truth = {
        "sensitivity": sens,
        "specificity": spec,
        "ppv": prev * sens / (prev * sens + (1 - prev) * (1 - spec)),
        "npv": (1 - prev) * spec / ((1 - prev) * spec + prev * (1 - sens)),
        "accuracy": prev * sens + (1 - prev) * spec,
        "prevalence": prev,
        "auc": norm.cdf(sep / math.sqrt(2)),
    }
    covered = dict.fromkeys(truth, 0)
    rng = np.random.default_rng(2026)
    for _ in range(1000):
        actual, predicted, proba = _screening_traffic(rng, 400, prev, sep, cut)
        r = realised(actual, predicted, proba, BINARY, positive_class="malignant")
        mal, ben = r.classes["malignant"], r.classes["benign"]
        intervals = {
            "sensitivity": mal.recall,
            "specificity": ben.recall,
            "ppv": mal.precision,
            "npv": ben.precision,
            "accuracy": r.accuracy,
            "prevalence": mal.prevalence,
            "auc": r.roc_auc,
        }
        for name, iv in intervals.items():
            assert iv.lower is not None and iv.upper is not None
            covered[name] += iv.lower <= truth[name] <= iv.upper
    coverage = {name: c / 1000 for name, c in covered.items()}
    assert all(0.93 <= c <= 0.97 for c in coverage.values()), coverage


def test_macro_auc_interval_covers_the_truth_95_percent_of_the_time() -> None:
    """Three classes, 1,000 windows of 300 rows through realised(); the true macro one-vs-rest
    AUC from 200,000 rows of the same generator (its own error ~0.001)."""

    def window(n: int) -> tuple[np.ndarray, np.ndarray]:
        act = rng.integers(0, 3, size=n)
        logits = rng.normal(size=(n, 3)) + (act[:, None] == np.arange(3))
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return np.asarray(THREE)[act], proba

    rng = np.random.default_rng(4)
    big_actual, big_proba = window(200_000)
    truth = roc_auc_score(big_actual, big_proba, multi_class="ovr", labels=THREE)
    covered = 0
    for _ in range(1000):
        actual, proba = window(300)
        predicted = np.asarray(THREE)[proba.argmax(axis=1)]
        auc = realised(actual, predicted, proba, THREE, positive_class=None).roc_auc
        assert auc.lower is not None and auc.upper is not None
        covered += auc.lower <= truth <= auc.upper
    assert 0.93 <= covered / 1000 <= 0.97


def test_macro_auc_of_two_classes_is_delong() -> None:
    actual, _, proba, _ = _traffic(300, BINARY, seed=9)
    act = (actual == "malignant").astype(int)
    auc, se = auc_delong(proba[:, 1], act == 1)
    assert macro_auc_delong(proba, act) == pytest.approx((float(auc), float(se)))


def test_auc_interval_holds_coverage_near_one_and_at_perfect_separation() -> None:
    """Vectorised over 1,000 samples: AUC 0.96 with ~80 positives, where a plain
    AUC ± 1.96 se interval covers ~92 %; and a perfectly separated sample still gets a
    non-degenerate interval."""
    rng = np.random.default_rng(11)
    y = rng.uniform(size=(1000, 400)) < 0.2
    s = rng.normal(size=y.shape) + 2.5 * y
    auc, se = auc_delong(s, y)
    m = y.sum(axis=1)
    lo, hi = auc_interval(auc, se, m, 400 - m)
    truth = norm.cdf(2.5 / math.sqrt(2))
    assert 0.93 <= np.mean((lo <= truth) & (truth <= hi)) <= 0.97
    assert np.all(hi <= 1.0)
    auc1, se1 = auc_delong([0.1, 0.2, 0.8, 0.9], [False, False, True, True])
    assert auc1 == 1.0 and se1 == 0.0
    lo1, hi1 = auc_interval(auc1, se1, 2, 2)
    assert hi1 == 1.0 and lo1 < 0.5  # two cases a side prove little


def test_auc_interval_at_perfect_separation_is_wilson_of_the_smaller_class() -> None:
    """AUC 1 (positives all above) and AUC 0 (all below): DeLong's variance is 0 there, so the
    bounds are the Wilson interval of a proportion seen at 1 (or 0) in as many trials as the
    smaller class has rows; between the two the logit interval applies."""
    scores = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9, 0.95]
    above = [False, False, False, True, True, True, True]  # 4 positives, 3 negatives
    below = [not y for y in above]  # 3 positives, 4 negatives
    auc, se = auc_delong(np.array([scores, scores]), np.array([above, below]))
    assert auc.tolist() == [1.0, 0.0] and se.tolist() == [0.0, 0.0]
    lo, hi = auc_interval(auc, se, [4, 3], [3, 4])
    w_lo, w_hi = wilson_interval([3, 0], [3, 3])
    assert lo.tolist() == w_lo.tolist() and hi.tolist() == w_hi.tolist()
    assert hi[0] == 1.0 and 0.0 < lo[0] < 0.5
    assert lo[1] == 0.0 and 0.5 < hi[1] < 1.0
    assert lo[1] == pytest.approx(1.0 - hi[0]) and hi[1] == pytest.approx(1.0 - lo[0])


def test_one_positive_has_no_spread_of_its_own_the_negatives_give_the_error() -> None:
    # The positive outscores 2 of 3 negatives: AUC 2/3. Its own component is 0 (one row has
    # no sample variance); the negatives' shares of positives above them are 1, 1, 0, so
    # var = ((1/3)² + (1/3)² + (2/3)²) / (3 · 2) = 1/9.
    for labels in ([True, False, False, False], [False, True, True, True]):
        scores = [0.9, 0.1, 0.5, 0.95] if labels[0] else [0.1, 0.9, 0.5, 0.05]
        auc, se = auc_delong(scores, labels)
        assert float(auc) == pytest.approx(2 / 3)
        assert float(se) == pytest.approx(1 / 3)


def test_an_undefined_auc_and_its_error_are_float_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a window without positives is normal, not a warning
        auc, se = auc_delong(np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]), [[1, 1, 1], [0, 0, 0]])
    assert auc.dtype == se.dtype == np.float64
    assert np.isnan(auc).all() and np.isnan(se).all()
    with pytest.raises(ValueError, match=r"^scores and labels differ in shape: \(3,\) vs \(2,\)$"):
        auc_delong([0.1, 0.2, 0.3], [True, False])


# --- estimation without labels ---------------------------------------------------------------


def test_estimated_by_hand_with_probabilities_taken_as_calibrated() -> None:
    p1 = np.array([0.9, 0.8, 0.3, 0.1])
    predicted = ["malignant", "malignant", "benign", "benign"]
    proba = np.column_stack([1 - p1, p1])
    e = estimated(predicted, proba, BINARY, calibration=None, positive_class="malignant")
    exp_tp, exp_pos = 0.9 + 0.8, p1.sum()
    assert e.recall["malignant"].value == pytest.approx(exp_tp / exp_pos)
    assert e.precision["malignant"].value == pytest.approx(exp_tp / 2)
    assert e.precision["benign"].value == pytest.approx((0.7 + 0.9) / 2)
    assert e.recall["malignant"].n == round(exp_pos) and e.precision["malignant"].n == 2
    # Expected ROC: ranking 0.9 > 0.8 > 0.3 > 0.1, expected positives q, negatives 1 - q.
    tpr = np.concatenate(([0], np.cumsum(p1))) / exp_pos
    fpr = np.concatenate(([0], np.cumsum(1 - p1))) / (1 - p1).sum()
    assert e.roc_auc.value == pytest.approx(np.trapezoid(tpr, fpr))
    assert e.n == 4
    # Delta method: precision TP/2 with TP a sum of Bernoulli(q) over the 2 flagged rows;
    # recall TP/P linearised around (E[TP], E[P]).
    v = p1 * (1 - p1)
    assert e.precision["malignant"].stderr == pytest.approx(math.sqrt(v[:2].sum()) / 2)
    flagged = np.array([1.0, 1.0, 0.0, 0.0])
    rec = exp_tp / exp_pos
    se = math.sqrt(np.sum(v * np.square(flagged - rec))) / exp_pos
    assert e.recall["malignant"].stderr == pytest.approx(se)


def test_estimates_and_their_stderr_match_labels_drawn_from_calibrated_probabilities() -> None:
    """When the probabilities are calibrated, labels drawn from them give realised values
    centred on the estimate, within +-1.96 stderr in ~95 % of 1,000 windows."""
    rng = np.random.default_rng(5)
    p1 = rng.beta(0.7, 1.5, size=800)
    proba = np.column_stack([1 - p1, p1])
    predicted = np.where(p1 >= 0.5, "malignant", "benign")
    e = estimated(predicted, proba, BINARY, calibration=None, positive_class="malignant")
    est = {
        "recall": e.recall["malignant"],
        "precision": e.precision["malignant"],
        "specificity": e.recall["benign"],
        "auc": e.roc_auc,
    }
    seen: dict[str, list[float]] = {name: [] for name in est}
    for _ in range(1000):
        actual = np.where(rng.uniform(size=p1.size) < p1, "malignant", "benign")
        r = realised(actual, predicted, proba, BINARY, positive_class="malignant")
        seen["recall"].append(r.classes["malignant"].recall.value)
        seen["precision"].append(r.classes["malignant"].precision.value)
        seen["specificity"].append(r.classes["benign"].recall.value)
        seen["auc"].append(r.roc_auc.value)
    for name, x in est.items():
        values = np.asarray(seen[name])
        assert x.value is not None and x.stderr is not None
        assert np.mean(values) == pytest.approx(x.value, abs=0.003), name
        assert x.stderr == pytest.approx(np.std(values), rel=0.1), name
        inside = np.mean(np.abs(values - x.value) <= 1.96 * x.stderr)
        assert 0.93 <= inside <= 0.97, (name, inside)


def test_auc_stderr_is_the_delta_method_of_the_mann_whitney_form() -> None:
    """The AUC's error linearises (S − m(m+1)/2) / (m(N − m)) — S the rank sum of the m
    positives — in each row's label: checked against a numerical gradient of that formula,
    with the classes far from balanced (m ≠ N/2, where the AUC's own term in the gradient
    counts), for a binary model and a three-class macro mean."""
    rng = np.random.default_rng(3)
    n = 40

    def mann_whitney(y: np.ndarray, r: np.ndarray) -> float:
        m = y.sum()
        return float((np.dot(y, r) - m * (m + 1) / 2) / (m * (n - m)))

    for k in (2, 3):
        q = rng.dirichlet(np.r_[3.5, np.full(k - 1, 0.5)], size=n)  # class 0 the common one
        cols = [1] if k == 2 else list(range(k))
        ranks = {c: rankdata(rng.normal(size=n)) for c in cols}
        got = standard_errors(q, q.argmax(axis=1), ranks).auc
        g = np.zeros((n, k))
        h = 1e-6
        for c in cols:
            for i in range(n):
                up, down = q[:, c].copy(), q[:, c].copy()
                up[i] += h
                down[i] -= h
                slope = (mann_whitney(up, ranks[c]) - mann_whitney(down, ranks[c])) / (2 * h)
                g[i, c] = slope / len(cols)
        # Each row's label is one draw from q: the variance of Σ_c g_ic·[label = c].
        var = np.sum(np.sum(g * g * q, axis=1) - np.square(np.sum(g * q, axis=1)))
        assert abs(q[:, 1].sum() - n / 2) > 5
        assert got == pytest.approx(math.sqrt(var), rel=1e-6), k


def test_estimated_multiclass_matches_drawn_labels() -> None:
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(1500, 3)) * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = np.asarray(THREE)[proba.argmax(axis=1)]
    e = estimated(predicted, proba, THREE, calibration=None, positive_class=None)
    cum = proba.cumsum(axis=1)
    recalls, aucs = [], []
    for _ in range(200):
        drawn = (rng.uniform(size=(proba.shape[0], 1)) >= cum[:, :-1]).sum(axis=1)
        r = realised(np.asarray(THREE)[drawn], predicted, proba, THREE, positive_class=None)
        recalls.append([r.classes[c].recall.value for c in THREE])
        aucs.append(r.roc_auc.value)
    for j, c in enumerate(THREE):
        assert e.recall[c].value == pytest.approx(np.mean(np.asarray(recalls)[:, j]), abs=0.01)
    assert e.roc_auc.value == pytest.approx(np.mean(aucs), abs=0.005)
    assert e.roc_auc.stderr == pytest.approx(np.std(aucs), rel=0.15)
    for j, c in enumerate(THREE):
        spread = np.std(np.asarray(recalls)[:, j])
        assert e.recall[c].stderr == pytest.approx(spread, rel=0.15)


def test_calibration_map_from_the_profile_moves_the_estimate() -> None:
    """An over-confident model: the profile's map says a 0.9-confident prediction is right
    60 % of the time. The estimate must follow the map, not the raw probability."""
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, size=20_000)
    correct = rng.uniform(size=conf.size) < 0.5 + (conf - 0.5) * 0.25  # 0.9 -> 0.6
    profile = {"confidence": confidence_profile(conf, correct)}
    proba = np.tile([0.1, 0.9], (500, 1))
    predicted = ["malignant"] * 500
    raw = estimated(predicted, proba, BINARY, calibration=None, positive_class="malignant")
    cal = estimated(predicted, proba, BINARY, calibration=profile, positive_class="malignant")
    fitted = ConfidenceEstimator.from_profile(profile)
    same = estimated(predicted, proba, BINARY, calibration=fitted, positive_class="malignant")
    assert raw.precision["malignant"].value == pytest.approx(0.9)
    assert cal.precision["malignant"].value == pytest.approx(0.6, abs=0.02)
    assert same == cal


def test_under_a_threshold_the_served_class_gets_the_calibrated_confidence() -> None:
    """A screening threshold (malignant if P >= 0.3): a row at P(malignant) = 0.4 is served as
    malignant although benign is the top class. Training fits the map on the served class's
    probability, so the served class is the one calibrated: P(malignant) = cal(0.4)."""
    profile = {"confidence": {"calibration": {"x": [0.0, 1.0], "y": [0.2, 0.9]}}}
    proba = np.array([[0.6, 0.4], [0.2, 0.8]])
    served = np.array([1, 1])
    q = calibrated_proba(proba, profile, served=served)
    assert q[0] == pytest.approx([0.52, 0.48])  # cal(0.4) = 0.48 for malignant, served
    assert q[1] == pytest.approx([0.24, 0.76])  # cal(0.8) = 0.76
    assert calibrated_proba(proba, profile)[0] == pytest.approx([0.62, 0.38])  # argmax: benign
    e = estimated(
        ["malignant", "malignant"], proba, BINARY, calibration=profile, positive_class="malignant"
    )
    assert e.precision["malignant"].value == pytest.approx((0.48 + 0.76) / 2)
    assert e.recall["malignant"].value == pytest.approx(1.0)  # every row is flagged


def test_expected_auc_is_the_pairwise_expectation_with_ties() -> None:
    """Area under the expected ROC curve = sum over pairs of q_i (1 - q_j) for s_i > s_j, half
    for ties (a multiclass column ties scores whose rows have different calibrated q)."""
    s = np.array([0.9, 0.5, 0.5, 0.5, 0.2, 0.2])
    q = np.array([0.9, 0.1, 0.8, 0.4, 0.3, 0.05])
    above = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])
    pairwise = np.sum(q[:, None] * (1 - q[None, :]) * above) / (q.sum() * (1 - q).sum())
    assert expected_auc(s, q) == pytest.approx(pairwise)
    # Defined with less than one expected positive (or negative) in all, none of it on the
    # top-scored row.
    for q in (np.array([0.0, 0.6, 0.1]), np.array([1.0, 0.4, 0.9])):
        s = np.array([0.9, 0.5, 0.2])
        above = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])
        pairwise = np.sum(q[:, None] * (1 - q[None, :]) * above) / (q.sum() * (1 - q).sum())
        assert expected_auc(s, q) == pytest.approx(pairwise)


@pytest.mark.parametrize("q", [0.0, 1.0])
def test_expected_auc_without_expected_positives_or_negatives_is_nan_quietly(q: float) -> None:
    s = np.array([0.9, 0.5, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 behind the NaN
        assert math.isnan(expected_auc(s, np.full(3, q)))
    assert math.isnan(expected_auc(np.empty(0), np.empty(0)))


def test_calibrated_proba_shares_the_rest_by_the_other_probabilities() -> None:
    profile = {"confidence": {"calibration": {"x": [0.0, 1.0], "y": [0.0, 0.5]}}}
    q = calibrated_proba(np.array([[0.6, 0.3, 0.1], [1.0, 0.0, 0.0]]), profile)
    assert q[0] == pytest.approx([0.3, 0.7 * 0.75, 0.7 * 0.25])
    assert q[1] == pytest.approx([0.5, 0.25, 0.25])  # nothing to share by: evenly
    assert q.sum(axis=1) == pytest.approx([1.0, 1.0])


def test_estimated_edge_cases() -> None:
    none = estimated([], np.zeros((0, 2)), BINARY, calibration=None, positive_class="malignant")
    assert none.n == 0 and none.roc_auc == Estimate(None, None, 0)
    assert none.recall["malignant"] == Estimate(None, None, 0)
    json.dumps(none.to_dict(), allow_nan=False)
    # One predicted class: precision of the other is undefined, its recall is 0.
    proba = np.array([[0.2, 0.8], [0.4, 0.6], [0.45, 0.55]])
    one = estimated(["malignant"] * 3, proba, BINARY, calibration=None, positive_class="malignant")
    assert one.precision["benign"] == Estimate(None, None, 0)
    assert one.recall["benign"].value == 0.0 and one.recall["malignant"].value == 1.0
    # Tied scores: the expected ROC curve is the diagonal.
    tied = estimated(
        ["malignant"] * 4,
        np.full((4, 2), 0.5),
        BINARY,
        calibration=None,
        positive_class="malignant",
    )
    assert tied.roc_auc.value == pytest.approx(0.5)
    # min_count gates on the (expected) denominator and still reports it.
    window = {
        "predicted": ["malignant", "benign"] * 10,
        "proba": np.tile([[0.3, 0.7], [0.9, 0.1]], (10, 1)),
        "classes": BINARY,
        "calibration": None,
        "positive_class": "malignant",
        "min_count": 10,
    }
    few = estimated(**window)
    assert few.recall["malignant"] == Estimate(None, None, 8)  # 10 x 0.7 + 10 x 0.1
    assert few.precision["malignant"].value == pytest.approx(0.7)  # 10 predicted
    assert few.roc_auc.value is not None


# --- estimation under covariate shift on the bundled diagnostic data -------------------------


def test_cbpe_tracks_positive_class_recall_under_covariate_shift() -> None:
    """The bundled ``diagnostic`` model, trained by the bundle code (train_pipeline: its
    calibration map from its own holdout, as a bundle's profile holds it), scored on unseen
    rows whose ``worst_radius`` lies in the training 50-75 % quantile band — where benign and
    malignant overlap. P(y | x) is unchanged (a covariate shift, what CBPE is built for) and
    malignant recall drops by ~6 points. One split leaves ~20 malignant rows in the band, too
    few to measure recall to 0.05, so the comparison pools 30 seeded splits (~600 rows).
    """
    ds = load_dataset("diagnostic")
    j = ds.feature_names.index("worst_radius")
    tp = positives = exp_tp = exp_pos = 0.0
    unshifted = []
    for seed in range(30):
        x_tr, x_te, y_tr, y_te = train_test_split(
            ds.X, ds.y, test_size=0.3, random_state=seed, stratify=ds.y
        )
        fit = train_pipeline(x_tr, y_tr, ds.feature_names, seed=seed)
        classes = list(fit.classes)
        proba = fit.pipeline.predict_proba(x_te)
        predicted = np.asarray(classes)[proba.argmax(axis=1)]
        whole = realised(y_te, predicted, proba, classes, positive_class="malignant")
        unshifted.append(whole.classes["malignant"].recall.value)
        lo, hi = np.quantile(x_tr[:, j], [0.5, 0.75])
        band = (x_te[:, j] >= lo) & (x_te[:, j] <= hi)
        r = (
            realised(y_te[band], predicted[band], proba[band], classes, positive_class="malignant")
            .classes["malignant"]
            .recall
        )
        e = estimated(
            predicted[band],
            proba[band],
            classes,
            calibration=fit.profile,
            positive_class="malignant",
        )
        # Pool as sums of (expected) true positives and positives, not a mean of ratios.
        q = calibrated_proba(proba[band], fit.profile)[:, classes.index("malignant")]
        assert e.recall["malignant"].value == pytest.approx(
            np.sum(q * (predicted[band] == "malignant")) / np.sum(q)
        )
        tp += (r.value or 0.0) * r.n
        positives += r.n
        exp_tp += np.sum(q * (predicted[band] == "malignant"))
        exp_pos += np.sum(q)
    recall, estimate = tp / positives, exp_tp / exp_pos
    assert positives > 400
    assert recall < np.mean(unshifted) - 0.04  # the shift really costs sensitivity
    assert abs(estimate - recall) < 0.05
    assert abs(estimate - recall) < abs(np.mean(unshifted) - recall)  # it sees the drop
