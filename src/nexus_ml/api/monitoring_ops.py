"""Operational monitoring answers: health, alerts (ours and Alertmanager's), status, system,
and the counter summary. None of these needs the database to answer."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
import psutil

from nexus_ml import __version__
from nexus_ml.api.monitoring_query import (
    availability,
    collect_families,
    finite,
    sample_sums,
    status_classes,
)
from nexus_ml.api.monitoring_schemas import ProcessInfo, SystemPerformance, Usage
from nexus_ml.api.monitoring_schemas_ops import (
    Alert,
    AlertmanagerAlert,
    AlertmanagerView,
    AlertsResponse,
    DatabaseOperations,
    DatabaseStatus,
    MetricsSummary,
    ModelStatus,
    MonitoringHealth,
    RequestTotals,
    ServiceStatus,
    WorkersStatus,
    WriterStatus,
)
from nexus_ml.api.monitoring_views import holdout_accuracy, trained_at
from nexus_ml.monitoring.alerting import ActiveAlert
from nexus_ml.monitoring.multiproc import live_gauge_pids
from nexus_ml.monitoring.system import SystemSnapshot

if TYPE_CHECKING:
    from nexus_ml.api.state import Nexus

SERVICE_NAME = "nexus-ml"
# The dashboard refreshes every 10 s: a slow Alertmanager must not hold the answer up.
ALERTMANAGER_TIMEOUT_SECONDS = 2.0
ALERTMANAGER_MAX_ALERTS = 500


def alert_model(a: ActiveAlert) -> Alert:
    """An evaluator alert in the API's shape (NaN values become None)."""
    d = a.to_dict()
    return Alert(**{**d, "value": finite(d["value"])})


async def health(nexus: Nexus) -> MonitoringHealth:
    """The comprehensive health report, typed; 200 whatever the verdict."""
    report = await nexus.health_report()
    checks = report["checks"]
    alerts = [alert_model(a) for a in nexus.alerts if a.state == "firing"]
    return MonitoringHealth(
        status=report["status"],
        ready=report["ready"],
        uptime_seconds=report["uptime_seconds"],
        database=checks["database"],
        models=checks["models"]["loaded"],
        records_pending=checks["records_pending"],
        shutting_down=checks["shutting_down"],
        system=checks["system"],
        alerts_firing=len(alerts),
        alerts=alerts,
    )


async def fetch_alertmanager(url: str) -> AlertmanagerView:
    """Alertmanager's active alerts (``/api/v2/alerts``), or ``unreachable`` with the reason."""
    if not url:
        return AlertmanagerView(status="not_configured")
    endpoint = url.rstrip("/") + "/api/v2/alerts"
    try:
        async with httpx.AsyncClient(timeout=ALERTMANAGER_TIMEOUT_SECONDS) as client:
            response = await client.get(endpoint, params={"active": "true"})
            response.raise_for_status()
            raw = response.json()
        if not isinstance(raw, list):
            raise ValueError("not a list of alerts")
        alerts = [_am_alert(a) for a in raw[:ALERTMANAGER_MAX_ALERTS] if isinstance(a, dict)]
    except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
        # The type only: an exception text may carry the URL, credentials included.
        return AlertmanagerView(status="unreachable", error=type(exc).__name__)
    return AlertmanagerView(status="ok", alerts=alerts)


def _am_alert(raw: dict[str, Any]) -> AlertmanagerAlert:
    status = raw.get("status") or {}
    return AlertmanagerAlert(
        fingerprint=raw.get("fingerprint"),
        state=status.get("state") if isinstance(status, dict) else None,
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        annotations={str(k): str(v) for k, v in (raw.get("annotations") or {}).items()},
        starts_at=raw.get("startsAt"),
        ends_at=raw.get("endsAt"),
    )


async def alerts(nexus: Nexus) -> AlertsResponse:
    """In-process alerts (pending and firing), plus Alertmanager's when configured."""
    ours = [alert_model(a) for a in nexus.alerts]
    by_severity: dict[str, int] = {}
    for a in ours:
        if a.state == "firing":
            by_severity[a.severity] = by_severity.get(a.severity, 0) + 1
    return AlertsResponse(
        firing=sum(a.state == "firing" for a in ours),
        pending=sum(a.state == "pending" for a in ours),
        by_severity=by_severity,
        alerts=ours,
        alertmanager=await fetch_alertmanager(nexus.settings.alertmanager_url),
    )


async def status(nexus: Nexus) -> ServiceStatus:
    """Service, version, uptime, models, workers, database and writer backlog."""
    db = await nexus.check_database()
    models = [
        ModelStatus(
            name=m.name,
            version=m.version,
            versions=nexus.models.versions(m.name),
            classes=list(m.classes),
            n_features=len(m.schema.names),
            holdout_accuracy=holdout_accuracy(m),
            trained_at=trained_at(m),
        )
        for m in nexus.models.all()
    ]
    live = None
    if nexus.multiproc_dir:
        live = len(await asyncio.to_thread(live_gauge_pids, nexus.multiproc_dir))
    return ServiceStatus(
        service=SERVICE_NAME,
        version=__version__,
        started_at=datetime.fromtimestamp(nexus.started_at, UTC),
        uptime_seconds=round(time.time() - nexus.started_at, 3),
        draining=nexus.draining,
        models=models,
        workers=WorkersStatus(
            multiprocess=nexus.multiproc_dir is not None, pid=os.getpid(), live_workers=live
        ),
        database=DatabaseStatus(**db, dialect=nexus.engine.dialect.name),
        writer=WriterStatus(pending=nexus.writer.pending, spilled=nexus.writer.disk_only),
    )


_SYSTEM_GAUGES = (
    "cpu_usage_percent",
    "memory_usage_bytes",
    "memory_total_bytes",
    "memory_usage_ratio",
    "disk_usage_bytes",
    "disk_total_bytes",
    "disk_usage_ratio",
)


def _host(nexus: Nexus) -> tuple[Literal["collector", "sample"], SystemSnapshot]:
    """The host as the system collector last published it, else read now."""
    # The published gauges are measured over the collector's interval. Before the first
    # publication the host is read with peek(), never sample(): sample() would move the
    # collector's CPU baseline, so its next published CPU figure would cover milliseconds.
    f = collect_families(nexus)
    g = {k: sum(sample_sums(f, f"ml_system_{k}").values()) for k in _SYSTEM_GAUGES}
    if not sample_sums(f, "ml_system_cpu_usage_percent") or not g["memory_total_bytes"]:
        return "sample", nexus.collector.peek()
    return "collector", SystemSnapshot(
        cpu_percent=g["cpu_usage_percent"],
        memory_used_bytes=round(g["memory_usage_bytes"]),
        memory_total_bytes=round(g["memory_total_bytes"]),
        memory_ratio=g["memory_usage_ratio"],
        disk_used_bytes=round(g["disk_usage_bytes"]),
        disk_total_bytes=round(g["disk_total_bytes"]),
        disk_ratio=g["disk_usage_ratio"],
    )


def _system(nexus: Nexus) -> SystemPerformance:
    source, snap = _host(nexus)
    proc = psutil.Process()
    with proc.oneshot():
        info = ProcessInfo(
            pid=proc.pid, rss_bytes=proc.memory_info().rss, threads=proc.num_threads()
        )
    t = nexus.thresholds
    return SystemPerformance(
        measured_at=datetime.now(UTC),
        source=source,
        cpu_percent=snap.cpu_percent,
        memory=Usage(
            used_bytes=snap.memory_used_bytes,
            total_bytes=snap.memory_total_bytes,
            ratio=snap.memory_ratio,
        ),
        disk=Usage(
            used_bytes=snap.disk_used_bytes,
            total_bytes=snap.disk_total_bytes,
            ratio=snap.disk_ratio,
        ),
        load_average=[round(x, 3) for x in os.getloadavg()],
        process=info,
        thresholds={
            "cpu_usage_high": t.cpu_usage_high,
            "cpu_usage_critical": t.cpu_usage_critical,
            "memory_usage_high": t.memory_usage_high,
            "disk_usage_high": t.disk_usage_high,
        },
    )


async def system(nexus: Nexus) -> SystemPerformance:
    """Host CPU, memory and disk (as last published by the collector), and this process."""
    # psutil and statvfs can block on a network data folder.
    return await asyncio.to_thread(_system, nexus)


def _summary(nexus: Nexus) -> MetricsSummary:
    f = collect_families(nexus)
    classes = status_classes(f)
    predictions = {
        k[0]: round(v) for k, v in sample_sums(f, "ml_model_predictions_total", ("model",)).items()
    }
    feedback = sample_sums(f, "ml_model_feedback_total", ("correct",))
    ops = sample_sums(f, "ml_db_operation_duration_seconds_count", ("operation",))
    seconds = sample_sums(f, "ml_db_operation_duration_seconds_sum", ("operation",))
    errors = sample_sums(f, "ml_db_operation_errors_total", ("operation", "error_type"))
    gauges = sample_sums(f, "ml_db_records_pending") | {
        ("spilled",): sum(sample_sums(f, "ml_db_records_spilled").values())
    }
    return MetricsSummary(
        uptime_seconds=round(time.time() - nexus.started_at, 3),
        requests=RequestTotals(
            total=sum(classes.values()), by_class=classes, availability=availability(classes)
        ),
        predictions=dict(sorted(predictions.items())),
        predictions_total=sum(predictions.values()),
        feedback={
            "correct": round(feedback.get(("true",), 0.0)),
            "incorrect": round(feedback.get(("false",), 0.0)),
        },
        errors={
            k[0]: round(v)
            for k, v in sorted(sample_sums(f, "ml_errors_total", ("component",)).items())
        },
        training_runs={
            k[0]: round(v)
            for k, v in sample_sums(f, "ml_model_training_runs_total", ("outcome",)).items()
        },
        database=DatabaseOperations(
            records_written=round(sum(sample_sums(f, "ml_db_records_written_total").values())),
            records_pending=round(gauges.get((), 0.0)),
            records_spilled=round(gauges[("spilled",)]),
            operations={k[0]: round(v) for k, v in sorted(ops.items())},
            mean_seconds={k[0]: (seconds.get(k, 0.0) / v if v else None) for k, v in ops.items()},
            errors={f"{k[0]}/{k[1]}": round(v) for k, v in sorted(errors.items())},
        ),
        # The evaluator's own list: the same count GET /alerts reports.
        alerts_firing=sum(a.state == "firing" for a in nexus.alerts),
    )


async def summary(nexus: Nexus) -> MetricsSummary:
    """Counters since start (summed over workers): requests, predictions, errors, DB work."""
    return await asyncio.to_thread(_summary, nexus)
