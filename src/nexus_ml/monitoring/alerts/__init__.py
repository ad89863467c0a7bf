"""Every alert, each defined once in the module of its family.

An :class:`Alert` holds its limit and ``for`` keys, texts, PromQL expression, in-process
condition and promtool cases; ``render/`` writes the rule and test files from it, the
evaluator in ``monitoring/alerting.py`` runs its condition, the threshold API lists which
alerts read each key, and ``docs/runbooks.md`` has a section at its anchor (a test checks
each of these). Adding an alert is one definition, its place in ``ALERTS`` and its runbook.
"""

from __future__ import annotations

from nexus_ml.monitoring.alerts import (
    clinical,
    database,
    feature_drift,
    host,
    http,
    integrity,
    model,
    slo,
    target,
    usage,
)
from nexus_ml.monitoring.alerts.cases import Case
from nexus_ml.monitoring.alerts.definition import Alert, Severity, format_number
from nexus_ml.monitoring.alerts.snapshot import Bounded, DriftReading, Measurements

__all__ = [
    "ALERTS",
    "ALERTS_BY_NAME",
    "Alert",
    "Bounded",
    "Case",
    "DriftReading",
    "Measurements",
    "Severity",
    "format_number",
]

# The order of the rule file and of the promtool tests.
ALERTS: tuple[Alert, ...] = (
    # Critical: page.
    target.SERVICE_DOWN,
    host.CRITICAL_CPU,
    http.HIGH_ERROR_RATE,
    model.TRAINING_FAILURE,
    database.CONNECTION_ERRORS,
    integrity.RECORDS_REJECTED,
    integrity.BUNDLE_REFUSED,
    # Warning: ticket.
    host.HIGH_CPU,
    host.HIGH_MEMORY,
    host.HIGH_DISK,
    model.LOW_ACCURACY,
    http.HIGH_LATENCY,
    model.LOW_CONFIDENCE,
    model.DATA_DRIFT,
    clinical.SENSITIVITY_DROP,
    clinical.SUBGROUP_GAP,
    clinical.CALIBRATION_DRIFT,
    model.NO_RECENT_TRAINING,
    # Business: informational e-mail.
    usage.LOW_VOLUME,
    usage.UNBALANCED,
    # Prometheus-only: need the scrape itself, days of history or every replica's counters.
    target.TARGET_MISSING,
    feature_drift.FEATURE_DRIFT,
    slo.AVAILABILITY_FAST_BURN,
    slo.AVAILABILITY_SLOW_BURN,
    slo.LATENCY_FAST_BURN,
    slo.LATENCY_SLOW_BURN,
)
ALERTS_BY_NAME: dict[str, Alert] = {a.name: a for a in ALERTS}
