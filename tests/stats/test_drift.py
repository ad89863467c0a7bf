"""Drift decisions: no false alarms on undrifted data at any window size, real shifts caught."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binom, false_discovery_control

from nexus_ml.ml.profile import build_profile
from nexus_ml.stats.drift import (
    DECISION_METHOD,
    DriftDetector,
    DriftReport,
    FeatureDrift,
    adjust_pvalues,
)

D = 30
NAMES = [f"f{i}" for i in range(D)]


@pytest.fixture(scope="module")
def profile() -> dict:
    ref = np.random.default_rng(2024).normal(size=(100_000, D))
    return build_profile(ref, NAMES)


@pytest.fixture(scope="module")
def detector(profile: dict) -> DriftDetector:
    return DriftDetector.from_profile(profile)


# Several seeds where windows are cheap, one where a window is 240 MB.
SIZES_AND_SEEDS = [(200, 20), (1_000, 10), (10_000, 5), (100_000, 2), (1_000_000, 1)]


@pytest.mark.parametrize(("size", "seeds"), SIZES_AND_SEEDS)
def test_undrifted_windows_flag_at_most_5_percent(
    detector: DriftDetector, size: int, seeds: int
) -> None:
    flagged = 0
    for seed in range(seeds):
        window = np.random.default_rng(seed).normal(size=(size, D))
        report = detector.score(window, NAMES)
        assert report.decided and report.window_size == size
        flagged += len(report.drifted_features)
    assert flagged / (seeds * D) <= 0.05


def test_half_sigma_shift_of_one_feature_is_flagged_alone(detector: DriftDetector) -> None:
    window = np.random.default_rng(99).normal(size=(1_000, D))
    window[:, 7] += 0.5
    report = detector.score(window, NAMES)
    assert report.drifted_features == ["f7"]
    assert report.share_drifted == pytest.approx(1 / D)
    f7 = report.features["f7"]
    assert f7.statistic > 0.1 and f7.adjusted_pvalue < 0.05
    # Every method sees it; W1/std reads as the shift in standard deviations.
    assert f7.scores["wasserstein"] == pytest.approx(0.5, abs=0.1)
    assert f7.scores["ks"] > 0.1 and f7.scores["js"] > 0.1


def test_tiny_shift_on_a_huge_window_is_significant_but_not_flagged(
    detector: DriftDetector,
) -> None:
    # 0.05 sigma over 200k rows: the test rejects, the effect size says it does not matter.
    window = np.random.default_rng(5).normal(size=(200_000, D))
    window[:, 3] += 0.05
    f3 = detector.score(window, NAMES).features["f3"]
    assert f3.adjusted_pvalue < 1e-6
    assert f3.statistic < 0.1 and not f3.drifted


def test_window_below_min_window_takes_no_decision(detector: DriftDetector) -> None:
    window = np.random.default_rng(1).normal(size=(50, D))
    window[:, 0] += 3.0  # a blatant shift: still no decision on 50 rows
    report = detector.score(window, NAMES)
    assert not report.decided
    assert report.drifted_features == [] and report.share_drifted == 0.0
    assert "below min_window=200" in report.reason
    assert report.features["f0"].scores["psi"] > 1.0  # scores are still reported
    # ... but no feature counts as decided: a chart of drift leaves them out.
    assert not any(f.decided for f in report.features.values())
    assert report.to_dict()["features"]["f0"]["decided"] is False


def test_columns_are_matched_by_name_and_missing_values_dropped(
    detector: DriftDetector,
) -> None:
    rng = np.random.default_rng(8)
    window = rng.normal(size=(1_000, D))
    window[:, 2] += 1.0
    window[:100, 5] = np.nan
    order = NAMES[::-1]
    report = detector.score(window[:, ::-1], order)
    # f5's values are undrifted; its missing rate (0 % in the reference, 10 % here) is not.
    assert report.drifted_features == ["f2", "f5"]
    f5 = report.features["f5"]
    assert f5.n == 900 and f5.missing_share == pytest.approx(0.1)
    assert f5.missing_drifted and not report.features["f2"].missing_drifted
    assert f5.adjusted_pvalue > 0.05 or f5.statistic <= 0.1  # the distribution is not flagged


def test_a_feature_with_too_few_values_is_left_undecided(detector: DriftDetector) -> None:
    window = np.random.default_rng(3).normal(size=(1_000, D))
    window[50:, 4] = np.nan
    window[:, 4] += 5.0
    report = detector.score(window, NAMES)
    assert report.decided
    f4 = report.features["f4"]
    assert not f4.distribution_drifted  # 50 values: the shift of 5 std is not judged
    assert f4.missing_drifted and f4.drifted  # 95 % missing against none in the reference is
    assert "f4" in report.reason
    assert not f4.decided  # its score rests on 50 values
    assert all(report.features[f].decided for f in NAMES if f != "f4")
    assert report.to_dict()["features"]["f0"]["decided"] is True


def test_report_is_json_serialisable(detector: DriftDetector) -> None:
    report = detector.score(np.random.default_rng(0).normal(size=(300, D)), NAMES)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(data["features"]["f0"]["scores"]) == {
        "psi",
        "ks",
        "js",
        "wasserstein",
        "missing",
        "decision",
    }
    assert data["window_size"] == 300


def test_categorical_features_drift_on_category_mix() -> None:
    rng = np.random.default_rng(6)

    def table(size: int, p: list[float], cats: list[str]) -> np.ndarray:
        # Rows as stored predictions hold them: a string and a float per row.
        kind = rng.choice(cats, size=size, p=p).tolist()
        return np.array(list(zip(kind, rng.normal(size=size).tolist(), strict=True)), object)

    prof = build_profile(table(5_000, [0.5, 0.3, 0.2], ["a", "b", "c"]), ["kind", "x"])
    assert prof["features"]["x"]["type"] == "numeric"
    det = DriftDetector.from_profile(prof)
    same = table(1_000, [0.5, 0.3, 0.2], ["a", "b", "c"])
    assert det.score(same, ["kind", "x"]).drifted_features == []
    shifted = table(1_000, [0.2, 0.3, 0.2, 0.3], ["a", "b", "c", "new"])
    report = det.score(shifted, ["kind", "x"])
    assert report.drifted_features == ["kind"]
    assert set(report.features["kind"].scores) == {"l1", "psi", "js", "chi2", "missing", "decision"}
    assert report.features["kind"].method == "l1"


def test_raw_fit_agrees_with_profile_fit(profile: dict) -> None:
    ref = np.random.default_rng(2024).normal(size=(100_000, D))
    raw = DriftDetector().fit(ref, NAMES)
    window = np.random.default_rng(4).normal(size=(2_000, D))
    window[:, 1] *= 1.5
    a, b = raw.score(window, NAMES), DriftDetector.from_profile(profile).score(window, NAMES)
    assert a.drifted_features == b.drifted_features == ["f1"]
    for f in NAMES:
        # Same bins up to the float32 rounding of the profile's edges.
        assert a.features[f].scores["psi"] == pytest.approx(b.features[f].scores["psi"], abs=1e-4)
        assert a.features[f].scores["ks"] == pytest.approx(b.features[f].scores["ks"], abs=0.01)


def test_benjamini_hochberg_matches_the_textbook_example() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Sorted 0.005, 0.01, 0.03, 0.04 -> 0.02, 0.02, 0.04, 0.04 after the step-up minimum.
    np.testing.assert_allclose(adjust_pvalues(p), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), [0.04, 0.16, 0.12, 0.02])


def test_unknown_method_and_missing_feature_are_errors(profile: dict) -> None:
    with pytest.raises(ValueError, match="unknown numeric drift methods"):
        DriftDetector(methods={"numeric": ["nope"]})
    det = DriftDetector(methods={"numeric": ["ks"]}).fit_profile(profile)
    assert set(det.methods_["f0"]) == {"psi", "ks"}  # the decision method is always kept
    with pytest.raises(ValueError, match="lacks reference features"):
        det.score(np.zeros((300, 2)), ["f0", "f1"])


def test_adjusted_pvalues_equal_scipy_benjamini_hochberg() -> None:
    rng = np.random.default_rng(12)
    cases = [
        rng.uniform(size=30),
        rng.uniform(0, 0.1, size=30),  # many small: step-up makes later ranks matter
        np.array([0.01, 0.01, 0.02, 0.02, 0.02, 0.5, 1.0]),  # ties
        np.array([0.04]),  # one test: nothing to correct
        np.array([1e-300, 0.049, 0.051, 0.9]),
    ]
    for p in cases:
        np.testing.assert_allclose(adjust_pvalues(p), false_discovery_control(p), rtol=1e-12)
        np.testing.assert_allclose(
            adjust_pvalues(p, "bonferroni"), np.minimum(p * p.size, 1.0), rtol=1e-12
        )
    assert adjust_pvalues([]).size == 0


@pytest.mark.parametrize(("seed", "drifted"), [(2, False), (3, False), (4, True)])
def test_decision_uses_the_bh_adjusted_pvalue_of_the_window(
    detector: DriftDetector, seed: int, drifted: bool
) -> None:
    # A quarter-sigma shift on 200 rows: the raw KS test rejects (p < 0.05, D > 0.1) in all
    # three windows; corrected over 30 features, only the strongest survives.
    window = np.random.default_rng(seed).normal(size=(200, D))
    window[:, 0] += 0.25
    report = detector.score(window, NAMES)
    raw = np.array([report.features[f].pvalue for f in NAMES])
    adjusted = false_discovery_control(raw)
    for f, expected in zip(NAMES, adjusted, strict=True):
        d = report.features[f]
        assert d.adjusted_pvalue == pytest.approx(expected, rel=1e-12)
        assert d.drifted == (d.statistic > 0.1 and expected < 0.05)
    f0 = report.features["f0"]
    assert f0.statistic > 0.1 and f0.pvalue < 0.05  # the uncorrected rule would flag it
    assert f0.drifted is drifted


def test_undrifted_small_windows_raise_a_false_alarm_in_at_most_alpha_of_them(
    detector: DriftDetector,
) -> None:
    # Under the complete null, Benjamini-Hochberg at alpha controls the chance that a window
    # flags anything at all: P(any flag) <= alpha = 0.05. The count of windows with a false
    # alarm is then at most Binomial(200, 0.05); the bound is its 99.9th percentile, so a right
    # implementation passes on any seeds with probability >= 0.999. Uncorrected, about half the
    # windows flag something (one feature in 30 crossing p < 0.05 is the rule, not the exception).
    windows = 200
    bound = int(binom.ppf(0.999, windows, 0.05))
    alarms = 0
    for seed in range(windows):
        window = np.random.default_rng(10_000 + seed).normal(size=(200, D))
        alarms += bool(detector.score(window, NAMES).drifted_features)
    assert alarms <= bound


def test_the_report_json_form_names_every_field_and_writes_nan_as_null() -> None:
    """The form the service stores and the API returns: every field under its own name, each
    NaN (a score over too few values, a test not run) as null, so strict JSON can carry it."""
    nan = float("nan")
    age = FeatureDrift(
        scores={"psi": 0.31, "ks": nan},
        pvalues={"ks": 0.002, "chi2": nan},
        statistic=0.31,
        pvalue=0.002,
        adjusted_pvalue=0.004,
        n=180,
        drifted=True,
        method="psi",
        distribution_drifted=True,
        missing_share=0.1,
        reference_missing_share=0.05,
        missing_adjusted_pvalue=0.5,
        missing_drifted=False,
        decided=True,
    )
    bmi = FeatureDrift(
        scores={"psi": nan},
        pvalues={},
        statistic=nan,
        pvalue=nan,
        adjusted_pvalue=nan,
        n=3,
        drifted=False,
        missing_adjusted_pvalue=nan,
        decided=False,
    )
    report = DriftReport(
        window_size=200,
        decided=True,
        reason="ok",
        threshold=0.2,
        alpha=0.05,
        features={"age": age, "bmi": bmi},
    )
    form = report.to_dict()
    assert form == {
        "window_size": 200,
        "decided": True,
        "reason": "ok",
        "threshold": 0.2,
        "alpha": 0.05,
        "share_drifted": 0.5,
        "drifted_features": ["age"],
        "features": {
            "age": {
                "scores": {"psi": 0.31, "ks": None},
                "pvalues": {"ks": 0.002, "chi2": None},
                "statistic": 0.31,
                "pvalue": 0.002,
                "adjusted_pvalue": 0.004,
                "n": 180,
                "drifted": True,
                "decided": True,
                "method": "psi",
                "distribution_drifted": True,
                "missing": {
                    "share": 0.1,
                    "reference_share": 0.05,
                    "adjusted_pvalue": 0.5,
                    "drifted": False,
                },
            },
            "bmi": {
                "scores": {"psi": None},
                "pvalues": {},
                "statistic": None,
                "pvalue": None,
                "adjusted_pvalue": None,
                "n": 3,
                "drifted": False,
                "decided": False,
                "method": DECISION_METHOD,
                "distribution_drifted": False,
                "missing": {
                    "share": 0.0,
                    "reference_share": 0.0,
                    "adjusted_pvalue": None,
                    "drifted": False,
                },
            },
        },
    }
    assert json.loads(json.dumps(form, allow_nan=False)) == form
