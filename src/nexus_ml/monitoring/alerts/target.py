"""The scrape target itself: down, or gone from discovery."""

from __future__ import annotations

from nexus_ml.monitoring.alerts.cases import Case, const, sel, target
from nexus_ml.monitoring.alerts.definition import Alert, host, when
from nexus_ml.thresholds import JOB

SERVICE_DOWN = Alert(
    name="MLServiceDown",
    severity="critical",
    category="availability",
    threshold=None,
    for_key="service_down_for",
    summary="Nexus ML target {instance} is down",
    description="Prometheus could not scrape {instance} of job {job} for more than the "
    "allowed time.",
    labels=("instance",),
    expr=lambda t, j: f"up{{{j}}} == 0",
    # Always up in-process; kept so both paths define the alert.
    condition=lambda m, t, instance: when(not m.service_up, host(instance), 0.0),
    cases=lambda t, for_m: [
        Case(series=[(sel("up", **target()), const(0))], fires=True, labels=target(), value=0),
        Case(
            series=[(sel("up", **target()), const(1))],
            fires=False,
            check_at=max(30, for_m + 5),
            note="target up",
        ),
    ],
)

TARGET_MISSING = Alert(
    name="MLServiceTargetMissing",
    severity="critical",
    category="availability",
    threshold=None,
    for_key="service_absent_for",
    summary="No Nexus ML target is being scraped",
    description="Prometheus has no up series for job {job}: the target vanished from "
    "discovery or the job is misconfigured.",
    expr=lambda t, j: f"absent(up{{{j}}})",
    cases=lambda t, for_m: [
        Case(
            series=[(sel("up", job="node-exporter", instance="node:9100"), const(1))],
            fires=True,
            labels={"job": JOB},
            value=1,
        ),
        Case(
            series=[(sel("up", **target()), const(1))],
            fires=False,
            check_at=max(30, for_m + 5),
            note="target present",
        ),
    ],
)
