"""Fixed histogram bins of the stored aggregates, and percentiles read back from them.

Why 5 % and 40 bins: each occupied bin is one row per model, version and minute, and a window's
edges are read from minute rows; at 150 predictions a minute, 2 % bins filled ~120 rows a
minute (as many bin rows as predictions, measured), 5 % bins ~25. Prometheus' default latency
buckets are far coarser (a factor of 2 to 2.5 between bounds).

Latency bins are logarithmic (the DDSketch mapping, Masson et al., VLDB 2019): bin ``i`` holds
``(GAMMA**(i-1), GAMMA**i]`` with ``GAMMA = (1 + ALPHA) / (1 - ALPHA)``, and its representative
value ``2 GAMMA**i / (GAMMA + 1)`` is within a relative ``ALPHA`` of every value in it. The index
is unbounded (no overflow bin), so the bound holds for every latency from ``LATENCY_FLOOR`` up;
below the floor (sub-microsecond) the estimate is 0 and the error at most ``LATENCY_FLOOR``.

Confidence bins are 40 equal bins on [0, 1]: the 20 edges numpy's ``histogram(bins=20,
range=(0, 1))`` uses, each interval cut in two (so the 20-bin histogram the API shows is a sum
of fine bins, exact even for values lying on an edge, e.g. 0.15 from a 20-tree forest). The
representative is the bin's middle: a confidence percentile is within ``CONFIDENCE_ERROR``
(half a bin) of the exact one.

Why these bounds hold for numpy's ``method="linear"`` percentile: it interpolates between two
order statistics ``x_a`` and ``x_b`` with weight ``f``; the estimate interpolates their bins'
representatives with the same weight, so its error is at most ``(1-f) e_a + f e_b``, each term
within the bin's bound. Written by hand (no dependency): ~60 lines, and the bins must be the same
in every process that writes them, which a versioned sketch library would not promise.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping

import numpy as np

ALPHA = 0.05
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
LATENCY_FLOOR = 1e-6
# Index of the bin that holds [0, LATENCY_FLOOR]; every bin above has a larger index.
_FLOOR_INDEX = math.ceil(math.log(LATENCY_FLOOR) / _LOG_GAMMA) - 1

COARSE_CONFIDENCE_BINS = 20
_SPLIT = 2
CONFIDENCE_BINS = COARSE_CONFIDENCE_BINS * _SPLIT
CONFIDENCE_ERROR = 0.5 / CONFIDENCE_BINS
_COARSE_EDGES = np.linspace(0.0, 1.0, COARSE_CONFIDENCE_BINS + 1)
CONFIDENCE_EDGES: list[float] = [
    float(_COARSE_EDGES[k] + j * (_COARSE_EDGES[k + 1] - _COARSE_EDGES[k]) / _SPLIT)
    for k in range(COARSE_CONFIDENCE_BINS)
    for j in range(_SPLIT)
] + [1.0]


def latency_bin(seconds: float) -> int:
    """The latency bin of ``seconds`` (values at or below the floor share one bin)."""
    if seconds <= LATENCY_FLOOR:
        return _FLOOR_INDEX
    return max(_FLOOR_INDEX + 1, math.ceil(math.log(seconds) / _LOG_GAMMA))


def latency_value(index: int) -> float:
    """The representative latency of bin ``index``."""
    if index <= _FLOOR_INDEX:
        return 0.0
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


def confidence_bin(value: float) -> int:
    """The fine confidence bin of ``value`` (numpy's rule: [e_i, e_i+1), the last one closed)."""
    return min(max(bisect.bisect_right(CONFIDENCE_EDGES, value) - 1, 0), CONFIDENCE_BINS - 1)


def confidence_value(index: int) -> float:
    """The representative confidence of fine bin ``index`` (its middle)."""
    return (CONFIDENCE_EDGES[index] + CONFIDENCE_EDGES[index + 1]) / 2.0


def coarse_confidence(counts: Mapping[int, int]) -> list[int]:
    """The 20-bin confidence histogram from the fine bins' counts."""
    out = [0] * COARSE_CONFIDENCE_BINS
    for index, n in counts.items():
        out[index // _SPLIT] += n
    return out


def coarse_confidence_edges() -> list[float]:
    """The 20-bin histogram's edges (numpy's ``linspace(0, 1, 21)``)."""
    return [round(float(e), 10) for e in _COARSE_EDGES]


def quantiles(
    counts: Mapping[int, int], qs: tuple[float, ...], value_of: Callable[[int], float]
) -> list[float | None]:
    """numpy ``method="linear"`` percentiles (``qs`` in [0, 1]) estimated from bin counts.

    ``value_of(index)`` gives a bin's representative value; bins are ordered by index.
    """
    items = sorted((i, n) for i, n in counts.items() if n > 0)
    total = sum(n for _, n in items)
    if total == 0:
        return [None for _ in qs]
    cumulative = list(np.cumsum([n for _, n in items]))
    out: list[float | None] = []
    for q in qs:
        rank = q * (total - 1)
        lo = math.floor(rank)
        frac = rank - lo
        a = items[bisect.bisect_right(cumulative, lo)][0]
        b = items[bisect.bisect_right(cumulative, min(lo + 1, total - 1))][0]
        va, vb = value_of(a), value_of(b)
        out.append(va + frac * (vb - va))
    return out
