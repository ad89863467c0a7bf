"""Shared computations of the monitoring views: model filter, percentiles, metric reads."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.monitoring.measurements import bucket_quantile
from nexus_ml.service.errors import Invalid
from nexus_ml.service.views.results import Percentiles
from nexus_ml.storage import bins
from nexus_ml.storage.aggregates import WindowAggregate


def check_model(models: ModelRegistry, model: str | None) -> list[str]:
    """The models to report on: ``[model]`` if it is loaded (else Invalid), or every loaded one."""
    names = models.names()
    if model is None:
        return names
    if model not in names:
        raise Invalid("model: not a loaded model (see GET /models)", "model")
    return [model]


def finite(value: float | None) -> float | None:
    """``value`` as a float, or None for None/NaN/inf (JSON has no NaN)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def percentiles(values: Iterable[float]) -> Percentiles:
    """P50/P95/P99 (numpy, linear interpolation), mean and max of ``values``."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return Percentiles()
    p50, p95, p99 = np.percentile(arr, [50, 95, 99], method="linear")
    return Percentiles(
        p50=float(p50), p95=float(p95), p99=float(p99), mean=float(arr.mean()), max=float(arr.max())
    )


def binned_percentiles(agg: WindowAggregate | None) -> Percentiles:
    """Latency P50/P95/P99 from the aggregates' bins (within ``bins.ALPHA``), exact mean/max."""
    if agg is None or agg.count == 0:
        return Percentiles(method="bins", relative_error=bins.ALPHA)
    p50, p95, p99 = bins.quantiles(agg.latency_bins, (0.5, 0.95, 0.99), bins.latency_value)
    return Percentiles(
        p50=p50,
        p95=p95,
        p99=p99,
        mean=finite(agg.latency_sum / agg.count),
        max=finite(agg.latency_max),
        method="bins",
        relative_error=bins.ALPHA,
    )


# -- reading the service's own metrics -----------------------------------------------------------


def sample_sums(
    families: Iterable[Any],
    sample_name: str,
    by: tuple[str, ...] = (),
    where: Callable[[Mapping[str, str]], bool] | None = None,
) -> dict[tuple[str, ...], float]:
    """``sum by (<by>) (<sample_name>)`` over the collected samples."""
    out: dict[tuple[str, ...], float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name != sample_name or (where is not None and not where(sample.labels)):
                continue
            key = tuple(sample.labels.get(k, "") for k in by)
            out[key] = out.get(key, 0.0) + sample.value
    return out


def histogram_percentiles(
    families: Iterable[Any], name: str, by: tuple[str, ...]
) -> dict[tuple[str, ...], Percentiles]:
    """Per ``by`` group of histogram ``name``: P50/P95/P99 as ``histogram_quantile`` gives them
    (linear within a bucket, so only as fine as the buckets) and the exact mean (sum / count);
    ``max`` stays None (a histogram does not keep it)."""
    families = list(families)  # read three times below
    buckets = sample_sums(families, f"{name}_bucket", (*by, "le"))
    sums = sample_sums(families, f"{name}_sum", by)
    counts = sample_sums(families, f"{name}_count", by)
    grouped: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for key, count in buckets.items():
        grouped.setdefault(key[:-1], []).append((float(key[-1]), count))
    out = {}
    for key, pairs in sorted(grouped.items()):
        n = counts.get(key, 0.0)
        if n <= 0:
            continue
        p50, p95, p99 = (finite(bucket_quantile(q, pairs)) for q in (0.5, 0.95, 0.99))
        out[key] = Percentiles(
            p50=p50,
            p95=p95,
            p99=p99,
            mean=finite(sums.get(key, 0.0) / n),
            method="histogram_quantile",
        )
    return out


def gauge_max(families: Iterable[Any], name: str, by: str) -> dict[str, float]:
    """``max by (<by>) (<name>)`` over the collected samples."""
    out: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == name:
                key = sample.labels.get(by, "")
                out[key] = max(sample.value, out.get(key, -math.inf))
    return out


def status_classes(families: Iterable[Any]) -> dict[str, int]:
    """Responses counted by ml_api_requests_total, by status class (``2xx``, ``5xx``, ...)."""
    out: dict[str, int] = {}
    for (status,), value in sample_sums(families, "ml_api_requests_total", ("status",)).items():
        cls = f"{status[:1]}xx" if status[:1].isdigit() else "other"
        out[cls] = out.get(cls, 0) + round(value)
    return out


def availability(classes: Mapping[str, int]) -> float | None:
    """Share of responses that are not 5xx; None before the first response."""
    total = sum(classes.values())
    return None if total == 0 else 1.0 - classes.get("5xx", 0) / total
