"""Data quality: the hot-path row check and the all-kinds window check."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_ml.ml.profile import build_profile
from nexus_ml.stats.quality import KINDS, QualityChecker, QualityReport, window_quality

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


# -- limits, shapes and profiles, stated exactly -------------------------------------------------

BELOW, ABOVE = np.nextafter(2.0, -np.inf), np.nextafter(12.0, np.inf)


def bounded() -> QualityChecker:
    """x in [2, 12], y unbounded, c categorical."""
    return QualityChecker(["x", "y", "c"], [2.0, -np.inf, 0.0], [12.0, np.inf, 0.0], {"c": ["a"]})


@pytest.mark.parametrize("object_window", [False, True], ids=["numeric", "object"])
def test_a_value_exactly_at_a_limit_is_clean_and_one_ulp_past_it_is_out_of_range(
    object_window: bool,
) -> None:
    checker = QualityChecker(["x"], [2.0], [12.0])
    values = [2.0, 12.0, BELOW, ABOVE]
    assert [checker.check_row([v]) for v in values] == [[], [], *[[("x", "out_of_range")]] * 2]
    window = np.array([[v] for v in values], dtype=object if object_window else np.float64)
    assert checker.check_window(window).counts == {("x", "out_of_range"): 2}
    # A row with an offending value is looked at feature by feature: one exactly at a limit
    # beside it is still clean.
    pair = QualityChecker(["x", "z"], [2.0, 2.0], [12.0, 12.0])
    assert pair.check_row([ABOVE, 12.0]) == pair.check_row([BELOW, 2.0]) == [("x", "out_of_range")]


def test_a_categorical_column_is_never_out_of_range_on_the_hot_path() -> None:
    assert bounded().check_row([2.0, -1e308, 5.0]) == []
    assert bounded().check_row([BELOW, 1e308, -5.0]) == [("x", "out_of_range")]


def test_a_row_of_the_wrong_length_is_refused_not_checked_in_part() -> None:
    checker = QualityChecker(["x", "y"], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError):
        checker.check_row([0.5])  # too short, every value in range
    with pytest.raises(ValueError):
        checker.check_row([5.0, 0.5, 0.5])  # too long, the first value out of range


@pytest.mark.parametrize("window", [np.zeros(3), np.zeros((2, 2))], ids=["1-d", "2-columns"])
def test_a_window_of_the_wrong_shape_is_refused_with_its_shape(window: np.ndarray) -> None:
    with pytest.raises(ValueError, match=rf"^window must be n x 3, got \({window.shape[0]},"):
        bounded().check_window(window)


def test_an_empty_window_is_clean_with_nothing_counted() -> None:
    report = bounded().check_window(np.empty((0, 3)))
    assert report == QualityReport(score=1.0, n_rows=0, n_values=0, n_issues=0, counts={})


def test_a_categorical_column_in_a_numeric_array_is_checked_as_categories() -> None:
    """Numeric codes in a categorical column are categories (by their text), not numbers."""
    report = bounded().check_window(np.array([[3.0, 0.0, 1.0], [3.0, 0.0, 2.0], [3.0, 0.0, 2.0]]))
    assert report.counts == {("c", "unseen_category"): 3}
    assert (report.n_rows, report.n_values, report.n_issues) == (3, 9, 3)


def test_an_object_window_counts_each_kind_once_per_value() -> None:
    window = np.array(
        [
            [-np.inf, 1.0, "a"],
            [np.inf, "text", "b"],
            [BELOW, None, "b"],
            [float("nan"), True, None],
        ],
        dtype=object,
    )
    report = bounded().check_window(window)
    assert report.counts == {
        ("x", "non_finite"): 2,
        ("x", "out_of_range"): 1,
        ("x", "missing"): 1,
        ("y", "wrong_type"): 2,
        ("y", "missing"): 1,
        ("c", "unseen_category"): 2,
        ("c", "missing"): 1,
    }
    assert (report.n_rows, report.n_values, report.n_issues) == (4, 12, 10)


def test_window_quality_reads_schema_order_unless_told_otherwise() -> None:
    checker = QualityChecker(["x", "y"], [0.0, 10.0], [1.0, 20.0])
    window = np.array([[0.5, 15.0]])
    assert window_quality(checker, window).n_issues == 0
    assert window_quality(checker, window, ["x", "y"]).n_issues == 0
    assert window_quality(checker, window, ["y", "x"]).counts == {
        ("x", "out_of_range"): 1,
        ("y", "out_of_range"): 1,
    }


def test_a_profile_gives_ranges_widened_by_their_width_categories_and_nullable_features() -> None:
    profile = {
        "feature_names": ["x", "open", "floor", "c"],
        "features": {
            "x": {"type": "numeric", "min": 2.0, "max": 12.0, "n_missing": 0},
            "open": {"type": "numeric", "min": None, "max": None, "n_missing": 3},
            "floor": {"type": "numeric", "min": 5.0, "max": None},  # no n_missing: not nullable
            "c": {"type": "categorical", "categories": ["a", "b"], "n_missing": 0},
        },
    }
    checker = QualityChecker.from_profile(profile, margin=0.1)  # pad = 0.1 * (12 - 2) = 1
    assert checker.check_row([1.0, -1e308, 5.0, 0.0]) == []
    assert checker.check_row([13.0, 1e308, 1e308, 0.0]) == []
    below = [np.nextafter(1.0, -np.inf), 0.0, np.nextafter(5.0, -np.inf), 0.0]
    assert checker.check_row(below) == [("x", "out_of_range"), ("floor", "out_of_range")]
    assert checker.check_row([np.nextafter(13.0, np.inf), 0.0, 5.0, 0.0]) == [("x", "out_of_range")]
    assert checker.nullable == {"open"}
    assert checker.categories == {"c": frozenset({"a", "b"})}
    missing = np.array([[None, None, None, None]], dtype=object)
    assert checker.check_window(missing).counts == {
        ("x", "missing"): 1,
        ("floor", "missing"): 1,
        ("c", "missing"): 1,
    }


def test_text_in_a_window_of_a_numeric_only_schema_is_a_wrong_type_not_a_crash() -> None:
    checker = QualityChecker(["x", "y"], [0.0, 0.0], [1.0, 1.0])
    window = np.array([[0.5, "text"], [0.5, None]], dtype=object)
    assert checker.check_window(window).counts == {("y", "wrong_type"): 1, ("y", "missing"): 1}


def test_a_range_too_wide_to_measure_is_not_widened_into_infinity() -> None:
    """[-1e308, 1e308] has a width past the largest float: the margin adds nothing, and the
    limits stay finite (an infinite margin would let every value through)."""
    profile = {
        "feature_names": ["huge"],
        "features": {"huge": {"type": "numeric", "min": -1e308, "max": 1e308}},
    }
    checker = QualityChecker.from_profile(profile, margin=0.1)
    assert checker.check_row([-1e308]) == checker.check_row([1e308]) == []
    assert checker.check_row([-1.5e308]) == [("huge", "out_of_range")]
    assert checker.check_row([1.5e308]) == [("huge", "out_of_range")]
