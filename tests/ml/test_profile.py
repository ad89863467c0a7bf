"""Reference profile: compact, JSON-serialisable, faithful to the data, fast to build."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from scipy import stats

from nexus_ml.ml.profile import N_QUANTILES, build_profile, confidence_profile

NAMES = [f"f{i}" for i in range(5)]


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(20_000, 5))
    x[:, 1] = rng.exponential(3.0, size=20_000) + 1e6  # skewed, with a large offset
    x[:, 2] = rng.integers(0, 4, size=20_000)  # discrete: repeated quantiles
    return x


def test_profile_is_json_and_holds_no_raw_rows(data: np.ndarray) -> None:
    prof = build_profile(data, NAMES, y=data[:, 2] > 1, classes=[False, True])
    text = json.dumps(prof, allow_nan=False)
    assert json.loads(text) == prof
    # Size does not grow with the rows: 1001 quantiles + ~10 bins per feature.
    assert len(text) < 5 * 30_000
    for f in NAMES:
        assert len(prof["features"][f]["quantiles"]) == N_QUANTILES
    assert prof["class_balance"] == {
        "classes": [False, True],
        "counts": [int((data[:, 2] <= 1).sum()), int((data[:, 2] > 1).sum())],
    }


def test_moments_and_quantiles_match_numpy(data: np.ndarray) -> None:
    prof = build_profile(data, NAMES)
    probs = np.linspace(0, 1, N_QUANTILES)
    for j, f in enumerate(NAMES):
        feat = prof["features"][f]
        col = data[:, j]
        assert feat["n"] == col.size and feat["n_missing"] == 0
        assert feat["min"] == col.min() and feat["max"] == col.max()
        assert feat["mean"] == pytest.approx(col.mean(), rel=1e-12)
        assert feat["std"] == pytest.approx(col.std(), rel=1e-9)
        # float32 sort of centred values: exact to ~1e-7 of the spread, even at offset 1e6.
        np.testing.assert_allclose(
            feat["quantiles"], np.quantile(col, probs), rtol=0, atol=1e-6 * col.std() + 1e-9
        )


def test_bin_counts_match_the_stored_edges(data: np.ndarray) -> None:
    prof = build_profile(data, NAMES)
    for j, f in enumerate(NAMES):
        feat = prof["features"][f]
        edges = np.asarray(feat["bin_edges"])
        assert np.all(np.diff(edges) > 0)
        # Bin i holds edges[i-1] < x <= edges[i]: searchsorted "left" assigns exactly that.
        expected = np.bincount(np.searchsorted(edges, data[:, j]), minlength=edges.size + 1)
        assert feat["bin_counts"] == expected.tolist()
    # Continuous features get deciles; the 4-valued one collapses to its distinct values.
    assert len(prof["features"]["f0"]["bin_counts"]) == 10
    assert len(prof["features"]["f2"]["bin_counts"]) <= 4


def test_profile_ks_is_close_to_scipy_exact(data: np.ndarray) -> None:
    prof = build_profile(data, NAMES)
    rng = np.random.default_rng(3)
    window = rng.normal(0.2, 1.1, size=5_000)
    q = np.asarray(prof["features"]["f0"]["quantiles"])
    w = np.sort(window)
    ref_cdf = np.interp(w, q, np.linspace(0, 1, N_QUANTILES))
    m = w.size
    d = max(np.max(np.arange(1, m + 1) / m - ref_cdf), np.max(ref_cdf - np.arange(m) / m))
    assert d == pytest.approx(stats.ks_2samp(data[:, 0], window).statistic, abs=0.01)


def test_non_finite_values_are_counted_and_dropped() -> None:
    x = np.arange(1000, dtype=np.float64).reshape(500, 2)
    x[:10, 0] = np.nan
    x[10, 0] = np.inf
    prof = build_profile(x, ["a", "b"])
    a = prof["features"]["a"]
    assert a["n_missing"] == 11 and a["n"] == 489
    assert a["min"] == x[11:, 0].min() and a["max"] == x[11:, 0].max()
    assert sum(a["bin_counts"]) == 489
    assert prof["features"]["b"]["n_missing"] == 0


def test_categorical_columns_keep_category_counts() -> None:
    x = np.array([["a", 1.0], ["b", 2.0], ["a", 3.0], [None, 4.0]], dtype=object)
    prof = build_profile(x, ["kind", "v"], categorical=["kind"])
    kind = prof["features"]["kind"]
    assert kind["type"] == "categorical"
    assert kind["categories"] == ["a", "b"] and kind["category_counts"] == [2, 1]
    assert kind["n_missing"] == 1
    # A mixed table's column of numbers (None missing) is numeric; one holding text is not.
    assert prof["features"]["v"]["type"] == "numeric" and prof["features"]["v"]["n"] == 4
    x[1, 1], x[2, 1] = None, "3.0"
    prof = build_profile(x, ["kind", "v"], categorical=["kind"])
    assert prof["features"]["v"]["type"] == "categorical"
    assert prof["features"]["v"]["n_missing"] == 1


def test_confidence_calibration_is_monotone_isotonic() -> None:
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.5, 1.0, size=2_000)
    correct = rng.uniform(size=2_000) < conf**2  # overconfident model
    prof = confidence_profile(conf, correct)
    cal = prof["calibration"]
    assert np.all(np.diff(cal["x"]) >= 0) and np.all(np.diff(cal["y"]) >= 0)
    assert sum(prof["bin_counts"]) == 2_000 and sum(prof["correct_counts"]) == correct.sum()
    # Isotonic least squares preserves the mean of the fitted values.
    fitted = np.interp(conf, cal["x"], cal["y"])
    assert fitted.mean() == pytest.approx(correct.mean(), abs=0.01)
    assert np.interp(0.9, cal["x"], cal["y"]) == pytest.approx(0.81, abs=0.08)


def test_building_on_a_million_rows_stays_within_memory_budget() -> None:
    x = np.random.default_rng(0).normal(size=(1_000_000, 30))
    tracemalloc.start()
    try:
        prof = build_profile(x, [f"f{i}" for i in range(30)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 500e6
    assert prof["features"]["f29"]["n"] == 1_000_000


def test_a_value_many_rows_share_is_on_the_sketch_exactly() -> None:
    # A lab value that is exactly 0 in 30 % of rows, spread above otherwise: more distinct
    # values than the exact (discrete) sketch takes, so the float32 sort builds it; the nodes
    # on the atom must be 0.0 itself (they read 2.8e-08), or a window's zeros fall below it.
    rng = np.random.default_rng(30)
    x = np.where(rng.random(20_000) < 0.3, 0.0, rng.normal(5.0, 1.0, 20_000))
    offset = np.where(rng.random(20_000) < 0.2, 1e6 + 0.125, rng.normal(1e6, 1.0, 20_000))
    profile = build_profile(np.column_stack([x, offset]), ["lab", "offset"])
    for name, column, atom in (("lab", x, 0.0), ("offset", offset, 1e6 + 0.125)):
        q = np.array(profile["features"][name]["quantiles"])
        share = float(np.mean(column == atom))
        # The atom holds its share of the 1,001 nodes, each exactly the value.
        assert np.count_nonzero(q == atom) >= share * 1000 - 2, (name, q[np.abs(q - atom) < 1e-3])
