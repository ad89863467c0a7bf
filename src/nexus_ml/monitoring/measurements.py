"""In-process :class:`Measurements` from the service's own metrics, computed as PromQL would.

The evaluator must agree with the Prometheus rules in ``rules.py``, so every number here is
the rule's expression evaluated over periodic snapshots of ``registry.collect()`` (or of a
``MultiProcessCollector``, which already sums the workers):

* ``rate``/``increase``: the snapshots in the window ``(now - range, now]`` (left-open, as
  in Prometheus 3); increase is the newest minus the oldest of those, reset-corrected
  (a drop is a reset, the post-reset value is added), and rate is that increase divided by
  the time between the two snapshots. There is no extrapolation to the window's edges:
  with snapshots every 15 s the difference is at most one interval, and when the history
  is shorter than the window (the service just started) the rate is the one over the span
  we have, where Prometheus would divide by the whole range and read low for a while.
  Fewer than two snapshots in the window means "not measured" (``None``/empty).
* A counter series first seen after the window's oldest snapshot counts from 0: that
  snapshot proves it did not exist yet. Prometheus instead misses the increment that
  created a series, which is why the api creates the series the alerts read at 0 up front
  (then both paths agree). A series that vanishes keeps its last total (no increase), and
  its return is judged like any sample, exactly as Prometheus judges a gap.
* ``histogram_quantile``: Prometheus's ``bucketQuantile`` on the summed bucket increases.
* Gauges: ``max by`` over the newest snapshot, if it is within the 5 m lookback. A NaN
  child (a value the quality job withdrew) is left out: PromQL's ``max`` skips NaN unless
  every child is NaN, and then every comparison with it is false, so neither path fires on
  it (the rules filter with ``>= 0`` where an absent value falls back to another).
* Ranges are the rules' own: fixed (5m, 15m, 1h) or, where the rule takes its range from a
  threshold (``db_connection_errors_window``), that threshold.
"""

from __future__ import annotations

import bisect
import math
import re
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import Metric

from nexus_ml.monitoring.alerts import Bounded, DriftReading, Measurements
from nexus_ml.monitoring.alerts.clinical import POSITIVE
from nexus_ml.monitoring.alerts.model import DRIFT_DECISION
from nexus_ml.thresholds import Thresholds

__all__ = ["LOOKBACK_SECONDS", "MetricHistory", "bucket_quantile"]

# Prometheus's default lookback: an instant query ignores samples older than this.
LOOKBACK_SECONDS = 300.0
_CUMULATIVE_TYPES = frozenset({"counter", "histogram", "summary"})
# `_created` is a timestamp, not a count; it would only waste a third of each snapshot.
_CUMULATIVE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
_5XX = re.compile(r"5..")
_NAN = math.nan


def _is_5xx(labels: Mapping[str, str]) -> bool:
    return _5XX.fullmatch(labels.get("status", "")) is not None  # PromQL's status=~"5.."


def _is_connection(labels: Mapping[str, str]) -> bool:
    return labels.get("error_type") == "connection"


def _is_failure(labels: Mapping[str, str]) -> bool:
    return labels.get("outcome") == "failure"


Labels = tuple[tuple[str, str], ...]
Window = tuple[int, int]  # positions of the oldest and newest snapshot in the window
_Where = Callable[[Mapping[str, str]], bool] | None


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus's ``histogram_quantile`` on cumulative (upper bound, count) pairs.

    ``None`` where PromQL gives NaN: no observations, no ``+Inf`` bucket, fewer than two
    buckets, q = 0 over an empty lowest bucket. The lowest bucket's lower bound is 0 (unless
    its upper bound is <= 0), a quantile in the ``+Inf`` bucket is the highest finite bound.
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count  # Prometheus coalesces equal bounds
    bounds = sorted(merged)
    if not bounds or bounds[-1] != math.inf or len(bounds) < 2:
        return None
    counts = [merged[b] for b in bounds]
    # Float noise and buckets read at slightly different moments can break monotonicity;
    # like Prometheus, take the envelope so the search below stays meaningful.
    for i in range(1, len(counts)):
        counts[i] = max(counts[i], counts[i - 1])
    observations = counts[-1]
    if observations <= 0:
        return None
    rank = q * observations
    b = bisect.bisect_left(counts, rank, 0, len(counts) - 1)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, count = 0.0, counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:
        # Only q = 0 over an empty lowest bucket gets here (a later bucket is chosen only
        # when it holds the rank): PromQL divides 0 by 0 there and answers NaN.
        return None
    return start + (bounds[b] - start) * (rank / count)


def _pairs(values: Mapping[tuple[str, ...], float]) -> dict[tuple[str, str], float]:
    return {(k[0], k[1]): v for k, v in values.items()}


class MetricHistory:
    """Compact snapshots of the ``ml_*`` samples over the last hour, queried like PromQL.

    Each snapshot is an ``array('d')`` indexed by series position (NaN: absent), so an hour
    of 15 s snapshots of 2,000 series costs about 4 MB. Counters are stored as running,
    reset-corrected totals, so any increase is one subtraction between two snapshots.
    """

    def __init__(self, *, max_age_seconds: float = 3900.0) -> None:
        self.max_age_seconds = max_age_seconds
        self._times: list[float] = []
        self._snaps: list[array[float]] = []
        self._positions: dict[tuple[str, Labels], int] = {}  # label order as collected
        self._canonical: dict[tuple[str, Labels], int] = {}  # sorted labels
        self._labels: list[dict[str, str]] = []
        self._by_name: dict[str, list[int]] = {}
        self._raw: list[float] = []  # last collected value of each counter series
        self._totals: array[float] = array("d")  # running totals; NaN for gauges

    def record(self, families: Iterable[Metric], now: float) -> None:
        """Store one snapshot of the ``ml_*`` samples in ``families``, taken at ``now``."""
        if self._times and now <= self._times[-1]:
            # The wall clock stepped back: snapshots "from the future" would break windows.
            # A snapshot at the very instant of the last replaces it: one sample per instant,
            # as in a Prometheus series (two would make a window with no time to divide by).
            cut = bisect.bisect_left(self._times, now)
            del self._times[cut:], self._snaps[cut:]
        totals, raw = self._totals, self._raw
        snap = array("d", totals)  # counters carried forward, gauges absent until seen
        for family in families:
            if not family.name.startswith("ml_"):
                continue
            cumulative = family.type in _CUMULATIVE_TYPES
            for sample in family.samples:
                name = sample.name
                if cumulative and not name.endswith(_CUMULATIVE_SUFFIXES):
                    continue
                pos = self._position(name, sample.labels)
                if pos == len(snap):
                    snap.append(_NAN)
                value = sample.value
                if not cumulative:
                    snap[pos] = value
                    continue
                prev = raw[pos]
                if math.isnan(prev):
                    total = value  # a new series: it was 0 before it existed
                elif value >= prev:
                    total = totals[pos] + value - prev
                else:
                    total = totals[pos] + value  # a reset: the process started again at 0
                totals[pos] = snap[pos] = total
                raw[pos] = value
        self._times.append(now)
        self._snaps.append(snap)
        cut = bisect.bisect_left(self._times, now - self.max_age_seconds)
        if cut:
            del self._times[:cut], self._snaps[:cut]

    def _position(self, name: str, labels: dict[str, str]) -> int:
        key = (name, tuple(labels.items()))
        pos = self._positions.get(key)
        if pos is None:
            # Two collectors may order labels differently; one series, one position.
            canonical = (name, tuple(sorted(labels.items())))
            pos = self._canonical.get(canonical)
            if pos is None:
                pos = len(self._labels)
                self._canonical[canonical] = pos
                self._labels.append(dict(labels))
                self._by_name.setdefault(name, []).append(pos)
                self._raw.append(_NAN)
                self._totals.append(_NAN)
            self._positions[key] = pos
        return pos

    # -- queries -------------------------------------------------------------

    def _window(self, now: float, seconds: float) -> Window | None:
        newest = bisect.bisect_right(self._times, now) - 1
        oldest = bisect.bisect_right(self._times, now - seconds)
        return (oldest, newest) if 0 <= oldest < newest else None

    def _span(self, window: Window) -> float:
        return self._times[window[1]] - self._times[window[0]]

    def _increase(
        self,
        name: str,
        window: Window,
        by: Sequence[str] = (),
        where: _Where = None,
    ) -> dict[tuple[str, ...], float]:
        """``sum by (<by>) (increase(<name>[window]))`` restricted to series ``where`` holds."""
        old, new = self._snaps[window[0]], self._snaps[window[1]]
        out: dict[tuple[str, ...], float] = {}
        for pos in self._by_name.get(name, ()):
            end = new[pos] if pos < len(new) else _NAN
            if math.isnan(end):
                continue  # born after the window's end
            labels = self._labels[pos]
            if where is not None and not where(labels):
                continue
            start = old[pos] if pos < len(old) else _NAN
            group = tuple(labels.get(k, "") for k in by)
            out[group] = out.get(group, 0.0) + end - (0.0 if math.isnan(start) else start)
        return out

    def _total(self, name: str, window: Window | None, where: _Where = None) -> float | None:
        return None if window is None else sum(self._increase(name, window, (), where).values())

    def _gauge(self, name: str, now: float, by: Sequence[str] = ()) -> dict[tuple[str, ...], float]:
        """``max by (<by>) (<name>)`` at ``now``, honouring the lookback."""
        newest = bisect.bisect_right(self._times, now) - 1
        if newest < 0 or now - self._times[newest] > LOOKBACK_SECONDS:
            return {}
        snap = self._snaps[newest]
        out: dict[tuple[str, ...], float] = {}
        for pos in self._by_name.get(name, ()):
            value = snap[pos] if pos < len(snap) else _NAN
            if not math.isnan(value):
                group = tuple(self._labels[pos].get(k, "") for k in by)
                out[group] = max(value, out.get(group, -math.inf))
        return out

    def _scalar(self, name: str, now: float) -> float | None:
        return self._gauge(name, now).get(())

    def _per_model(self, name: str, now: float) -> dict[str, float]:
        return {k[0]: v for k, v in self._gauge(name, now, ("model",)).items()}

    def _bounded(self, name: str, now: float) -> dict[tuple[str, str, str], Bounded]:
        """``<name>`` with its ``_lower``/``_upper`` bounds, by (model, class, segment)."""
        by = ("model", "class", "segment")
        value, lower, upper = (self._gauge(name + s, now, by) for s in ("", "_lower", "_upper"))
        return {
            (k[0], k[1], k[2]): Bounded(v, lower.get(k), upper.get(k)) for k, v in value.items()
        }

    def _quantiles(self, name: str, q: float, window: Window | None) -> dict[str, float]:
        """``histogram_quantile(q, sum by (model, le) (rate(<name>_bucket[window])))``."""
        if window is None:
            return {}
        per_model: dict[str, list[tuple[float, float]]] = {}
        for (model, le), inc in self._increase(f"{name}_bucket", window, ("model", "le")).items():
            per_model.setdefault(model, []).append((float(le), inc))
        out = {}
        for model, buckets in per_model.items():
            value = bucket_quantile(q, buckets)
            if value is not None:
                out[model] = value
        return out

    def measurements(
        self, models: Sequence[str], now: float, *, thresholds: Thresholds | None = None
    ) -> Measurements:
        """Every field of :class:`Measurements` the history can give at ``now``.

        ``models`` are the loaded models: ``prediction_rate_by_model`` has each of them
        (zeros included, as UnbalancedPredictions counts loaded models) and only them.
        ``thresholds`` (default: the shipped defaults) set the ranges that are thresholds
        themselves, as in the rules: ``db_connection_errors_window``.
        """
        t = thresholds if thresholds is not None else Thresholds()
        w5, w15, w1h = (self._window(now, s) for s in (300.0, 900.0, 3600.0))
        w_db = self._window(now, t.db_connection_errors_window)
        requests = self._total("ml_api_requests_total", w5)
        errors = self._total("ml_api_requests_total", w5, _is_5xx)
        failures: dict[str, float] = {}
        rejected: dict[str, float] = {}
        by_model: dict[str, float] = {}
        prediction_rate = None
        if w1h is not None:
            runs = self._increase("ml_model_training_runs_total", w1h, ("model",), _is_failure)
            failures = {k[0]: v for k, v in runs.items()}
            lost = self._increase("ml_db_records_rejected_total", w1h, ("model",))
            rejected = {k[0]: v for k, v in lost.items()}
            span = self._span(w1h)
            served = self._increase("ml_model_predictions_total", w1h, ("model",))
            prediction_rate = sum(served.values()) / span
            by_model = {m: served.get((m,), 0.0) / span for m in models}
        scores = self._gauge("ml_data_drift_score", now, ("model", "feature", "method"))
        by_segment = ("model", "segment")
        detected = self._gauge("ml_data_drift_detected", now, ("model", "feature"))
        return Measurements(
            cpu_percent=self._scalar("ml_system_cpu_usage_percent", now),
            memory_ratio=self._scalar("ml_system_memory_usage_ratio", now),
            memory_bytes=self._scalar("ml_system_memory_usage_bytes", now),
            disk_ratio=self._scalar("ml_system_disk_usage_ratio", now),
            request_rate=None if requests is None or w5 is None else requests / self._span(w5),
            error_rate=None if errors is None or w5 is None else errors / self._span(w5),
            # 0/0 is NaN in PromQL: no requests means the ratio is not measured.
            error_ratio=errors / requests if errors is not None and requests else None,
            latency_p95=self._quantiles("ml_model_prediction_duration_seconds", 0.95, w5),
            median_confidence=self._quantiles("ml_model_confidence_score", 0.5, w15),
            accuracy=self._per_model("ml_model_accuracy", now),
            accuracy_samples=self._per_model("ml_model_accuracy_samples", now),
            holdout_accuracy=self._per_model("ml_model_holdout_accuracy", now),
            recall=self._bounded("ml_model_recall", now),
            precision=self._bounded("ml_model_precision", now),
            calibration_error=_pairs(self._gauge("ml_model_calibration_error", now, by_segment)),
            labelled_samples=_pairs(self._gauge("ml_model_labelled_samples", now, by_segment)),
            baseline={
                (k[0], k[1], k[2]): v
                for k, v in self._gauge(
                    "ml_model_baseline", now, ("model", "metric", "class")
                ).items()
            },
            # `max by (job, model, class) (ml_model_positive_class) == 1` in the rule.
            positive_classes=frozenset(
                (k[0], k[1])
                for k, v in self._gauge(POSITIVE, now, ("model", "class")).items()
                if v == 1
            ),
            drift={
                (model, feature): DriftReading(
                    score=score, detected=detected.get((model, feature)) == 1.0
                )
                for (model, feature, method), score in scores.items()
                if method == DRIFT_DECISION
            },
            training_failures=failures,
            last_training=self._per_model("ml_model_last_training_timestamp_seconds", now),
            # Not Optional in Measurements: no history yet reads as no errors.
            db_connection_errors=self._total("ml_db_operation_errors_total", w_db, _is_connection)
            or 0.0,
            records_rejected=rejected,
            bundles_refused={
                (k[0], k[1]): v
                for k, v in self._gauge("ml_model_bundle_refused", now, ("model", "reason")).items()
            },
            prediction_rate=prediction_rate,
            prediction_rate_by_model=by_model,
            now=now,
        )
