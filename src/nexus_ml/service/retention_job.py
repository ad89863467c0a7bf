"""The retention job: purge patient data past ``ML_RETENTION_DAYS``, once a day cluster-wide.

Every instance checks every hour (:data:`CHECK_SECONDS`). The database part runs under a
cluster-wide advisory lock and only if the last ``purge`` the service audited is a day old,
so N replicas purge once a day between them, and a restart neither skips nor repeats a day.
The same round creates the coming days' partitions (PostgreSQL). Spill files are each host's
own, so every instance purges its folder on every check, without the lock.

``nexus-ml purge`` runs :meth:`RetentionJob.run` directly (same code, same lock).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from nexus_ml.config import Settings
from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.storage import partitions
from nexus_ml.storage.locks import try_advisory_lock
from nexus_ml.storage.records import utcnow
from nexus_ml.storage.repositories import Store
from nexus_ml.storage.retention import PurgeResult, purge_database, purge_files

log = logging.getLogger("nexus_ml.retention")

LOCK_KEY = "nexus-ml:retention-purge"
CHECK_SECONDS = 3600.0
PERIOD = timedelta(days=1)
SERVICE_ACTOR = "service"
ACTION = "purge"
TARGET = "predictions"


class RetentionJob:
    """Purges raw predictions, their feedback and spilled records older than a cutoff."""

    def __init__(self, *, settings: Settings, store: Store, metrics: Metrics) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics

    @property
    def retention(self) -> timedelta | None:
        """The configured retention (None: ``ML_RETENTION_DAYS=0``, keep forever)."""
        days = self._settings.retention_days
        return timedelta(days=days) if days else None

    def check(self) -> dict[str, Any]:
        """The scheduled round: this host's spill files; then, holding the lock, partitions
        ahead and the database purge if the last one is a day old (blocking: call in a thread)."""
        retention = self.retention
        files = self._purge_files(utcnow() - retention) if retention else {}
        with try_advisory_lock(self._store.engine, LOCK_KEY) as acquired:
            if not acquired:
                reason = "another instance holds the retention lock"
                return {"ran": False, "reason": reason, "files": files}
            partitions.ensure_partitions(self._store.engine)
            if retention is None:
                return {"ran": False, "reason": "ML_RETENTION_DAYS=0: kept forever"}
            last = self._store.list_audit(actor=SERVICE_ACTOR, action=ACTION, limit=1)
            if last and utcnow() - last[0].at < PERIOD:
                return {"ran": False, "reason": "purged less than a day ago", "files": files}
            return self._purge(retention, SERVICE_ACTOR)

    def run(self, older_than: timedelta, actor: str) -> dict[str, Any]:
        """Purge everything older than ``older_than`` now (``nexus-ml purge``; blocking)."""
        with try_advisory_lock(self._store.engine, LOCK_KEY) as acquired:
            if not acquired:
                return {"ran": False, "reason": "another instance holds the retention lock"}
            return self._purge(older_than, actor)

    def _purge(self, older_than: timedelta, actor: str) -> dict[str, Any]:
        started = time.perf_counter()
        cutoff = utcnow() - older_than
        result: PurgeResult = purge_database(self._store.engine, cutoff)
        result.journal_files, result.rejected_files = purge_files(self._settings.spill_dir, cutoff)
        seconds = time.perf_counter() - started
        self._metrics.db_operation_duration_seconds.labels("purge").observe(seconds)
        counts = result.counts()
        counts["older_than_seconds"] = older_than.total_seconds()
        # Counts and the cutoff only: the audit log outlives the data it describes.
        self._store.audit(actor, ACTION, TARGET, counts)
        log.info(
            "retention purge",
            extra={
                "component": "retention",
                "count": result.predictions,
                "seconds": round(seconds, 3),
            },
        )
        return {"ran": True, "seconds": seconds, "result": counts}

    def _purge_files(self, cutoff: datetime) -> dict[str, int]:
        journal, rejected = purge_files(self._settings.spill_dir, cutoff)
        return {"journal_files": journal, "rejected_files": rejected}
