"""bucket_quantile gives Prometheus's histogram_quantile answers (promql/quantile.go's rules)
for buckets given as bounds and cumulative counts, as the anomaly bands hold them."""

from __future__ import annotations

import math

import pytest

from nexus_ml.monitoring.measurements import bucket_quantile

INF = math.inf
BOUNDS = [0.005, 0.01, 0.025, INF]


def histogram_quantile(q: float, bounds: list[float], cumulative: list[float]) -> float:
    """PromQL's answer: NaN where ``bucket_quantile`` says None."""
    got = bucket_quantile(q, zip(bounds, cumulative, strict=True))
    return math.nan if got is None else got


@pytest.mark.parametrize(
    ("q", "cumulative", "expected"),
    [
        (0.95, [0, 100, 100, 100], 0.005 + 0.005 * 0.95),  # inside the second bucket
        (0.5, [100, 100, 100, 100], 0.005 * 0.5),  # first bucket: from 0
        (0.95, [0, 0, 10, 100], 0.025),  # in +Inf: the highest finite bound
        (0.5, [10, 5, 30, 40], 0.01 + 0.015 * (20 - 10) / 20),  # non-monotonic: raised
        (0.9, [0, 0, 0, 0], math.nan),  # no observations
        (1.5, [1, 1, 1, 1], INF),
        (-0.1, [1, 1, 1, 1], -INF),
    ],
)
def test_known_answers(q: float, cumulative: list[float], expected: float) -> None:
    got = histogram_quantile(q, BOUNDS, cumulative)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-15)


def test_without_an_inf_bucket_there_is_no_answer() -> None:
    assert math.isnan(histogram_quantile(0.5, [0.1, 0.2], [1, 2]))
