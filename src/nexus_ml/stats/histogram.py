"""Prometheus's ``histogram_quantile`` over classic buckets, in Python.

The same steps as Prometheus 2.42's ``bucketQuantile`` (promql/quantile.go): the buckets sorted
by upper bound, the last must be ``+Inf``; cumulative counts made monotonic; the rank
``q × total`` located in the first bucket whose cumulative count reaches it; a rank in the
``+Inf`` bucket answers the highest finite bound; otherwise linear interpolation inside the
bucket, from 0 for the first bucket (when its bound is positive). So the in-process P95 of the
anomaly bands is the number Prometheus computes from the same counts, not an approximation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float:
    """The ``q`` quantile of a histogram given by its ascending upper ``bounds`` (the last
    ``inf``) and their cumulative counts; NaN without observations, as Prometheus answers."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(bounds) < 2 or not math.isinf(bounds[-1]) or len(bounds) != len(cumulative):
        return math.nan
    counts = list(cumulative)
    for i in range(1, len(counts)):  # ensureMonotonic: a lower count is raised to the last max
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total == 0:
        return math.nan
    rank = q * total
    # sort.Search over all but the +Inf bucket: the first with a cumulative count >= rank.
    b = bisect.bisect_left(counts, rank, 0, len(counts) - 1)
    if b == len(counts) - 1:
        return float(bounds[-2])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    start, end, count = 0.0, float(bounds[b]), float(counts[b])
    if b > 0:
        start = float(bounds[b - 1])
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count)
