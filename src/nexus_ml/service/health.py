"""Health as typed values: readiness, the database check, the comprehensive report.

Readiness is about whether this instance can answer predictions: models loaded and not
shutting down. A database outage makes the instance *degraded*, not unready: models are in
memory and records wait in the durable spill buffer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.monitoring.alerting import ActiveAlert
from nexus_ml.monitoring.system import SystemCollector
from nexus_ml.service.alerts import AlertLoop
from nexus_ml.service.database import Database
from nexus_ml.storage.errors import DatabaseUnavailable
from nexus_ml.storage.writer import RecordWriter

READY_PING_SECONDS = 1.0
Status = Literal["ok", "degraded", "not_ready"]


@dataclass
class Lifecycle:
    """When this process started serving, and whether it is shutting down."""

    started_at: float = 0.0
    draining: bool = False

    def uptime(self) -> float:
        """Seconds since start, to the millisecond."""
        return round(time.time() - self.started_at, 3)


@dataclass(frozen=True, kw_only=True)
class DatabaseHealth:
    """One ping: reachable, and how long the round trip took."""

    reachable: bool
    latency_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"status": "ok", "latency_seconds": …}`` or ``{"status": "unreachable"}``."""
        if not self.reachable:
            return {"status": "unreachable"}
        return {"status": "ok", "latency_seconds": self.latency_seconds}


@dataclass(frozen=True, kw_only=True)
class RefusedBundle:
    """A bundle the registry refused: model, version and the reason enum (no message)."""

    model: str
    version: str | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class ModelsHealth:
    """The models served and the bundles refused."""

    loaded: list[str]
    refused: list[RefusedBundle]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "status": "ok" if self.loaded else "none_loaded",
            "loaded": list(self.loaded),
            "refused": [
                {"model": r.model, "version": r.version, "reason": r.reason} for r in self.refused
            ],
        }


@dataclass(frozen=True, kw_only=True)
class SystemLoad:
    """The host now: CPU percent (0-100), memory and disk ratios (0-1)."""

    cpu_percent: float
    memory_ratio: float
    disk_ratio: float


@dataclass(frozen=True, kw_only=True)
class Readiness:
    """Ready = models loaded and not draining; the database and refused bundles degrade."""

    models: ModelsHealth
    database: DatabaseHealth
    shutting_down: bool
    records_pending: int

    @property
    def ready(self) -> bool:
        """True when predictions can be served."""
        return bool(self.models.loaded) and not self.shutting_down

    @property
    def status(self) -> Status:
        """``not_ready``, else ``degraded`` by the database or a refused bundle, else ``ok``."""
        if not self.ready:
            return "not_ready"
        healthy = self.database.reachable and not self.models.refused
        return "ok" if healthy else "degraded"

    def checks(self) -> dict[str, Any]:
        """The ``checks`` object of the health answers."""
        return {
            "models": self.models.to_dict(),
            "database": self.database.to_dict(),
            "shutting_down": self.shutting_down,
            "records_pending": self.records_pending,
        }

    def to_dict(self) -> dict[str, Any]:
        """The body of ``/health/ready``."""
        return {"ready": self.ready, "status": self.status, "checks": self.checks()}


@dataclass(frozen=True, kw_only=True)
class HealthReport:
    """Readiness plus system resources, firing alerts and uptime."""

    readiness: Readiness
    system: SystemLoad
    alerts: list[ActiveAlert] = field(default_factory=list)
    uptime_seconds: float

    @property
    def ready(self) -> bool:
        """True when predictions can be served."""
        return self.readiness.ready

    @property
    def status(self) -> Status:
        """Readiness's verdict, degraded further by a firing alert."""
        status = self.readiness.status
        return "degraded" if self.alerts and status == "ok" else status

    def to_dict(self) -> dict[str, Any]:
        """The body of ``/health``."""
        checks = self.readiness.checks()
        checks["system"] = {
            "cpu_percent": self.system.cpu_percent,
            "memory_ratio": self.system.memory_ratio,
            "disk_ratio": self.system.disk_ratio,
        }
        return {
            "ready": self.ready,
            "status": self.status,
            "checks": checks,
            "alerts": [a.to_dict() for a in self.alerts],
            "uptime_seconds": self.uptime_seconds,
        }


class HealthCheck:
    """Answers readiness and health from the parts it checks."""

    def __init__(
        self,
        *,
        db: Database,
        writer: RecordWriter,
        models: ModelRegistry,
        collector: SystemCollector,
        alerts: AlertLoop,
        lifecycle: Lifecycle,
    ) -> None:
        self._db = db
        self.writer = writer
        self._models = models
        self._collector = collector
        self._alerts = alerts
        self.lifecycle = lifecycle

    @property
    def dialect(self) -> str:
        """The database's SQL dialect (``sqlite``, ``postgresql``)."""
        return self._db.store.engine.dialect.name

    async def check_database(self) -> DatabaseHealth:
        """Ping the database (bounded: below a readiness probe's usual timeout)."""
        try:
            # In a partition the connect timeout alone (3 s) would make every replica unready.
            async with asyncio.timeout(READY_PING_SECONDS):
                # Not db.run: a failed ping is the answer here, not an error to count.
                seconds = await self._db.thread(self._db.store.ping)
        except (DatabaseUnavailable, TimeoutError):
            return DatabaseHealth(reachable=False)
        self.writer.retry_now()  # records waiting out a backoff can go now
        return DatabaseHealth(reachable=True, latency_seconds=round(seconds, 6))

    async def readiness(self) -> Readiness:
        """Models, database, draining and the record backlog, checked now."""
        database = await self.check_database()
        # Model, version and the reason enum only: the message (field names) goes to the log.
        refused = [
            RefusedBundle(model=r.model, version=r.version, reason=r.reason)
            for r in self._models.refused()
        ]
        return Readiness(
            models=ModelsHealth(loaded=self._models.names(), refused=refused),
            database=database,
            shutting_down=self.lifecycle.draining,
            records_pending=self.writer.pending + self.writer.disk_only,
        )

    def _system_now(self) -> SystemLoad:
        # peek(), not sample(): a /health call must not move the collector's CPU
        # baseline (the next published CPU figure would cover only milliseconds).
        snap = self._collector.peek()
        return SystemLoad(
            cpu_percent=snap.cpu_percent,
            memory_ratio=snap.memory_ratio,
            disk_ratio=snap.disk_ratio,
        )

    async def report(self) -> HealthReport:
        """Readiness plus system resources and firing alerts."""
        readiness = await self.readiness()
        system = await asyncio.to_thread(self._system_now)
        return HealthReport(
            readiness=readiness,
            system=system,
            alerts=self._alerts.firing(),
            uptime_seconds=self.lifecycle.uptime(),
        )
