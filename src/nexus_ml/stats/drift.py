"""Data drift per model: fit on the reference profile once, score each window, decide drift.

The decision must not cry wolf at either end of the window-size range:

* small windows: PSI is biased upwards by sampling noise (E[PSI] ~ (k-1)(1/n + 1/m) for k
  bins), so an effect-size rule alone flags noise — hence a significance test too;
* large windows: any test rejects for trivially small shifts — hence an effect-size rule too;
* many features: 30 tests at 5% would flag one and a half features by chance — hence a
  multiple-testing correction (Benjamini–Hochberg by default, Bonferroni on request).

A feature's distribution is flagged iff its decision statistic exceeds ``threshold`` (the
guide's ``data_drift_high`` 0.1) AND the corrected p-value of the chi-squared homogeneity test
on the same cells is below ``alpha``. The statistic is PSI on the reference's decile bins for
numeric features (its conventional reading matches the guide's 0.1) and the total change of
the category shares (``l1``, unseen categories one cell) for categorical ones: PSI reads 0.05
for a 10-point move of one share, a change a clinician must hear about.

Its missing rate is flagged on its own: the change of the missing share (``missing``: L1 of
the (present, missing) shares, so 5 % -> 20 % scores 0.3) above ``threshold`` AND the
corrected p-value of the two-proportion test below ``alpha``. Both kinds of test share one
Benjamini–Hochberg family. No decision at all is taken below ``min_window`` rows.

Windows arrive as stored predictions' feature values: a column may hold numbers, strings
(categories) and None (missing); ``score`` takes such an object array as well as a float one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nexus_ml.stats.drift_methods import (
    DriftMethod,
    MethodResult,
    methods_for,
    missing_rate_test,
    sorted_finite,
)

# The decision statistic of each feature type (see the module docstring for why they differ).
DECISION_METHODS = {"numeric": "psi", "categorical": "l1"}
DECISION_METHOD = DECISION_METHODS["numeric"]
MISSING = "missing"  # the missing-rate test's key among a feature's scores and p-values
# Among a feature's scores: the statistic its decision compared with the threshold (its type's
# decision statistic, or the missing-rate change when that is larger). DataDriftDetected reads
# it, so one alert covers numbers, categories and missing rates.
DECISION = "decision"


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """Drift of one feature in one window."""

    scores: dict[str, float]
    pvalues: dict[str, float]
    statistic: float  # the decision statistic (PSI for numbers, l1 for categories)
    pvalue: float  # the decision test's raw p-value
    adjusted_pvalue: float  # after the multiple-testing correction
    n: int  # non-missing values of the feature in the window
    drifted: bool  # the distribution or the missing rate changed
    method: str = DECISION_METHOD  # name of the decision statistic
    distribution_drifted: bool = False
    missing_share: float = 0.0  # of the window's rows
    reference_missing_share: float = 0.0
    missing_adjusted_pvalue: float = 1.0
    missing_drifted: bool = False
    # The distribution was tested: the window is decided and holds at least min_window of
    # this feature's values. Scores of a feature not decided rest on too few values to mean
    # anything (a PSI of 7 from two rows): a chart of drift shows decided features only.
    decided: bool = True


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Per-feature drift scores and decisions for one window."""

    window_size: int
    decided: bool
    reason: str
    threshold: float
    alpha: float
    features: dict[str, FeatureDrift] = field(default_factory=dict)

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features judged drifted."""
        return [f for f, d in self.features.items() if d.drifted]

    @property
    def share_drifted(self) -> float:
        """Share of features judged drifted, 0-1 (0 when no decision was taken)."""
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    @property
    def drift_detected(self) -> bool:
        """True if any feature is judged drifted."""
        return bool(self.drifted_features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (NaN scores become None)."""

        def clean(v: float) -> float | None:
            return None if v != v else v

        return {
            "window_size": self.window_size,
            "decided": self.decided,
            "reason": self.reason,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "share_drifted": self.share_drifted,
            "drifted_features": self.drifted_features,
            "features": {
                f: {
                    "scores": {k: clean(v) for k, v in d.scores.items()},
                    "pvalues": {k: clean(v) for k, v in d.pvalues.items()},
                    "statistic": clean(d.statistic),
                    "pvalue": clean(d.pvalue),
                    "adjusted_pvalue": clean(d.adjusted_pvalue),
                    "n": d.n,
                    "drifted": d.drifted,
                    "decided": d.decided,
                    "method": d.method,
                    "distribution_drifted": d.distribution_drifted,
                    "missing": {
                        "share": d.missing_share,
                        "reference_share": d.reference_missing_share,
                        "adjusted_pvalue": clean(d.missing_adjusted_pvalue),
                        "drifted": d.missing_drifted,
                    },
                }
                for f, d in self.features.items()
            },
        }


def adjust_pvalues(
    pvalues: ArrayLike, correction: Literal["bh", "bonferroni"] = "bh"
) -> NDArray[np.float64]:
    """Multiple-testing adjusted p-values (Benjamini–Hochberg step-up or Bonferroni)."""
    p = np.asarray(pvalues, dtype=np.float64)
    k = p.size
    if k == 0:
        return p
    if correction == "bonferroni":
        return np.minimum(p * k, 1.0)
    order = np.argsort(p)
    ranked = p[order] * k / np.arange(1, k + 1)
    # Step-up: each adjusted value is the smallest over itself and all larger ranks.
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(k)
    out[order] = np.minimum(ranked, 1.0)
    return out


class DriftDetector:
    """Fit once on a model's reference profile; ``score`` each window of live features."""

    features_: dict[str, str]  # feature name -> "numeric" | "categorical"
    methods_: dict[str, dict[str, DriftMethod]]
    categories_: dict[str, dict[str, int]]
    missing_: dict[str, tuple[int, int]]  # reference (present, missing) counts

    def __init__(
        self,
        *,
        threshold: float = 0.1,
        alpha: float = 0.05,
        min_window: int = 200,
        correction: Literal["bh", "bonferroni"] = "bh",
        methods: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.threshold = threshold
        self.alpha = alpha
        self.min_window = min_window
        self.correction = correction
        # Default: every registered method for each feature type.
        self.methods = {t: list(methods_for(t)) for t in ("numeric", "categorical")}
        if methods:
            self.methods.update({t: list(v) for t, v in methods.items()})
        for t, names in self.methods.items():
            if DECISION_METHODS[t] not in names:
                names.insert(0, DECISION_METHODS[t])
            unknown = set(names) - set(methods_for(t))
            if unknown:
                raise ValueError(f"unknown {t} drift methods: {sorted(unknown)}")

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any], **kwargs: Any) -> DriftDetector:
        """A detector fitted on ``profile`` (the dict from build_profile)."""
        return cls(**kwargs).fit_profile(profile)

    def fit_profile(self, profile: Mapping[str, Any]) -> Self:
        """Fit every method of every feature from a reference profile dict."""
        self._reset()
        for name in profile["feature_names"]:
            feat = profile["features"][name]
            if not (feat["quantiles"] if feat["type"] == "numeric" else feat["categories"]):
                continue  # a feature never observed in training cannot drift against anything
            self._add(name, feat["type"], feat)
            self.missing_[name] = (int(feat["n"]), int(feat.get("n_missing", 0)))
            if feat["type"] == "categorical":
                self.categories_[name] = {c: i for i, c in enumerate(feat["categories"])}
        return self

    def fit(
        self, reference: ArrayLike, feature_names: Sequence[str], categorical: Sequence[str] = ()
    ) -> Self:
        """Fit from raw reference rows (exact KS/Wasserstein; bins as in the profile)."""
        self._reset()
        ref = np.asarray(reference)
        for j, name in enumerate(feature_names):
            if name in categorical:
                present = [str(v) for v in ref[:, j].tolist() if not _is_missing(v)]
                if not present:
                    continue  # never observed: as fit_profile leaves it out
                cats, counts = np.unique(np.asarray(present, dtype=object), return_counts=True)
                feat = {
                    "type": "categorical",
                    "categories": [str(c) for c in cats],
                    "category_counts": counts.tolist(),
                }
                self._add(name, "categorical", feat)
                self.categories_[name] = {c: i for i, c in enumerate(feat["categories"])}
                self.missing_[name] = (len(present), ref.shape[0] - len(present))
            else:
                raw = _numbers(ref[:, j])
                col = sorted_finite(raw)  # sorted once, shared by every method
                if not col.size:
                    continue  # never observed: as fit_profile leaves it out
                self._add(name, "numeric", col)
                self.missing_[name] = (col.size, int(np.count_nonzero(np.isnan(raw))))
        return self

    def _reset(self) -> None:
        self.features_, self.methods_, self.categories_, self.missing_ = {}, {}, {}, {}

    def _add(self, name: str, ftype: str, reference: Mapping[str, Any] | NDArray[Any]) -> None:
        """Fit each method from a profile entry (a mapping) or from sorted raw values."""
        registry = methods_for(ftype)
        self.features_[name] = ftype
        self.methods_[name] = {
            m: registry[m]().fit_profile(reference)
            if isinstance(reference, Mapping)
            else registry[m]().fit(reference)
            for m in self.methods[ftype]
        }

    def score(
        self,
        window: ArrayLike | Mapping[str, ArrayLike],
        feature_names: Sequence[str] | None = None,
    ) -> DriftReport:
        """Score a window against the reference.

        ``window`` is n × d with columns named by ``feature_names``, of any dtype: a float array
        (NaN missing), or an object array or list of rows holding numbers, strings (categories)
        and None (missing), as stored predictions' features do. Or columns by name (a dict of
        arrays, a pandas DataFrame), each of its own dtype: no object copy of the numbers.
        """
        if not hasattr(self, "features_"):
            raise RuntimeError("DriftDetector is not fitted; call fit_profile() first")
        columns, n_rows = _columns(window, feature_names)
        absent = [f for f in self.features_ if f not in columns]
        if absent:
            raise ValueError(f"window lacks reference features: {absent}")
        results = {}
        for f, t in self.features_.items():
            if t == "categorical":
                column = columns[f]
                values = column.values if isinstance(column, _Owned) else np.asarray(column)
                counts = self._category_counts(f, values)
                results[f] = self._score_feature(f, counts, n_rows - int(counts.sum()))
                continue
            # Sort each numeric column once and share it across methods: the sort is most of a
            # window's cost. The sorted copy never touches the caller's array.
            col = _sorted_numbers(columns[f])
            # NaN sorts last; inf is dropped too (data quality reports both); only NaN (None
            # in an object window) counts as missing.
            finite = np.isfinite(col)
            if finite.all():
                results[f] = self._score_feature(f, col, 0)
            else:
                missing = int(np.count_nonzero(np.isnan(col)))
                results[f] = self._score_feature(f, col[finite], missing)
        return self._decide(n_rows, results)

    def _category_counts(self, name: str, values: NDArray[Any]) -> NDArray[np.float64]:
        """Counts over the reference categories plus one trailing bucket for unseen ones."""
        lookup = self.categories_[name]
        out = np.zeros(len(lookup) + 1)
        if values.dtype.kind in "US":  # strings only: nothing is missing
            cats, counts = np.unique(values, return_counts=True)
            seen: Iterable[tuple[Any, int]] = zip(cats.tolist(), counts.tolist(), strict=True)
        else:
            # Hashing (Counter) rather than sorting: mixed objects do not sort.
            seen = Counter(values.tolist()).items()
        for c, n in seen:
            if not _is_missing(c):
                out[lookup.get(str(c), len(lookup))] += n
        return out

    def _score_feature(self, name: str, values: NDArray[np.float64], n_missing: int) -> _Scored:
        n = int(values.sum()) if self.features_[name] == "categorical" else int(values.size)
        scores = {m: meth.score(values) for m, meth in self.methods_[name].items()}
        scores[MISSING] = missing_rate_test(self.missing_[name], (n, n_missing))
        return _Scored(scores, n, n_missing, DECISION_METHODS[self.features_[name]])

    def _decide(self, window_size: int, results: dict[str, _Scored]) -> DriftReport:
        names = list(results)
        stat = np.array([results[f].scores[results[f].method].score for f in names])
        raw_p = np.array([_p(results[f].scores[results[f].method]) for f in names])
        sizes = np.array([results[f].n for f in names])
        miss = [results[f].scores[MISSING] for f in names]
        miss_stat = np.array([m.score for m in miss])
        miss_p = np.array([_p(m) for m in miss])
        enough = sizes >= self.min_window
        # A missing-rate test is informative once the window is decided and either side has a
        # missing value (both at zero, its p-value is 1 by construction).
        miss_tested = np.array(
            [
                window_size >= self.min_window and (self.missing_[f][1] + results[f].n_missing) > 0
                for f in names
            ],
            dtype=bool,
        )
        # One Benjamini-Hochberg family over every test actually taken in this window.
        family = adjust_pvalues(
            np.concatenate((raw_p[enough], miss_p[miss_tested])), self.correction
        )
        adj, miss_adj = np.ones(len(names)), np.ones(len(names))
        adj[enough] = family[: int(enough.sum())]
        miss_adj[miss_tested] = family[int(enough.sum()) :]
        flags = enough & (stat > self.threshold) & (adj < self.alpha)
        miss_flags = miss_tested & (miss_stat > self.threshold) & (miss_adj < self.alpha)
        decided = window_size >= self.min_window and bool(enough.any() or miss_tested.any())
        if window_size < self.min_window:
            reason = (
                f"window of {window_size} rows is below min_window={self.min_window}: "
                "scores shown, no drift decision taken"
            )
            flags[:] = False
        elif not enough.all():
            few = [f for f, ok in zip(names, enough, strict=True) if not ok]
            reason = (
                f"distributions of features with fewer than {self.min_window} values not "
                f"decided (their missing rates are): {few}"
            )
        else:
            rules = " / ".join(f"{m} ({t})" for t, m in DECISION_METHODS.items())
            reason = (
                f"drifted iff {rules} or the missing-rate change > {self.threshold} and "
                f"{self.correction}-adjusted p < {self.alpha}"
            )
        features = {}
        for i, f in enumerate(names):
            r = results[f]
            ref_present, ref_missing = self.missing_[f]
            scores = {m: res.score for m, res in r.scores.items()}
            # The larger of the two rules' statistics (NaN when neither could be computed):
            # a flagged feature's decision score is then above the threshold.
            scores[DECISION] = float(np.fmax(stat[i], miss_stat[i]))
            features[f] = FeatureDrift(
                scores=scores,
                pvalues={m: res.pvalue for m, res in r.scores.items() if res.pvalue is not None},
                statistic=float(stat[i]),
                pvalue=float(raw_p[i]),
                adjusted_pvalue=float(adj[i]),
                n=int(sizes[i]),
                drifted=bool(flags[i] or miss_flags[i]),
                method=r.method,
                distribution_drifted=bool(flags[i]),
                missing_share=r.n_missing / window_size if window_size else 0.0,
                reference_missing_share=ref_missing / max(1, ref_present + ref_missing),
                missing_adjusted_pvalue=float(miss_adj[i]),
                missing_drifted=bool(miss_flags[i]),
                decided=decided and bool(enough[i]),
            )
        return DriftReport(
            window_size=window_size,
            decided=decided,
            reason=reason,
            threshold=self.threshold,
            alpha=self.alpha,
            features=features,
        )


@dataclass(frozen=True, slots=True)
class _Scored:
    """One feature's method results in one window, before the decision."""

    scores: dict[str, MethodResult]
    n: int  # values present
    n_missing: int
    method: str  # the decision statistic


def _columns(
    window: ArrayLike | Mapping[str, ArrayLike], names: Sequence[str] | None
) -> tuple[Mapping[str, Any], int]:
    """The window's columns by name, and its row count."""
    if names is None:
        if not hasattr(window, "keys"):
            raise ValueError("name the window's columns: feature_names, or pass columns by name")
        cols = {str(f): np.asarray(window[f]) for f in window}  # type: ignore[index, union-attr]
        sizes = {c.shape[0] for c in cols.values()}
        if len(sizes) > 1:
            raise ValueError(f"window columns differ in length: {sorted(sizes)}")
        return cols, sizes.pop() if sizes else 0
    win = np.asarray(window)
    if win.ndim != 2 or win.shape[1] != len(names):
        raise ValueError(f"window must be n x {len(names)}, got {win.shape}")
    if win.dtype.kind in "fiu":
        # One transposed copy (d x n, each column contiguous): sorting its rows in place is
        # cheaper than sorting d strided columns into d new arrays, and the caller's array
        # is never touched.
        block = np.array(win.T, dtype=np.float64, order="C")
        return {f: _Owned(block[j]) for j, f in enumerate(names)}, win.shape[0]
    return {f: win[:, j] for j, f in enumerate(names)}, win.shape[0]


class _Owned:
    """A column copied by ``_columns``: the detector may sort it in place."""

    __slots__ = ("values",)

    def __init__(self, values: NDArray[np.float64]) -> None:
        self.values = values


def _sorted_numbers(column: Any) -> NDArray[np.float64]:
    """A numeric column sorted (NaN last), sorted in place if it is the detector's own copy."""
    if isinstance(column, _Owned):
        column.values.sort()
        return column.values
    return np.sort(_numbers(np.asarray(column)))


def _is_missing(value: Any) -> bool:
    """None or NaN (``v != v`` only for NaN)."""
    return value is None or (isinstance(value, float | np.floating) and value != value)


def _numbers(column: NDArray[Any]) -> NDArray[np.float64]:
    """A column as float64: numbers kept, anything else (None, a string, a bool) NaN."""
    if column.dtype != object:
        return np.asarray(column, dtype=np.float64)
    return np.array(
        [
            float(v)
            if isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
            else np.nan
            for v in column.tolist()
        ],
        dtype=np.float64,
    )


def _p(result: MethodResult) -> float:
    return 1.0 if result.pvalue is None or result.pvalue != result.pvalue else result.pvalue
