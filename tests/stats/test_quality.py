"""Data quality: the hot-path row check and the all-kinds window check."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_ml.ml.profile import build_profile
from nexus_ml.stats.quality import KINDS, QualityChecker, window_quality

D = 30
NAMES = [f"f{i}" for i in range(D)]


@pytest.fixture(scope="module")
def checker() -> QualityChecker:
    ref = np.random.default_rng(0).uniform(-1.0, 1.0, size=(10_000, D))
    ref[0], ref[1] = -1.0, 1.0  # exact training range [-1, 1] for every feature
    return QualityChecker.from_profile(build_profile(ref, NAMES))


def test_row_inside_the_range_has_no_issue(checker: QualityChecker) -> None:
    assert checker.check_row([0.0] * D) == []
    assert checker.check_row([1.0] * D) == []  # bounds are inclusive


def test_row_outside_the_range_names_each_feature(checker: QualityChecker) -> None:
    row = [0.0] * D
    row[3], row[29] = 1.5, -7.0
    assert checker.check_row(row) == [("f3", "out_of_range"), ("f29", "out_of_range")]
    assert checker.check_row(np.asarray(row)) == checker.check_row(row)


def test_margin_widens_the_range() -> None:
    prof = build_profile(np.array([[0.0], [10.0]]), ["x"])
    assert QualityChecker.from_profile(prof).check_row([10.5]) == [("x", "out_of_range")]
    assert QualityChecker.from_profile(prof, margin=0.1).check_row([10.5]) == []


def test_numeric_window_counts_missing_non_finite_and_out_of_range(
    checker: QualityChecker,
) -> None:
    window = np.zeros((100, D))
    window[:5, 0] = np.nan
    window[5:7, 0] = np.inf
    window[7, 0] = -np.inf
    window[:10, 1] = 2.0
    report = checker.check_window(window)
    assert report.counts == {
        ("f0", "missing"): 5,
        ("f0", "non_finite"): 3,
        ("f1", "out_of_range"): 10,
    }
    assert report.n_values == 100 * D and report.n_issues == 18
    assert report.score == pytest.approx(1 - 18 / (100 * D))
    assert report.by_feature() == {
        "f0": {"missing": 5, "non_finite": 3},
        "f1": {"out_of_range": 10},
    }


def test_object_window_reports_every_kind() -> None:
    ref = np.array([["a", 0.0], ["b", 1.0]], dtype=object)
    prof = build_profile(ref, ["kind", "x"], categorical=["kind"])
    prof["features"]["x"] = build_profile(np.array([[0.0], [1.0]]), ["x"])["features"]["x"]
    checker = QualityChecker.from_profile(prof)
    window = np.array(
        [
            ["a", 0.5],  # clean
            ["c", 2.0],  # unseen_category, out_of_range
            [None, None],  # missing, missing
            ["b", "high"],  # wrong_type
            ["a", True],  # wrong_type: a bool is not a measurement
            ["a", float("inf")],  # non_finite
            [float("nan"), float("nan")],  # missing, missing
        ],
        dtype=object,
    )
    report = checker.check_window(window)
    assert report.counts == {
        ("kind", "unseen_category"): 1,
        ("x", "out_of_range"): 1,
        ("kind", "missing"): 2,
        ("x", "missing"): 2,
        ("x", "wrong_type"): 2,
        ("x", "non_finite"): 1,
    }
    assert {k for _, k in report.counts} == set(KINDS)
    assert report.score == pytest.approx(1 - 9 / 14)


def test_window_quality_reorders_columns_by_name(checker: QualityChecker) -> None:
    window = np.zeros((10, D))
    window[:, 0] = 5.0  # column 0 of this window is f29
    report = window_quality(checker, window, NAMES[::-1])
    assert report.counts == {("f29", "out_of_range"): 10}


def test_empty_window_scores_one(checker: QualityChecker) -> None:
    report = checker.check_window(np.zeros((0, D)))
    assert report.score == 1.0 and report.n_issues == 0


def test_nulls_of_a_nullable_feature_are_not_issues() -> None:
    # lab was missing in the reference: may be missing (the contract's rule); age may not.
    ref = np.array([[30, 1.0, "a"], [40, None, "b"], [50, 2.0, None], [60, 3.0, "a"]], object)
    prof = build_profile(ref, ["age", "lab", "kind"], categorical=["kind"])
    checker = QualityChecker.from_profile(prof)
    assert checker.nullable == {"lab", "kind"}
    window = np.array([[None, None, None], [45, np.nan, "a"], [35, 1.5, "b"]], object)
    assert checker.check_window(window).counts == {("age", "missing"): 1}
    # A schema may declare more nullable features than the reference shows, or fewer.
    declared = QualityChecker.from_profile(prof, nullable=["age"]).check_window(window)
    assert declared.counts == {("lab", "missing"): 2, ("kind", "missing"): 1}
    numeric = np.array([[np.nan, np.nan], [45.0, 1.0]])
    nums = QualityChecker.from_profile(build_profile(ref[:, :2], ["age", "lab"]))
    assert nums.check_window(numeric).counts == {("age", "missing"): 1}
