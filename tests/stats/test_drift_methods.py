"""Known-answer tests for the drift methods, against scipy and direct numpy formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from nexus_ml.ml.profile import build_profile
from nexus_ml.stats.drift_methods import (
    N_BINS,
    PSI,
    ChiSquared,
    JensenShannon,
    KolmogorovSmirnov,
    Wasserstein,
    bin_counts_sorted,
    decile_gaps,
    methods_for,
    missing_rate_test,
    sorted_finite,
)

N_REF = 50_000


@pytest.fixture(scope="module")
def ref() -> np.ndarray:
    return np.random.default_rng(11).normal(10.0, 2.0, size=N_REF)


@pytest.fixture(scope="module")
def feature(ref: np.ndarray) -> dict:
    return build_profile(ref[:, None], ["x"])["features"]["x"]


def windows() -> list[np.ndarray]:
    rng = np.random.default_rng(12)
    return [
        rng.normal(10.0, 2.0, size=2_000),  # undrifted
        rng.normal(11.0, 2.0, size=2_000),  # 0.5-sigma shift
        rng.normal(10.0, 3.0, size=500),  # wider
        rng.standard_t(3, size=5_000) * 2 + 10,  # heavy tails
        np.round(rng.normal(10.0, 2.0, size=3_000)),  # ties in the window
    ]


def test_registry_lists_methods_by_feature_type() -> None:
    assert set(methods_for("numeric")) == {"psi", "ks", "js", "wasserstein"}
    assert set(methods_for("categorical")) == {"l1", "psi", "js", "chi2"}
    # Each name gives its class, ready to fit.
    assert methods_for("categorical")["chi2"] is ChiSquared
    assert methods_for("numeric")["wasserstein"] is Wasserstein


def test_a_categorical_window_scores_nan_only_when_it_is_empty() -> None:
    ref_feat = {"type": "categorical", "categories": ["a", "b"], "category_counts": [60, 40]}
    chi2 = ChiSquared().fit_profile(ref_feat)
    empty = chi2.score(np.zeros(3))
    assert np.isnan(empty.score) and empty.pvalue is None
    one = chi2.score(np.array([1.0, 0.0, 0.0]))  # a single row is evidence already
    assert np.isfinite(one.score) and one.pvalue is not None


@pytest.mark.parametrize("w", windows())
def test_ks_from_profile_is_within_001_of_scipy(
    feature: dict, ref: np.ndarray, w: np.ndarray
) -> None:
    ks = KolmogorovSmirnov().fit_profile(feature)
    expected = stats.ks_2samp(ref, w).statistic
    assert ks.score(np.sort(w)).score == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("w", windows())
def test_ks_fitted_on_raw_is_exact(ref: np.ndarray, w: np.ndarray) -> None:
    res = KolmogorovSmirnov().fit(ref).score(np.sort(w))
    exact = stats.ks_2samp(ref, w, method="asymp")
    assert res.score == pytest.approx(exact.statistic, abs=1e-12)
    # Asymptotic Kolmogorov p-value: close to scipy's finite-n asymptotic one.
    assert res.pvalue == pytest.approx(exact.pvalue, abs=0.02)


def test_ks_handles_a_discrete_reference() -> None:
    rng = np.random.default_rng(4)
    ref = rng.integers(0, 5, size=20_000).astype(float)
    w = rng.integers(0, 6, size=3_000).astype(float)
    feat = build_profile(ref[:, None], ["x"])["features"]["x"]
    got = KolmogorovSmirnov().fit_profile(feat).score(np.sort(w)).score
    assert got == pytest.approx(stats.ks_2samp(ref, w).statistic, abs=0.01)


@pytest.mark.parametrize(
    "w",
    [
        np.random.default_rng(21).uniform(-1.0, 6.0, 3_000),  # between, below and above atoms
        np.random.default_rng(22).choice([0.5, 1.5, 2.5, 3.5], size=2_000),  # halfway only
        np.random.default_rng(23).normal(2.0, 1.0, 2_000),
        np.random.default_rng(24).uniform(0.2, 0.8, 500),  # inside one gap
        np.random.default_rng(25).uniform(3.2, 3.9, 500),  # inside the last gap
    ],
    ids=["spread", "halfway", "normal", "first-gap", "last-gap"],
)
def test_ks_from_the_profile_of_a_discrete_reference_is_exact_to_its_resolution(
    w: np.ndarray,
) -> None:
    """A tied reference (five atoms) makes the sketch repeat quantiles: its CDF is read at
    window values between the atoms and beyond them, where it must stay the reference's flat
    CDF to the sketch's 1/1000."""
    ref = np.random.default_rng(20).choice(
        [0.0, 1.0, 2.0, 3.0, 4.0], p=[0.1, 0.4, 0.2, 0.2, 0.1], size=20_000
    )
    ks = KolmogorovSmirnov().fit_profile(build_profile(ref[:, None], ["x"])["features"]["x"])
    assert not ks.continuous_
    expected = stats.ks_2samp(ref, w).statistic
    assert ks.score(np.sort(w)).score == pytest.approx(expected, abs=0.0015)


def _sketch_cdf_as_written(q: list[float], p: list[float], x: float, right: bool) -> float:
    """The sketch's CDF by its definition: linear between neighbouring nodes, a jump where
    nodes repeat; its value at ``x`` (``right``) or its limit from the left."""
    below = [i for i, v in enumerate(q) if (v <= x if right else v < x)]
    if not below:
        return 0.0
    i = below[-1]
    if i == len(q) - 1:
        return 1.0
    return p[i] + (x - q[i]) / (q[i + 1] - q[i]) * (p[i + 1] - p[i])


SKETCHES_WITH_JUMPS = {
    # 30 % at 0, then a fine spread: the sketch of a lab value that is often exactly 0.
    "atom-first": [0.0] * 301 + np.linspace(1.0, 5.0, 700).tolist(),
    # A coarse sketch (11 nodes, 0.1 apart in probability) with 20 % at 0 in the middle:
    # between nodes the interpolation decides the statistic.
    "atom-inside": [-2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sketch", SKETCHES_WITH_JUMPS)
def test_ks_from_a_sketch_with_jumps_is_the_distance_to_its_piecewise_linear_cdf(
    sketch: str, seed: int
) -> None:
    """A sketch that repeats a quantile (an atom) is read as its piecewise-linear CDF with a
    jump there: the statistic is the largest gap, on either side of every point, between the
    window's ECDF and that CDF, for window values on nodes, between them and beyond both ends."""
    q = SKETCHES_WITH_JUMPS[sketch]
    p = np.linspace(0.0, 1.0, len(q)).tolist()
    ks = KolmogorovSmirnov().fit_profile({"quantiles": q, "std": 1.0, "n": 10_000})
    assert not ks.continuous_
    rng = np.random.default_rng(seed)
    between = [(a + b) / 2 for a, b in itertools.pairwise(q) if a < b]
    w = np.sort(np.concatenate((np.zeros(40), rng.uniform(-3.0, 7.0, 100), between)))
    points = sorted(set(w.tolist()) | set(q))
    expected = max(
        abs(np.searchsorted(w, x, side=side) / w.size - _sketch_cdf_as_written(q, p, x, right))
        for x in points
        for side, right in (("right", True), ("left", False))
    )
    assert ks.score(w).score == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("w", windows())
def test_psi_equals_direct_formula_on_the_same_bins(feature: dict, w: np.ndarray) -> None:
    got = PSI().fit_profile(feature).score(np.sort(w))
    edges = np.asarray(feature["bin_edges"])
    p = np.asarray(feature["bin_counts"], float)
    q = np.bincount(np.searchsorted(edges, w), minlength=edges.size + 1).astype(float)
    p, q = np.maximum(p / p.sum(), 1e-4), np.maximum(q / q.sum(), 1e-4)
    assert got.score == pytest.approx(np.sum((q - p) * np.log(q / p)), abs=1e-12)
    table = np.vstack([feature["bin_counts"], q * w.size]).round()
    table = table[:, table.sum(axis=0) > 0]
    expected_p = stats.chi2_contingency(table, correction=False).pvalue
    assert got.pvalue == pytest.approx(expected_p, rel=1e-6, abs=1e-300)


@pytest.mark.parametrize("w", windows())
def test_js_matches_scipy(feature: dict, w: np.ndarray) -> None:
    got = JensenShannon().fit_profile(feature).score(np.sort(w)).score
    edges = np.asarray(feature["bin_edges"])
    q = np.bincount(np.searchsorted(edges, w), minlength=edges.size + 1)
    assert got == pytest.approx(jensenshannon(feature["bin_counts"], q, base=2), abs=1e-12)


@pytest.mark.parametrize("w", windows())
def test_wasserstein_matches_scipy_over_reference_std(
    feature: dict, ref: np.ndarray, w: np.ndarray
) -> None:
    expected = stats.wasserstein_distance(ref, w) / ref.std()
    exact = Wasserstein().fit(ref).score(np.sort(w)).score
    assert exact == pytest.approx(expected, rel=1e-12)
    from_profile = Wasserstein().fit_profile(feature).score(np.sort(w)).score
    assert from_profile == pytest.approx(expected, abs=0.01)


def test_wasserstein_of_a_mean_shift_reads_in_standard_deviations(ref: np.ndarray) -> None:
    # Shifting the reference itself by k std moves every quantile by exactly k std.
    got = Wasserstein().fit(ref).score(np.sort(ref + 0.5 * ref.std())).score
    assert got == pytest.approx(0.5, abs=1e-9)


def test_reference_against_itself_scores_zero(feature: dict, ref: np.ndarray) -> None:
    s = np.sort(ref)
    assert PSI().fit_profile(feature).score(s).score == 0.0
    assert JensenShannon().fit_profile(feature).score(s).score == 0.0
    assert KolmogorovSmirnov().fit(ref).score(s).score == 0.0
    assert Wasserstein().fit(ref).score(s).score == 0.0
    assert PSI().fit(ref).score(s).score == 0.0
    # From the sketch the reference CDF is piecewise linear, the sample's a step: they agree
    # to within the sketch resolution (1/1000), not exactly.
    assert KolmogorovSmirnov().fit_profile(feature).score(s).score < 1e-3
    assert Wasserstein().fit_profile(feature).score(s).score < 1e-3


def test_raw_and_profile_fits_bin_the_same_way(feature: dict, ref: np.ndarray) -> None:
    raw = PSI().fit(ref)
    np.testing.assert_allclose(raw.edges_, feature["bin_edges"], rtol=1e-6)
    assert raw.ref_counts_.tolist() == feature["bin_counts"]


def test_chi2_and_cramers_v_match_scipy() -> None:
    ref_feat = {
        "type": "categorical",
        "categories": ["a", "b", "c"],
        "category_counts": [500, 300, 200],
    }
    window = np.array([40.0, 50.0, 30.0, 10.0])  # last bucket: unseen categories
    res = ChiSquared().fit_profile(ref_feat).score(window)
    table = np.array([[500, 300, 200, 0], [40, 50, 30, 10]])
    chi2 = stats.chi2_contingency(table, correction=False)
    assert res.pvalue == pytest.approx(chi2.pvalue, rel=1e-9)
    assert res.score == pytest.approx(stats.contingency.association(table, method="cramer"))
    same = ChiSquared().fit_profile(ref_feat).score(np.array([50.0, 30.0, 20.0, 0.0]))
    assert same.score == 0.0 and same.pvalue == pytest.approx(1.0)


def test_chi2_on_the_smallest_tables_matches_scipy_or_reads_no_difference() -> None:
    """One row on either side is a table scipy computes (the test is not refused); a
    reference and a window that both hold one category only differ in nothing: V 0, p 1."""
    for ref_counts, window in (([60, 40], [1.0, 0.0, 0.0]), ([1, 0], [30.0, 20.0, 0.0])):
        feat = {"type": "categorical", "categories": ["a", "b"], "category_counts": ref_counts}
        res = ChiSquared().fit_profile(feat).score(np.array(window))
        table = np.array([ref_counts, window[:2]])
        table = table[:, table.sum(axis=0) > 0].astype(int)
        expected = stats.chi2_contingency(table, correction=False)
        assert res.pvalue == pytest.approx(expected.pvalue, rel=1e-9)
        assert res.score == pytest.approx(stats.contingency.association(table, method="cramer"))
    # The missing-rate test on the same smallest tables: (present, missing) of each side.
    for reference, window_pm in (((1, 0), (30, 20)), ((60, 40), (0, 1))):
        table = np.array([reference, window_pm])
        res_m = missing_rate_test(reference, window_pm)
        assert res_m.pvalue == pytest.approx(
            stats.chi2_contingency(table, correction=False).pvalue, rel=1e-9
        )
    single = {"type": "categorical", "categories": ["a"], "category_counts": [500]}
    for method in (ChiSquared, PSI):
        res = method().fit_profile(single).score(np.array([300.0, 0.0]))
        assert res.score == 0.0 and res.pvalue == 1.0


@pytest.mark.parametrize("size", [2, 3, 200])
def test_ks_of_a_window_of_one_tied_value_against_that_value_is_zero(size: int) -> None:
    """Ties in the window are one step of its ECDF, however few rows it has and wherever they
    lie: a window that holds only the reference's own single value does not differ from it,
    and tied values after a smallest one are one step too."""
    for window in (np.full(size, 1.0), np.concatenate(([0.0], np.full(size - 1, 1.0)))):
        for ref in (np.full(100, 1.0), np.array([0.0, 1.0]), np.array([1.0, 2.0])):
            ks = KolmogorovSmirnov().fit(ref)
            expected = stats.ks_2samp(ref, window).statistic
            assert ks.score(window).score == pytest.approx(expected, abs=1e-12)
    assert KolmogorovSmirnov().fit(np.full(100, 1.0)).score(np.full(size, 1.0)).score == 0.0


def test_wasserstein_reads_in_reference_standard_deviations_of_any_size() -> None:
    """A shift of 0.3 reference standard deviations scores 0.3 whether the std is below or
    above 1; a constant reference (std 0) is normalised by 1: the shift in the data's unit."""
    rng = np.random.default_rng(13)
    for sd in (0.25, 0.5, 3.0):
        ref = rng.normal(0.0, sd, 5_000)
        w = np.sort(ref + 0.3 * ref.std())
        assert Wasserstein().fit(ref).score(w).score == pytest.approx(0.3, rel=1e-9)
    assert Wasserstein().fit(np.full(100, 2.0)).score(np.full(50, 2.5)).score == 0.5


def test_bins_are_open_at_both_ends() -> None:
    counts = bin_counts_sorted(np.array([-1e9, 0.0, 1.0, 2.0, 1e9]), np.array([0.0, 1.5]))
    assert counts.tolist() == [2.0, 1.0, 2.0]


def test_empty_window_scores_nan(feature: dict) -> None:
    for method in (PSI(), JensenShannon(), KolmogorovSmirnov(), Wasserstein()):
        assert np.isnan(method.fit_profile(feature).score(np.empty(0)).score)


def test_raw_fit_drops_non_finite_reference_values(ref: np.ndarray) -> None:
    dirty = np.concatenate((ref, [np.nan, np.inf, -np.inf]))
    w = np.sort(np.random.default_rng(2).normal(10.0, 2.0, size=1_000))
    assert KolmogorovSmirnov().fit(dirty).score(w) == KolmogorovSmirnov().fit(ref).score(w)
    assert PSI().fit(dirty).ref_counts_.sum() == N_REF


def test_a_sorted_finite_float_column_is_shared_not_copied() -> None:
    # The detector sorts a column once and every method reads that one array.
    col = np.sort(np.random.default_rng(4).normal(size=1_000))
    assert sorted_finite(col) is col
    tied = np.sort(np.round(col))  # ties are still sorted
    assert sorted_finite(tied) is tied
    # Anything else is sorted, without its non-finite values.
    assert sorted_finite(np.array([1.0, 3.0, 2.0])).tolist() == [1.0, 2.0, 3.0]
    assert sorted_finite(np.array([2.0, 1.0, np.nan])).tolist() == [1.0, 2.0]
    assert sorted_finite(np.array([1.0, 2.0, np.inf])).tolist() == [1.0, 2.0]
    assert sorted_finite(np.array([-np.inf, 1.0, 2.0])).tolist() == [1.0, 2.0]


def test_a_small_integer_column_is_measured_as_numbers_not_wrapped_around() -> None:
    # int8 values 200 apart: their difference overflows int8, not float64.
    rng = np.random.default_rng(6)
    ref = rng.choice(np.array([-100, 100], dtype=np.int8), size=600, p=[0.7, 0.3])
    win = rng.choice(np.array([-100, 100], dtype=np.int8), size=300, p=[0.3, 0.7])
    ref_sorted, win_sorted = sorted_finite(ref), sorted_finite(win)
    assert ref_sorted.dtype == win_sorted.dtype == np.float64
    got = Wasserstein().fit(ref).score(win_sorted).score
    expected = stats.wasserstein_distance(ref.astype(float), win.astype(float))
    assert got == pytest.approx(expected / ref.astype(float).std(), rel=1e-12)


def _decile_gaps_by_hand(values: list[float], counts: list[int]) -> list[int]:
    """The tie-aware edge rule of ``decile_gaps``' docstring, one gap at a time in plain Python."""
    n, size = sum(counts), len(values)
    cum = list(itertools.accumulate(counts))
    defaults = set()
    for d in range(1, N_BINS):
        at = math.floor(np.linspace(0.1, 0.9, N_BINS - 1)[d - 1] * (n - 1))
        i = next(j for j in range(size) if cum[j] > at)  # the value holding that order statistic
        if cum[i] < n:  # the last value has no gap above it
            defaults.add(i)
    heavy = [v for v, c in zip(values, counts, strict=True) if c >= max(2, math.ceil(0.005 * n))]
    if not heavy:
        return sorted(defaults)
    mean = sum(v * c for v, c in zip(values, counts, strict=True)) / n
    std = math.sqrt(sum((v - mean) ** 2 * c for v, c in zip(values, counts, strict=True)) / n)
    safe = 0.1 * std
    chosen = set()
    for i in defaults:
        near = [
            j
            for j in range(size - 1)
            if j == i or abs(cum[j] - cum[i]) <= 0.025 * n  # within the tolerance of the decile
        ]

        def key(j: int, i: int = i) -> tuple[float, int, int]:
            edge = 0.5 * (values[j] + values[j + 1])
            gap = min(abs(edge - h) for h in heavy)
            # Safe gaps alike, then the farthest from a heavy value; nearest the decile of equals.
            return (-min(gap, safe), abs(cum[j] - cum[i]), j)

        chosen.add(min(near, key=key))
    return sorted(chosen)


@pytest.mark.parametrize("seed", range(40))
def test_decile_gaps_follow_the_rule_as_written(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(2, 60))
    values = np.sort(rng.choice(np.arange(-500, 500), size=size, replace=False)) / 10.0
    # Counts from flat to very heavy: a few values hold most rows, the rest one or two each.
    counts = rng.integers(1, 4, size=size)
    spikes = rng.choice(size, size=int(rng.integers(0, min(size, 6) + 1)), replace=False)
    counts[spikes] += rng.integers(1, 400, size=spikes.size)
    got = decile_gaps(values, counts)
    assert got.tolist() == _decile_gaps_by_hand(values.tolist(), counts.tolist())
    assert got.dtype == np.intp
