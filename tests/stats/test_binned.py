"""The PromQL drift statistics in Python: known answers and agreement with the drift methods."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_ml.stats.binned import binned_ks, binned_wasserstein, js_distance, psi
from nexus_ml.stats.drift_methods import JensenShannon, bin_counts_sorted


def test_a_reference_against_itself_scores_zero() -> None:
    ref = np.array([10.0, 30.0, 40.0, 20.0])
    for value in (psi(ref, ref * 3), js_distance(ref, ref * 3), binned_ks(ref, ref * 3)):
        assert value == pytest.approx(0.0, abs=1e-12)
    assert binned_wasserstein(ref, ref * 3, [1.0, 1.0]) == pytest.approx(0.0, abs=1e-12)


def test_js_distance_equals_the_drift_jobs_method_on_the_same_bins() -> None:
    rng = np.random.default_rng(5)
    reference = np.sort(rng.normal(0.0, 1.0, 5000))
    window = np.sort(rng.normal(0.4, 1.2, 800))
    method = JensenShannon().fit(reference)
    counts = bin_counts_sorted(window, method.edges_)
    assert js_distance(method.ref_counts_, counts) == pytest.approx(
        method.score(window).score, abs=1e-12
    )


def test_disjoint_distributions_are_one_apart() -> None:
    assert js_distance([1, 1, 0, 0], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert binned_ks([1, 1, 0, 0], [0, 0, 1, 1]) == pytest.approx(1.0)


def test_known_cdf_gaps_and_their_widths() -> None:
    # Reference 25 % per bin; window all in the last bin: CDF gaps -0.25, -0.5, -0.75 at the
    # three inner edges. Wasserstein weighs the first two by the distance to the next edge.
    ref, win = [1, 1, 1, 1], [0, 0, 0, 4]
    assert binned_ks(ref, win) == pytest.approx(0.75)
    assert binned_wasserstein(ref, win, [0.5, 2.0]) == pytest.approx(0.25 * 0.5 + 0.5 * 2.0)
