"""Drift statistics from bin counts alone: what the PromQL recording rules compute, in Python.

The rules (``render/drift_rules.py``) see only ``ml_feature_bin_total`` per bin and the
reference shares per bin; these functions compute the same four numbers from the same counts,
so a test can hold the two side by side (docs/metrics.md, "PromQL drift"). PSI and
Jensen–Shannon are the drift job's own ``psi`` (1e-4 floor on empty bins) and ``js_distance``.

* PSI and Jensen–Shannon run over every bin, ``missing`` (and ``unseen``) included: a change of
  the missing rate moves them like any other share.
* KS and Wasserstein are *binned*: numeric features only, over the present values (missing left
  out), with the CDFs known only at the inner edges. KS is the largest CDF gap at an edge;
  Wasserstein sums each edge's gap times the distance to the next edge, in reference standard
  deviations. Both read lower than the exact statistics the drift job computes from raw values
  (a shift inside one bin, or beyond the outer edges, is invisible to them).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from nexus_ml.stats.drift_methods import js_distance, psi

__all__ = ["binned_ks", "binned_wasserstein", "js_distance", "psi"]


def _cdf_gaps(reference: ArrayLike, window: ArrayLike) -> np.ndarray:
    """Window minus reference CDF at each inner edge (after bins 0 .. k-2 of k present bins)."""
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(window, dtype=np.float64)
    return (np.cumsum(q / q.sum()) - np.cumsum(p / p.sum()))[:-1]


def binned_ks(reference: ArrayLike, window: ArrayLike) -> float:
    """Largest gap between the two CDFs at the inner edges (present bins, in order)."""
    gaps = _cdf_gaps(reference, window)
    return float(np.max(np.abs(gaps))) if gaps.size else 0.0


def binned_wasserstein(reference: ArrayLike, window: ArrayLike, widths: ArrayLike) -> float:
    """Sum of the CDF gap at edge ``i`` times ``widths[i]`` (edge ``i`` to ``i + 1``).

    With ``widths`` in reference standard deviations this reads like the drift job's normalised
    Wasserstein distance: the mass moved times how far, as if each bin's rows sat at its
    upper edge (the last bin's at the last edge).
    """
    gaps = _cdf_gaps(reference, window)
    w = np.asarray(widths, dtype=np.float64)
    return float(np.sum(np.abs(gaps[: w.size]) * w))
