"""Univariate drift methods: fitted once on a reference, then score windows cheaply.

Each method is fitted either from one feature's entry of a reference profile (the dict built by
``nexus_ml.ml.profile.build_profile``; this module reads it as plain data and never imports
``ml``) or from raw reference values. Learned state lives in trailing-underscore attributes, as
in scikit-learn and NannyML. ``score`` returns a :class:`MethodResult` (a score and, for methods
with a test behind them, a p-value).

Numeric windows are passed **sorted** (the detector sorts each column once and shares it across
methods: the sort is most of the cost of a window). Categorical windows are passed as category
counts aligned with the reference categories plus one trailing bucket for unseen values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

FloatArray = NDArray[np.float64]
# Floor for empty bins in PSI: log(q/p) is undefined at 0. 1e-4 is the usual fill (Evidently
# uses the same); it caps one empty bin's contribution instead of letting PSI go to infinity.
PSI_EPS = 1e-4
# Decile bins with tie-aware edges (see decile_gaps; ml.profile places its edges by it too).
N_BINS = 10
# A decile's edge may move this share of the rows away from the decile to avoid a tied value.
TIE_TOLERANCE = 0.025
# A value holding at least this share of the rows counts as heavy for edge placement, and an
# edge at least this many standard deviations from every heavy value as safe.
TIE_SHARE = 0.005
TIE_SAFE_STD = 0.1


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One method's verdict on one feature: a score and, when a test is behind it, a p-value."""

    score: float
    pvalue: float | None = None


# --------------------------------------------------------------------------- binned reference


class _Binned:
    """Shared reference state for methods on a discrete distribution (bins or categories)."""

    ref_counts_: FloatArray
    edges_: FloatArray | None  # inner bin edges for numeric features, None for categorical

    def fit_profile(self, feature: Mapping[str, Any]) -> Self:
        """Fit from one feature's profile entry (bins for numeric, categories for categorical)."""
        if feature["type"] == "categorical":
            # Trailing zero-count bucket: unseen categories in a window land there.
            self.ref_counts_ = np.append(np.asarray(feature["category_counts"], float), 0.0)
            self.edges_ = None
        else:
            self.ref_counts_ = np.asarray(feature["bin_counts"], dtype=np.float64)
            self.edges_ = np.asarray(feature["bin_edges"], dtype=np.float64)
        return self

    def fit(self, reference: ArrayLike) -> Self:
        """Fit from raw numeric reference values (tie-aware decile bins, as in the profile)."""
        ref = sorted_finite(reference)
        values, counts = np.unique(ref, return_counts=True)
        i = decile_gaps(values, counts)
        self.edges_ = 0.5 * (values[i] + values[i + 1])
        self.ref_counts_ = bin_counts_sorted(ref, self.edges_)
        return self

    def window_counts(self, window: FloatArray) -> FloatArray:
        """Counts per bin of a sorted numeric window, or the counts passed for categorical."""
        if self.edges_ is None:
            return np.asarray(window, dtype=np.float64)
        return bin_counts_sorted(window, self.edges_)

    def tested(
        self, window: FloatArray, effect: Callable[[FloatArray, FloatArray], float]
    ) -> MethodResult:
        """``effect(reference counts, window counts)`` with the chi-squared p-value on them."""
        counts = self.window_counts(window)
        if counts.sum() == 0:
            return MethodResult(float("nan"), None)
        _, p, _ = chi2_homogeneity(self.ref_counts_, counts)
        return MethodResult(effect(self.ref_counts_, counts), p)


def decile_gaps(values: NDArray[Any], counts: NDArray[Any]) -> NDArray[np.intp]:
    """Which gaps between distinct sorted values bound the decile bins: ``i`` for each edge.

    ``values`` are the distinct values in ascending order, ``counts`` the rows on each; the
    edge at ``i`` lies halfway between values ``i`` and ``i + 1``. By default it is the gap
    just above the value holding the decile's order statistic. A value holding ``TIE_SHARE``
    of the rows or more is heavy: an edge closer to it than ``TIE_SAFE_STD`` standard
    deviations would let a perturbation far smaller than any real shift (a rounding, a
    recomputed ratio) carry its rows across. So among the gaps within ``TIE_TOLERANCE`` of the
    decile, the one nearest the decile of those at a safe distance from every heavy value is
    taken (the farthest one if none is). A column without heavy values, or whose deciles are
    already safe, keeps its decile edges exactly. The reference profile (``ml.profile``) and a
    raw reference (the PSI method here) both place their edges by it.
    """
    counts = np.asarray(counts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    cum = np.cumsum(counts)
    n = int(cum[-1])
    at = np.floor(np.linspace(0.1, 0.9, N_BINS - 1) * (n - 1)).astype(np.intp)
    default = np.unique(np.searchsorted(cum, at, side="right"))
    default = default[cum[default] < n]  # the last value has no gap above it
    heavy = values[counts >= max(2, int(np.ceil(TIE_SHARE * n)))]
    if heavy.size == 0 or default.size == 0:
        return default
    mean = float(np.dot(values, counts)) / n
    safe = TIE_SAFE_STD * np.sqrt(float(np.dot(np.square(values - mean), counts)) / n)
    chosen = []
    for i in default.tolist():
        lo = int(np.searchsorted(cum, cum[i] - TIE_TOLERANCE * n, side="left"))
        hi = int(np.searchsorted(cum, cum[i] + TIE_TOLERANCE * n, side="right"))
        near = np.arange(min(lo, i), min(max(hi, i + 1), cum.size - 1))
        edge = 0.5 * (values[near] + values[near + 1])
        k = np.clip(np.searchsorted(heavy, edge), 1, heavy.size) - 1
        gap = np.minimum(
            np.abs(edge - heavy[k]), np.abs(heavy[np.minimum(k + 1, heavy.size - 1)] - edge)
        )
        # Safe gaps first (all alike), then the farthest from a heavy value; nearest of equals.
        order = np.lexsort((np.abs(cum[near] - cum[i]), -np.minimum(gap, safe)))
        chosen.append(int(near[order[0]]))
    return np.unique(np.asarray(chosen, dtype=np.intp))


def sorted_finite(values: ArrayLike) -> FloatArray:
    """Finite values in ascending order; an already sorted finite array is returned as is.

    The detector sorts each reference column once and hands the same array to every method,
    so KS and Wasserstein share one copy instead of sorting and storing one each.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size and bool(np.all(x[1:] >= x[:-1])) and np.isfinite(x[0]) and np.isfinite(x[-1]):
        return x
    x = np.sort(x)
    return x[np.isfinite(x)]


def bin_counts_sorted(sorted_values: FloatArray, edges: FloatArray) -> FloatArray:
    """Counts in bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)`` of a sorted array."""
    cum = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate(([0], cum, [sorted_values.size]))).astype(np.float64)


def chi2_homogeneity(a: FloatArray, b: FloatArray) -> tuple[float, float, int]:
    """Pearson chi-squared test that two count vectors share a distribution: (stat, p, dof)."""
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    n, m = a.sum(), b.sum()
    if a.size < 2 or n == 0 or m == 0:
        return 0.0, 1.0, 0
    col = a + b
    ea, eb = col * (n / (n + m)), col * (m / (n + m))
    stat = float(np.sum((a - ea) ** 2 / ea) + np.sum((b - eb) ** 2 / eb))
    dof = a.size - 1
    return stat, float(stats.chi2.sf(stat, dof)), dof


def js_distance(p_counts: ArrayLike, q_counts: ArrayLike) -> float:
    """Jensen–Shannon distance, base 2 (0 identical .. 1 disjoint), of two count vectors."""
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    # rel_entr gives 0 * log 0 = 0, so empty bins need no epsilon here.
    js = 0.5 * (special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / np.log(2.0)
    return float(np.sqrt(max(js, 0.0)))


def psi(p_counts: FloatArray, q_counts: FloatArray, eps: float = PSI_EPS) -> float:
    """Population stability index between two count vectors on the same bins."""
    p = np.maximum(p_counts / p_counts.sum(), eps)
    q = np.maximum(q_counts / q_counts.sum(), eps)
    return float(np.sum((q - p) * np.log(q / p)))


# --------------------------------------------------------------------------- registry

REGISTRY: dict[str, dict[str, type[DriftMethod]]] = {"numeric": {}, "categorical": {}}


def register(*feature_types: str) -> Callable[[type[DriftMethod]], type[DriftMethod]]:
    """Class decorator: make a method available under its ``name`` for these feature types."""

    def deco(cls: type[DriftMethod]) -> type[DriftMethod]:
        for t in feature_types:
            REGISTRY[t][cls.name] = cls
        return cls

    return deco


def methods_for(feature_type: str) -> dict[str, type[DriftMethod]]:
    """Registered methods for ``"numeric"`` or ``"categorical"`` features, by name."""
    return dict(REGISTRY[feature_type])


class DriftMethod:
    """Base class: ``fit_profile`` / ``fit`` learn the reference, ``score`` scores a window."""

    name: ClassVar[str]

    def fit_profile(self, feature: Mapping[str, Any]) -> Self:
        """Fit from one feature's entry of a reference profile."""
        raise NotImplementedError

    def fit(self, reference: ArrayLike) -> Self:
        """Fit from raw reference values."""
        raise NotImplementedError

    def score(self, window: FloatArray) -> MethodResult:
        """Score a window (sorted values for numeric features, counts for categorical)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- binned methods


@register("numeric", "categorical")
class PSI(_Binned, DriftMethod):
    """Population stability index on the reference bins, with a chi-squared test on them.

    Reading (Siddiqi 2006): < 0.1 no significant shift, 0.1–0.25 moderate, > 0.25 major. The
    p-value is Pearson's chi-squared homogeneity test on the same bins, so effect size and
    significance are computed on one discretisation.
    """

    name = "psi"

    def score(self, window: FloatArray) -> MethodResult:
        """PSI of the window against the reference bins, and the chi-squared p-value."""
        return self.tested(window, psi)


@register("numeric", "categorical")
class JensenShannon(_Binned, DriftMethod):
    """Jensen–Shannon distance, base 2 (0 identical .. 1 disjoint), on the reference bins."""

    name = "js"

    def score(self, window: FloatArray) -> MethodResult:
        """JS distance between reference and window bin frequencies."""
        counts = self.window_counts(window)
        if counts.sum() == 0:
            return MethodResult(float("nan"), None)
        return MethodResult(js_distance(self.ref_counts_, counts))


@register("categorical")
class ChiSquared(_Binned, DriftMethod):
    """Chi-squared homogeneity test on category counts; the score is Cramér's V (0..1).

    Cramér's V = sqrt(chi2 / (N (min(r, c) - 1))) with r = 2 samples, so sqrt(chi2 / N): the
    test's own effect size, independent of the window size unlike the statistic itself.
    """

    name = "chi2"

    def score(self, window: FloatArray) -> MethodResult:
        """Cramér's V of the reference-vs-window table and the test's p-value."""
        counts = self.window_counts(window)
        if counts.sum() == 0:
            return MethodResult(float("nan"), None)
        stat, p, _ = chi2_homogeneity(self.ref_counts_, counts)
        total = self.ref_counts_.sum() + counts.sum()
        return MethodResult(float(np.sqrt(stat / total)), p)


@register("categorical")
class ShareChange(_Binned, DriftMethod):
    """Total change of the category shares, unseen included: sum of |window - reference| (0..2).

    Each row that changed category counts twice (where it left, where it went), so 0.1 reads
    "5 % of the rows changed category" and a 10-point move of one share scores 0.2. This is the
    decision statistic for categories: PSI weighs a change by log-ratios and reads 0.05 for
    that 10-point move (0.5 -> 0.4 and 0.3 -> 0.4), below any sensible alarm.
    """

    name = "l1"

    def score(self, window: FloatArray) -> MethodResult:
        """Sum of absolute share changes, with the chi-squared test on the same cells."""
        return self.tested(window, share_change)


def share_change(p_counts: FloatArray, q_counts: FloatArray) -> float:
    """L1 distance between the shares of two count vectors on the same cells (0..2)."""
    return float(np.abs(q_counts / q_counts.sum() - p_counts / p_counts.sum()).sum())


def missing_rate_test(reference: tuple[float, float], window: tuple[float, float]) -> MethodResult:
    """Change of a feature's missing rate: ``(present, missing)`` counts of each side.

    The score is the L1 distance of the (present, missing) shares, twice the change of the
    missing share (5 % -> 20 % scores 0.3), read on the same scale as ``l1`` for categories.
    The p-value is the pooled two-proportion z-test, computed as the 2 x 2 chi-squared test
    it equals (z squared is the statistic).
    """
    ref, win = np.asarray(reference, float), np.asarray(window, float)
    if win.sum() == 0 or ref.sum() == 0:
        return MethodResult(float("nan"), None)
    _, p, dof = chi2_homogeneity(ref, win)
    return MethodResult(share_change(ref, win), p if dof else 1.0)


# --------------------------------------------------------------------------- continuous methods


class _Continuous(DriftMethod):
    """Reference as a quantile sketch (profile) or as the sorted raw values (exact)."""

    quantiles_: FloatArray  # reference quantiles at probs_ (profile) or sorted values (raw)
    probs_: FloatArray
    exact_: bool
    std_: float
    n_: int
    continuous_: bool

    def fit_profile(self, feature: Mapping[str, Any]) -> Self:
        """Fit from the feature's quantile sketch (1001 points: CDF resolved to 1/1000)."""
        self.quantiles_ = np.asarray(feature["quantiles"], dtype=np.float64)
        self.probs_ = np.linspace(0.0, 1.0, self.quantiles_.size)
        self.exact_ = False
        self.std_ = float(feature["std"])
        self.n_ = int(feature["n"])
        self.continuous_ = bool(np.all(np.diff(self.quantiles_) > 0))
        return self

    def fit(self, reference: ArrayLike) -> Self:
        """Fit from raw values, kept sorted (not copied if already sorted): exact, O(n) state."""
        self.quantiles_ = sorted_finite(reference)
        self.probs_ = np.empty(0)
        self.exact_ = True
        self.std_ = float(self.quantiles_.std())
        self.n_ = int(self.quantiles_.size)
        self.continuous_ = False
        return self


def _sketch_cdf(
    q: FloatArray, p: FloatArray, x: FloatArray, side: Literal["left", "right"]
) -> FloatArray:
    """Piecewise-linear CDF through (q, p) at ``x``: right-continuous values or left limits.

    Written out rather than np.interp because a discrete feature repeats quantiles (a jump in
    the CDF), where np.interp's result is undefined.
    """
    k = np.searchsorted(q, x, side=side)
    lo = np.clip(k - 1, 0, q.size - 1)
    hi = np.clip(k, 0, q.size - 1)
    span = q[hi] - q[lo]
    frac = np.divide(x - q[lo], span, out=np.zeros_like(x), where=span > 0)
    out = p[lo] + frac * (p[hi] - p[lo])
    out[k == 0] = 0.0
    out[k == q.size] = 1.0
    return np.asarray(out, dtype=np.float64)


def _ecdf_at_own_points(sorted_values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """ECDF of a sorted sample at its own points: right values and left limits (ties aware)."""
    m = sorted_values.size
    if m < 2 or bool(np.all(sorted_values[1:] > sorted_values[:-1])):
        right = np.arange(1, m + 1, dtype=np.float64)
        return right / m, (right - 1.0) / m
    right = np.searchsorted(sorted_values, sorted_values, side="right").astype(np.float64)
    left = np.searchsorted(sorted_values, sorted_values, side="left").astype(np.float64)
    return right / m, left / m


@register("numeric")
class KolmogorovSmirnov(_Continuous):
    """Two-sample Kolmogorov–Smirnov statistic D (0..1) with its asymptotic p-value.

    From the profile the reference CDF is the sketch's piecewise-linear interpolation, so D is
    within ~1/1000 of the exact value; fitted on raw data it equals scipy's ``ks_2samp``.
    """

    name = "ks"

    def score(self, window: FloatArray) -> MethodResult:
        """KS statistic of a sorted window against the reference."""
        m = window.size
        if m == 0:
            return MethodResult(float("nan"), None)
        fw_r, fw_l = _ecdf_at_own_points(window)
        if self.exact_:
            n = self.n_
            # Between window points the window ECDF is flat and the reference's only rises, so
            # the supremum sits at a window point, on its right value or its left limit.
            fr_r = np.searchsorted(self.quantiles_, window, side="right") / n
            fr_l = np.searchsorted(self.quantiles_, window, side="left") / n
        elif self.continuous_:
            # Strictly increasing sketch: a continuous CDF, so the same argument needs only
            # the window points, and left limit equals value.
            n = self.n_
            fr_r = fr_l = np.interp(window, self.quantiles_, self.probs_)
        else:
            n = self.n_
            # Repeated quantiles are jumps of the reference CDF: check the sketch nodes too.
            pts = np.concatenate((window, self.quantiles_))
            fw_r = np.searchsorted(window, pts, side="right") / m
            fw_l = np.searchsorted(window, pts, side="left") / m
            fr_r = _sketch_cdf(self.quantiles_, self.probs_, pts, "right")
            fr_l = _sketch_cdf(self.quantiles_, self.probs_, pts, "left")
        d = float(max(np.max(np.abs(fw_r - fr_r)), np.max(np.abs(fw_l - fr_l))))
        en = n * m / (n + m)
        # Asymptotic Kolmogorov distribution (as scipy's ks_2samp method="asymp"), O(1) per
        # feature; the finite-n kstwo.sf costs ~1 ms each and the p-value is only reported.
        return MethodResult(d, float(special.kolmogorov(np.sqrt(en) * d)))


@register("numeric")
class Wasserstein(_Continuous):
    """Wasserstein-1 (earth mover's) distance divided by the reference standard deviation.

    Dividing by the reference std makes the score unit-free and readable as "shift in
    reference standard deviations": a mean shift of k std moves a distribution by exactly
    W1 = k std, so 0.1 means a 0.1-sigma shift (Evidently's normed Wasserstein does the same).
    The std rather than the IQR because it keeps that reading exact; a constant reference
    (std 0) is normalised by 1 instead.
    """

    name = "wasserstein"

    def score(self, window: FloatArray) -> MethodResult:
        """Normalised W1 between a sorted window and the reference."""
        m = window.size
        if m == 0:
            return MethodResult(float("nan"), None)
        if self.exact_:
            w1 = _wasserstein_exact(self.quantiles_, window)
        else:
            # W1 = integral over u of |F_w^-1(u) - F_r^-1(u)|; the window's quantile function is
            # a step, so evaluate the sketch's at each step's midpoint (error O(1/m)).
            u = (np.arange(m) + 0.5) / m
            w1 = float(np.mean(np.abs(window - np.interp(u, self.probs_, self.quantiles_))))
        scale = self.std_ if self.std_ > 0 else 1.0
        return MethodResult(w1 / scale)


def _wasserstein_exact(ref_sorted: FloatArray, win_sorted: FloatArray) -> float:
    """W1 between two samples: the same sum, term by term, as scipy.stats.wasserstein_distance."""
    both = np.concatenate((ref_sorted, win_sorted))
    # A stable sort of two sorted runs is a linear merge (timsort finds the runs).
    order = np.argsort(both, kind="stable")
    all_values = both[order]
    deltas = np.diff(all_values)
    # Running counts equal searchsorted(..., "right") wherever the next value differs, and
    # where it does not the delta is 0, so the term vanishes either way.
    from_ref = order < ref_sorted.size
    cdf_r = np.cumsum(from_ref)[:-1] / ref_sorted.size
    cdf_w = np.cumsum(~from_ref)[:-1] / win_sorted.size
    return float(np.sum(np.multiply(np.abs(cdf_r - cdf_w), deltas)))
