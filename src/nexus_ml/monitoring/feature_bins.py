"""Per-bin input counters: each answered instance counted once per feature, on the reference bins.

Prometheus adds these counters across every worker and replica, and recording rules compute
drift from them (``render/drift_rules.py``): no job, no lock, no raw rows. The bins are the
model version's reference profile's (``ml.profile``; read here as plain data):

* a numeric feature: label ``i`` is decile bin ``i`` (``edges[i-1] < x <= edges[i]``, open at
  both ends), ``missing`` counts None;
* a category feature: label ``i`` is the ``i``-th category of the profile, ``unseen`` a value
  training never saw, ``missing`` None.

Labels are indices, never the edge or the category itself: a category is a feature value, and
indices keep the label set the profile's, bounded and stable for the life of the version.

Cost: the request path only appends its row (a list append); rows are binned in blocks, one
``searchsorted`` per numeric feature for the whole block, when ``hold`` rows are waiting or when
the service's flush job runs (every ``FLUSH_SECONDS``), and the counts are added to metric
children resolved once, at load. ``benchmarks/bench_feature_bins.py`` measures it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

MISSING, UNSEEN = "missing", "unseen"
# Rows waiting before the request that brings the last one bins them all: a block this long
# costs ~0.5 µs a row to bin and count (benchmarks/bench_feature_bins.py), and holds ~250 KB
# of a 30-feature model's values for at most FLUSH_SECONDS.
HOLD_ROWS = 1024
# The service's flush job runs this often, so an idle worker's counts are at most this late.
FLUSH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class FeatureBins:
    """One feature's bins, from its profile entry: labels, reference shares, lookup."""

    feature: str
    column: int  # the feature's position in the model's schema (a row's index)
    labels: tuple[str, ...]
    # Share of the reference rows in each bin (missing included, unseen 0), same order.
    reference: tuple[float, ...]
    edges: NDArray[np.float64] | None  # inner edges of a numeric feature
    categories: Mapping[str, int] | None  # category -> bin index of a category feature
    # Numeric: distance from edge i to edge i+1 in reference standard deviations, for the
    # bins 0 .. len(edges) - 2 (the binned Wasserstein distance weighs by it).
    widths: tuple[float, ...] = ()

    @property
    def missing(self) -> int:
        """Index of the missing bin."""
        return self.labels.index(MISSING)

    def count(self, column: Sequence[Any] | NDArray[Any]) -> NDArray[np.int64]:
        """Rows of ``column`` (this feature's values in a block) in each bin."""
        n_bins = len(self.labels)
        if self.edges is not None:
            values = np.asarray(column, dtype=np.float64) if _floats(column) else _as_floats(column)
            idx = np.searchsorted(self.edges, values, side="left")
            idx[np.isnan(values)] = self.missing
        else:
            lookup = self.categories
            if lookup is None:  # pragma: no cover - the constructor sets one of the two
                raise RuntimeError("a feature's bins have neither edges nor categories")
            unseen, missing = n_bins - 2, n_bins - 1
            idx = np.fromiter(
                (
                    missing if v is None else lookup.get(v if type(v) is str else str(v), unseen)
                    for v in column
                ),
                dtype=np.intp,
                count=len(column),
            )
        return np.bincount(idx, minlength=n_bins)


def _floats(column: Sequence[Any] | NDArray[Any]) -> bool:
    return isinstance(column, np.ndarray) and column.dtype.kind == "f"


def _as_floats(column: Sequence[Any] | NDArray[Any]) -> NDArray[np.float64]:
    """A numeric column of an object block (numbers and None) as floats, None as NaN."""
    return np.array([math.nan if v is None else v for v in column], dtype=np.float64)


def feature_bins(profile: Mapping[str, Any] | None, names: Sequence[str]) -> list[FeatureBins]:
    """The bins of each schema feature (``names``, in order) that the profile describes."""
    features = (profile or {}).get("features") or {}
    out = []
    for column, name in enumerate(names):
        feat = features.get(name)
        if feat is None:
            continue
        n_missing = int(feat.get("n_missing", 0))
        if feat["type"] == "categorical":
            cats = [str(c) for c in feat["categories"]]
            counts = [*map(float, feat["category_counts"]), 0.0, float(n_missing)]
            labels = (*map(str, range(len(cats))), UNSEEN, MISSING)
            out.append(
                FeatureBins(
                    feature=name,
                    column=column,
                    labels=labels,
                    reference=_shares(counts),
                    edges=None,
                    categories={c: i for i, c in enumerate(cats)},
                )
            )
            continue
        edges = np.asarray(feat["bin_edges"], dtype=np.float64)
        counts = [*map(float, feat["bin_counts"]), float(n_missing)]
        std = float(feat.get("std") or 0.0)
        scale = std if std > 0 else 1.0
        out.append(
            FeatureBins(
                feature=name,
                column=column,
                labels=(*map(str, range(edges.size + 1)), MISSING),
                reference=_shares(counts),
                edges=edges,
                categories=None,
                widths=tuple(float(w) for w in np.diff(edges) / scale),
            )
        )
    return out


def _shares(counts: Sequence[float]) -> tuple[float, ...]:
    total = sum(counts)
    return tuple(c / total if total else 0.0 for c in counts)


Inc = Callable[[float], None]


class BinCounter:
    """Counts one model version's answered instances per feature and bin.

    ``children[f][b]`` is the ``inc`` of the counter child of feature ``f``'s bin ``b``,
    resolved once. ``add`` keeps the row; ``flush`` bins every kept row and adds the counts.
    """

    def __init__(
        self,
        bins: Sequence[FeatureBins],
        children: Sequence[Sequence[Inc]],
        *,
        hold: int = HOLD_ROWS,
    ) -> None:
        self._bins = list(bins)
        self._children = [list(c) for c in children]
        self._hold = max(1, hold)
        # One-row requests and batches apart: np.array of equal rows is one C loop, where
        # vstack would reshape each row in Python.
        self._rows: list[NDArray[Any]] = []
        self._blocks: list[NDArray[Any]] = []
        self._waiting = 0
        self._enabled = bool(self._bins)

    def add(self, row: NDArray[Any]) -> None:
        """One answered instance (its values in schema order; NaN or None for missing)."""
        if self._enabled:
            self._rows.append(row)
            self._waiting += 1
            if self._waiting >= self._hold:
                self.flush()

    def add_many(self, X: NDArray[Any]) -> None:
        """A batch's answered instances (rows in schema order)."""
        if self._enabled and len(X):
            self._blocks.append(X)
            self._waiting += len(X)
            if self._waiting >= self._hold:
                self.flush()

    @property
    def waiting(self) -> int:
        """Rows kept and not yet counted."""
        return self._waiting

    def flush(self) -> None:
        """Bin every kept row and add the counts to the counters."""
        rows, blocks = self._rows, self._blocks
        self._rows, self._blocks, self._waiting = [], [], 0
        if rows:
            blocks.append(_stack(rows))
        if not blocks:
            return
        X = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        for fb, incs in zip(self._bins, self._children, strict=True):
            counts = fb.count(X[:, fb.column])
            for b in np.flatnonzero(counts).tolist():
                incs[b](float(counts[b]))


def _stack(rows: list[NDArray[Any]]) -> NDArray[Any]:
    """Equal-length rows as one 2-D block (an object block when any row holds categories)."""
    if all(r.dtype.kind == "f" for r in rows):
        return np.array(rows, dtype=np.float64)
    out = np.empty((len(rows), rows[0].size), dtype=object)
    out[:] = rows
    return out
