"""The one place that builds every part of the service and starts and stops them.

Each part receives only its collaborators; nothing else is handed this object. The api
reaches the parts it needs through narrow dependencies (``api/deps.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry

from nexus_ml.config import Settings
from nexus_ml.ml.promotion import load_policies
from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.monitoring.alerting import AlertEvaluator
from nexus_ml.monitoring.decorators import default_metrics
from nexus_ml.monitoring.feature_bins import FLUSH_SECONDS
from nexus_ml.monitoring.metrics import Metrics, build_metrics
from nexus_ml.monitoring.request_tally import RequestTally
from nexus_ml.monitoring.system import SystemCollector
from nexus_ml.service.alerts import AlertLoop
from nexus_ml.service.database import Database
from nexus_ml.service.errors import Unavailable
from nexus_ml.service.families import Families
from nexus_ml.service.governance import Governance
from nexus_ml.service.health import HealthCheck, Lifecycle
from nexus_ml.service.model_admin import ModelAdmin
from nexus_ml.service.publishing import ModelPublisher, count_refusals
from nexus_ml.service.quality_job import QualityJob, QualityRunner
from nexus_ml.service.request_counts import FLUSH_SECONDS as REQUEST_FLUSH_SECONDS
from nexus_ml.service.request_counts import RequestCounts
from nexus_ml.service.retention_job import CHECK_SECONDS, RetentionJob
from nexus_ml.service.scheduler import Scheduler
from nexus_ml.service.serving import Serving
from nexus_ml.service.shadow import ShadowScorer
from nexus_ml.service.threshold_state import ThresholdState
from nexus_ml.service.trainer import Trainer
from nexus_ml.service.views.anomalies import Anomalies
from nexus_ml.service.views.audit import AuditViews
from nexus_ml.service.views.clinical import ClinicalViews
from nexus_ml.service.views.comparison import ComparisonViews
from nexus_ml.service.views.models import ModelViews
from nexus_ml.service.views.ops import OpsViews
from nexus_ml.service.views.reports import Reports
from nexus_ml.service.views.thresholds import ThresholdAdmin
from nexus_ml.service.views.training import TrainingViews
from nexus_ml.stats.anomaly import specs_of
from nexus_ml.storage.db import make_engine
from nexus_ml.storage.migrate import migrate
from nexus_ml.storage.partitions import ensure_partitions
from nexus_ml.storage.repositories import Store
from nexus_ml.storage.writer import RecordWriter
from nexus_ml.thresholds import load_thresholds

log = logging.getLogger("nexus_ml.api")

# Operations whose connection-error series must exist at 0 from the start, so
# that the first error after a restart is an *increase* the alert can see.
DB_OPERATIONS = ("insert", "replay", "query")
MODEL_WATCH_SECONDS = 5.0


def make_writer(settings: Settings, store: Store, metrics: Metrics) -> RecordWriter:
    """The record writer, reporting into ``metrics`` through its plain callbacks."""
    m = metrics
    written = m.db_records_written_total
    duration = m.db_operation_duration_seconds.labels("insert_predictions")

    def on_flush(n_written: int, seconds: float) -> None:
        written.inc(n_written)
        duration.observe(seconds)

    def on_error(operation: str, error_type: str) -> None:
        m.db_operation_errors_total.labels(operation, error_type).inc()
        m.errors_total.labels("database", error_type).inc()

    def on_pending(n_memory: int, n_disk: int) -> None:
        m.db_records_pending.set(n_memory + n_disk)
        m.db_records_spilled.set(n_disk)

    def on_rejected(model: str, reason: str, count: int) -> None:
        m.db_records_rejected_total.labels(model, reason).inc(count)

    return RecordWriter.from_settings(
        settings,
        store.insert_predictions,
        on_flush=on_flush,
        on_error=on_error,
        on_pending=on_pending,
        on_rejected=on_rejected,
    )


class Service:
    """Every part of one running service; ``start``/``stop`` run them."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        """Create (not start) every part from ``settings``."""
        self.settings = settings
        self.registry = registry
        # The process-default metrics are shared with the decorators that
        # teams put on their own code; a fresh registry gets its own set.
        self.metrics = m = default_metrics() if registry is REGISTRY else build_metrics(registry)
        multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.families = Families(registry, multiproc_dir)
        self.store = store = Store(make_engine(settings.resolved_database_url))
        self.db = db = Database(store, m)
        self.models = models = ModelRegistry(settings.model_path, on_refused=count_refusals(m))
        self.writer = writer = make_writer(settings, store, m)
        self.collector = SystemCollector(
            m,
            interval=settings.system_interval_seconds,
            disk_path=Path(settings.data_dir),
            lock_dir=Path(multiproc_dir) if multiproc_dir else None,
        )
        self.publisher = ModelPublisher(m, multiproc_dir)
        self.lifecycle = Lifecycle()
        base = load_thresholds(settings)
        self.thresholds = thresholds = ThresholdState(base, store)
        evaluator = AlertEvaluator(base)
        thresholds.on_change(evaluator.set_thresholds)
        self.alerts = AlertLoop(
            db=db,
            evaluator=evaluator,
            families=self.families,
            models=models,
            thresholds=thresholds,
            metrics=m,
        )
        job = QualityJob(
            settings=settings, store=store, models=models, metrics=m, thresholds=thresholds
        )
        # Drift detectors hold the drift limit they were fitted with.
        thresholds.on_change(lambda _new: job.reset())
        self.quality = QualityRunner(
            job,
            writer,
            db,
            interval=settings.drift_interval_seconds,
            first=settings.drift_first_run_seconds,
        )
        self.retention = RetentionJob(settings=settings, store=store, metrics=m)
        self.governance = governance = Governance(model_path=settings.model_path, store=store)
        self.model_admin = ModelAdmin(
            governance=governance, db=db, models=models, publisher=self.publisher
        )
        self.trainer = Trainer(
            db=db,
            models=models,
            metrics=m,
            publisher=self.publisher,
            governance=governance,
            policies=load_policies(settings.promotion_policy_file),
        )
        self.shadow = ShadowScorer(
            models=models, writer=writer, metrics=m, max_pending=settings.shadow_queue_size
        )
        self.serving = Serving(
            models=models,
            publisher=self.publisher,
            writer=writer,
            db=db,
            metrics=m,
            max_batch=settings.max_batch,
            shadow=self.shadow,
            feedback_wait_seconds=settings.feedback_wait_seconds,
        )
        self.health = HealthCheck(
            db=db,
            writer=writer,
            models=models,
            collector=self.collector,
            alerts=self.alerts,
            lifecycle=self.lifecycle,
        )
        self.model_views = ModelViews(
            db=db, models=models, thresholds=thresholds, families=self.families
        )
        self.clinical_views = ClinicalViews(db=db, models=models, settings=settings)
        self.training_views = TrainingViews(db=db, models=models)
        self.ops = OpsViews(
            health=self.health,
            alerts=self.alerts,
            models=models,
            families=self.families,
            collector=self.collector,
            thresholds=thresholds,
            alertmanager_url=settings.alertmanager_url,
        )
        self.reports = Reports(
            db=db,
            models=models,
            families=self.families,
            thresholds=thresholds,
            alerts=self.alerts,
            lifecycle=self.lifecycle,
        )
        self.threshold_admin = ThresholdAdmin(db=db, thresholds=thresholds)
        # The request middleware adds to the tally; the job stores it for the anomaly bands.
        self.request_counts = RequestCounts(RequestTally(), db)
        # The bands in force follow PUT /config/thresholds (the anomaly_* keys).
        self.anomalies = Anomalies(db, lambda: specs_of(thresholds.current))
        self.audit_views = AuditViews(db)
        self.comparison_views = ComparisonViews(db=db, models=models, settings=settings)
        self._scheduler = Scheduler(m)
        for op in DB_OPERATIONS:
            m.db_operation_errors_total.labels(op, "connection")

    async def start(self) -> None:
        """Migrate, load models, start the writer, collector and background jobs."""
        self.lifecycle.started_at = time.time()
        try:
            await asyncio.to_thread(migrate, self.store.engine)
            await asyncio.to_thread(self.thresholds.refresh)
            await asyncio.to_thread(ensure_partitions, self.store.engine)
        except Exception as exc:  # the DB may be down at start: serve anyway, records spill
            self.metrics.errors_total.labels("database", type(exc).__name__).inc()
            log.warning(
                "database migration failed at start", extra={"error_type": type(exc).__name__}
            )
        # Each refused bundle is logged and counted by the registry's on_refused.
        await asyncio.to_thread(self.models.load_all)
        for loaded in self.models.all():
            self.publisher.publish(loaded)
        self.publisher.publish_refusals(self.models.refused())
        await self._restore_quality_gauges()
        await self.writer.start()
        await self.shadow.start()
        await self.collector.start()
        s, every = self.settings, self._scheduler.every
        every(MODEL_WATCH_SECONDS, self._watch_models, "model-watcher")
        every(FLUSH_SECONDS, self._flush_bins, "feature-bins", delay=True)
        every(REQUEST_FLUSH_SECONDS, self.request_counts.flush, "request-counts", delay=True)
        every(s.alert_interval_seconds, self.alerts.evaluate, "alert-evaluator")
        q = self.quality
        self._scheduler.paced(q.first, q.scheduled, "model-quality", on_error=q.after_failure)
        # One process of the cluster runs each round; every process re-exports the latest
        # stored results at the same pace, so each instance's /metrics tells the same values.
        every(q.first, self._sync_quality_gauges, "model-quality-sync", delay=True)
        # Hourly, first an hour after start: a test app or a short-lived process never
        # purges; partitions for the coming days were made just above.
        every(CHECK_SECONDS, self._retention, "retention", delay=True)

    async def _restore_quality_gauges(self) -> None:
        """Export the latest stored quality results, so they are not absent until the next run.

        A database down at start is already counted by the database layer; the next job round
        exports the gauges then.
        """
        try:
            await self.db.run(self.quality.job.restore_gauges)
        except Unavailable:
            log.warning("model-quality gauges not restored: database unavailable")
        except Exception as exc:  # a stored result this version cannot read: not worth a crash
            self.metrics.errors_total.labels("quality", type(exc).__name__).inc()
            log.warning(
                "model-quality gauges not restored", extra={"error_type": type(exc).__name__}
            )

    async def _sync_quality_gauges(self) -> None:
        # A database outage is counted where it happens and logged once by whoever needs the
        # database; the sync has nothing to add every few seconds.
        with contextlib.suppress(Unavailable):
            await self.db.run(self.quality.job.restore_gauges)

    async def stop(self) -> None:
        """Stop jobs, then drain the writer within its half of the grace period.

        The server spends the other half finishing in-flight requests before the
        lifespan ends, so the whole shutdown stays within ML_SHUTDOWN_GRACE_SECONDS.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.5, self.settings.shutdown_grace_seconds / 2 - 0.25)
        self.lifecycle.draining = True
        await self._scheduler.stop()
        self.publisher.flush_bins()  # the last second's rows
        try:
            async with asyncio.timeout_at(deadline):
                # A training run is not worth a late exit: its run row stays
                # 'running' and the version on disk is whatever it finished.
                await self.trainer.wait_idle()
        except TimeoutError:
            pass
        await self.collector.stop()
        await self.shadow.stop()  # before the writer: its last scores are drained with the rest
        left = await self.writer.stop(timeout=max(0.0, deadline - loop.time()))
        if left:
            log.warning("records left in the journal for the next start", extra={"count": left})
        try:
            async with asyncio.timeout_at(deadline):
                await self.request_counts.flush()  # the last seconds' requests
        except Exception as exc:  # no reason to fail a shutdown: the counts are only lost
            log.warning("request counts not stored", extra={"error_type": type(exc).__name__})
        else:
            if self.request_counts.tally.pending_minutes():  # put back: the database is down
                log.warning("request counts of the last seconds not stored")
        # Database calls of cancelled jobs may still run: let them return their connections
        # (within the grace) before the pool is disposed of.
        await self.db.close(timeout=deadline - loop.time())
        self.store.engine.dispose()

    async def _retention(self) -> None:
        await self.db.run(self.retention.check)

    async def _flush_bins(self) -> None:
        self.publisher.flush_bins()

    async def _watch_models(self) -> None:
        before = {m.name: m.version for m in self.models.all()}
        await asyncio.to_thread(self.models.refresh)
        for loaded in self.models.all():
            if before.get(loaded.name) != loaded.version:
                self.publisher.publish(loaded)
        self.publisher.forget_unserved(self.models.names())
        self.publisher.publish_refusals(self.models.refused())
