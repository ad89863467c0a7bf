"""In-process alert evaluation: the Prometheus alerts, over the service's own measurements.

Where no Prometheus runs, ``/health`` and the API still show active alerts. Each alert of
:mod:`nexus_ml.monitoring.alerts` that has an in-process condition is evaluated here with the
same limits, ``for`` durations and texts as its rendered rule; its condition sits next to
its PromQL in the alert's definition. SLO burn-rate alerts and target absence need
Prometheus's history or its scrape, so they exist only there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from nexus_ml.monitoring.alerts import ALERTS, DriftReading, Measurements
from nexus_ml.thresholds import JOB, RUNBOOK_BASE, Thresholds

# Measurements and DriftReading are defined with the alerts; imported from here too.
__all__ = ["ActiveAlert", "AlertEvaluator", "DriftReading", "Measurements", "publish_firing"]

State = Literal["pending", "firing"]
Key = tuple[str, tuple[tuple[str, str], ...]]

log = logging.getLogger("nexus_ml.alerts")
# Alert labels that may appear in a log line: all bounded (model and feature names, segment
# labels from the bundle's closed list, class names, metric names). Anything else an alert
# might carry later stays out of the logs until it is reviewed and added here.
_LOGGED_LABELS = ("model", "feature", "segment", "class", "metric")


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
        self._active: dict[Key, _Pending] = {}
        self._states: dict[Key, State] = {}
        self._last: list[ActiveAlert] = []

    def set_thresholds(self, thresholds: Thresholds) -> None:
        """Use new limits from the next evaluation on (pending timers are kept)."""
        self.thresholds = thresholds

    def evaluate(self, measurements: Measurements) -> list[ActiveAlert]:
        """Evaluate every in-process alert once; returns pending and firing alerts."""
        t, now = self.thresholds, self._clock()
        seen: set[Key] = set()
        result: list[ActiveAlert] = []
        for spec in ALERTS:
            for extra, value in spec.breaches(measurements, t, self._instance):
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
                state: State = "firing" if now - pending.since >= spec.for_seconds(t) else "pending"
                if self._states.get(key) != state:
                    self._states[key] = state
                    _log_change(spec.name, spec.severity, state, labels)
                result.append(
                    ActiveAlert(
                        name=spec.name,
                        severity=spec.severity,
                        state=state,
                        labels=labels,
                        summary=spec.fill(spec.summary, t, labels, value),
                        description=spec.fill(spec.description, t, labels, value),
                        runbook_url=spec.runbook_url(self._runbook_base),
                        value=value,
                        active_since=pending.since,
                        started_at=pending.started_at,
                    )
                )
        # A condition that stopped holding clears at once (Prometheus resolves it too).
        for key in set(self._active) - seen:
            del self._active[key]
            was = self._states.pop(key, None)
            labels = dict(key[1])
            # Prometheus's words: a firing alert that stops holding is resolved; a pending one
            # that stops before its `for` never fired and goes back to inactive.
            _log_change(
                key[0],
                labels.get("severity", ""),
                "resolved" if was == "firing" else "inactive",
                labels,
            )
        self._last = result
        return result

    def alerts(self) -> list[ActiveAlert]:
        """The result of the last evaluation."""
        return list(self._last)

    def firing(self) -> list[ActiveAlert]:
        """Only the firing alerts of the last evaluation."""
        return [a for a in self._last if a.state == "firing"]


def _log_change(name: str, severity: str, state: str, labels: dict[str, str]) -> None:
    """One structured line per state change (pending, firing, resolved, inactive)."""
    extra = {k: labels[k] for k in _LOGGED_LABELS if k in labels}
    level = logging.WARNING if state == "firing" else logging.INFO
    log.log(
        level,
        "alert %s",
        state,
        extra={"alertname": name, "severity": severity, "state": state, **extra},
    )


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
