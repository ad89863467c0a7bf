"""In-process alert evaluation: the Prometheus alerts, over the service's own measurements.

Where no Prometheus runs, ``/health`` and the API still show active alerts. Names, limits,
``for`` durations and texts come from the same :mod:`nexus_ml.thresholds` objects as the
rules, and each condition below mirrors the PromQL in ``rules.alert_expr`` (same
comparison, same guards). SLO burn-rate alerts and target absence need Prometheus's
history or its scrape, so they exist only there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from nexus_ml.thresholds import (
    ALERTS,
    JOB,
    RUNBOOK_BASE,
    Thresholds,
    fill_template,
    runbook_url,
)

State = Literal["pending", "firing"]
Found = Iterator[tuple[dict[str, str], float]]


@dataclass(frozen=True, slots=True)
class DriftReading:
    """One feature's last drift result: the PSI score and the service's decision."""

    score: float
    detected: bool


@dataclass(frozen=True, slots=True)
class Measurements:
    """A snapshot the api layer fills each tick; ``None``/empty means "not measured"."""

    cpu_percent: float | None = None  # 0-100
    memory_ratio: float | None = None  # 0-1
    memory_bytes: float | None = None
    disk_ratio: float | None = None  # 0-1
    service_up: bool = True  # always true in-process; kept so the condition exists
    request_rate: float | None = None  # requests/s over the last 5 minutes
    error_rate: float | None = None  # 5xx responses/s over the last 5 minutes
    error_ratio: float | None = None  # 5xx share over the last 5 minutes, 0-1
    latency_p95: Mapping[str, float] = field(default_factory=dict)  # model -> s, last 5m
    median_confidence: Mapping[str, float] = field(default_factory=dict)  # model, last 15m
    accuracy: Mapping[str, float] = field(default_factory=dict)  # model -> realised accuracy
    accuracy_samples: Mapping[str, float] = field(default_factory=dict)  # model -> labelled
    drift: Mapping[tuple[str, str], DriftReading] = field(default_factory=dict)  # (model, feat)
    training_failures: Mapping[str, float] = field(default_factory=dict)  # model, last hour
    last_training: Mapping[str, float] = field(default_factory=dict)  # model -> unix seconds
    db_connection_errors: float = 0.0  # over the last db_connection_errors_window
    prediction_rate: float | None = None  # predictions/s over the last hour
    prediction_rate_by_model: Mapping[str, float] = field(default_factory=dict)  # every loaded
    now: float | None = None  # wall-clock unix time of the snapshot (default: time.time())


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """One pending or firing alert, shaped like Prometheus's ``/api/v1/alerts`` entries."""

    name: str
    severity: str
    state: State
    labels: dict[str, str]
    summary: str
    description: str
    runbook_url: str
    value: float
    active_since: float  # evaluator clock (monotonic) when the condition first held
    started_at: datetime  # wall-clock time of the same moment, UTC

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the API."""
        return {
            "name": self.name,
            "severity": self.severity,
            "state": self.state,
            "labels": dict(self.labels),
            "value": self.value,
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook_url,
            },
            "started_at": self.started_at.isoformat(),
        }


def _conditions(m: Measurements, t: Thresholds, instance: str) -> dict[str, Found]:
    """Each alert's breaches as (extra labels, value); mirrors ``rules.alert_expr``."""
    host = {"instance": instance}
    now = m.now if m.now is not None else time.time()

    def when(ok: bool, labels: dict[str, str], value: float | None) -> Found:
        if ok and value is not None:
            yield labels, value

    def per_model(values: Mapping[str, float], test: Callable[[str, float], bool]) -> Found:
        for model, v in sorted(values.items()):
            if test(model, v):
                yield {"model": model}, v

    mem_pct = None if m.memory_ratio is None else m.memory_ratio * 100
    ceiling = t.memory_usage_high_bytes
    mem_bytes_high = ceiling is not None and m.memory_bytes is not None and m.memory_bytes > ceiling
    rates = m.prediction_rate_by_model
    total = sum(rates.values())
    days = t.training_max_age / 86400
    cpu, disk = m.cpu_percent, m.disk_ratio
    return {
        "MLServiceDown": when(not m.service_up, host, 0.0),
        "CriticalCPUUsage": when(cpu is not None and cpu > t.cpu_usage_critical, host, cpu),
        "HighCPUUsage": when(cpu is not None and cpu > t.cpu_usage_high, host, cpu),
        "HighMemoryUsage": when(
            mem_pct is not None and (mem_pct > t.memory_usage_high or mem_bytes_high), host, mem_pct
        ),
        "HighDiskUsage": when(
            disk is not None and disk * 100 > t.disk_usage_high,
            host,
            None if disk is None else disk * 100,
        ),
        "HighErrorRate": when(
            m.error_ratio is not None
            and m.error_rate is not None
            and m.error_ratio > t.error_rate_high
            and m.error_rate > t.error_rate_min_per_second,
            {},
            m.error_ratio,
        ),
        "TrainingFailure": per_model(
            m.training_failures, lambda _, v: v > t.training_failures_high
        ),
        "DatabaseConnectionErrors": when(
            m.db_connection_errors > t.db_connection_errors_high, host, m.db_connection_errors
        ),
        "LowModelAccuracy": per_model(
            m.accuracy,
            lambda model, v: (
                v < t.training_accuracy_low
                and m.accuracy_samples.get(model, 0) >= t.accuracy_min_samples
            ),
        ),
        "HighPredictionLatency": per_model(
            m.latency_p95, lambda _, v: v > t.prediction_latency_high
        ),
        "LowModelConfidence": per_model(
            m.median_confidence, lambda _, v: v < t.model_confidence_low
        ),
        "DataDriftDetected": (
            ({"model": model, "feature": feature}, r.score)
            for (model, feature), r in sorted(m.drift.items())
            if r.score > t.data_drift_high and r.detected
        ),
        "NoRecentTraining": per_model(
            {k: (now - v) / 86400 for k, v in m.last_training.items()}, lambda _, v: v > days
        ),
        # No measurement counts as zero, like the rule's `or 0 * up` branch.
        "LowPredictionVolume": when(
            m.service_up and (m.prediction_rate or 0.0) < t.prediction_volume_low,
            {},
            m.prediction_rate or 0.0,
        ),
        "UnbalancedPredictions": per_model(
            {k: v / total for k, v in rates.items()} if total > 0 else {},
            lambda _, share: (
                share > t.prediction_share_high
                and len(rates) > 1
                and total >= t.prediction_volume_low
            ),
        ),
    }


@dataclass
class _Pending:
    since: float
    started_at: datetime


class AlertEvaluator:
    """Prometheus-like alert states: pending when a condition holds, firing after ``for``."""

    def __init__(
        self,
        thresholds: Thresholds,
        clock: Callable[[], float] = time.monotonic,
        *,
        wall_clock: Callable[[], float] = time.time,
        job: str = JOB,
        instance: str = "local",
        runbook_base: str = RUNBOOK_BASE,
    ) -> None:
        self.thresholds = thresholds
        self._clock, self._wall = clock, wall_clock
        self._job, self._instance, self._runbook_base = job, instance, runbook_base
        self._active: dict[tuple[str, tuple[tuple[str, str], ...]], _Pending] = {}
        self._last: list[ActiveAlert] = []

    def set_thresholds(self, thresholds: Thresholds) -> None:
        """Use new limits from the next evaluation on (pending timers are kept)."""
        self.thresholds = thresholds

    def evaluate(self, measurements: Measurements) -> list[ActiveAlert]:
        """Evaluate every in-process alert once; returns pending and firing alerts."""
        t, now = self.thresholds, self._clock()
        found = _conditions(measurements, t, self._instance)
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        result: list[ActiveAlert] = []
        for spec in ALERTS:
            if not spec.in_process:
                continue
            for extra, value in found[spec.name]:
                labels = {
                    "alertname": spec.name,
                    "severity": spec.severity,
                    "category": spec.category,
                    "job": self._job,
                    **extra,
                }
                key = (spec.name, tuple(sorted(labels.items())))
                seen.add(key)
                pending = self._active.get(key)
                if pending is None:
                    pending = _Pending(now, datetime.fromtimestamp(self._wall(), UTC))
                    self._active[key] = pending
                firing = now - pending.since >= getattr(t, spec.for_key)
                result.append(
                    ActiveAlert(
                        name=spec.name,
                        severity=spec.severity,
                        state="firing" if firing else "pending",
                        labels=labels,
                        summary=fill_template(spec.summary, spec, t, labels, value),
                        description=fill_template(spec.description, spec, t, labels, value),
                        runbook_url=runbook_url(spec, self._runbook_base),
                        value=value,
                        active_since=pending.since,
                        started_at=pending.started_at,
                    )
                )
        # A condition that stopped holding clears at once (Prometheus resolves it too).
        for key in set(self._active) - seen:
            del self._active[key]
        self._last = result
        return result

    def alerts(self) -> list[ActiveAlert]:
        """The result of the last evaluation."""
        return list(self._last)

    def firing(self) -> list[ActiveAlert]:
        """Only the firing alerts of the last evaluation."""
        return [a for a in self._last if a.state == "firing"]


class _GaugeLike(Protocol):
    def labels(self, *args: str, **kwargs: str) -> Any: ...


def publish_firing(
    gauge: _GaugeLike, alerts: list[ActiveAlert], published: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Set ``ml_alerts_active{alertname,severity}`` to the count of firing alerts.

    ``published`` is what earlier calls set; the label sets it returns are to be passed
    next time. An alert that stopped firing is set to 0, not removed: prometheus_client
    cannot remove a label set in multiprocess mode, and 0 reads the same in every rule.
    """
    counts: dict[tuple[str, str], int] = {}
    for a in alerts:
        if a.state == "firing":
            counts[(a.name, a.severity)] = counts.get((a.name, a.severity), 0) + 1
    for name, severity in published - counts.keys():
        gauge.labels(alertname=name, severity=severity).set(0)
    for (name, severity), n in counts.items():
        gauge.labels(alertname=name, severity=severity).set(n)
    return published | counts.keys()
