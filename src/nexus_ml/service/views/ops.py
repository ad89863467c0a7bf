"""Operational monitoring answers: health, alerts (ours and Alertmanager's), status, system,
and the counter summary. None of these needs the database to answer."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import psutil

from nexus_ml import __version__
from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.monitoring.alerting import ActiveAlert
from nexus_ml.monitoring.multiproc import live_gauge_pids
from nexus_ml.monitoring.system import SystemCollector, SystemSnapshot
from nexus_ml.service.alerts import AlertLoop
from nexus_ml.service.families import Families
from nexus_ml.service.health import HealthCheck
from nexus_ml.service.threshold_state import ThresholdState
from nexus_ml.service.views.models import holdout_accuracy, trained_at
from nexus_ml.service.views.ops_results import (
    Alert,
    AlertmanagerAlert,
    AlertmanagerView,
    AlertsResponse,
    DatabaseCheck,
    DatabaseOperations,
    DatabaseStatus,
    MetricsSummary,
    ModelStatus,
    MonitoringHealth,
    RequestTotals,
    ServiceStatus,
    SystemCheck,
    WorkersStatus,
    WriterStatus,
)
from nexus_ml.service.views.query import (
    availability,
    finite,
    histogram_percentiles,
    sample_sums,
    status_classes,
)
from nexus_ml.service.views.results import ProcessInfo, SystemPerformance, Usage

SERVICE_NAME = "nexus-ml"
# The dashboard refreshes every 10 s: a slow Alertmanager must not hold the answer up.
ALERTMANAGER_TIMEOUT_SECONDS = 2.0
ALERTMANAGER_MAX_ALERTS = 500


def alert_model(a: ActiveAlert) -> Alert:
    """An evaluator alert in the API's shape (NaN values become None)."""
    d = a.to_dict()
    return Alert(**{**d, "value": finite(d["value"])})


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


_SYSTEM_GAUGES = (
    "cpu_usage_percent",
    "memory_usage_bytes",
    "memory_total_bytes",
    "memory_usage_ratio",
    "disk_usage_bytes",
    "disk_total_bytes",
    "disk_usage_ratio",
)


class OpsViews:
    """Operational answers: health, alerts, status, system and the counters since start."""

    def __init__(
        self,
        *,
        health: HealthCheck,
        alerts: AlertLoop,
        models: ModelRegistry,
        families: Families,
        collector: SystemCollector,
        thresholds: ThresholdState,
        alertmanager_url: str,
    ) -> None:
        self._health = health
        self._alerts = alerts
        self._models = models
        self._families = families
        self._collector = collector
        self._thresholds = thresholds
        self._alertmanager_url = alertmanager_url

    async def health(self) -> MonitoringHealth:
        """The comprehensive health report, typed; 200 whatever the verdict."""
        report = await self._health.report()
        readiness = report.readiness
        alerts = [alert_model(a) for a in report.alerts]
        return MonitoringHealth(
            status=report.status,
            ready=report.ready,
            uptime_seconds=report.uptime_seconds,
            database=DatabaseCheck(**readiness.database.to_dict()),
            models=list(readiness.models.loaded),
            records_pending=readiness.records_pending,
            shutting_down=readiness.shutting_down,
            system=SystemCheck(**dataclasses.asdict(report.system)),
            alerts_firing=len(alerts),
            alerts=alerts,
        )

    async def alerts(self) -> AlertsResponse:
        """In-process alerts (pending and firing), plus Alertmanager's when configured."""
        ours = [alert_model(a) for a in self._alerts.active]
        by_severity: dict[str, int] = {}
        for a in ours:
            if a.state == "firing":
                by_severity[a.severity] = by_severity.get(a.severity, 0) + 1
        return AlertsResponse(
            firing=sum(a.state == "firing" for a in ours),
            pending=sum(a.state == "pending" for a in ours),
            by_severity=by_severity,
            alerts=ours,
            alertmanager=await fetch_alertmanager(self._alertmanager_url),
        )

    async def status(self) -> ServiceStatus:
        """Service, version, uptime, models, workers, database and writer backlog."""
        health = self._health
        db = await health.check_database()
        models = [
            ModelStatus(
                name=m.name,
                version=m.version,
                versions=self._models.versions(m.name),
                classes=list(m.classes),
                n_features=len(m.schema.names),
                holdout_accuracy=holdout_accuracy(m),
                trained_at=trained_at(m),
            )
            for m in self._models.all()
        ]
        multiproc_dir = self._families.multiproc_dir
        live = None
        if multiproc_dir:
            live = len(await asyncio.to_thread(live_gauge_pids, multiproc_dir))
        lifecycle, writer = health.lifecycle, health.writer
        return ServiceStatus(
            service=SERVICE_NAME,
            version=__version__,
            started_at=datetime.fromtimestamp(lifecycle.started_at, UTC),
            uptime_seconds=lifecycle.uptime(),
            draining=lifecycle.draining,
            models=models,
            workers=WorkersStatus(
                multiprocess=multiproc_dir is not None, pid=os.getpid(), live_workers=live
            ),
            database=DatabaseStatus(**db.to_dict(), dialect=health.dialect),
            writer=WriterStatus(pending=writer.pending, spilled=writer.disk_only),
        )

    async def system(self) -> SystemPerformance:
        """Host CPU, memory and disk (as last published by the collector), and this process."""
        # psutil and statvfs can block on a network data folder.
        return await asyncio.to_thread(self._system)

    async def summary(self) -> MetricsSummary:
        """Counters since start (summed over workers): requests, predictions, errors, DB work."""
        return await asyncio.to_thread(self._summary)

    def _host(self) -> tuple[Literal["collector", "sample"], SystemSnapshot]:
        """The host as the system collector last published it, else read now."""
        # The published gauges are measured over the collector's interval. Before the first
        # publication the host is read with peek(), never sample(): sample() would move the
        # collector's CPU baseline, so its next published CPU figure would cover milliseconds.
        f = self._families.collect()
        g = {k: sum(sample_sums(f, f"ml_system_{k}").values()) for k in _SYSTEM_GAUGES}
        if not sample_sums(f, "ml_system_cpu_usage_percent") or not g["memory_total_bytes"]:
            return "sample", self._collector.peek()
        return "collector", SystemSnapshot(
            cpu_percent=g["cpu_usage_percent"],
            memory_used_bytes=round(g["memory_usage_bytes"]),
            memory_total_bytes=round(g["memory_total_bytes"]),
            memory_ratio=g["memory_usage_ratio"],
            disk_used_bytes=round(g["disk_usage_bytes"]),
            disk_total_bytes=round(g["disk_total_bytes"]),
            disk_ratio=g["disk_usage_ratio"],
        )

    def _system(self) -> SystemPerformance:
        source, snap = self._host()
        proc = psutil.Process()
        with proc.oneshot():
            info = ProcessInfo(
                pid=proc.pid, rss_bytes=proc.memory_info().rss, threads=proc.num_threads()
            )
        t = self._thresholds.current
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

    def _summary(self) -> MetricsSummary:
        f = self._families.collect()
        classes = status_classes(f)
        by_model = sample_sums(f, "ml_model_predictions_total", ("model",))
        predictions = {k[0]: round(v) for k, v in by_model.items()}
        feedback = sample_sums(f, "ml_model_feedback_total", ("correct",))
        ops = sample_sums(f, "ml_db_operation_duration_seconds_count", ("operation",))
        seconds = sample_sums(f, "ml_db_operation_duration_seconds_sum", ("operation",))
        errors = sample_sums(f, "ml_db_operation_errors_total", ("operation", "error_type"))
        gauges = sample_sums(f, "ml_db_records_pending") | {
            ("spilled",): sum(sample_sums(f, "ml_db_records_spilled").values())
        }
        return MetricsSummary(
            uptime_seconds=self._health.lifecycle.uptime(),
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
                mean_seconds={
                    k[0]: (seconds.get(k, 0.0) / v if v else None) for k, v in ops.items()
                },
                errors={f"{k[0]}/{k[1]}": round(v) for k, v in sorted(errors.items())},
            ),
            # The evaluator's own list: the same count GET /alerts reports.
            alerts_firing=sum(a.state == "firing" for a in self._alerts.active),
            request_latency_seconds={
                f"{method} {endpoint}": p
                for (method, endpoint), p in histogram_percentiles(
                    f, "ml_api_request_duration_seconds", ("method", "endpoint")
                ).items()
            },
        )
