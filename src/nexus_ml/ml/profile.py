"""Reference profile: a compact, JSON-serialisable summary of training data (no raw rows).

The profile is what drift, data-quality and performance-estimation monitoring compare live
traffic against. It holds, per feature: n, mean, std, min, max, a 1001-point quantile sketch
(the reference CDF to within 1/1000, so a Kolmogorov–Smirnov statistic computed from it is within
~0.001 of the exact two-sample value), and decile histogram bins for PSI / Jensen–Shannon /
chi-squared. Categorical features keep their category counts instead. It also holds class
balance and the confidence distribution with a calibration map for CBPE.

Layout (``PROFILE_VERSION`` 1)::

    {"version": 1, "n_samples": int, "feature_names": [...],
     "features": {name: {"type": "numeric", "n", "n_missing", "mean", "std", "min", "max",
                         "quantiles": [1001 floats at probs 0, 0.001, ..., 1],
                         "bin_edges": [inner edges], "bin_counts": [len(bin_edges) + 1 ints]}
                  | {"type": "categorical", "n", "n_missing",
                     "categories": [str, ...], "category_counts": [int, ...]}},
     "class_balance": {"classes": [...], "counts": [...]} | None,
     "confidence": {"n", "mean", "bin_edges": [0, 0.05, ..., 1], "bin_counts",
                    "accuracy", "correct_counts",            # when ``correct`` is given
                    "calibration": {"x": [...], "y": [...]} | None} | None}

Histogram bins are open at both ends: bin ``i`` holds ``edges[i-1] < x <= edges[i]`` with
``edges[-1] = -inf`` and ``edges[k] = +inf`` implied, so a window value outside the training
range still lands in an outer bin (and JSON never has to carry an infinity).

Bin edges are tie-aware (see ``decile_gaps``): each sits halfway between two neighbouring
distinct values, and never right beside a value that holds a large share of the data when a
quieter gap lies within 2.5 % of the rows of the decile. An edge beside such a tied value turns
the smallest perturbation of it (a rounding, a recomputed ratio) into a large PSI: that is how
undrifted ``diabetes_risk`` traffic flagged ``s4`` (29 % of its rows on one value, the 10th to
30th percentiles' edge 0.02 std above it).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# One rule for tie-aware decile edges, the profile's and a raw reference's (ml may use stats).
from nexus_ml.stats.drift_methods import TIE_SHARE, decile_gaps

PROFILE_VERSION = 1
N_QUANTILES = 1001
N_BINS = 10
# Columns with fewer distinct values than this get an exact (not float32) sketch.
MAX_DISCRETE = 4096
# Equal-width confidence bins matching the ml_model_confidence_score histogram buckets.
CONFIDENCE_EDGES = np.round(np.linspace(0.0, 1.0, 21), 2)
# Columns per transposed block: a contiguous copy of a few columns at a time keeps the
# extra memory to ~8 MB per column per thread instead of a full 240 MB transpose.
_BLOCK = 4


def build_profile(
    X: ArrayLike,
    feature_names: Sequence[str],
    *,
    y: ArrayLike | None = None,
    classes: Sequence[Any] | None = None,
    confidence: ArrayLike | None = None,
    correct: ArrayLike | None = None,
    categorical: Collection[str] = (),
) -> dict[str, Any]:
    """Summarise ``X`` (n × d) into a JSON-serialisable reference profile without raw rows.

    ``y``/``classes`` give class balance; ``confidence`` (max class probability on the
    holdout) gives the confidence distribution, and with ``correct`` (whether each of those
    holdout predictions was right) a calibration map for confidence-based accuracy estimates.
    Columns named in ``categorical`` are profiled as categorical, and so are the columns of a
    non-numeric array whose values are not all numbers; in an object array (a mixed table)
    ``None`` and NaN count as missing.
    """
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[1] != len(feature_names):
        raise ValueError(f"X must be n x {len(feature_names)}, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("cannot profile an empty array")
    names = [str(f) for f in feature_names]
    cat = set(categorical)
    numeric_dtype = np.issubdtype(arr.dtype, np.number) and not np.issubdtype(
        arr.dtype, np.complexfloating
    )
    if numeric_dtype or arr.dtype != object:
        num_idx = [j for j, f in enumerate(names) if numeric_dtype and f not in cat]
    else:
        # A mixed table (numbers, strings for categories, None for missing): each column not
        # named categorical is numeric when every value present is a number.
        num_idx = [j for j, f in enumerate(names) if f not in cat and _all_numbers(arr[:, j])]
    features: dict[str, dict[str, Any]] = {}
    for j, f in enumerate(names):
        if j not in num_idx:
            features[f] = _categorical_profile(arr[:, j])
    if arr.dtype == object and num_idx:
        numbers = np.array(
            [[np.nan if v is None else v for v in arr[:, j].tolist()] for j in num_idx],
            dtype=np.float64,
        ).T
        profiles = [
            (num_idx[k], p) for k, p in _numeric_profiles(numbers, list(range(len(num_idx))))
        ]
    else:
        profiles = _numeric_profiles(arr, num_idx)
    for j, prof in profiles:
        features[names[j]] = prof
    return {
        "version": PROFILE_VERSION,
        "n_samples": int(arr.shape[0]),
        "feature_names": names,
        "features": {f: features[f] for f in names},
        "class_balance": None if y is None else _class_balance(y, classes),
        "confidence": None if confidence is None else confidence_profile(confidence, correct),
    }


def _numeric_profiles(arr: NDArray[Any], idx: list[int]) -> list[tuple[int, dict[str, Any]]]:
    """Profile numeric columns in blocks, on worker threads (numpy sorts release the GIL)."""
    blocks = [idx[i : i + _BLOCK] for i in range(0, len(idx), _BLOCK)]
    workers = max(1, min(len(blocks), os.cpu_count() or 1, 8))
    if workers == 1:
        return [p for b in blocks for p in _numeric_block(arr, b)]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return [p for res in ex.map(lambda b: _numeric_block(arr, b), blocks) for p in res]


def _numeric_block(arr: NDArray[Any], block: list[int]) -> list[tuple[int, dict[str, Any]]]:
    """Profile a few columns: exact moments in float64, quantile sketch from a float32 sort.

    Sorting dominates the cost; float32 sorts ~1.6x faster than float64 and halves the
    memory. Values are centred on the column mean before the cast, so the sketch keeps ~7
    significant digits of the spread even for features with a large offset (the sketch only
    has to resolve the CDF to 1/1000; min, max, mean and std stay exact float64).
    """
    b = np.array(arr[:, block], dtype=np.float64)  # n x k, rows contiguous: one cheap copy
    if not np.isfinite(b).all():
        return [(j, _numeric_column(np.array(b[:, k]))) for k, j in enumerate(block)]
    n = b.shape[0]
    lo, hi = b.min(axis=0), b.max(axis=0)
    mean = b.mean(axis=0)
    b -= mean
    std = np.sqrt(np.einsum("ij,ij->j", b, b) / n)
    centred = b.astype(np.float32).T.copy()  # k x n, each column contiguous for the sort
    del b
    out = []
    for k, j in enumerate(block):
        col = centred[k]
        col.sort()
        prof = _discrete_sketch(arr[:, j], col, float(mean[k])) or _exact_atoms(
            _sketch(col, n, float(mean[k])), arr[:, j], col, float(mean[k])
        )
        prof.update(mean=float(mean[k]), std=float(std[k]), min=float(lo[k]), max=float(hi[k]))
        # The sketch's ends are the exact extremes (the float32 sort only approximates them).
        prof["quantiles"][0], prof["quantiles"][-1] = float(lo[k]), float(hi[k])
        out.append((j, prof))
    return out


def _node_ranks(n: int) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.intp]]:
    """The sketch's node positions among ``n`` sorted values and the two ranks around each
    (``np.quantile(method="linear")``'s interpolation between them)."""
    pos = np.linspace(0.0, n - 1.0, N_QUANTILES)
    lo = np.floor(pos).astype(np.intp)
    return pos, lo, np.minimum(lo + 1, n - 1)


def _centred32(x: NDArray[Any], mean: float) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """A column in float64 and as the block sorted it: the same float64 subtraction and float32
    cast, so every value finds its own bucket of the float32 sort."""
    col = np.asarray(x, dtype=np.float64)
    return col, (col - mean).astype(np.float32)


def _discrete_sketch(
    x: NDArray[Any], sorted32: NDArray[np.float32], mean: float
) -> dict[str, Any] | None:
    """Exact sketch for a column with few distinct values, or None for a continuous one.

    For a discrete feature (integers, flags, coarse lab values) the float32 rounding would
    move the sketch's nodes off the data values, and a window value then falls on the wrong
    side of a jump of the CDF. With few distinct values we recover each one exactly in
    float64 instead (rounding is monotone, so buckets of equal float32 keep their order).
    """
    changes = sorted32[1:] != sorted32[:-1]
    if np.count_nonzero(changes) >= MAX_DISCRETE:
        return None
    starts = np.concatenate(([0], np.flatnonzero(changes) + 1))
    counts = np.diff(np.append(starts, sorted32.size))
    col, centred = _centred32(x, mean)
    idx = np.searchsorted(sorted32[starts], centred)
    values = np.empty(starts.size)
    values[idx] = col
    return _sketch_from_counts(values, counts)


def _exact_atoms(
    prof: dict[str, Any], x: NDArray[Any], sorted32: NDArray[np.float32], mean: float
) -> dict[str, Any]:
    """Put each heavy value's exact float64 back on the sketch's nodes that fall on it.

    The continuous sketch is read off a float32 sort of the values minus their mean, so a value
    many rows share (a lab value that is exactly 0 in 30 % of rows, spread above otherwise)
    came back a hair off its place (0 as 2.8e-08): a window's zeros then fell below the CDF's
    jump, and KS from the profile read 0.29 (p ≈ 1e-132) for an undrifted window whose raw
    rows give 0.02. A value that holds two nodes or more (a jump of the CDF of at least 1/1000,
    the sketch's resolution) gets its float64 value back on them, when its float32 run holds
    one float64 value only. Found by the sixth mutation round (docs/testing.md).
    """
    _, lo, hi = _node_ranks(sorted32.size)
    node = sorted32[lo]
    on_run = node == sorted32[hi]
    values, nodes = np.unique(node[on_run], return_counts=True)
    heavy = values[nodes >= 2]
    if heavy.size == 0:  # the usual continuous column: nothing to do
        return prof
    col, centred = _centred32(x, mean)
    member = np.isin(centred, heavy)
    run_of = np.searchsorted(heavy, centred[member])
    smallest = np.full(heavy.size, np.inf)
    largest = np.full(heavy.size, -np.inf)
    np.minimum.at(smallest, run_of, col[member])
    np.maximum.at(largest, run_of, col[member])
    q = np.asarray(prof["quantiles"], dtype=np.float64)
    for k in np.flatnonzero(smallest == largest):
        q[on_run & (node == heavy[k])] = smallest[k]
    prof["quantiles"] = q.tolist()
    return prof


def _sketch_from_counts(values: NDArray[np.float64], counts: NDArray[Any]) -> dict[str, Any]:
    """Quantile sketch and decile histogram from distinct sorted values and their counts."""
    cum = np.cumsum(counts)
    n = int(cum[-1])

    def order_stat(rank: NDArray[np.intp]) -> NDArray[np.float64]:
        return values[np.searchsorted(cum, rank, side="right")]

    pos, lo, hi = _node_ranks(n)
    a, b = order_stat(lo), order_stat(hi)
    q = a + (pos - lo) * (b - a)
    i = decile_gaps(values, counts)
    edges = 0.5 * (values[i] + values[i + 1])
    return {
        "type": "numeric",
        "n": n,
        "n_missing": 0,
        "quantiles": q.tolist(),
        "bin_edges": edges.tolist(),
        "bin_counts": np.diff(np.concatenate(([0], cum[i], [n]))).tolist(),
    }


def _numeric_column(col: NDArray[np.float64]) -> dict[str, Any]:
    """Profile one numeric column exactly, dropping non-finite values (the rare slow path)."""
    finite = np.isfinite(col)
    n_missing = int(col.size - np.count_nonzero(finite))
    col = np.sort(col[finite])
    n = int(col.size)
    if n == 0:
        return {
            "type": "numeric",
            "n": 0,
            "n_missing": n_missing,
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "quantiles": [],
            "bin_edges": [],
            "bin_counts": [],
        }
    mean = float(col.mean())
    prof = _sketch(col, n, 0.0)
    prof.update(
        n_missing=n_missing,
        mean=mean,
        std=float(np.sqrt(np.mean(np.square(col - mean)))),
        min=float(col[0]),
        max=float(col[-1]),
    )
    return prof


def _sketch(col: NDArray[np.floating[Any]], n: int, offset: float) -> dict[str, Any]:
    """Quantile sketch and decile histogram of a sorted column (values minus ``offset``)."""
    pos, lo, hi = _node_ranks(n)
    a, b = col[lo].astype(np.float64), col[hi].astype(np.float64)
    q = a + (pos - lo) * (b - a)  # same interpolation as np.quantile(method="linear")
    # Decile edges placed halfway between two neighbouring distinct values: every data value
    # then sits clearly on one side of every edge, so the counts hold in float64 too (a
    # float32 edge landing *on* a value of a discrete feature would otherwise flip it between
    # bins). Deciles that fall on one value collapse.
    unit = max(2, int(np.ceil(TIE_SHARE * n)))
    if n > unit and bool(np.any(col[unit - 1 :] == col[: n - unit + 1])):
        # Some value holds TIE_SHARE of the rows: place the edges by decile_gaps.
        starts = np.flatnonzero(np.concatenate(([True], col[1:] != col[:-1])))
        cum = starts[decile_gaps(col[starts], np.diff(np.append(starts, n))) + 1]
    else:
        # No heavy value (the usual continuous column): decile_gaps keeps the deciles' own
        # gaps, found here without listing a million distinct values.
        at = np.floor(np.linspace(0.1, 0.9, N_BINS - 1) * (n - 1)).astype(np.intp)
        cum = np.unique(np.searchsorted(col, col[at], side="right"))
        cum = cum[cum < n]  # rows at or below each edge
    edges = 0.5 * (col[cum - 1].astype(np.float64) + col[cum].astype(np.float64))
    counts = np.diff(np.concatenate(([0], cum, [n])))
    return {
        "type": "numeric",
        "n": n,
        "n_missing": 0,
        "quantiles": (q + offset).tolist(),
        "bin_edges": (edges + offset).tolist(),
        "bin_counts": counts.tolist(),
    }


def _all_numbers(col: NDArray[Any]) -> bool:
    """True if every value of an object column is a real number or missing (None)."""
    return all(
        v is None or (isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_))
        for v in col.tolist()
    )


def _categorical_profile(col: NDArray[Any]) -> dict[str, Any]:
    """Category counts of one column; None and NaN count as missing."""
    values = [v for v in col.tolist() if v is not None and v == v]  # v != v only for NaN
    cats, counts = np.unique(np.asarray([str(v) for v in values], dtype=object), return_counts=True)
    return {
        "type": "categorical",
        "n": len(values),
        "n_missing": int(col.size - len(values)),
        "categories": [str(c) for c in cats],
        "category_counts": [int(c) for c in counts],
    }


def _class_balance(y: ArrayLike, classes: Sequence[Any] | None) -> dict[str, Any]:
    """Counts per class, in ``classes`` order when given."""
    labels = np.asarray(y)
    order = list(classes) if classes is not None else np.unique(labels).tolist()
    counts = [int(np.count_nonzero(labels == c)) for c in order]
    return {"classes": [_jsonable(c) for c in order], "counts": counts}


def confidence_profile(confidence: ArrayLike, correct: ArrayLike | None = None) -> dict[str, Any]:
    """Confidence histogram and stats, plus a calibration map when ``correct`` is given.

    The calibration map is isotonic regression of correctness on confidence (pool adjacent
    violators), stored as its breakpoints: ``calibrated(c) = np.interp(c, x, y)``. Isotonic is
    the usual choice for a monotone, non-parametric calibration (Zadrozny & Elkan 2002) and is
    compact: at most one point per distinct confidence block.
    """
    c = np.asarray(confidence, dtype=np.float64).ravel()
    counts, _ = np.histogram(np.clip(c, 0.0, 1.0), bins=CONFIDENCE_EDGES)
    out: dict[str, Any] = {
        "n": int(c.size),
        "mean": float(c.mean()) if c.size else None,
        "bin_edges": CONFIDENCE_EDGES.tolist(),
        "bin_counts": counts.tolist(),
        "calibration": None,
    }
    if correct is not None:
        ok = np.asarray(correct, dtype=np.float64).ravel()
        if ok.shape != c.shape:
            raise ValueError("correct must have one entry per confidence value")
        out["accuracy"] = float(ok.mean()) if ok.size else None
        out["correct_counts"] = (
            np.histogram(np.clip(c, 0.0, 1.0), bins=CONFIDENCE_EDGES, weights=ok)[0]
            .round()
            .astype(int)
            .tolist()
        )
        if c.size:
            x, yv = isotonic_breakpoints(c, ok)
            out["calibration"] = {"x": x.tolist(), "y": yv.tolist()}
    return out


def isotonic_breakpoints(
    x: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Non-decreasing least-squares fit of ``y`` on ``x`` (PAV), as interpolation breakpoints."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    # Merge ties in x first (isotonic regression treats them as one weighted point).
    ux, start = np.unique(xs, return_index=True)
    w = np.diff(np.append(start, xs.size)).astype(np.float64)
    sums = np.add.reduceat(ys, start)
    # Pool adjacent violators on a stack of blocks (value, weight, first x, last x).
    vals: list[float] = []
    wts: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for xi, si, wi in zip(ux.tolist(), sums.tolist(), w.tolist(), strict=True):
        v, ww, a = si / wi, wi, xi
        while vals and vals[-1] >= v:
            pv, pw = vals.pop(), wts.pop()
            v = (pv * pw + v * ww) / (pw + ww)
            ww += pw
            a = lo.pop()
            hi.pop()
        vals.append(v)
        wts.append(ww)
        lo.append(a)
        hi.append(xi)
    # Each block is flat from its first to its last x; interpolate between blocks.
    bx = np.array([p for a, b in zip(lo, hi, strict=True) for p in ((a, b) if a != b else (a,))])
    by = np.array(
        [v for a, b, v in zip(lo, hi, vals, strict=True) for _ in ((0, 1) if a != b else (0,))]
    )
    return bx, by


def _jsonable(v: Any) -> Any:
    """Plain Python value for JSON (numpy scalars to int/float/str)."""
    if isinstance(v, np.generic):
        return v.item()
    return v
