"""Reading the service's own histograms as the monitoring views do: known answers."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from nexus_ml.service.views.query import histogram_percentiles

BOUNDS = (0.001, 0.002, 0.005, 0.01)


def _histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    h = Histogram("t_seconds", "test", ["route"], buckets=BOUNDS, registry=registry)
    return registry, h


def test_percentiles_interpolate_within_buckets_like_histogram_quantile() -> None:
    registry, h = _histogram()
    for _ in range(50):
        h.labels("/a").observe(0.0015)  # bucket (0.001, 0.002]
    for _ in range(50):
        h.labels("/a").observe(0.004)  # bucket (0.002, 0.005]
    got = histogram_percentiles(registry.collect(), "t_seconds", ("route",))
    p = got[("/a",)]
    # Rank 50 of 100 is the last of the first bucket: its upper bound.
    assert p.p50 == pytest.approx(0.002)
    # Rank 95: 45 of the 50 in (0.002, 0.005] -> 0.002 + 0.003 * 45/50.
    assert p.p95 == pytest.approx(0.0047)
    assert p.p99 == pytest.approx(0.002 + 0.003 * 49 / 50)
    assert p.mean == pytest.approx((50 * 0.0015 + 50 * 0.004) / 100)  # exact, from _sum
    assert p.max is None  # a histogram does not keep its maximum


def test_groups_without_observations_are_left_out_and_inf_is_the_top_bound() -> None:
    registry, h = _histogram()
    h.labels("/idle")  # a child that never observed anything
    h.labels("/slow").observe(30.0)  # beyond every finite bound: the +Inf bucket
    got = histogram_percentiles(registry.collect(), "t_seconds", ("route",))
    assert set(got) == {("/slow",)}
    assert got[("/slow",)].p50 == pytest.approx(0.01)  # the highest finite bound, as PromQL
    assert got[("/slow",)].mean == pytest.approx(30.0)
